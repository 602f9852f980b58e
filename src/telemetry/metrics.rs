//! The gateway's own Prometheus metrics (namespace `gateway`).
//!
//! Fed by the access-log middleware (requests, latency, in-flight) and the
//! proxy (upstream latency, errors, target health). Labels are route names,
//! upstream names and target addresses from the settings, never raw request
//! paths or client-chosen strings, so label cardinality stays bounded.

use actix_web::http::Method;
use prometheus::{
    Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry,
};

pub const NAMESPACE: &str = "gateway";

/// Latency buckets in seconds: 0.5 ms .. 30 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Route label for requests that matched no route.
pub const NO_ROUTE: &str = "_none";

/// `result` values of `gateway_auth_introspections_total`.
const INTROSPECTION_RESULTS: [&str; 3] = ["active", "inactive", "error"];

pub struct Metrics {
    pub registry: Registry,
    pub requests: IntCounterVec,
    pub request_duration: HistogramVec,
    pub in_flight: IntGauge,
    pub upstream_duration: HistogramVec,
    pub upstream_errors: IntCounterVec,
    pub target_healthy: IntGaugeVec,
    pub draining: IntGauge,
    pub ratelimit_decisions: IntCounterVec,
    pub ratelimit_store_errors: IntCounterVec,
    pub ratelimit_store_degraded: IntGauge,
    pub ratelimit_redis_roundtrips: IntCounter,
    pub ratelimit_redis_decisions: IntCounter,
    pub ratelimit_local_keys: IntGaugeVec,
    pub auth_outcomes: IntCounterVec,
    pub session_cache_lookups: IntCounterVec,
    pub auth_introspections: IntCounterVec,
    pub config_reloads: IntCounterVec,
    pub config_last_reload_success: Gauge,
    pub config_last_reload_successful: IntGauge,
    pub config_generation: IntGauge,
    pub route_ip_denied: IntCounterVec,
    pub upstream_retries: IntCounterVec,
    pub body_bytes: IntCounterVec,
    pub open_connections: IntGauge,
    pub connections: IntCounter,
    pub trace_spans: IntCounterVec,
}

fn opts(name: &str, help: &str) -> Opts {
    Opts::new(name, help).namespace(NAMESPACE)
}

fn hist(name: &str, help: &str) -> HistogramOpts {
    HistogramOpts::new(name, help)
        .namespace(NAMESPACE)
        .buckets(LATENCY_BUCKETS.to_vec())
}

