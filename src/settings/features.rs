//! Validated per-route features (`rewrite`, header rules, `cors`, IP lists,
//! per-route limits, `retry_on`, the weighted split) and an upstream's
//! consistent-hash key, circuit breaker and retry budget: the shapes the
//! request path reads.
//!
//! A route without any of these keys has no [`RouteFeatures`] at all
//! (`RouteSettings::features` is `None`), so it pays one branch for them.

use std::net::IpAddr;
use std::time::Duration;

use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use actix_web::http::Method;
use ipnet::IpNet;
use regex::Regex;

/// Everything optional a route may set; each field absent/empty = off.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RouteFeatures {
    pub timeout: Option<Duration>,
    pub max_body_bytes: Option<u64>,
    pub rewrite: Option<PathRewrite>,
    pub request_headers: Option<HeaderRules>,
    pub response_headers: Option<HeaderRules>,
    pub cors: Option<Cors>,
    pub ip_rules: Option<IpRules>,
    pub compress: bool,
    pub retry_on: Vec<u16>,
    pub split: Option<WeightedSplit>,
}

impl RouteFeatures {
    /// Whether the route stage in front of auth has work to do: IP rules,
    /// CORS, response headers or compression (the rest is the proxy's).
    pub fn shapes_exchange(&self) -> bool {
        self.ip_rules.is_some()
            || self.cors.is_some()
            || self.response_headers.is_some()
            || self.compress
    }
}

/// A regex path rewrite; compared by its source text.
#[derive(Debug, Clone)]
pub struct PathRewrite {
    pub pattern: Regex,
    pub replacement: String,
}

impl PartialEq for PathRewrite {
    fn eq(&self, other: &Self) -> bool {
        self.pattern.as_str() == other.pattern.as_str() && self.replacement == other.replacement
    }
}

impl PathRewrite {
    /// The rewritten path, or `None` when the pattern does not match (the
    /// path is then forwarded unchanged).
    pub fn apply(&self, path: &str) -> Option<String> {
        let caps = self.pattern.captures(path)?;
        let mut out = String::with_capacity(path.len() + self.replacement.len());
        caps.expand(&self.replacement, &mut out);
        Some(out)
    }
}

/// Headers to set (replacing any present) and to remove.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HeaderRules {
    pub set: Vec<(HeaderName, HeaderValue)>,
    pub remove: Vec<HeaderName>,
}

impl HeaderRules {
    pub fn apply(&self, headers: &mut HeaderMap) {
        for name in &self.remove {
            headers.remove(name);
        }
        for (name, value) in &self.set {
            headers.insert(name.clone(), value.clone());
        }
    }
}

/// The CORS policy of a route.
#[derive(Debug, Clone, PartialEq)]
pub struct Cors {
    /// Exact origins; `None` = any (`*`, only without credentials).
    pub allow_origins: Option<Vec<String>>,
    /// Empty = the route's methods (or any).
    pub allow_methods: Vec<Method>,
    /// `Access-Control-Allow-Methods` value.
    pub allow_methods_value: HeaderValue,
    /// `Access-Control-Allow-Headers` value; `None` = none listed.
    pub allow_headers_value: Option<HeaderValue>,
    pub expose_headers_value: Option<HeaderValue>,
    pub allow_credentials: bool,
    pub max_age_value: HeaderValue,
}

impl Cors {
    /// Whether `origin` may read responses.
    pub fn allows_origin(&self, origin: &[u8]) -> bool {
        match &self.allow_origins {
            None => true,
            Some(list) => list.iter().any(|o| o.as_bytes() == origin),
        }
    }

    pub fn allows_method(&self, method: &[u8]) -> bool {
        self.allow_methods.is_empty()
            || self
                .allow_methods
                .iter()
                .any(|m| m.as_str().as_bytes() == method)
    }
}

/// `allow_ips` / `deny_ips` on the client IP (after `trusted_proxies`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IpRules {
    pub allow: Vec<IpNet>,
    pub deny: Vec<IpNet>,
}

impl IpRules {
    /// Deny wins over allow; an empty allow list allows everyone.
    pub fn permits(&self, ip: IpAddr) -> bool {
        // An IPv4 client on a dual-stack socket arrives as ::ffff:a.b.c.d.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        if self.deny.iter().any(|n| n.contains(&ip)) {
            return false;
        }
        self.allow.is_empty() || self.allow.iter().any(|n| n.contains(&ip))
    }
}

/// A weighted choice between upstreams (indices into `upstreams`).
#[derive(Debug, Clone, PartialEq)]
pub struct WeightedSplit {
    pub entries: Vec<(usize, u32)>,
    pub total: u32,
}

impl WeightedSplit {
    /// The upstream for a draw `roll` in `0..total`.
    pub fn pick(&self, roll: u32) -> usize {
        let mut left = roll;
        for &(upstream, weight) in &self.entries {
            if left < weight {
                return upstream;
            }
            left -= weight;
        }
        self.entries.last().map_or(0, |e| e.0)
    }
}

/// `upstreams.<name>.circuit_breaker`: more reasons than `max_fails` to
/// take a target out, and how many probes bring it back.
#[derive(Debug, Clone, PartialEq)]
pub struct CircuitBreaker {
    /// 0 = off.
    pub consecutive_5xx: u32,
    /// 0 = off.
    pub error_ratio: f64,
    pub min_requests: u32,
    pub window: Duration,
    pub half_open_successes: u32,
}

/// `upstreams.<name>.retry_budget`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryBudget {
    pub percent: u32,
    pub min_concurrency: u32,
}

/// What `balance: consistent_hash` hashes to choose a target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashKey {
    Ip,
    User,
    Header(HeaderName),
    Cookie(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_rules_deny_wins_and_mapped_v4_counts_as_v4() {
        let rules = IpRules {
            allow: vec!["10.0.0.0/8".parse().unwrap()],
            deny: vec!["10.1.0.0/16".parse().unwrap()],
        };
        assert!(rules.permits("10.2.3.4".parse().unwrap()));
        assert!(!rules.permits("10.1.3.4".parse().unwrap()));
        assert!(!rules.permits("192.168.1.1".parse().unwrap()));
        assert!(rules.permits("::ffff:10.2.3.4".parse().unwrap()));
        assert!(!rules.permits("::ffff:10.1.3.4".parse().unwrap()));
        let deny_only = IpRules {
            allow: vec![],
            deny: vec!["127.0.0.1/32".parse().unwrap()],
        };
        assert!(deny_only.permits("127.0.0.2".parse().unwrap()));
        assert!(!deny_only.permits("127.0.0.1".parse().unwrap()));
    }

    #[test]
    fn weighted_split_covers_every_roll_by_weight() {
        let split = WeightedSplit {
            entries: vec![(3, 10), (1, 90)],
            total: 100,
        };
        let to_three = (0..100).filter(|&r| split.pick(r) == 3).count();
        assert_eq!(to_three, 10);
        assert_eq!(split.pick(99), 1);
    }

    #[test]
    fn rewrite_expands_groups() {
        let rw = PathRewrite {
            pattern: Regex::new("^/v1/(.*)$").unwrap(),
            replacement: "/api/$1".into(),
        };
        assert_eq!(rw.apply("/v1/users/7").as_deref(), Some("/api/users/7"));
        assert_eq!(rw.apply("/v2/users"), None);
    }
}
