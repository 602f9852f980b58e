//! What is recorded of every request, whatever answered it: the in-flight
//! gauge, the per-route request counter and latency histogram, and one
//! JSON access-log line. Called by the access-log stage
//! (`middleware/access_log.rs`) after the response head.
//!
//! It reads what later stages put in the request extensions (route,
//! upstream, client IP, user); of the headers it logs only a truncated
//! User-Agent, and never query strings or bodies, so tokens in
//! Authorization, Cookie or URLs cannot leak into logs.

use std::sync::Arc;
use std::time::Duration;

use actix_http::Extensions;
use actix_web::http::{Method, StatusCode, Uri};
use prometheus::IntGauge;
use slog::{info, Logger};

use super::metrics::{method_label, RequestCounterCache};
use crate::auth::identity::Identity;
use crate::context::{ClientInfo, IpText, MatchedRoute, RequestId, UpstreamUsed};
use crate::state::Gateway;

/// Longest `user_agent` logged, in bytes.
const USER_AGENT_MAX: usize = 256;

/// Milliseconds with microsecond precision.
fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0
}

/// Counts a request in flight until dropped (however the request ends,
/// even if the client goes away and the future is dropped).
#[must_use = "the request counts as in flight until this is dropped"]
pub struct InFlight<'a>(&'a IntGauge);

impl<'a> InFlight<'a> {
    pub fn enter(gauge: &'a IntGauge) -> Self {
        gauge.inc();
        Self(gauge)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// One finished exchange, as the access-log stage saw it.
pub struct Exchange<'a> {
    pub method: &'a Method,
    pub uri: &'a Uri,
    pub status: StatusCode,
    pub elapsed: Duration,
    /// The request's Content-Length (`None` for a streamed body).
    pub bytes_in: Option<u64>,
    /// The response body's size: known at the head, or counted as a
    /// streamed body is sent (`None` when the request failed).
    pub bytes_out: Option<u64>,
    pub user_agent: Option<&'a [u8]>,
    /// What the later stages learned (none when the request failed as an
    /// actix error).
    pub ext: Option<&'a Extensions>,
}

/// What each worker keeps for this stage (built in the server factory):
/// its own access-log drain and request-counter cache.
pub struct WorkerTelemetry {
    access_log: Logger,
    requests: RequestCounterCache,
}

impl WorkerTelemetry {
    pub fn new(access_log: Logger) -> Self {
        Self {
            access_log,
            requests: RequestCounterCache::default(),
        }
    }

    /// Counts the exchange in the metrics (at the response head).
    pub fn count(&self, gw: &Gateway, x: &Exchange<'_>) {
        let ext = x.ext;
        let route_idx = ext.and_then(|e| e.get::<MatchedRoute>()).map(|m| m.index);
        let route_name = route_idx.map(|i| gw.routes.get(i).name.as_str());
        let meters = route_idx.map_or(&gw.no_route_meters, |i| &gw.route_meters[i]);
        meters.latency.observe(x.elapsed.as_secs_f64());
        if let Some(n) = x.bytes_in {
            meters.bytes_in.inc_by(n);
        }
        if let Some(n) = x.bytes_out {
            meters.bytes_out.inc_by(n);
        }
        self.requests.inc(
            gw.generation,
            &gw.metrics.requests,
            route_idx.zip(route_name),
            method_label(x.method),
            x.status,
        );
    }

    /// The end of a streamed body ([`Exchange::bytes_out`] now counted):
    /// its bytes join the route's counter and its line is written.
    pub fn streamed(&self, gw: &Gateway, x: &Exchange<'_>) {
        let route_idx = x.ext.and_then(|e| e.get::<MatchedRoute>()).map(|m| m.index);
        let meters = route_idx.map_or(&gw.no_route_meters, |i| &gw.route_meters[i]);
        meters.bytes_out.inc_by(x.bytes_out.unwrap_or(0));
        self.log(gw, x);
    }

    /// Writes the exchange's access-log line (when the log is on).
    pub fn log(&self, gw: &Gateway, x: &Exchange<'_>) {
        if !gw.access_log {
            return;
        }
        let ext = x.ext;
        let log = &self.access_log;
        let route_name = ext
            .and_then(|e| e.get::<MatchedRoute>())
            .map(|m| gw.routes.get(m.index).name.as_str());
        let (upstream, target, upstream_ms) = match ext.and_then(|e| e.get::<UpstreamUsed>()) {
            Some(u) => {
                let up = &gw.upstreams[u.upstream];
                (
                    Some(up.settings.name.as_str()),
                    Some(up.targets[u.target].url.as_str()),
                    Some(millis(u.head_after)),
                )
            }
            None => (None, None, None),
        };
        // Truncated on a character boundary: a client chooses its length.
        let user_agent = x
            .user_agent
            .map(|ua| String::from_utf8_lossy(&ua[..ua.len().min(USER_AGENT_MAX)]));
        let client_ip = ext
            .and_then(|e| e.get::<ClientInfo>())
            .map(|c| IpText::new(c.ip));
        info!(log, "request";
            "request_id" => ext.and_then(|e| e.get::<RequestId>()).map_or("-", |id| id.as_str()),
            "method" => x.method.as_str(),
            "path" => x.uri.path(),
            "status" => x.status.as_u16(),
            "duration_ms" => millis(x.elapsed),
            "upstream_ms" => upstream_ms,
            "bytes_in" => x.bytes_in,
            "bytes_out" => x.bytes_out,
            "user_agent" => user_agent.as_deref(),
            "route" => route_name,
            "upstream" => upstream,
            "target" => target,
            "client_ip" => client_ip.as_ref().map(IpText::as_str),
            "user" => ext.and_then(|e| e.get::<Arc<Identity>>()).map(|u| u.subject.as_str()),
        );
    }
}
