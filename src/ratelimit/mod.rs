//! Rate-limit policies: GCRA decisions, locally (governor) or shared through
//! Redis (the `RateLimiter` actor), with one meaning of `requests`,
//! `period_secs` and `burst` in both scopes.
//!
//! Consulted by the rate-limit middleware, after route matching (and auth,
//! for `user` keys), before the proxy. Local decisions are taken in the
//! worker without waiting on anyone; cluster decisions go through the actor,
//! which batches them into one Redis round trip per tick, and fall back per
//! `on_store_error` when Redis is slow, failing or the breaker is open.
//!
//! GCRA parameters: emission interval `T = period / requests`, capacity
//! `requests + burst` cells. A fresh (or long idle) key may send `capacity`
//! requests at once; after that one request per `T`.

pub mod store;

use std::hash::{BuildHasher, Hash};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};

use crate::settings::{RateLimitKey, RateLimitPolicy};

type KeyedLimiter =
    RateLimiter<u64, DashMapStateStore<u64>, DefaultClock, StateInformationMiddleware>;

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

/// What identifies "the same client" for a policy, before hashing.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum KeyMaterial<'a> {
    Ip(IpAddr),
    User(&'a str),
    Route(usize),
    Global,
    Header(&'a [u8]),
}

impl KeyMaterial<'_> {
    /// A stable representation for Redis keys, identical on every replica
    /// and bounded in length whatever the client sent.
    pub fn stable_digest(&self) -> String {
        let mut bytes = Vec::with_capacity(64);
        match self {
            Self::Ip(ip) => {
                bytes.push(b'i');
                bytes.extend_from_slice(ip.to_string().as_bytes());
            }
            Self::User(u) => {
                bytes.push(b'u');
                bytes.extend_from_slice(u.as_bytes());
            }
            Self::Route(r) => {
                bytes.push(b'r');
                bytes.extend_from_slice(r.to_string().as_bytes());
            }
            Self::Global => bytes.push(b'g'),
            Self::Header(h) => {
                bytes.push(b'h');
                bytes.extend_from_slice(h);
            }
        }
        format!("{:032x}", xxhash_rust::xxh3::xxh3_128(&bytes))
    }
}

/// One configured policy with its local limiter. Cluster-scoped policies
/// keep one too: it is the `on_store_error: local` fallback.
pub struct Policy {
    pub settings: RateLimitPolicy,
    pub capacity: u64,
    pub interval: Duration,
    local: KeyedLimiter,
}

impl Policy {
    pub fn new(settings: RateLimitPolicy) -> Self {
        let capacity = (settings.requests + settings.burst).clamp(1, u64::from(u32::MAX));
        let interval_ns = settings.period.as_nanos() / u128::from(settings.requests.max(1));
        let interval = Duration::from_nanos(interval_ns.clamp(1, u128::from(u64::MAX)) as u64);
        let burst = NonZeroU32::new(capacity as u32).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::with_period(interval)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(burst);
        let local = RateLimiter::dashmap(quota).with_middleware::<StateInformationMiddleware>();
        Self {
            settings,
            capacity,
            interval,
            local,
        }
    }

    /// Decides locally, in the calling worker.
    pub fn check_local(&self, key: u64) -> Decision {
        match self.local.check_key(&key) {
            Ok(snapshot) => {
                let remaining = u64::from(snapshot.remaining_burst_capacity());
                Decision {
                    allowed: true,
                    limit: self.capacity,
                    remaining,
                    retry_after: Duration::ZERO,
                    reset_after: self.interval
                        * (self.capacity - remaining.min(self.capacity)) as u32,
                }
            }
            Err(not_until) => {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                Decision {
                    allowed: false,
                    limit: self.capacity,
                    remaining: 0,
                    retry_after: wait,
                    reset_after: self.interval * self.capacity as u32,
                }
            }
        }
    }

    /// Drops keys whose state is indistinguishable from a fresh key, so
    /// memory follows the number of recently active keys.
    pub fn evict_idle_keys(&self) -> usize {
        self.local.retain_recent();
        self.local.shrink_to_fit();
        self.local.len()
    }

    pub fn local_keys(&self) -> usize {
        self.local.len()
    }
}

/// All policies, indexed like `Settings::rate_limits`.
pub struct RateLimits {
    pub policies: Vec<Policy>,
    /// Seeded per process: local keys need no cross-replica stability, and
    /// a secret seed keeps clients from aiming collisions.
    seed: std::hash::RandomState,
}

impl RateLimits {
    pub fn new(policies: &[RateLimitPolicy]) -> Self {
        Self {
            policies: policies.iter().cloned().map(Policy::new).collect(),
            seed: std::hash::RandomState::new(),
        }
    }

