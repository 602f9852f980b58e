//! The RateLimiter actor: the Redis side of cluster-scoped decisions.
//!
//! One per worker, started on the worker's own event loop (so a decision
//! never crosses threads; see `cluster.rs`); local decisions never come
//! here. Every [`Decide`] that arrives in the same tick of that loop goes
//! to Redis in ONE pipelined round trip of `EVALSHA` calls of an atomic
//! GCRA script ([`GCRA_SCRIPT`]), on the actor's own multiplexed
//! connection; replies go back through one-shot channels. The mailbox is
//! bounded: a worker that finds it full does not wait. Round trips report
//! to the shared circuit breaker.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use slog::Logger;
use tokio::sync::oneshot;

use super::gcra::{Decision, Gcra};
use crate::redis::breaker::{now_ms, BreakerChange, BreakerMessages, CircuitBreaker};
use crate::redis::pool::{ConnectionSlot, RedisPool, SharedConnection};
use crate::telemetry::metrics::Metrics;

/// GCRA over Redis time, in microseconds. KEYS[1]: state key holding the
/// theoretical arrival time (TAT); ARGV[1]: emission interval; ARGV[2]:
/// capacity. Returns "allowed remaining retry_after_us reset_after_us" as
/// one string: the client parses one bulk string for a fraction of what
/// an array of four integers costs it ([`GcraReply`]).
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
  return string.format('0 0 %d %d', allow_at - now, tat - now)
end
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.ceil((new_tat - now) / 1000))
return string.format('1 %d 0 %d', math.floor((now + tolerance - new_tat) / interval), new_tat - now)
";

/// Most decisions sent in one round trip; more wait for the next tick.
const MAX_BATCH: usize = 512;

/// What the cluster rate limits' breaker says when it changes.
pub const BREAKER_MESSAGES: BreakerMessages = BreakerMessages {
    opened: "redis circuit breaker opened: cluster rate limits follow on_store_error",
    closed: "redis circuit breaker closed: cluster rate limiting resumed",
};

/// Why a cluster decision could not be had (the policy's `on_store_error`
/// decides what happens then).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ClusterStoreError {
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
}

impl ClusterStoreError {
    /// `gateway_ratelimit_store_errors_total{kind}`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Unreachable => "unreachable",
            Self::Command => "command",
            Self::Protocol => "protocol",
            Self::Overloaded => "mailbox_full",
            Self::BreakerOpen => "breaker_open",
        }
    }
}

impl From<redis::RedisError> for ClusterStoreError {
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

/// Ask for one cluster-wide decision. The answer comes through `reply`.
pub struct Decide {
    pub key: String,
    pub gcra: Gcra,
    pub reply: oneshot::Sender<Result<Decision, ClusterStoreError>>,
}

impl Message for Decide {
    type Result = ();
}

/// Sent to itself: send what has queued up in this tick.
struct Flush;

impl Message for Flush {
    type Result = ();
}

/// What every worker's actor shares: the pool, the breaker, the script.
#[derive(Clone)]
pub struct RedisGcra {
    pub pool: RedisPool,
    pub script: Arc<redis::Script>,
    pub command_timeout: Duration,
    pub breaker: Arc<CircuitBreaker>,
    pub metrics: Arc<Metrics>,
    pub log: Logger,
}

pub struct RateLimiterActor {
    redis: RedisGcra,
    /// This actor's own connection (one per worker).
    connection: ConnectionSlot,
    pending: Vec<Decide>,
    flush_scheduled: bool,
    mailbox_capacity: usize,
}

impl RateLimiterActor {
    pub fn new(redis: RedisGcra, mailbox_capacity: usize) -> Self {
        Self {
            redis,
            connection: ConnectionSlot::default(),
            pending: Vec::new(),
            flush_scheduled: false,
            mailbox_capacity,
        }
    }
}

impl Actor for RateLimiterActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.mailbox_capacity);
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
        let redis = self.redis.clone();
        let slot = self.connection.clone();
        actix::spawn(async move { redis.answer(batch, &slot).await });
    }
}

impl RedisGcra {
    /// Sends one batch in one round trip and answers every request of it.
    async fn answer(&self, batch: Vec<Decide>, slot: &ConnectionSlot) {
        let started = now_ms();
        let requests: Vec<(&str, Gcra)> = batch.iter().map(|d| (d.key.as_str(), d.gcra)).collect();
        let outcome = tokio::time::timeout(
            self.command_timeout,
            run_batch(&self.pool, slot, &self.script, &requests),
        )
        .await;
        let outcome = match outcome {
            Ok(Ok(results)) if results.len() == batch.len() => Ok(results),
            Ok(Ok(_)) => Err(ClusterStoreError::Protocol),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(ClusterStoreError::Timeout),
        };
        match outcome {
            Ok(results) => {
                BreakerChange::log(
                    self.breaker.record_success(),
                    &self.log,
                    &BREAKER_MESSAGES,
                    "",
                );
                self.metrics.ratelimit_redis_roundtrips.inc();
                self.metrics
                    .ratelimit_redis_decisions
                    .inc_by(batch.len() as u64);
                for (d, r) in batch.into_iter().zip(results) {
                    let _ = d.reply.send(Ok(decision(r, d.gcra.capacity)));
                }
            }
            Err(err) => {
                if err == ClusterStoreError::Timeout {
                    // A stalled connection may stay stalled: start afresh.
                    slot.reset();
                }
                let change = self.breaker.record_failure(started);
                BreakerChange::log(change, &self.log, &BREAKER_MESSAGES, err.kind());
                self.metrics
                    .ratelimit_store_errors
                    .with_label_values(&[err.kind()])
                    .inc();
                for d in batch {
                    let _ = d.reply.send(Err(err));
                }
            }
        }
    }
}

