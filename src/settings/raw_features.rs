//! Serde shapes of the optional per-route features (`rewrite`, header
//! rules, `cors`, IP lists, weighted `upstreams`): part of [`super::raw`],
//! kept apart so the route struct stays readable. Absent = off.

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