impl Metrics {
    pub fn new(registry: Registry) -> prometheus::Result<Self> {
        let m = Self {
            requests: IntCounterVec::new(
                opts(
                    "requests_total",
                    "Requests handled, by route, method and status.",
                ),
                &["route", "method", "status"],
            )?,
            request_duration: HistogramVec::new(
                hist(
                    "request_duration_seconds",
                    "Time from request arrival to response head, by route.",
                ),
                &["route"],
            )?,
            in_flight: IntGauge::with_opts(opts(
                "in_flight_requests",
                "Requests being handled right now.",
            ))?,
            upstream_duration: HistogramVec::new(
                hist(
                    "upstream_duration_seconds",
                    "Time from sending upstream to the upstream's response head.",
                ),
                &["upstream", "target"],
            )?,
            upstream_errors: IntCounterVec::new(
                opts(
                    "upstream_errors_total",
                    "Failed upstream exchanges by kind (connect, timeout, send, body_limit).",
                ),
                &["upstream", "target", "kind"],
            )?,
            target_healthy: IntGaugeVec::new(
                opts(
                    "upstream_target_healthy",
                    "1 while a target takes traffic, 0 while passive health skips it.",
                ),
                &["upstream", "target"],
            )?,
            draining: IntGauge::with_opts(opts(
                "draining",
                "1 while the gateway drains for shutdown.",
            ))?,
            ratelimit_decisions: IntCounterVec::new(
                opts(
                    "ratelimit_decisions_total",
                    "Rate-limit decisions by policy and outcome (allowed, limited, \
                     fallback_allowed, fallback_limited, store_error_allowed, store_error_denied).",
                ),
                &["policy", "outcome"],
            )?,
            ratelimit_store_errors: IntCounterVec::new(
                opts(
                    "ratelimit_store_errors_total",
                    "Cluster rate-limit decisions Redis could not give, by kind.",
                ),
                &["kind"],
            )?,
            ratelimit_store_degraded: IntGauge::with_opts(opts(
                "ratelimit_store_degraded",
                "1 while the Redis circuit breaker is open and cluster policies use on_store_error.",
            ))?,
            ratelimit_redis_roundtrips: IntCounter::with_opts(opts(
                "ratelimit_redis_roundtrips_total",
                "Round trips to Redis for rate-limit decisions (one per batch).",
            ))?,
            ratelimit_redis_decisions: IntCounter::with_opts(opts(
                "ratelimit_redis_decisions_total",
                "Rate-limit decisions taken by Redis.",
            ))?,
            ratelimit_local_keys: IntGaugeVec::new(
                opts(
                    "ratelimit_local_keys",
                    "Keys held by the local limiter of a policy (after idle eviction).",
                ),
                &["policy"],
            )?,
            auth_outcomes: IntCounterVec::new(
                opts(
                    "auth_outcomes_total",
                    "Authentication outcomes by route (or _oauth2 for the login endpoints), \
                     result and reason.",
                ),
                &["route", "result", "reason"],
            )?,
            session_cache_lookups: IntCounterVec::new(
                opts(
                    "session_cache_lookups_total",
                    "Session lookups by result: hit (replica cache), store_hit (Redis), \
                     miss (unknown or expired), negative_hit (recently unknown).",
                ),
                &["result"],
            )?,
            auth_introspections: IntCounterVec::new(
                opts(
                    "auth_introspections_total",
                    "Introspection calls to the identity provider by result: active, \
                     inactive (refused; cached like active answers) or error.",
                ),
                &["result"],
            )?,
            config_reloads: IntCounterVec::new(
                opts(
                    "config_reloads_total",
                    "Settings reloads (SIGHUP or a changed settings file) by result: \
                     success or failure (the old settings stay).",
                ),
                &["result"],
            )?,
            config_last_reload_success: Gauge::with_opts(opts(
                "config_last_reload_success_timestamp_seconds",
                "Unix time the settings in use were loaded (startup or last successful reload).",
            ))?,
            config_last_reload_successful: IntGauge::with_opts(opts(
                "config_last_reload_successful",
                "1 if the last reload attempt (or startup) succeeded, 0 if it was refused.",
            ))?,
            config_generation: IntGauge::with_opts(opts(
                "config_generation",
                "Settings generation in use: 1 at startup, +1 per reload that changed something.",
            ))?,
            route_ip_denied: IntCounterVec::new(
                opts(
                    "route_ip_denied_total",
                    "Requests refused 403 ip_denied by a route's allow_ips / deny_ips.",
                ),
                &["route"],
            )?,
            upstream_retries: IntCounterVec::new(
                opts(
                    "upstream_retries_total",
                    "Requests sent again to another target, by reason: connect, send \
                     (exchange broken after connecting) or status (a retry_on status).",
                ),
                &["upstream", "reason"],
            )?,
            body_bytes: IntCounterVec::new(
                opts(
                    "body_bytes_total",
                    "Body bytes by route and direction: in (request bodies, by \
                     Content-Length) and out (response bodies as sent, compressed \
                     where compressed).",
                ),
                &["route", "direction"],
            )?,
            open_connections: IntGauge::with_opts(opts(
                "open_connections",
                "Client connections open on the proxy listener.",
            ))?,
            connections: IntCounter::with_opts(opts(
                "connections_total",
                "Client connections accepted on the proxy listener.",
            ))?,
            trace_spans: IntCounterVec::new(
                opts(
                    "trace_spans_total",
                    "Request spans (tracing.enabled) by result: ended (sampled and \
                     queued for export), exported, failed (the collector refused or \
                     could not be reached). ended - exported - failed = queued or dropped.",
                ),
                &["result"],
            )?,
            registry,
        };
        m.registry.register(Box::new(m.requests.clone()))?;
        m.registry.register(Box::new(m.request_duration.clone()))?;
        m.registry.register(Box::new(m.in_flight.clone()))?;
        m.registry.register(Box::new(m.upstream_duration.clone()))?;
        m.registry.register(Box::new(m.upstream_errors.clone()))?;
        m.registry.register(Box::new(m.target_healthy.clone()))?;
        m.registry.register(Box::new(m.draining.clone()))?;
        m.registry
            .register(Box::new(m.ratelimit_decisions.clone()))?;
        m.registry
            .register(Box::new(m.ratelimit_store_errors.clone()))?;
        m.registry
            .register(Box::new(m.ratelimit_store_degraded.clone()))?;
        m.registry
            .register(Box::new(m.ratelimit_redis_roundtrips.clone()))?;
        m.registry
            .register(Box::new(m.ratelimit_redis_decisions.clone()))?;
        m.registry
            .register(Box::new(m.ratelimit_local_keys.clone()))?;
        m.registry.register(Box::new(m.auth_outcomes.clone()))?;
        m.registry
            .register(Box::new(m.session_cache_lookups.clone()))?;
        m.registry
            .register(Box::new(m.auth_introspections.clone()))?;
        m.registry.register(Box::new(m.config_reloads.clone()))?;
        m.registry
            .register(Box::new(m.config_last_reload_success.clone()))?;
        m.registry.register(Box::new(m.config_generation.clone()))?;
        m.registry.register(Box::new(m.route_ip_denied.clone()))?;
        m.registry.register(Box::new(m.body_bytes.clone()))?;
        m.registry.register(Box::new(m.open_connections.clone()))?;
        m.registry.register(Box::new(m.connections.clone()))?;
        m.registry.register(Box::new(m.upstream_retries.clone()))?;
        m.registry.register(Box::new(m.trace_spans.clone()))?;
        m.registry
            .register(Box::new(m.config_last_reload_successful.clone()))?;
        for result in ["success", "failure"] {
            m.config_reloads.with_label_values(&[result]);
        }
        // Exported from startup at 0, so dashboards and `rate()` see the
        // series before the first introspection call (labels: results of
        // `auth::bearer::IntrospectionCache::count`).
        for result in ["ended", "exported", "failed"] {
            m.trace_spans.with_label_values(&[result]);
        }
        for result in INTROSPECTION_RESULTS {
            m.auth_introspections.with_label_values(&[result]);
        }
        let build_info = IntGaugeVec::new(
            opts("build_info", "Always 1; labels carry the build version."),
            &["version"],
        )?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        m.registry.register(Box::new(build_info))?;
        Ok(m)
    }

