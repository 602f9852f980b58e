//! The gateway's shared state, in generations: a [`Gateway`] is built from
//! one set of validated settings and never changes after that; a reload
//! builds the next generation and swaps it into [`Live`]. Each request is
//! pinned to the generation current when it arrived ([`Pinned`], put in its
//! extensions by the access-log stage), so it finishes on the settings it
//! started with however many reloads happen meanwhile.
//!
//! What outlives generations is shared between them: the [`Lifecycle`]
//! (readiness, draining), metrics, and, reused when their settings did not
//! change, upstream targets (passive health), rate-limit policies (local
//! counters) and the auth state (sessions). It sits above the features
//! (routing, proxy targets, rate limiting, auth) and below what serves
//! requests (the middleware, the proxy handler, the `/oauth2` and health
//! endpoints) and what reloads (`reload/`).

use std::future::{ready, Ready};
use std::ops::Deref;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use actix_web::dev::Payload;
use actix_web::http::header::HeaderName;
use actix_web::{FromRequest, HttpMessage, HttpRequest};
use arc_swap::ArcSwap;
use prometheus::Histogram;
use slog::Logger;

use crate::auth::browser::{login_cookie_for, ENDPOINTS};
use crate::auth::Auth;
use crate::proxy::balancer::Upstream;
use crate::proxy::headers::request_skip_list;
use crate::ratelimit::RateLimiting;
use crate::routing::RouteTable;
use crate::settings::Settings;
use crate::telemetry::metrics::{Metrics, RouteMeters, NO_ROUTE};

/// What `key: route` counts for the /oauth2/* endpoints: one budget for
/// the four of them, apart from every route's (route keys are indices).
const OAUTH2_ROUTE_KEY: usize = usize::MAX;

/// The process's state across generations: started, ready, draining.
pub struct Lifecycle {
    pub started: Instant,
    ready: AtomicBool,
    draining: AtomicBool,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Self {
            started: Instant::now(),
            ready: AtomicBool::new(false),
            draining: AtomicBool::new(false),
        }
    }
}

/// The current generation, swapped whole by a reload.
pub struct Live(ArcSwap<Gateway>);

impl Live {
    pub fn new(first: Gateway) -> Self {
        Self(ArcSwap::from_pointee(first))
    }

    pub fn current(&self) -> Arc<Gateway> {
        self.0.load_full()
    }

    /// Makes `next` current; requests already pinned to the one it
    /// replaces keep it until they finish.
    pub fn install(&self, next: Gateway) {
        self.0.store(Arc::new(next));
    }
}

/// The generation a request runs on, pinned by the access-log stage;
/// later stages and handlers read it from the request (or extract it).
#[derive(Clone)]
pub struct Pinned(pub Arc<Gateway>);

impl Deref for Pinned {
    type Target = Gateway;
    fn deref(&self) -> &Gateway {
        &self.0
    }
}

impl Pinned {
    pub fn of(req: &impl HttpMessage) -> Option<Self> {
        req.extensions().get::<Self>().cloned()
    }
}

impl FromRequest for Pinned {
    type Error = actix_web::Error;
    type Future = Ready<Result<Self, actix_web::Error>>;

    /// Fails (500) only if the access-log stage is not wired in.
    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(Self::of(req).ok_or_else(|| {
            actix_web::error::ErrorInternalServerError("no settings generation pinned")
        }))
    }
}

/// One generation of the gateway's state: everything a request needs,
/// built from one set of settings.
pub struct Gateway {
    /// 1 for the settings the process started with, +1 per reload.
    pub generation: u64,
    pub settings: Settings,
    pub routes: RouteTable,
    /// Per-route latency histograms and byte counters, indexed like the
    /// routes.
    pub route_meters: Vec<RouteMeters>,
    pub no_route_meters: RouteMeters,
    /// Shared with the previous generation when their settings are equal,
    /// so passive health and balancing state survive a reload.
    pub upstreams: Vec<Arc<Upstream>>,
    /// The generation whose upstream settings the workers' awc clients are
    /// built from: unchanged by a reload that leaves upstreams alone, so
    /// connection pools survive it.
    pub clients_generation: u64,
    pub metrics: Arc<Metrics>,
    pub rate_limits: RateLimiting,
    /// Present when some route uses auth.
    pub auth: Option<Auth>,
    pub log: Logger,
    pub lifecycle: Arc<Lifecycle>,
    /// Request headers never copied upstream (the gateway sets them itself).
    pub request_skip: Vec<HeaderName>,
    /// The gateway's own cookies (session and login binding), removed from
    /// the `Cookie` header sent upstream. Empty without auth.
    pub gateway_cookies: Vec<String>,
    /// Upstream latency histogram per upstream, per target, resolved once.
    pub upstream_histograms: Vec<Vec<Histogram>>,
    /// Access lines wanted: `logging.access_log`, and `info` within the level.
    pub access_log: bool,
}

