//! Request spans (`tracing.enabled`): one server span per request, started
//! by the access-log stage before anything else runs (so auth, rate limits
//! and the proxy all fall inside it) and ended with the access-log line,
//! after the last body byte of a streamed response.
//!
//! A caller's W3C `traceparent` is continued (its sampled flag decides),
//! otherwise a trace starts here and `tracing.sample_ratio` decides; the
//! proxy sends the gateway's span upstream as the parent
//! (`context::TraceParent`). Finished spans go to the OTLP exporter
//! (`otlp.rs`). With tracing off, [`RequestTrace`] is an empty `Option`:
//! the request path pays one branch.

use actix_web::dev::ServiceRequest;
use actix_web::HttpMessage;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{Span as _, SpanKind, Status, TraceId, Tracer as _};
use opentelemetry::KeyValue;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracer, Span};
use prometheus::IntCounter;

use super::exchange::{Exchange, Facts};
use super::metrics::method_label;
use super::trace_context::{traceparent, HeadExtractor};
use crate::context::TraceParent;

/// Starts request spans; one clone per worker.
#[derive(Clone)]
pub struct RequestTracer {
    tracer: SdkTracer,
    propagator: TraceContextPropagator,
    /// `gateway_trace_spans_total{result="ended"}`.
    ended: IntCounter,
}

impl RequestTracer {
    pub fn new(tracer: SdkTracer, ended: IntCounter) -> Self {
        Self {
            tracer,
            propagator: TraceContextPropagator::new(),
            ended,
        }
    }

    /// Opens the request's span (child of the caller's, if it sent a valid
    /// `traceparent`) and leaves the `traceparent` for the upstream in the
    /// request's extensions.
    pub fn start(&self, req: &ServiceRequest) -> RequestTrace {
        let parent = self.propagator.extract(&HeadExtractor(req.headers()));
        let span = self
            .tracer
            .span_builder(method_label(req.method()))
            .with_kind(SpanKind::Server)
            .start_with_context(&self.tracer, &parent);
        req.extensions_mut()
            .insert(TraceParent(traceparent(span.span_context())));
        RequestTrace(Some(Box::new(ActiveSpan {
            span,
            ended: self.ended.clone(),
        })))
    }
}

/// The span of one request, if tracing is on.
pub struct RequestTrace(Option<Box<ActiveSpan>>);

struct ActiveSpan {
    span: Span,
    ended: IntCounter,
}

impl Drop for ActiveSpan {
    // However the request ends (even a client gone mid-body), the span's own
    // drop ends and queues it: count it here.
    fn drop(&mut self) {
        if self.span.span_context().is_sampled() {
            self.ended.inc();
        }
    }
}

impl RequestTrace {
    pub const OFF: Self = Self(None);

    pub fn is_on(&self) -> bool {
        self.0.is_some()
    }

    /// The trace this request belongs to (sampled or not), for the log line.
    pub fn trace_id(&self) -> Option<TraceId> {
        self.0.as_ref().map(|a| a.span.span_context().trace_id())
    }

    /// Names the span after its route, records what the exchange became
    /// and ends it.
    pub fn finish(self, x: &Exchange<'_>, facts: &Facts<'_>) {
        let Some(mut active) = self.0 else { return };
        let span = &mut active.span;
        if !span.is_recording() {
            return;
        }
        let method = method_label(x.method);
        if let Some(route) = facts.route {
            span.update_name(format!("{method} {route}"));
            span.set_attribute(KeyValue::new("http.route", route.to_owned()));
        }
        let status = x.status.as_u16();
        let mut attributes = vec![
            KeyValue::new("http.request.method", method),
            KeyValue::new("url.path", x.uri.path().to_owned()),
            KeyValue::new("http.response.status_code", i64::from(status)),
            KeyValue::new("gateway.request_id", facts.request_id.to_owned()),
        ];
        let optional = [
            facts
                .client_ip
                .map(|ip| KeyValue::new("client.address", ip.as_str().to_owned())),
            facts
                .upstream
                .map(|u| KeyValue::new("gateway.upstream", u.to_owned())),
            facts
                .target
                .map(|t| KeyValue::new("gateway.target", t.to_owned())),
            facts
                .user
                .map(|u| KeyValue::new("enduser.id", u.to_owned())),
            x.bytes_in
                .map(|n| KeyValue::new("http.request.body.size", n as i64)),
            x.bytes_out
                .map(|n| KeyValue::new("http.response.body.size", n as i64)),
        ];
        attributes.extend(optional.into_iter().flatten());
        span.set_attributes(attributes);
        // Server spans: only the gateway's or the upstream's failures are
        // errors; a 4xx is the client's.
        if status >= 500 {
            span.set_status(Status::error(x.status.canonical_reason().unwrap_or("")));
        }
        span.end();
    }
}