    /// The per-route series of one route, resolved once so the hot path
    /// skips the label lookups.
    pub fn route_meters(&self, route: &str) -> RouteMeters {
        RouteMeters {
            latency: self.request_duration.with_label_values(&[route]),
            bytes_in: self.body_bytes.with_label_values(&[route, "in"]),
            bytes_out: self.body_bytes.with_label_values(&[route, "out"]),
        }
    }

    /// Counts a client connection open until the returned guard drops.
    pub fn connection_opened(&self) -> OpenConnection {
        self.connections.inc();
        self.open_connections.inc();
        OpenConnection(self.open_connections.clone())
    }
}

/// A route's latency histogram and body byte counters.
pub struct RouteMeters {
    pub latency: Histogram,
    pub bytes_in: IntCounter,
    pub bytes_out: IntCounter,
}

/// Held in a connection's data (`HttpServer::on_connect`), which is
/// dropped when the connection closes.
pub struct OpenConnection(IntGauge);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The request counter's children seen by one worker, so the hot path
/// hashes a route index and a status instead of three label strings and
/// skips the shared vector's lock. Per worker, so never contended.
#[derive(Default)]
pub struct RequestCounterCache {
    /// Route indices mean something only within one settings generation:
    /// the cache holds the newest generation's counters.
    generation: std::cell::Cell<u64>,
    /// foldhash: a handful of keys made of route indices and statuses.
    children: std::cell::RefCell<foldhash::HashMap<(usize, &'static str, u16), IntCounter>>,
}

impl RequestCounterCache {
    /// Counts one request; `route` is `None` for requests no route matched.
    pub fn inc(
        &self,
        generation: u64,
        requests: &IntCounterVec,
        route: Option<(usize, &str)>,
        method: &'static str,
        status: actix_web::http::StatusCode,
    ) {
        let (index, name) = route.unwrap_or((usize::MAX, NO_ROUTE));
        if generation != self.generation.get() {
            if generation < self.generation.get() {
                // A request that began before a reload: count it uncached.
                requests
                    .with_label_values(&[name, method, status.as_str()])
                    .inc();
                return;
            }
            self.generation.set(generation);
            self.children.borrow_mut().clear();
        }
        let key = (index, method, status.as_u16());
        let mut children = self.children.borrow_mut();
        let counter = children
            .entry(key)
            .or_insert_with(|| requests.with_label_values(&[name, method, status.as_str()]));
        counter.inc();
    }
}

/// Methods outside the standard set share one label value: clients choose
/// the method token, and must not be able to mint label values.
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "OTHER",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_methods_share_a_label() {
        let odd = Method::from_bytes(b"BREW").unwrap();
        assert_eq!(method_label(&odd), "OTHER");
        assert_eq!(method_label(&Method::PATCH), "PATCH");
    }

    #[test]
    fn metrics_register_once_in_a_registry() {
        let m = Metrics::new(Registry::new()).unwrap();
        m.requests.with_label_values(&["r", "GET", "200"]).inc();
        let names: Vec<String> = m
            .registry
            .gather()
            .iter()
            .map(|f| f.name().to_owned())
            .collect();
        assert!(names.contains(&"gateway_requests_total".to_owned()));
        assert!(names.contains(&"gateway_build_info".to_owned()));
    }

    #[test]
    fn introspection_results_are_exported_from_startup() {
        let m = Metrics::new(Registry::new()).unwrap();
        let family = m
            .registry
            .gather()
            .into_iter()
            .find(|f| f.name() == "gateway_auth_introspections_total")
            .expect("introspection counter exported before any call");
        let mut results: Vec<String> = family
            .get_metric()
            .iter()
            .map(|s| s.get_label()[0].value().to_owned())
            .collect();
        results.sort();
        assert_eq!(results, ["active", "error", "inactive"]);
    }
}