/// The parts a generation is built from besides its settings.
pub struct Parts {
    pub metrics: Arc<Metrics>,
    pub rate_limits: RateLimiting,
    pub auth: Option<Auth>,
    pub log: Logger,
    pub lifecycle: Arc<Lifecycle>,
}

impl Gateway {
    /// The first generation.
    pub fn new(settings: Settings, parts: Parts) -> Self {
        Self::build(1, settings, parts, None)
    }

    /// The generation after `self`, reusing the upstreams whose settings
    /// did not change.
    pub fn next(&self, settings: Settings, parts: Parts) -> Self {
        Self::build(self.generation + 1, settings, parts, Some(self))
    }

    fn build(
        generation: u64,
        settings: Settings,
        parts: Parts,
        previous: Option<&Gateway>,
    ) -> Self {
        let Parts {
            metrics,
            rate_limits,
            auth,
            log,
            lifecycle,
        } = parts;
        let routes = RouteTable::new(settings.routes.clone());
        let route_meters = routes
            .routes()
            .iter()
            .map(|r| metrics.route_meters(&r.name))
            .collect();
        let no_route_meters = metrics.route_meters(NO_ROUTE);
        let reuse = |s: &crate::settings::UpstreamSettings| {
            previous.and_then(|p| p.upstreams.iter().find(|u| u.settings == *s).cloned())
        };
        let upstreams: Vec<Arc<Upstream>> = settings
            .upstreams
            .iter()
            .map(|s| reuse(s).unwrap_or_else(|| Arc::new(Upstream::new(s.clone()))))
            .collect();
        let clients_generation = match previous {
            Some(p) if p.settings.upstreams == settings.upstreams => p.clients_generation,
            _ => generation,
        };
        for u in &upstreams {
            for t in &u.targets {
                metrics
                    .target_healthy
                    .with_label_values(&[&u.settings.name, &t.url])
                    .set(i64::from(t.is_available()));
            }
            // Present at 0 from the start, so that rate() and increase()
            // see the first retry of each reason.
            for reason in ["status", "connect", "send"] {
                metrics
                    .upstream_retries
                    .with_label_values(&[&u.settings.name, reason]);
            }
        }
        for route in &settings.routes {
            if route
                .features
                .as_ref()
                .is_some_and(|f| f.ip_rules.is_some())
            {
                metrics
                    .route_ip_denied
                    .with_label_values(&[route.name.as_str()]);
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
        let tracing = settings.tracing.is_some();
        let access_log =
            settings.logging.access_log && slog::Level::Info.is_at_least(settings.logging.level);
        Self {
            generation,
            settings,
            routes,
            route_meters,
            no_route_meters,
            upstreams,
            clients_generation,
            metrics,
            rate_limits,
            auth,
            log,
            lifecycle,
            request_skip: request_skip_list(tracing),
            gateway_cookies,
            upstream_histograms,
            access_log,
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
        self.lifecycle.ready.load(Ordering::Acquire) && !self.is_draining()
    }

    pub fn set_ready(&self) {
        self.lifecycle.ready.store(true, Ordering::Release);
    }

    pub fn is_draining(&self) -> bool {
        self.lifecycle.draining.load(Ordering::Acquire)
    }

    /// Responses say `Connection: close`: the gateway is draining with a
    /// drain delay, during which clients should move to other replicas.
    /// (Without a delay the listener closes at once, and a client told to
    /// reconnect would only meet a closing listener.)
    pub fn closes_connections(&self) -> bool {
        self.is_draining() && !self.settings.server.drain_delay.is_zero()
    }

    pub fn start_draining(&self) {
        self.lifecycle.draining.store(true, Ordering::Release);
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
