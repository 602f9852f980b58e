//! The rate limits' upkeep actor, on a thread of its own (never on a
//! request worker): evicts idle local keys so memory follows the active
//! keys, and, while the cluster breaker is open, probes Redis with PING
//! once its back-off is over, so recovery does not wait for traffic.
//! It takes no decisions (those are `actor.rs`'s, per worker).

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use super::actor::{ClusterStoreError, RedisGcra, BREAKER_MESSAGES};
use super::local::Policy;
use crate::redis::breaker::{now_ms, BreakerChange};
use crate::redis::pool::ConnectionSlot;
use crate::telemetry::metrics::Metrics;

const EVICTION_PERIOD: Duration = Duration::from_secs(10);
const PROBE_PERIOD: Duration = Duration::from_millis(250);

pub struct RateLimitUpkeep {
    policies: Arc<[Arc<Policy>]>,
    metrics: Arc<Metrics>,
    /// With `redis.url`: what the probe needs, and a connection of its own.
    redis: Option<(RedisGcra, ConnectionSlot)>,
}

impl RateLimitUpkeep {
    pub fn new(
        policies: Arc<[Arc<Policy>]>,
        metrics: Arc<Metrics>,
        redis: Option<RedisGcra>,
    ) -> Self {
        Self {
            policies,
            metrics,
            redis: redis.map(|r| (r, ConnectionSlot::default())),
        }
    }

    /// Starts the actor on an arbiter (thread) of its own.
    pub fn start_on_own_thread(self) -> Addr<Self> {
        let arbiter = actix::Arbiter::new();
        Self::start_in_arbiter(&arbiter.handle(), move |_| self)
    }

    fn close_idle_connections(&mut self) {
        if let Some((redis, _)) = &self.redis {
            redis.pool.close_idle(crate::redis::pool::MAX_IDLE);
        }
    }

    fn evict_idle_keys(&mut self) {
        for p in self.policies.iter() {
            let keys = p.evict_idle_keys();
            self.metrics
                .ratelimit_local_keys
                .with_label_values(&[&p.settings.name])
                .set(keys as i64);
        }
    }

    fn probe_if_open(&mut self) {
        let Some((redis, slot)) = self.redis.clone() else {
            return;
        };
        if !redis.breaker.should_probe() {
            return;
        }
        let started = now_ms();
        actix::spawn(async move {
            let change =
                match tokio::time::timeout(redis.command_timeout, ping(&redis, &slot)).await {
                    Ok(Ok(())) => redis.breaker.record_success(),
                    _ => {
                        slot.reset();
                        redis.breaker.record_failure(started)
                    }
                };
            BreakerChange::log(change, &redis.log, &BREAKER_MESSAGES, "probe failed");
        });
    }
}

/// A reload's policies: from now on, those are the ones kept tidy.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Policies(pub Arc<[Arc<Policy>]>);

impl Handler<Policies> for RateLimitUpkeep {
    type Result = ();

    fn handle(&mut self, msg: Policies, _: &mut Self::Context) {
        self.policies = msg.0;
    }
}

impl Actor for RateLimitUpkeep {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(EVICTION_PERIOD, |actor, _| {
            actor.evict_idle_keys();
            actor.close_idle_connections();
        });
        if self.redis.is_some() {
            ctx.run_interval(PROBE_PERIOD, |actor, _| actor.probe_if_open());
        }
    }
}

async fn ping(redis: &RedisGcra, slot: &ConnectionSlot) -> Result<(), ClusterStoreError> {
    let mut conn = slot
        .get(&redis.pool)
        .await
        .map_err(|_| ClusterStoreError::Unreachable)?;
    redis::cmd("PING")
        .query_async::<()>(&mut conn)
        .await
        .map_err(ClusterStoreError::from)
}
