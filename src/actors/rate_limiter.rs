//! The RateLimiter actor: owns the Redis side of cluster-scoped rate limits
//! and the periodic eviction of idle local keys.
//!
//! Two roles, one type:
//! - one actor per worker, started on the worker's own event loop (so a
//!   decision never crosses threads), answers `scope: cluster` decisions
//!   (local decisions never leave the worker). Every `Decide` that arrives
//!   in the same tick of that loop is sent to Redis in ONE pipelined round
//!   trip of `EVALSHA` calls of an atomic GCRA script, on the actor's own
//!   multiplexed connection; replies go back through one-shot channels.
//!   The mailbox is bounded: a worker that finds it full does not wait
//!   (see `ratelimit::store`). Failures feed the shared circuit breaker.
//! - one maintenance actor on a thread of its own evicts idle local keys
//!   and probes Redis while the breaker is open.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use tokio::sync::oneshot;

use crate::ratelimit::store::{log_breaker_change, BreakerChange, StoreError, StoreHealth};
use crate::ratelimit::{Decision, RateLimits};
use crate::redis_pool::{ConnectionSlot, RedisPool, SharedConnection};
use crate::telemetry::metrics::Metrics;
use slog::Logger;

/// GCRA over Redis time, in microseconds. KEYS[1]: state key holding the
/// theoretical arrival time (TAT); ARGV[1]: emission interval; ARGV[2]:
/// capacity. Returns {allowed, remaining, retry_after_us, reset_after_us}.
/// One script call is one atomic decision: no check-then-increment race.
pub const GCRA_SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local tolerance = interval * capacity
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - tolerance
if now < allow_at then
  return {0, 0, allow_at - now, tat - now}
end
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.ceil((new_tat - now) / 1000))
return {1, math.floor((now + tolerance - new_tat) / interval), 0, new_tat - now}
";

/// Most decisions sent in one round trip; more wait for the next tick.
const MAX_BATCH: usize = 512;
const EVICTION_PERIOD: Duration = Duration::from_secs(10);
const PROBE_PERIOD: Duration = Duration::from_millis(250);

/// Ask for one cluster-wide decision. The answer comes through `reply`.
pub struct Decide {
    pub key: String,
    pub interval_us: u64,
    pub capacity: u64,
    pub reply: oneshot::Sender<Result<Decision, StoreError>>,
}

impl Message for Decide {
    type Result = ();
}

/// Sent to itself: send what has queued up in this tick.
struct Flush;

impl Message for Flush {
    type Result = ();
}

/// Where the GCRA state lives.
pub type Backend = RedisPool;

pub struct RateLimiterActor {
    backend: Option<Backend>,
    script: Arc<redis::Script>,
    pending: Vec<Decide>,
    flush_scheduled: bool,
    connection: ConnectionSlot,
    mailbox_capacity: usize,
    command_timeout: Duration,
    health: Arc<StoreHealth>,
    limits: Arc<RateLimits>,
    metrics: Arc<Metrics>,
    log: Logger,
    /// Evicts idle keys and probes Redis (the one maintenance actor).
    maintenance: bool,
}

impl RateLimiterActor {
    /// A decisions-only actor with the same settings and shared state (the
    /// breaker, the limits, the metrics) and a connection of its own.
    pub fn for_worker(&self) -> Self {
        Self {
            backend: self.backend.clone(),
            script: self.script.clone(),
            pending: Vec::new(),
            flush_scheduled: false,
            connection: ConnectionSlot::default(),
            mailbox_capacity: self.mailbox_capacity,
            command_timeout: self.command_timeout,
            health: self.health.clone(),
            limits: self.limits.clone(),
            metrics: self.metrics.clone(),
            log: self.log.clone(),
            maintenance: false,
        }
    }

    pub fn new(
        backend: Option<Backend>,
        mailbox_capacity: usize,
        command_timeout: Duration,
        health: Arc<StoreHealth>,
        limits: Arc<RateLimits>,
        metrics: Arc<Metrics>,
        log: Logger,
    ) -> Self {
        Self {
            backend,
            script: Arc::new(redis::Script::new(GCRA_SCRIPT)),
            pending: Vec::new(),
            flush_scheduled: false,
            connection: ConnectionSlot::default(),
            mailbox_capacity,
            command_timeout,
            health,
            limits,
            metrics,
            log,
            maintenance: true,
        }
    }

    /// While the breaker is open, Redis is probed with PING once its
    /// back-off is over, so recovery does not wait for traffic.
    fn probe_if_open(&mut self) {
        let Some(backend) = self.backend.clone() else {
            return;
        };
        if !self.health.is_open() || !self.health.admit() {
            return;
        }
        let health = self.health.clone();
        let timeout = self.command_timeout;
        let slot = self.connection.clone();
        let started = crate::ratelimit::store::now_ms();
        let log = self.log.clone();
        actix::spawn(async move {
            let change = match tokio::time::timeout(timeout, ping(&backend, &slot)).await {
                Ok(Ok(())) => health.record_success(),
                _ => {
                    slot.reset();
                    health.record_failure(started)
                }
            };
            log_breaker(&log, change, "probe failed");
        });
    }

    fn evict_idle_keys(&mut self) {
        for p in &self.limits.policies {
            let keys = p.evict_idle_keys();
            self.metrics
                .ratelimit_local_keys
                .with_label_values(&[&p.settings.name])
                .set(keys as i64);
        }
    }
}

impl Actor for RateLimiterActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.mailbox_capacity);
        if self.maintenance {
            ctx.run_interval(EVICTION_PERIOD, |actor, _| actor.evict_idle_keys());
            ctx.run_interval(PROBE_PERIOD, |actor, _| actor.probe_if_open());
        }
    }
}

impl Handler<Decide> for RateLimiterActor {
    type Result = ();

