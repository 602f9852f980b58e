//! Rate limiting: GCRA policies decided locally (governor, in the worker) or
//! across replicas (Redis, through the worker's RateLimiter actor), with one
//! meaning of `requests`, `period_secs` and `burst` in both scopes.
//!
//! Consulted by the rate-limit stage after route matching (and auth, for
//! `user` keys), before the proxy: one call, [`RateLimiting::decide`], per
//! request. Cluster decisions fall back per `on_store_error` when Redis is
//! slow, failing or its breaker is open.
//!
//! ```text
//! mod.rs      RateLimiting: the policies of a request -> Verdict; counters
//!   key.rs    what a policy counts (ip, user, route, global, header) and its names
//!   local.rs  governor limiter per policy          gcra.rs  parameters, Decision, headers
//!   cluster.rs  worker handle -> actor.rs  RateLimiter actor: batched Redis GCRA
//!   upkeep.rs   own-thread actor: idle-key eviction, breaker probe
//! ```

pub mod actor;
pub mod cluster;
pub mod gcra;
pub mod key;
pub mod local;
pub mod upkeep;

use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::Arc;

use actix::Addr;

use actix_web::http::header::HeaderMap;
use prometheus::{IntCounter, IntCounterVec};
use slog::Logger;

use self::actor::RedisGcra;
use self::cluster::{ClusterLimiter, WorkerClusterLimiter};
use self::gcra::Decision;
use self::key::{cluster_key, key_material, KeyMaterial};
use self::local::Policy;
use self::upkeep::RateLimitUpkeep;
use crate::redis::breaker::CircuitBreaker;
use crate::redis::pool::{PoolError, RedisPool};
use crate::settings::{OnStoreError, RateLimitScope, Settings};
use crate::telemetry::metrics::Metrics;

/// What one policy's decision came to
/// (`gateway_ratelimit_decisions_total{outcome}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Allowed,
    Limited,
    /// Redis could not answer; the local limiter did (`on_store_error: local`).
    FallbackAllowed,
    FallbackLimited,
    /// Redis could not answer; admitted unchecked (`on_store_error: allow`).
    StoreErrorAllowed,
    /// Redis could not answer; refused with 503 (`on_store_error: deny`).
    StoreErrorDenied,
}

impl Outcome {
    pub fn label(self) -> &'static str {
        match self {
            Self::Allowed => "allowed",
            Self::Limited => "limited",
            Self::FallbackAllowed => "fallback_allowed",
            Self::FallbackLimited => "fallback_limited",
            Self::StoreErrorAllowed => "store_error_allowed",
            Self::StoreErrorDenied => "store_error_denied",
        }
    }

    fn of(decision: &Decision, fallback: bool) -> Self {
        match (decision.allowed, fallback) {
            (true, false) => Self::Allowed,
            (false, false) => Self::Limited,
            (true, true) => Self::FallbackAllowed,
            (false, true) => Self::FallbackLimited,
        }
    }
}

/// The rate-limit stage's answer for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Every policy admits; the tightest decision (if any was taken) goes
    /// on the response as `RateLimit-*`.
    Admit(Option<Decision>),
    /// A policy refuses: 429 with `Retry-After` and `RateLimit-*`.
    Limit(Decision),
    /// A cluster policy with `on_store_error: deny` could not be decided: 503.
    Unavailable,
}

/// What a policy's key may be made of.
pub struct Requester<'a> {
    pub ip: IpAddr,
    /// The authenticated subject, if any.
    pub user: Option<&'a str>,
    /// What `key: route` counts (a route index, or one value for the
    /// gateway's own endpoints).
    pub route_key: usize,
    pub headers: &'a HeaderMap,
}

/// A policy's decision counters: the two every limited request counts,
/// resolved once; the rare outcomes by label when they happen.
struct PolicyCounters {
    allowed: IntCounter,
    limited: IntCounter,
    all: IntCounterVec,
    policy: String,
}

impl PolicyCounters {
    fn count(&self, outcome: Outcome) {
        match outcome {
            Outcome::Allowed => self.allowed.inc(),
            Outcome::Limited => self.limited.inc(),
            rare => self
                .all
                .with_label_values(&[&self.policy, rare.label()])
                .inc(),
        }
    }
}

/// Every policy, indexed like `Settings::rate_limits`, shared by all
/// workers. A reload makes a new one with [`RateLimiting::reload`]; what
/// outlives the generation (Redis, breaker, upkeep, key seed, the local
/// counters of unchanged policies) is shared with it.
pub struct RateLimiting {
    policies: Arc<[Arc<Policy>]>,
    counters: Vec<PolicyCounters>,
    /// Seeded per process: local keys need no cross-replica stability, and
    /// a secret seed keeps clients from aiming collisions. Kept across
    /// reloads, so that kept policies keep counting the same keys.
    seed: std::hash::RandomState,
    /// With `redis.url`: what each worker's actor starts from.
    cluster: Option<ClusterLimiter>,
    /// The cluster rate limits' Redis breaker (closed without Redis).
    breaker: Arc<CircuitBreaker>,
    upkeep: Addr<RateLimitUpkeep>,
}

