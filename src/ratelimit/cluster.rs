//! The worker's side of cluster-scoped decisions: a bounded hand-off to the
//! worker's own RateLimiter actor (`actor.rs`), a deadline, and the shared
//! circuit breaker checked first, so that a failing Redis costs one fast
//! check per request instead of `command_timeout_ms`.

use std::time::Duration;

use actix::{Actor, Addr};
use tokio::sync::oneshot;

use super::actor::{ClusterStoreError, Decide, RateLimiterActor, RedisGcra};
use super::gcra::{Decision, Gcra};

/// Cluster decisions waiting for a RateLimiter actor; beyond this a request
/// falls back at once instead of queueing.
const MAILBOX_CAPACITY: usize = 4096;
/// Added to `command_timeout_ms` for the time a decision waits in the
/// actor's mailbox before its round trip starts.
const MAILBOX_WAIT_MARGIN: Duration = Duration::from_millis(20);

/// Shared by every worker (with `redis.url`): what each worker's actor is
/// started from.
#[derive(Clone)]
pub struct ClusterLimiter {
    redis: RedisGcra,
}

impl ClusterLimiter {
    pub fn new(redis: RedisGcra) -> Self {
        Self { redis }
    }

    /// Starts a RateLimiter actor on the calling worker's event loop: its
    /// decisions are batched per tick of that loop and never wait for
    /// another thread to wake up. Call once per worker.
    pub fn start_for_this_worker(&self) -> WorkerClusterLimiter {
        WorkerClusterLimiter {
            addr: RateLimiterActor::new(self.redis.clone(), MAILBOX_CAPACITY).start(),
            wait: self.redis.command_timeout + MAILBOX_WAIT_MARGIN,
            redis: self.redis.clone(),
        }
    }
}

/// One worker's handle for cluster decisions.
pub struct WorkerClusterLimiter {
    addr: Addr<RateLimiterActor>,
    /// How long a request waits for its answer (queueing + round trip).
    wait: Duration,
    redis: RedisGcra,
}

impl WorkerClusterLimiter {
    /// The cluster-wide decision for `key`, or why there is none.
    pub async fn decide(&self, key: String, gcra: Gcra) -> Result<Decision, ClusterStoreError> {
        if !self.redis.breaker.admit() {
            return Err(self.count(ClusterStoreError::BreakerOpen));
        }
        let (reply, answer) = oneshot::channel();
        if self.addr.try_send(Decide { key, gcra, reply }).is_err() {
            return Err(self.count(ClusterStoreError::Overloaded));
        }
        match tokio::time::timeout(self.wait, answer).await {
            Ok(Ok(result)) => result,
            // The actor dropped the request (shutting down).
            Ok(Err(_)) => Err(ClusterStoreError::Unreachable),
            // The actor's own deadline reports to the breaker; this only
            // stops the request from waiting longer than promised.
            Err(_) => Err(ClusterStoreError::Timeout),
        }
    }

    /// Failures that never reach the actor are counted here (the actor
    /// counts its own).
    fn count(&self, err: ClusterStoreError) -> ClusterStoreError {
        self.redis
            .metrics
            .ratelimit_store_errors
            .with_label_values(&[err.kind()])
            .inc();
        err
    }
}