    fn handle(&mut self, msg: Decide, ctx: &mut Self::Context) {
        self.pending.push(msg);
        if !self.flush_scheduled {
            self.flush_scheduled = true;
            ctx.notify(Flush);
        }
    }
}

impl Handler<Flush> for RateLimiterActor {
    type Result = ();

    fn handle(&mut self, _: Flush, ctx: &mut Self::Context) {
        let take = self.pending.len().min(MAX_BATCH);
        let batch: Vec<Decide> = self.pending.drain(..take).collect();
        self.flush_scheduled = !self.pending.is_empty();
        if self.flush_scheduled {
            ctx.notify(Flush);
        }
        let Some(backend) = self.backend.clone() else {
            for d in batch {
                let _ = d.reply.send(Err(StoreError::NotConfigured));
            }
            return;
        };
        let script = self.script.clone();
        let health = self.health.clone();
        let metrics = self.metrics.clone();
        let log = self.log.clone();
        let timeout = self.command_timeout;
        let slot = self.connection.clone();
        let started = crate::ratelimit::store::now_ms();
        actix::spawn(async move {
            let requests: Vec<(&str, u64, u64)> = batch
                .iter()
                .map(|d| (d.key.as_str(), d.interval_us, d.capacity))
                .collect();
            let outcome =
                tokio::time::timeout(timeout, run_batch(&backend, &slot, &script, &requests)).await;
            let outcome = match outcome {
                Ok(Ok(results)) if results.len() == batch.len() => Ok(results),
                Ok(Ok(_)) => Err(StoreError::Protocol),
                Ok(Err(e)) => Err(e),
                Err(_) => Err(StoreError::Timeout),
            };
            match outcome {
                Ok(results) => {
                    log_breaker(&log, health.record_success(), "");
                    metrics.ratelimit_redis_roundtrips.inc();
                    metrics.ratelimit_redis_decisions.inc_by(batch.len() as u64);
                    for (d, r) in batch.into_iter().zip(results) {
                        let _ = d.reply.send(Ok(decision(r, d.capacity)));
                    }
                }
                Err(err) => {
                    if err == StoreError::Timeout {
                        // A stalled connection may stay stalled: start afresh.
                        slot.reset();
                    }
                    log_breaker(&log, health.record_failure(started), err.kind());
                    metrics
                        .ratelimit_store_errors
                        .with_label_values(&[err.kind()])
                        .inc();
                    for d in batch {
                        let _ = d.reply.send(Err(err));
                    }
                }
            }
        });
    }
}

type ScriptResult = (i64, i64, i64, i64);

fn decision((allowed, remaining, retry_us, reset_us): ScriptResult, capacity: u64) -> Decision {
    let micros = |v: i64| Duration::from_micros(u64::try_from(v).unwrap_or(0));
    Decision {
        allowed: allowed == 1,
        limit: capacity,
        remaining: u64::try_from(remaining).unwrap_or(0),
        retry_after: micros(retry_us),
        reset_after: micros(reset_us),
    }
}

/// Breaker transitions of the cluster rate limits, logged once each.
fn log_breaker(log: &Logger, change: Option<BreakerChange>, error: &str) {
    log_breaker_change(
        log,
        change,
        "redis circuit breaker opened: cluster rate limits follow on_store_error",
        "redis circuit breaker closed: cluster rate limiting resumed",
        error,
    );
}

async fn ping(backend: &Backend, slot: &ConnectionSlot) -> Result<(), StoreError> {
    let mut conn = slot
        .get(backend)
        .await
        .map_err(|_| StoreError::Unreachable)?;
    let result = redis::cmd("PING")
        .query_async::<()>(&mut conn)
        .await
        .map_err(StoreError::from);
    if result.is_err() {
        slot.reset();
    }
    result
}

fn is_noscript(e: &redis::RedisError) -> bool {
    e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript)
}

/// One round trip for a single node (a pipeline of EVALSHA); the script is
/// loaded once and again only when Redis answers NOSCRIPT (after a restart
/// or SCRIPT FLUSH). A cluster gets concurrent calls on its multiplexed
/// connection, each routed to the slot of its key.
async fn run_batch(
    backend: &Backend,
    slot: &ConnectionSlot,
    script: &redis::Script,
    requests: &[(&str, u64, u64)],
) -> Result<Vec<ScriptResult>, StoreError> {
    let conn = slot
        .get(backend)
        .await
        .map_err(|_| StoreError::Unreachable)?;
    let result = match conn {
        SharedConnection::Single(mut conn) => {
            let mut pipe = redis::pipe();
            for (key, interval, capacity) in requests {
                pipe.cmd("EVALSHA")
                    .arg(script.get_hash())
                    .arg(1)
                    .arg(*key)
                    .arg(*interval)
                    .arg(*capacity);
            }
            match pipe.query_async::<Vec<ScriptResult>>(&mut conn).await {
                Err(e) if is_noscript(&e) => {
                    script
                        .prepare_invoke()
                        .load_async(&mut conn)
                        .await
                        .map_err(StoreError::from)?;
                    pipe.query_async(&mut conn).await.map_err(StoreError::from)
                }
                other => other.map_err(StoreError::from),
            }
        }
        SharedConnection::Cluster(conn) => {
            let calls = requests.iter().map(|(key, interval, capacity)| {
                let mut conn = conn.clone();
                async move {
                    script
                        .key(*key)
                        .arg(*interval)
                        .arg(*capacity)
                        .invoke_async::<ScriptResult>(&mut conn)
                        .await
                        .map_err(StoreError::from)
                }
            });
            futures_util::future::try_join_all(calls).await
        }
    };
    if matches!(result, Err(StoreError::Unreachable)) {
        slot.reset();
    }
    result
}
