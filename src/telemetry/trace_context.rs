//! W3C Trace Context on the wire: reading a caller's `traceparent` /
//! `tracestate` out of an actix request head (the SDK's
//! `TraceContextPropagator` parses them) and writing the `traceparent` the
//! gateway sends upstream, naming its own span as the parent.
//!
//! A leaf used by the request spans (`tracing.rs`); the proxy only copies
//! the header value this builds (`context::TraceParent`).

use actix_web::http::header::{HeaderMap, HeaderValue};
use opentelemetry::propagation::Extractor;
use opentelemetry::trace::SpanContext;

/// A request head as the propagator reads it.
pub struct HeadExtractor<'a>(pub &'a HeaderMap);

impl Extractor for HeadExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// `traceparent` (version 00) naming `span` as the parent of what the
/// upstream does: `00-<trace id>-<span id>-<flags>`.
pub fn traceparent(span: &SpanContext) -> HeaderValue {
    let text = format!(
        "00-{}-{}-{:02x}",
        span.trace_id(),
        span.span_id(),
        span.trace_flags().to_u8()
    );
    // Only lowercase hex digits and dashes: always a valid header value.
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::propagation::TextMapPropagator;
    use opentelemetry::trace::{SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
    use opentelemetry_sdk::propagation::TraceContextPropagator;

    fn remote_of(headers: &[(&'static str, &'static str)]) -> SpanContext {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(
                actix_web::http::header::HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        let cx = TraceContextPropagator::new().extract(&HeadExtractor(&map));
        cx.span().span_context().clone()
    }

    #[test]
    fn a_callers_traceparent_is_read() {
        let remote = remote_of(&[
            (
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ),
            ("tracestate", "vendor=abc"),
        ]);
        assert!(remote.is_valid() && remote.is_remote() && remote.is_sampled());
        assert_eq!(
            remote.trace_id(),
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap()
        );
        assert_eq!(remote.trace_state().header(), "vendor=abc");
    }

    #[test]
    fn malformed_traceparents_start_a_new_trace() {
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "garbage",
        ] {
            assert!(!remote_of(&[("traceparent", bad)]).is_valid(), "{bad}");
        }
    }

    #[test]
    fn the_upstream_sees_the_gateways_span_as_parent() {
        let span = SpanContext::new(
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
            SpanId::from_hex("00f067aa0ba902b7").unwrap(),
            TraceFlags::SAMPLED,
            false,
            TraceState::default(),
        );
        assert_eq!(
            traceparent(&span),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        );
        let unsampled = SpanContext::new(
            span.trace_id(),
            span.span_id(),
            TraceFlags::default(),
            false,
            TraceState::default(),
        );
        assert!(traceparent(&unsampled).to_str().unwrap().ends_with("-00"));
    }
}
