//! The circuit breaker in front of a Redis: shared by every worker (and the
//! actor that probes), so that a failing Redis costs one fast check per
//! request instead of `command_timeout_ms`.
//!
//! Each store has its own: cluster rate limits (`ratelimit`) and sessions
//! (`auth::session`). After [`FAILURES_TO_OPEN`] failed round trips in a
//! row it opens for a back-off (doubling from [`BACKOFF_BASE`] to
//! [`BACKOFF_MAX`]); when that has passed, one caller probes Redis again;
//! success closes it. A leaf: it imports nothing from the gateway.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use slog::{info, warn, Logger};

pub const FAILURES_TO_OPEN: u32 = 3;
pub const BACKOFF_BASE: Duration = Duration::from_millis(500);
pub const BACKOFF_MAX: Duration = Duration::from_secs(10);

/// Milliseconds on the breaker's clock (monotonic, process-relative).
pub fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1
}

/// A breaker transition, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerChange {
    Opened { failures: u32, backoff: Duration },
    Closed,
}

/// What a store's breaker says in the log when it opens and closes.
pub struct BreakerMessages {
    pub opened: &'static str,
    pub closed: &'static str,
}

impl BreakerChange {
    /// Logs a transition, one line each (rare, and what an operator needs
    /// to see): `opened` as a warning with the failure count, back-off and
    /// the error, `closed` as info.
    pub fn log(change: Option<Self>, log: &Logger, messages: &BreakerMessages, error: &str) {
        match change {
            Some(Self::Opened { failures, backoff }) => warn!(log, "{}", messages.opened;
                "consecutive_failures" => failures,
                "backoff_ms" => backoff.as_millis() as u64, "error" => error),
            Some(Self::Closed) => info!(log, "{}", messages.closed),
            None => {}
        }
    }
}

/// Redis health as seen by this replica.
#[derive(Debug, Default)]
pub struct CircuitBreaker {
    consecutive_failures: AtomicU32,
    /// When the last counted failure was recorded; batches that were
    /// already under way then belong to the same incident.
    last_failure_ms: AtomicU64,
    /// 0 = closed; otherwise `now_ms()` until which calls are skipped.
    open_until_ms: AtomicU64,
}

impl CircuitBreaker {
    /// May this request try Redis? Closed: yes. Open: no, except the one
    /// caller that finds the back-off over (it becomes the probe; others
    /// keep skipping until it reports).
    pub fn admit(&self) -> bool {
        let until = self.open_until_ms.load(Ordering::Acquire);
        if until == 0 {
            return true;
        }
        let now = now_ms();
        if now < until {
            return false;
        }
        // Hold others off for the probe's lifetime; a lost probe just means
        // another one after this window.
        let window = now + BACKOFF_BASE.as_millis() as u64;
        self.open_until_ms
            .compare_exchange(until, window, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// True while open, when the caller may probe now (see [`Self::admit`]).
    pub fn should_probe(&self) -> bool {
        self.is_open() && self.admit()
    }

    /// Records a good round trip; `Some(Closed)` when it closes the breaker.
    pub fn record_success(&self) -> Option<BreakerChange> {
        self.consecutive_failures.store(0, Ordering::Release);
        (self.open_until_ms.swap(0, Ordering::AcqRel) != 0).then_some(BreakerChange::Closed)
    }

    /// Counts a failed round trip that started at `started_ms`. Round trips
    /// that were in flight together fail together: they count once, so a
    /// short stall under load does not look like several failures.
    /// `Some(Opened)` when this failure opens a closed breaker.
    pub fn record_failure(&self, started_ms: u64) -> Option<BreakerChange> {
        let now = now_ms();
        let last = self.last_failure_ms.load(Ordering::Acquire);
        if started_ms <= last
            || self
                .last_failure_ms
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
        {
            return None;
        }
        let failures = self.consecutive_failures.fetch_add(1, Ordering::AcqRel) + 1;
        if failures < FAILURES_TO_OPEN {
            return None;
        }
        let doublings = (failures - FAILURES_TO_OPEN).min(8);
        let backoff = (BACKOFF_BASE * 2u32.pow(doublings)).min(BACKOFF_MAX);
        let was = self
            .open_until_ms
            .swap(now_ms() + backoff.as_millis() as u64, Ordering::AcqRel);
        (was == 0).then_some(BreakerChange::Opened { failures, backoff })
    }

    pub fn is_open(&self) -> bool {
        self.open_until_ms.load(Ordering::Acquire) != 0
    }

    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures.load(Ordering::Acquire)
    }

    /// The `/health` section of a store behind this breaker.
    pub fn health_json(&self) -> serde_json::Value {
        serde_json::json!({
            "status": if self.is_open() { "degraded" } else { "ok" },
            "breaker_open": self.is_open(),
            "consecutive_failures": self.consecutive_failures(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn breaker_opens_after_repeated_failures_and_probes_once() {
        let h = CircuitBreaker::default();
        assert!(h.admit());
        let fail = || {
            std::thread::sleep(Duration::from_millis(2));
            h.record_failure(now_ms());
        };
        fail();
        // Batches that were under way at the first failure count with it.
        h.record_failure(0);
        h.record_failure(0);
        fail();
        assert!(h.admit(), "still closed below the threshold");
        std::thread::sleep(Duration::from_millis(2));
        assert!(
            matches!(
                h.record_failure(now_ms()),
                Some(BreakerChange::Opened { failures: 3, .. })
            ),
            "the third failure opens the breaker"
        );
        assert!(h.is_open());
        assert!(!h.admit(), "open: calls are skipped");
        std::thread::sleep(BACKOFF_BASE + Duration::from_millis(50));
        assert!(h.admit(), "back-off over: one probe");
        assert!(!h.admit(), "only one probe at a time");
        std::thread::sleep(Duration::from_millis(2));
        assert_eq!(
            h.record_failure(now_ms()),
            None,
            "already open: no new transition"
        );
        assert_eq!(h.record_success(), Some(BreakerChange::Closed));
        assert_eq!(h.record_success(), None);
        assert!(!h.is_open());
        assert!(h.admit());
    }
}