impl RateLimiting {
    /// Builds the limiters and starts the upkeep actor on its own thread;
    /// with `redis.url`, builds the Redis pool (no connection is opened
    /// before the first decision) from which each worker's RateLimiter
    /// actor will be started. Redis is set up even without a cluster
    /// policy, so that a reload may add one.
    pub fn start(
        settings: &Settings,
        metrics: &Arc<Metrics>,
        log: &Logger,
    ) -> Result<Self, PoolError> {
        let breaker = Arc::<CircuitBreaker>::default();
        let redis = match &settings.redis {
            Some(redis) => Some(RedisGcra {
                pool: RedisPool::new(redis)?,
                script: Arc::new(redis::Script::new(actor::GCRA_SCRIPT)),
                command_timeout: redis.command_timeout,
                breaker: breaker.clone(),
                metrics: metrics.clone(),
                log: log.clone(),
            }),
            None => None,
        };
        let policies = new_policies(settings, &[]);
        let upkeep = RateLimitUpkeep::new(policies.clone(), metrics.clone(), redis.clone())
            .start_on_own_thread();
        Ok(Self {
            counters: counters(&policies, metrics),
            policies,
            seed: std::hash::RandomState::new(),
            cluster: redis.map(ClusterLimiter::new),
            breaker,
            upkeep,
        })
    }

    /// The limits of a reloaded generation: policies whose settings did
    /// not change keep their local counters; new or changed ones start
    /// empty. (Redis settings need a restart, so the rest is shared.)
    pub fn reload(&self, settings: &Settings, metrics: &Arc<Metrics>) -> Self {
        let policies = new_policies(settings, &self.policies);
        self.upkeep.do_send(upkeep::Policies(policies.clone()));
        Self {
            counters: counters(&policies, metrics),
            policies,
            seed: self.seed.clone(),
            cluster: self.cluster.clone(),
            breaker: self.breaker.clone(),
            upkeep: self.upkeep.clone(),
        }
    }

    /// How many of this generation's policies carry local state over from
    /// `previous` (for the reload log line).
    pub fn kept_from(&self, previous: &Self) -> usize {
        self.policies
            .iter()
            .filter(|p| previous.policies.iter().any(|q| Arc::ptr_eq(p, q)))
            .count()
    }

    /// This worker's part: starts its RateLimiter actor on the calling
    /// worker's loop when there is Redis. Call once per worker.
    pub fn for_this_worker(&self) -> WorkerLimits {
        WorkerLimits(
            self.cluster
                .as_ref()
                .map(ClusterLimiter::start_for_this_worker),
        )
    }

    /// The cluster rate limits' Redis breaker.
    pub fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }

    /// The hash a local limiter counts `material` under.
    fn local_key(&self, material: &KeyMaterial<'_>) -> u64 {
        self.seed.hash_one(material)
    }

    /// Applies `policies` (indices) in order: the first refusal wins;
    /// otherwise the request is admitted with the tightest decision.
    pub async fn decide(
        &self,
        worker: &WorkerLimits,
        policies: &[usize],
        who: &Requester<'_>,
    ) -> Verdict {
        let mut tightest: Option<Decision> = None;
        for &index in policies {
            let policy = &self.policies[index];
            let settings = &policy.settings;
            let material =
                key_material(&settings.key, who.ip, who.user, who.route_key, who.headers);
            let local = || policy.check_local(self.local_key(&material));
            let (decision, outcome) = match (settings.scope, &worker.0) {
                (RateLimitScope::Cluster, Some(cluster)) => {
                    let key = cluster_key(&settings.name, &material);
                    match cluster.decide(key, policy.gcra).await {
                        Ok(d) => (Some(d), Outcome::of(&d, false)),
                        Err(_) => match settings.on_store_error {
                            OnStoreError::Local => {
                                let d = local();
                                (Some(d), Outcome::of(&d, true))
                            }
                            OnStoreError::Allow => (None, Outcome::StoreErrorAllowed),
                            OnStoreError::Deny => {
                                self.counters[index].count(Outcome::StoreErrorDenied);
                                return Verdict::Unavailable;
                            }
                        },
                    }
                }
                _ => {
                    let d = local();
                    (Some(d), Outcome::of(&d, false))
                }
            };
            self.counters[index].count(outcome);
            let Some(d) = decision else { continue };
            if !d.allowed {
                return Verdict::Limit(d);
            }
            if tightest.is_none_or(|t| d.remaining < t.remaining) {
                tightest = Some(d);
            }
        }
        Verdict::Admit(tightest)
    }
}

/// The policies of `settings`, reusing those of `previous` with equal
/// settings (and so their local counters).
fn new_policies(settings: &Settings, previous: &[Arc<Policy>]) -> Arc<[Arc<Policy>]> {
    settings
        .rate_limits
        .iter()
        .map(|s| {
            previous
                .iter()
                .find(|p| p.settings == *s)
                .cloned()
                .unwrap_or_else(|| Arc::new(Policy::new(s.clone())))
        })
        .collect()
}

fn counters(policies: &[Arc<Policy>], metrics: &Metrics) -> Vec<PolicyCounters> {
    policies
        .iter()
        .map(|p| {
            let name = &p.settings.name;
            PolicyCounters {
                allowed: metrics
                    .ratelimit_decisions
                    .with_label_values(&[name, Outcome::Allowed.label()]),
                limited: metrics
                    .ratelimit_decisions
                    .with_label_values(&[name, Outcome::Limited.label()]),
                all: metrics.ratelimit_decisions.clone(),
                policy: name.clone(),
            }
        })
        .collect()
}

/// One worker's part of the rate limits (its app data): the handle of its
/// own RateLimiter actor, with Redis.
pub struct WorkerLimits(Option<WorkerClusterLimiter>);
