//! Serde shapes of the optional features: per route (`rewrite`, header
//! rules, `cors`, IP lists, weighted `upstreams`) and per upstream
//! resilience (`retry_budget`, `circuit_breaker`). Part of [`super::raw`],
//! kept apart so the main structs stay readable. Absent = off.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `routes[].rewrite`: a regex path rewrite applied after `strip_prefix`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RawRewrite {
    pub pattern: String,
    /// `$1`, `${name}` refer to the pattern's groups.
    pub replacement: String,
}

/// `routes[].request_headers` / `response_headers`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RawHeaderRules {
    pub set: BTreeMap<String, String>,
    pub remove: Vec<String>,
}

pub const DEFAULT_CORS_MAX_AGE_SECS: u64 = 600;

/// `routes[].cors`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RawCors {
    pub allow_origins: Vec<String>,
    pub allow_methods: Vec<String>,
    pub allow_headers: Vec<String>,
    pub expose_headers: Vec<String>,
    pub allow_credentials: bool,
    pub max_age_secs: u64,
}

impl Default for RawCors {
    fn default() -> Self {
        Self {
            allow_origins: Vec::new(),
            allow_methods: Vec::new(),
            allow_headers: Vec::new(),
            expose_headers: Vec::new(),
            allow_credentials: false,
            max_age_secs: DEFAULT_CORS_MAX_AGE_SECS,
        }
    }
}

/// One entry of `routes[].upstreams` (a weighted split).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RawWeightedUpstream {
    pub upstream: String,
    pub weight: u32,
}

pub const DEFAULT_RETRY_BUDGET_PERCENT: u32 = 20;
pub const DEFAULT_RETRY_BUDGET_MIN: u32 = 3;

/// `upstreams.<name>.retry_budget`: retries in flight may be `percent` of
/// the requests in flight, `min_concurrency` always allowed.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RawRetryBudget {
    pub percent: u32,
    pub min_concurrency: u32,
}

impl Default for RawRetryBudget {
    fn default() -> Self {
        Self {
            percent: DEFAULT_RETRY_BUDGET_PERCENT,
            min_concurrency: DEFAULT_RETRY_BUDGET_MIN,
        }
    }
}

pub const DEFAULT_BREAKER_WINDOW_SECS: u64 = 10;
pub const DEFAULT_BREAKER_MIN_REQUESTS: u32 = 20;
pub const DEFAULT_HALF_OPEN_SUCCESSES: u32 = 1;

/// `upstreams.<name>.circuit_breaker`: what else (beyond `max_fails`
/// failures in a row) opens a target's circuit, and how it closes.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RawCircuitBreaker {
    /// 5xx answers (500, 502, 503, 504) in a row that open it; 0 = off.
    pub consecutive_5xx: u32,
    /// Share of failed exchanges and 5xx answers in the window that opens
    /// it; 0 = off.
    pub error_ratio: f64,
    /// The ratio is judged only over at least this many requests.
    pub min_requests: u32,
    pub window_secs: u64,
    /// Successful probes in a row, in half-open, that close it.
    pub half_open_successes: u32,
}

impl Default for RawCircuitBreaker {
    fn default() -> Self {
        Self {
            consecutive_5xx: 0,
            error_ratio: 0.0,
            min_requests: DEFAULT_BREAKER_MIN_REQUESTS,
            window_secs: DEFAULT_BREAKER_WINDOW_SECS,
            half_open_successes: DEFAULT_HALF_OPEN_SUCCESSES,
        }
    }
}
