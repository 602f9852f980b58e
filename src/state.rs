//! The gateway's shared state: built once at startup from validated settings
//! and shared (behind an `Arc`) by every worker and the admin listener.
//!
//! Everything here is read-mostly: the route table and settings never change
//! after startup; the mutable parts are atomics (readiness, target health)
//! and Prometheus metrics. It sits above the features (routing, proxy
//! targets, rate limiting, auth) and below what serves requests (the
//! middleware, the proxy handler, the `/oauth2` and health endpoints).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use actix_web::http::header::HeaderName;
use prometheus::Histogram;
use slog::Logger;

use crate::auth::browser::{login_cookie_for, ENDPOINTS};
use crate::auth::Auth;
use crate::proxy::balancer::Upstream;
use crate::proxy::headers::request_skip_list;
use crate::ratelimit::RateLimiting;
use crate::routing::RouteTable;
use crate::settings::Settings;
use crate::telemetry::metrics::{Metrics, NO_ROUTE};

/// What `key: route` counts for the /oauth2/* endpoints: one budget for
/// the four of them, apart from every route's (route keys are indices).
const OAUTH2_ROUTE_KEY: usize = usize::MAX;

pub struct Gateway {
    pub settings: Settings,
    pub routes: RouteTable,
    /// Per-route latency histograms, indexed like the routes.
    pub route_histograms: Vec<Histogram>,
    pub no_route_histogram: Histogram,
    pub upstreams: Vec<Upstream>,
    pub metrics: Arc<Metrics>,
    pub rate_limits: RateLimiting,
    /// Present when some route uses auth.
    pub auth: Option<Auth>,
    pub log: Logger,
    pub started: Instant,
    /// Request headers never copied upstream (the gateway sets them itself).
    pub request_skip: Vec<HeaderName>,
    /// The gateway's own cookies (session and login binding), removed from
    /// the `Cookie` header sent upstream. Empty without auth.
    pub gateway_cookies: Vec<String>,
    /// Upstream latency histogram per upstream, per target, resolved once.
    pub upstream_histograms: Vec<Vec<Histogram>>,
    ready: AtomicBool,
    draining: AtomicBool,
}

impl Gateway {
    pub fn new(
        settings: Settings,
        metrics: Arc<Metrics>,
        rate_limits: RateLimiting,
        auth: Option<Auth>,
        log: Logger,
    ) -> Self {
        let routes = RouteTable::new(settings.routes.clone());
        let route_histograms = routes
            .routes()
            .iter()
            .map(|r| metrics.route_histogram(&r.name))
            .collect();
        let no_route_histogram = metrics.route_histogram(NO_ROUTE);
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
        let gateway_cookies = match &auth {
            Some(auth) => {
                let name = &auth.settings.session.cookie_name;
                vec![name.clone(), login_cookie_for(name)]
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
            rate_limits,
            auth,
            log,
            started: Instant::now(),
            request_skip: request_skip_list(),
            gateway_cookies,
            upstream_histograms,
            ready: AtomicBool::new(false),
            draining: AtomicBool::new(false),
        }
    }

    /// The path is one of the `/oauth2/*` endpoints the gateway answers
    /// itself (only when auth is configured); such requests match no route.
    pub fn serves_oauth2(&self, path: &str) -> bool {
        self.auth.is_some() && ENDPOINTS.contains(&path)
    }

    /// The rate-limit policies of a request and what `key: route` counts
    /// for it: its route's, or `auth.rate_limit` for the gateway's own
    /// `/oauth2/*` endpoints (which match no route); `None` for neither.
    pub fn rate_limit_policies(
        &self,
        route: Option<usize>,
        path: &str,
    ) -> Option<(&[usize], usize)> {
        match route {
            Some(index) => Some((&self.routes.get(index).rate_limits, index)),
            None if self.serves_oauth2(path) => {
                Some((&self.settings.auth.rate_limits, OAUTH2_ROUTE_KEY))
            }
            None => None,
        }
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

    /// Responses say `Connection: close`: the gateway is draining with a
    /// drain delay, during which clients should move to other replicas.
    /// (Without a delay the listener closes at once, and a client told to
    /// reconnect would only meet a closing listener.)
    pub fn closes_connections(&self) -> bool {
        self.is_draining() && !self.settings.server.drain_delay.is_zero()
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
            .set(i64::from(self.rate_limits.breaker().is_open()));
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
