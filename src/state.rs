//! The gateway's shared state: built once at startup from validated settings
//! and shared (behind an `Arc`) by every worker and the admin listener.
//!
//! Everything here is read-mostly: the route table and settings never change
//! after startup; the mutable parts are atomics (readiness, target health)
//! and Prometheus metrics.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use actix_web::http::header::HeaderName;
use prometheus::{Histogram, IntCounter};
use slog::Logger;

use crate::proxy::balancer::Upstream;
use crate::ratelimit::store::{ClusterStores, StoreHealth};
use crate::ratelimit::RateLimits;
use crate::routing::RouteTable;
use crate::settings::Settings;
use crate::telemetry::metrics::Metrics;

pub struct Gateway {
    pub settings: Settings,
    pub routes: RouteTable,
    /// Per-route latency histograms, indexed like the routes.
    pub route_histograms: Vec<Histogram>,
    pub no_route_histogram: Histogram,
    pub upstreams: Vec<Upstream>,
    pub metrics: Arc<Metrics>,
    pub rate_limits: Arc<RateLimits>,
    /// Present when `redis.url` is set: cluster-scoped decisions.
    pub cluster: Option<ClusterStores>,
    pub store_health: Arc<StoreHealth>,
    /// Present when some route uses auth.
    pub auth: Option<crate::auth::Auth>,
    pub log: Logger,
    pub started: Instant,
    /// Request headers never copied upstream (the gateway sets them itself).
    pub request_skip: Vec<HeaderName>,
    /// The gateway's own cookies (session and login binding), removed from
    /// the `Cookie` header sent upstream. Empty without auth.
    pub gateway_cookies: Vec<String>,
    /// Upstream latency histogram per upstream, per target, resolved once.
    pub upstream_histograms: Vec<Vec<Histogram>>,
    /// `auth_outcomes_total{result="authenticated"}` per route, for the
    /// reasons `session` and `bearer`, resolved once (the hot path of
    /// authenticated traffic); `None` for routes without auth.
    pub auth_successes: Vec<Option<[IntCounter; 2]>>,
    /// `ratelimit_decisions_total` per policy for the outcomes `allowed`
    /// and `limited`, resolved once (every request of a limited route
    /// counts one).
    pub ratelimit_counters: Vec<[IntCounter; 2]>,
    ready: AtomicBool,
    draining: AtomicBool,
}

/// What startup builds before the shared state (the actor needs some of it).
pub struct RateLimitParts {
    pub limits: Arc<RateLimits>,
    pub cluster: Option<ClusterStores>,
    pub health: Arc<StoreHealth>,
}

impl Gateway {
    pub fn new(
        settings: Settings,
        metrics: Arc<Metrics>,
        rl: RateLimitParts,
        auth: Option<crate::auth::Auth>,
        log: Logger,
    ) -> Self {
        let routes = RouteTable::new(settings.routes.clone());
        let route_histograms = routes
            .routes()
            .iter()
            .map(|r| metrics.route_histogram(&r.name))
            .collect();
        let no_route_histogram = metrics.route_histogram(crate::telemetry::metrics::NO_ROUTE);
        let upstreams: Vec<Upstream> = settings
            .upstreams
            .iter()
            .cloned()
            .map(Upstream::new)
            .collect();
        for u in &upstreams {
            for t in &u.targets {
                metrics
                    .target_healthy
                    .with_label_values(&[&u.settings.name, &t.url])
                    .set(1);
            }
        }
        let upstream_histograms = upstreams
            .iter()
            .map(|u| {
                u.targets
                    .iter()
                    .map(|t| {
                        metrics
                            .upstream_duration
                            .with_label_values(&[&u.settings.name, &t.url])
                    })
                    .collect()
            })
            .collect();
        let auth_successes = routes
            .routes()
            .iter()
            .map(|r| {
                (r.auth != crate::settings::AuthMode::None).then(|| {
                    ["session", "bearer"].map(|reason| {
                        metrics
                            .auth_outcomes
                            .with_label_values(&[&r.name, "authenticated", reason])
                    })
                })
            })
            .collect();
        let ratelimit_counters = rl
            .limits
            .policies
            .iter()
            .map(|p| {
                ["allowed", "limited"].map(|outcome| {
                    metrics
                        .ratelimit_decisions
                        .with_label_values(&[&p.settings.name, outcome])
                })
            })
            .collect();
        let gateway_cookies = match &auth {
            Some(auth) => {
                let name = &auth.settings.session.cookie_name;
                vec![name.clone(), crate::auth::oauth::login_cookie_for(name)]
            }
            None => Vec::new(),
        };
        Self {
            settings,
            routes,
            route_histograms,
            no_route_histogram,
            upstreams,
            metrics,
            rate_limits: rl.limits,
            cluster: rl.cluster,
            store_health: rl.health,
            auth,
            log,
            started: Instant::now(),
            request_skip: crate::proxy::headers::request_skip_list(),
            gateway_cookies,
            upstream_histograms,
            auth_successes,
            ratelimit_counters,
            ready: AtomicBool::new(false),
            draining: AtomicBool::new(false),
        }
    }

    /// The path is one of the `/oauth2/*` endpoints the gateway answers
    /// itself (only when auth is configured); such requests match no route.
    pub fn serves_oauth2(&self, path: &str) -> bool {
        self.auth.is_some() && crate::auth::oauth::ENDPOINTS.contains(&path)
    }

    /// Ready = listening and not draining.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire) && !self.is_draining()
    }

    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
        self.metrics.draining.set(1);
    }

    /// Brings the target-health gauges in line with passive health (a
    /// target's cool-down ends by time passing, not by an event).
    pub fn refresh_health_gauges(&self) {
        self.metrics
            .ratelimit_store_degraded
            .set(i64::from(self.store_health.is_open()));
        for u in &self.upstreams {
            for t in &u.targets {
                self.metrics
                    .target_healthy
                    .with_label_values(&[&u.settings.name, &t.url])
                    .set(i64::from(t.is_available()));
            }
        }
    }
}