type ScriptResult = (i64, i64, i64, i64);

/// A decimal integer as the script's `%d` writes it (optional `-`, then
/// at most 18 digits: microseconds and counts, far from overflowing).
/// By hand: `str::parse` after a UTF-8 check cost 180 instructions per
/// field, and this runs four times per decision.
fn integer(text: &[u8]) -> Option<i64> {
    let (negative, digits) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, text),
    };
    if digits.is_empty() || digits.len() > 18 {
        return None;
    }
    let mut value: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        value = value * 10 + i64::from(d - b'0');
    }
    Some(if negative { -value } else { value })
}

/// One reply of [`GCRA_SCRIPT`]: four integers separated by spaces.
struct GcraReply(ScriptResult);

impl redis::FromRedisValue for GcraReply {
    fn from_redis_value(v: redis::Value) -> Result<Self, redis::ParsingError> {
        let redis::Value::BulkString(text) = v else {
            return Err(format!("GCRA script reply is not a string: {v:?}").into());
        };
        let mut fields = text.split(|&b| b == b' ').map(integer);
        let mut next = || fields.next().flatten();
        match (next(), next(), next(), next(), next()) {
            (Some(a), Some(b), Some(c), Some(d), None) => Ok(Self((a, b, c, d))),
            _ => Err(format!(
                "GCRA script reply is not four integers: {:?}",
                String::from_utf8_lossy(&text)
            )
            .into()),
        }
    }
}

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

/// The script's arguments: the interval in microseconds and the capacity.
fn script_args(gcra: Gcra) -> (u64, u64) {
    let interval_us = gcra.interval.as_micros().clamp(1, u128::from(u64::MAX)) as u64;
    (interval_us, gcra.capacity)
}

fn is_noscript(e: &redis::RedisError) -> bool {
    e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript)
}

/// One round trip for a single node (a pipeline of EVALSHA); the script is
/// loaded once and again only when Redis answers NOSCRIPT (after a restart
/// or SCRIPT FLUSH). A cluster gets concurrent calls on its multiplexed
/// connection, each routed to the slot of its key.
async fn run_batch(
    pool: &RedisPool,
    slot: &ConnectionSlot,
    script: &redis::Script,
    requests: &[(&str, Gcra)],
) -> Result<Vec<ScriptResult>, ClusterStoreError> {
    let conn = slot
        .get(pool)
        .await
        .map_err(|_| ClusterStoreError::Unreachable)?;
    let result = match conn {
        SharedConnection::Single(mut conn) => {
            // Sized up front: growing the buffers argument by argument cost
            // several reallocations per decision.
            let mut pipe = redis::Pipeline::with_capacity(requests.len());
            for (key, gcra) in requests {
                let (interval, capacity) = script_args(*gcra);
                let hash = script.get_hash();
                let mut cmd = redis::Cmd::with_capacity(6, 7 + hash.len() + 1 + key.len() + 40);
                cmd.arg("EVALSHA")
                    .arg(hash)
                    .arg(1)
                    .arg(*key)
                    .arg(interval)
                    .arg(capacity);
                pipe.add_command(cmd);
            }
            let replies = match pipe.query_async::<Vec<GcraReply>>(&mut conn).await {
                Err(e) if is_noscript(&e) => {
                    script
                        .prepare_invoke()
                        .load_async(&mut conn)
                        .await
                        .map_err(ClusterStoreError::from)?;
                    pipe.query_async(&mut conn)
                        .await
                        .map_err(ClusterStoreError::from)
                }
                other => other.map_err(ClusterStoreError::from),
            };
            replies.map(|replies| replies.into_iter().map(|r| r.0).collect())
        }
        SharedConnection::Cluster(conn) => {
            let calls = requests.iter().map(|(key, gcra)| {
                let mut conn = conn.clone();
                let (interval, capacity) = script_args(*gcra);
                async move {
                    script
                        .key(*key)
                        .arg(interval)
                        .arg(capacity)
                        .invoke_async::<GcraReply>(&mut conn)
                        .await
                        .map(|reply| reply.0)
                        .map_err(ClusterStoreError::from)
                }
            });
            futures_util::future::try_join_all(calls).await
        }
    };
    if matches!(result, Err(ClusterStoreError::Unreachable)) {
        slot.reset();
    }
    result
}

#[cfg(test)]
mod tests {
    use redis::FromRedisValue;

    use super::*;

    fn reply(text: &str) -> Result<ScriptResult, redis::ParsingError> {
        GcraReply::from_redis_value(redis::Value::BulkString(text.as_bytes().to_vec())).map(|r| r.0)
    }

    #[test]
    fn script_replies_are_four_integers() {
        assert_eq!(reply("1 99 0 12345").unwrap(), (1, 99, 0, 12345));
        assert_eq!(
            reply("0 0 250000 1700000000000000").unwrap(),
            (0, 0, 250_000, 1_700_000_000_000_000)
        );
        assert_eq!(reply("1 -3 0 5").unwrap(), (1, -3, 0, 5));
        for bad in [
            "",
            "1 2 3",
            "1 2 3 4 5",
            "1 2 3 x",
            "1  2 3 4",
            "1 2 3 4.5",
            "1 2 3 -",
            "1 2 3 1234567890123456789",
        ] {
            assert!(reply(bad).is_err(), "{bad:?} was accepted");
        }
        let array = redis::Value::Array(vec![redis::Value::Int(1); 4]);
        assert!(GcraReply::from_redis_value(array).is_err());
    }
}