    pub fn local_key(&self, material: &KeyMaterial<'_>) -> u64 {
        self.seed.hash_one(material)
    }
}

/// Picks the key material of a policy from what the request carries.
/// `user` falls back to the client IP for anonymous requests, and
/// `header:<Name>` when the header is missing.
pub fn key_material<'a>(
    key: &RateLimitKey,
    client_ip: IpAddr,
    user: Option<&'a str>,
    route: usize,
    headers: &'a actix_web::http::header::HeaderMap,
) -> KeyMaterial<'a> {
    match key {
        RateLimitKey::Ip => KeyMaterial::Ip(client_ip),
        RateLimitKey::User => user.map_or(KeyMaterial::Ip(client_ip), KeyMaterial::User),
        RateLimitKey::Route => KeyMaterial::Route(route),
        RateLimitKey::Global => KeyMaterial::Global,
        RateLimitKey::Header(name) => headers
            .get(name.as_str())
            .map_or(KeyMaterial::Ip(client_ip), |v| {
                KeyMaterial::Header(v.as_bytes())
            }),
    }
}

/// Whole seconds for `RateLimit-Reset` and `Retry-After`, rounded up.
pub fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::{OnStoreError, RateLimitScope};

    fn policy(requests: u64, period_secs: u64, burst: u64) -> Policy {
        Policy::new(RateLimitPolicy {
            name: "p".into(),
            requests,
            period: Duration::from_secs(period_secs),
            burst,
            key: RateLimitKey::Ip,
            scope: RateLimitScope::Local,
            on_store_error: OnStoreError::Local,
        })
    }

    #[test]
    fn fresh_key_gets_requests_plus_burst_then_is_refused() {
        let p = policy(10, 60, 5);
        for i in 0..15 {
            let d = p.check_local(1);
            assert!(d.allowed, "request {i}");
            assert_eq!(d.remaining, 14 - i);
            assert_eq!(d.limit, 15);
        }
        let refused = p.check_local(1);
        assert!(!refused.allowed);
        assert_eq!(refused.remaining, 0);
        // One cell comes back every 6 s.
        assert!(refused.retry_after > Duration::from_secs(5));
        assert!(refused.retry_after <= Duration::from_secs(6));
        assert!(p.check_local(2).allowed, "keys are independent");
    }

    #[test]
    fn idle_keys_are_evicted() {
        let p = policy(1000, 1, 0);
        for key in 0..10_000u64 {
            p.check_local(key);
        }
        assert_eq!(p.local_keys(), 10_000);
        std::thread::sleep(Duration::from_millis(1100));
        assert_eq!(p.evict_idle_keys(), 0);
    }

    #[test]
    fn digests_are_stable_and_bounded() {
        let long = vec![b'x'; 10_000];
        let a = KeyMaterial::Header(&long).stable_digest();
        assert_eq!(a.len(), 32);
        assert_eq!(a, KeyMaterial::Header(&long).stable_digest());
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        assert_ne!(
            KeyMaterial::Ip(ip).stable_digest(),
            KeyMaterial::Header(b"10.0.0.1").stable_digest()
        );
    }

    #[test]
    fn key_material_follows_the_policy_key_and_falls_back_to_ip() {
        use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(
            HeaderName::from_static("x-api-key"),
            HeaderValue::from_static("k1"),
        );
        let header_key = RateLimitKey::Header("x-api-key".into());
        assert_eq!(
            key_material(&header_key, ip, None, 3, &headers),
            KeyMaterial::Header(b"k1")
        );
        let other = RateLimitKey::Header("x-tenant".into());
        assert_eq!(
            key_material(&other, ip, None, 3, &headers),
            KeyMaterial::Ip(ip)
        );
        assert_eq!(
            key_material(&RateLimitKey::User, ip, Some("alice"), 3, &headers),
            KeyMaterial::User("alice")
        );
        assert_eq!(
            key_material(&RateLimitKey::User, ip, None, 3, &headers),
            KeyMaterial::Ip(ip)
        );
        assert_eq!(
            key_material(&RateLimitKey::Route, ip, None, 3, &headers),
            KeyMaterial::Route(3)
        );
        assert_eq!(
            key_material(&RateLimitKey::Global, ip, None, 3, &headers),
            KeyMaterial::Global
        );
    }

    #[test]
    fn rounding_up_to_whole_seconds() {
        assert_eq!(ceil_secs(Duration::from_millis(1)), 1);
        assert_eq!(ceil_secs(Duration::from_secs(2)), 2);
        assert_eq!(ceil_secs(Duration::ZERO), 0);
    }
}
