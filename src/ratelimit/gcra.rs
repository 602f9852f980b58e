//! GCRA, the one algorithm behind both scopes, so `requests`, `period_secs`
//! and `burst` mean the same locally (governor) and across replicas (the
//! Redis script of `actor`): emission interval `T = period / requests`,
//! capacity `requests + burst` cells. A fresh (or long idle) key may send
//! `capacity` requests at once; after that one request per `T`.
//!
//! Also the answer both scopes give ([`Decision`]) and how it is told to
//! the client (`RateLimit-*`, `Retry-After`). A leaf of `ratelimit`.

use std::time::Duration;

use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};

use crate::settings::RateLimitPolicy;

pub const RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
pub const RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
pub const RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");

/// A policy's GCRA parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gcra {
    /// `requests + burst`, at least 1.
    pub capacity: u64,
    /// `period / requests`, at least 1 ns.
    pub interval: Duration,
}

impl Gcra {
    pub fn of(policy: &RateLimitPolicy) -> Self {
        let capacity = (policy.requests + policy.burst).clamp(1, u64::from(u32::MAX));
        let interval_ns = policy.period.as_nanos() / u128::from(policy.requests.max(1));
        let interval = Duration::from_nanos(interval_ns.clamp(1, u128::from(u64::MAX)) as u64);
        Self { capacity, interval }
    }
}

/// The outcome of one policy for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// Capacity of the policy (`requests + burst`).
    pub limit: u64,
    pub remaining: u64,
    /// When refused: how long until one request would be admitted.
    pub retry_after: Duration,
    /// How long until the key's full capacity is back.
    pub reset_after: Duration,
}

impl Decision {
    /// `RateLimit-Limit`, `-Remaining` and `-Reset` (whole seconds).
    pub fn write_headers(&self, headers: &mut HeaderMap) {
        headers.insert(RATELIMIT_LIMIT, HeaderValue::from(self.limit));
        headers.insert(RATELIMIT_REMAINING, HeaderValue::from(self.remaining));
        headers.insert(
            RATELIMIT_RESET,
            HeaderValue::from(ceil_secs(self.reset_after)),
        );
    }

    /// `Retry-After` of a refusal: whole seconds, at least 1.
    pub fn retry_after_secs(&self) -> u64 {
        ceil_secs(self.retry_after).max(1)
    }
}

/// Whole seconds for `RateLimit-Reset` and `Retry-After`, rounded up.
pub fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::{OnStoreError, RateLimitKey, RateLimitScope};

    #[test]
    fn rounding_up_to_whole_seconds() {
        assert_eq!(ceil_secs(Duration::from_millis(1)), 1);
        assert_eq!(ceil_secs(Duration::from_secs(2)), 2);
        assert_eq!(ceil_secs(Duration::ZERO), 0);
    }

    #[test]
    fn parameters_follow_requests_period_and_burst() {
        let policy = RateLimitPolicy {
            name: "p".into(),
            requests: 10,
            period: Duration::from_secs(60),
            burst: 5,
            key: RateLimitKey::Ip,
            scope: RateLimitScope::Cluster,
            on_store_error: OnStoreError::Local,
        };
        let gcra = Gcra::of(&policy);
        assert_eq!(gcra.capacity, 15);
        assert_eq!(gcra.interval, Duration::from_secs(6));
    }
}
