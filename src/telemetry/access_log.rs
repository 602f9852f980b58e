//! What is recorded of every request, whatever answered it: the in-flight
//! gauge, the per-route request counter and latency histogram, one
//! JSON access-log line and (with tracing on) the request's span. Called
//! by the access-log stage (`middleware/access_log.rs`) after the response
//! head, with the [`Exchange`] it saw.
//!
//! It reads what later stages put in the request extensions (route,
//! upstream, client IP, user); of the headers it logs only a truncated
//! User-Agent, and never query strings or bodies, so tokens in
//! Authorization, Cookie or URLs cannot leak into logs.

use actix_web::dev::ServiceRequest;
use prometheus::IntGauge;

pub use super::exchange::Exchange;
use super::exchange::Facts;
use super::json_line::AccessLine;
use super::logging::AccessLogWriter;
use super::metrics::{method_label, RequestCounterCache};
use super::tracing::{RequestTrace, RequestTracer};
use crate::context::RequestFacts;
use crate::state::Gateway;

/// Longest `user_agent` logged, in bytes.
const USER_AGENT_MAX: usize = 256;

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

/// What each worker keeps for this stage (built in the server factory):
/// its own access-log drain, request-counter cache and (with tracing on)
/// span starter.
pub struct WorkerTelemetry {
    access_log: AccessLogWriter,
    requests: RequestCounterCache,
    tracer: Option<RequestTracer>,
}

impl WorkerTelemetry {
    pub fn new(access_log: AccessLogWriter, tracer: Option<RequestTracer>) -> Self {
        Self {
            access_log,
            requests: RequestCounterCache::default(),
            tracer,
        }
    }

    /// The request's span, or [`RequestTrace::OFF`] with tracing off.
    pub fn start_trace(&self, req: &ServiceRequest) -> RequestTrace {
        match &self.tracer {
            Some(tracer) => tracer.start(req),
            None => RequestTrace::OFF,
        }
    }

    /// Counts the exchange in the metrics (at the response head).
    pub fn count(&self, gw: &Gateway, x: &Exchange<'_>) {
        let ext = x.ext;
        let route_idx = ext.and_then(|e| RequestFacts::of(e).route_index());
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
    /// its bytes join the route's counter, then [`Self::finish`].
    pub fn streamed(&self, gw: &Gateway, x: &Exchange<'_>, trace: RequestTrace) {
        let route_idx = x.ext.and_then(|e| RequestFacts::of(e).route_index());
        let meters = route_idx.map_or(&gw.no_route_meters, |i| &gw.route_meters[i]);
        meters.bytes_out.inc_by(x.bytes_out.unwrap_or(0));
        self.finish(gw, x, trace);
    }

    /// Ends the request's span and writes its access-log line (each when on).
    pub fn finish(&self, gw: &Gateway, x: &Exchange<'_>, trace: RequestTrace) {
        if !gw.access_log && !trace.is_on() {
            return;
        }
        let facts = x.facts(gw);
        // Only with tracing on: a request without a span pays nothing here.
        let trace_id = trace.trace_id().map(|id| id.to_string());
        trace.finish(x, &facts);
        if gw.access_log {
            self.log(x, &facts, trace_id.as_deref());
        }
    }

    fn log(&self, x: &Exchange<'_>, facts: &Facts<'_>, trace_id: Option<&str>) {
        // Truncated on a character boundary: a client chooses its length.
        let user_agent = x
            .user_agent
            .map(|ua| String::from_utf8_lossy(&ua[..ua.len().min(USER_AGENT_MAX)]));
        self.access_log.write(&AccessLine {
            request_id: facts.request_id,
            method: x.method.as_str(),
            path: x.uri.path(),
            status: x.status.as_u16(),
            duration: x.elapsed,
            upstream_duration: facts.upstream_duration,
            bytes_in: x.bytes_in,
            bytes_out: x.bytes_out,
            user_agent: user_agent.as_deref(),
            route: facts.route,
            upstream: facts.upstream,
            target: facts.target,
            client_ip: facts.client_ip,
            user: facts.user,
            trace_id,
        });
    }
}
