//! Local rate limiting: each policy's keyed GCRA limiter (governor), decided
//! in the calling worker without waiting on anyone. Cluster policies keep
//! one too: it is their `on_store_error: local` fallback. Idle keys are
//! evicted by the upkeep actor, so memory follows the active keys.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};

use super::gcra::{Decision, Gcra};
use crate::settings::RateLimitPolicy;

type KeyedLimiter =
    RateLimiter<u64, DashMapStateStore<u64>, DefaultClock, StateInformationMiddleware>;

/// One configured policy with its local limiter. Cluster-scoped policies
/// keep one too: it is the `on_store_error: local` fallback.
pub struct Policy {
    pub settings: RateLimitPolicy,
    pub gcra: Gcra,
    local: KeyedLimiter,
}

impl Policy {
    pub fn new(settings: RateLimitPolicy) -> Self {
        let gcra = Gcra::of(&settings);
        let burst = NonZeroU32::new(gcra.capacity as u32).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::with_period(gcra.interval)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(burst);
        let local = RateLimiter::dashmap(quota).with_middleware::<StateInformationMiddleware>();
        Self {
            settings,
            gcra,
            local,
        }
    }

    /// Decides locally, in the calling worker.
    pub fn check_local(&self, key: u64) -> Decision {
        let Gcra { capacity, interval } = self.gcra;
        match self.local.check_key(&key) {
            Ok(snapshot) => {
                let remaining = u64::from(snapshot.remaining_burst_capacity());
                Decision {
                    allowed: true,
                    limit: capacity,
                    remaining,
                    retry_after: Duration::ZERO,
                    reset_after: interval * (capacity - remaining.min(capacity)) as u32,
                }
            }
            Err(not_until) => {
                // The limiter's own clock: building a `DefaultClock` per
                // refusal cost ~15 us (its calibration), so a flood of refused
                // requests cost 250x an admitted one.
                let wait = not_until.wait_time_from(self.local.clock().now());
                Decision {
                    allowed: false,
                    limit: capacity,
                    remaining: 0,
                    retry_after: wait,
                    reset_after: interval * capacity as u32,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::{OnStoreError, RateLimitKey, RateLimitScope};

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
}
