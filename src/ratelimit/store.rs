//! The worker's side of cluster-scoped decisions: a bounded hand-off to the
//! RateLimiter actor, a deadline, and a circuit breaker shared by all
//! workers so that a failing Redis costs one fast check per request instead
//! of `command_timeout_ms`.
//!
//! Breaker: after [`FAILURES_TO_OPEN`] failed round trips in a row it opens
//! for a back-off (doubling from [`BACKOFF_BASE`] to [`BACKOFF_MAX`]); when
//! that has passed, one caller probes Redis again; success closes it.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use actix::{Actor, Addr};
use slog::{info, warn, Logger};
use tokio::sync::oneshot;

use super::Decision;
use crate::actors::rate_limiter::{Decide, RateLimiterActor};
use crate::telemetry::metrics::Metrics;

pub const FAILURES_TO_OPEN: u32 = 3;
pub const BACKOFF_BASE: Duration = Duration::from_millis(500);
pub const BACKOFF_MAX: Duration = Duration::from_secs(10);

/// Why a cluster decision could not be had.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("redis did not answer within command_timeout_ms")]
    Timeout,
    #[error("redis is unreachable")]
    Unreachable,
    #[error("redis returned an error")]
    Command,
    #[error("redis answered something unexpected")]
    Protocol,
    #[error("the rate limiter actor is overloaded")]
    Overloaded,
    #[error("the circuit breaker is open")]
    BreakerOpen,
    #[error("no redis is configured")]
    NotConfigured,
}

impl StoreError {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Unreachable => "unreachable",
            Self::Command => "command",
            Self::Protocol => "protocol",
            Self::Overloaded => "mailbox_full",
            Self::BreakerOpen => "breaker_open",
            Self::NotConfigured => "not_configured",
        }
    }
}

impl From<redis::RedisError> for StoreError {
    fn from(e: redis::RedisError) -> Self {
        if e.is_connection_refusal() || e.is_connection_dropped() || e.is_io_error() {
            Self::Unreachable
        } else if e.is_timeout() {
            Self::Timeout
        } else {
            Self::Command
        }
    }
}

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

/// Logs a breaker transition, one line each (rare, and what an operator
/// needs to see): `opened` as a warning with the failure count, back-off
/// and the error kind, `closed` as info.
pub fn log_breaker_change(
    log: &Logger,
    change: Option<BreakerChange>,
    opened: &str,
    closed: &str,
    error: &str,
) {
    match change {
        Some(BreakerChange::Opened { failures, backoff }) => warn!(log, "{}", opened;
            "consecutive_failures" => failures,
            "backoff_ms" => backoff.as_millis() as u64, "error" => error),
        Some(BreakerChange::Closed) => info!(log, "{}", closed),
        None => {}
    }
}

/// Redis health as seen by this replica, shared by workers and the actor.
#[derive(Debug, Default)]
pub struct StoreHealth {
    consecutive_failures: AtomicU32,
    /// When the last counted failure was recorded; batches that were
    /// already under way then belong to the same incident.
    last_failure_ms: AtomicU64,
    /// 0 = closed; otherwise `now_ms()` until which calls are skipped.
    open_until_ms: AtomicU64,
}

impl StoreHealth {
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
}

/// Starts each worker's RateLimiter actor (held in the shared state; the
/// server factory calls [`ClusterStores::for_this_worker`] once per worker).
pub struct ClusterStores {
    pub template: RateLimiterActor,
    pub health: Arc<StoreHealth>,
    pub wait: Duration,
    pub metrics: Arc<Metrics>,
}

impl ClusterStores {
    /// Starts a RateLimiter actor on the calling worker's event loop: its
    /// decisions are batched per tick of that loop and never wait for
    /// another thread to wake up.
    pub fn for_this_worker(&self) -> ClusterStore {
        ClusterStore {
            addr: self.template.for_worker().start(),
            health: self.health.clone(),
            wait: self.wait,
            metrics: self.metrics.clone(),
        }
    }
}

/// This worker's handle for cluster decisions; `None` without Redis.
pub struct WorkerCluster(pub Option<ClusterStore>);

/// Handle a worker uses for cluster decisions.
#[derive(Clone)]
pub struct ClusterStore {
    pub addr: Addr<RateLimiterActor>,
    pub health: Arc<StoreHealth>,
    /// How long a worker waits for its answer (queueing + round trip).
    pub wait: Duration,
    pub metrics: Arc<Metrics>,
}

impl ClusterStore {
    pub async fn decide(
        &self,
        key: String,
        interval: Duration,
        capacity: u64,
    ) -> Result<Decision, StoreError> {
        if !self.health.admit() {
            return Err(self.count(StoreError::BreakerOpen));
        }
        let (reply, answer) = oneshot::channel();
        let msg = Decide {
            key,
            interval_us: interval.as_micros().clamp(1, u128::from(u64::MAX)) as u64,
            capacity,
            reply,
        };
        if self.addr.try_send(msg).is_err() {
            return Err(self.count(StoreError::Overloaded));
        }
        match tokio::time::timeout(self.wait, answer).await {
            Ok(Ok(result)) => result,
            // The actor dropped the request (shutting down).
            Ok(Err(_)) => Err(self.count(StoreError::Unreachable)),
            // The actor's own deadline reports to the breaker; this only
            // stops the request from waiting longer than promised.
            Err(_) => Err(self.count(StoreError::Timeout)),
        }
    }

    fn count(&self, err: StoreError) -> StoreError {
        if matches!(err, StoreError::BreakerOpen | StoreError::Overloaded) {
            self.metrics
                .ratelimit_store_errors
                .with_label_values(&[err.kind()])
                .inc();
        }
        err
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn breaker_opens_after_repeated_failures_and_probes_once() {
        let h = StoreHealth::default();
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
