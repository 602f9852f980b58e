//! Request spans end to end: the real binary exports over OTLP/HTTP to a
//! receiver that decodes the protocol's own protobuf messages, and a real
//! upstream shows the `traceparent` it was sent.
//!
//! Proves: a caller's trace is continued (same trace id, the caller's span
//! as parent) and the upstream gets the gateway's span as its parent; the
//! span carries route, status, upstream and request id, and the access-log
//! line its trace id; a trace starts when none comes in and 5xx marks the
//! span as an error; `sample_ratio: 0` exports nothing new but follows a
//! caller's sampled flag; an unreachable collector costs no request and is
//! counted; with tracing off the caller's `traceparent` passes unchanged.

mod common;

use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{web, App, HttpResponse, HttpServer};
use common::*;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use prost::Message;

const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

/// One span as the receiver got it, with its resource's service name.
#[derive(Clone, Debug)]
struct Received {
    service: String,
    resource: Vec<KeyValue>,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    name: String,
    kind: i32,
    status: i32,
    attributes: Vec<KeyValue>,
}

impl Received {
    fn attr(&self, key: &str) -> Option<String> {
        attr_of(&self.attributes, key)
    }
}

fn attr_of(attributes: &[KeyValue], key: &str) -> Option<String> {
    let value = attributes.iter().find(|kv| kv.key == key)?.value.as_ref()?;
    match value.value.as_ref()? {
        Value::StringValue(s) => Some(s.clone()),
        Value::IntValue(i) => Some(i.to_string()),
        other => Some(format!("{other:?}")),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An OTLP/HTTP traces receiver (`POST /v1/traces`, protobuf).
struct Collector {
    url: String,
    spans: Arc<Mutex<Vec<Received>>>,
}

impl Collector {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind collector");
        let url = format!("http://{}/v1/traces", listener.local_addr().unwrap());
        let spans = Arc::new(Mutex::new(Vec::new()));
        let store = spans.clone();
        std::thread::spawn(move || {
            actix_rt::System::new().block_on(async move {
                HttpServer::new(move || {
                    let store = store.clone();
                    App::new().route(
                        "/v1/traces",
                        web::post().to(move |body: web::Bytes| {
                            let store = store.clone();
                            async move { receive(&store, &body) }
                        }),
                    )
                })
                .workers(1)
                .disable_signals()
                .listen(listener)
                .expect("listen")
                .run()
                .await
            })
        });
        Self { url, spans }
    }

    /// Waits until a span matching `wanted` arrived.
    async fn span(&self, wanted: impl Fn(&Received) -> bool) -> Received {
        let mut found = None;
        eventually(Duration::from_secs(15), || {
            found = self
                .spans
                .lock()
                .unwrap()
                .iter()
                .find(|s| wanted(s))
                .cloned();
            let hit = found.is_some();
            async move { hit }
        })
        .await;
        found.unwrap_or_else(|| panic!("no such span; received: {:#?}", self.spans.lock().unwrap()))
    }

    fn count(&self) -> usize {
        self.spans.lock().unwrap().len()
    }
}

fn receive(store: &Mutex<Vec<Received>>, body: &[u8]) -> HttpResponse {
    let Ok(request) = ExportTraceServiceRequest::decode(body) else {
        return HttpResponse::BadRequest().finish();
    };
    let mut spans = store.lock().unwrap();
    for resource_spans in request.resource_spans {
        let resource = resource_spans
            .resource
            .map(|r| r.attributes)
            .unwrap_or_default();
        let service = attr_of(&resource, "service.name").unwrap_or_default();
        for scope in resource_spans.scope_spans {
            for span in scope.spans {
                spans.push(Received {
                    service: service.clone(),
                    resource: resource.clone(),
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                    name: span.name,
                    kind: span.kind,
                    status: span.status.map_or(0, |s| s.code),
                    attributes: span.attributes,
                });
            }
        }
    }
    HttpResponse::Ok()
        .content_type("application/x-protobuf")
        .body(ExportTraceServiceResponse::default().encode_to_vec())
}

fn config(up: &Upstream, tracing: &str) -> String {
    format!(
        r#"
server:
  workers: 2
upstreams:
  main:
    targets: ["{up}"]
routes:
  - name: api
    path_prefix: /api
    strip_prefix: /api
    upstream: main
{tracing}
"#,
        up = up.url()
    )
}

fn tracing_to(endpoint: &str, ratio: f64) -> String {
    format!(
        "tracing:\n  enabled: true\n  otlp_endpoint: \"{endpoint}\"\n  \
         service_name: edge-gw\n  sample_ratio: {ratio}\n  export_timeout_ms: 2000\n"
    )
}

/// The batch processor's delay, shortened so tests do not wait 5 s.
/// Fast batches, and the resource attributes the Kubernetes manifests set
/// from the downward API.
const FAST_BATCHES: &[(&str, &str)] = &[
    ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    (
        "OTEL_RESOURCE_ATTRIBUTES",
        "k8s.namespace.name=edge,k8s.pod.name=gateway-7d9f-x2k4q,k8s.node.name=node-a",
    ),
];

async fn start(yaml: &str) -> Gateway {
    let gw = Gateway::spawn_env(yaml, &[], FAST_BATCHES);
    gw.wait_ready().await;
    gw
}

/// The upstream's view of a request: its `traceparent` split in four.
async fn upstream_traceparent(
    gw: &Gateway,
    path: &str,
    sent: Option<&str>,
) -> (Vec<String>, String) {
    let mut req = client().get(gw.url(path));
    if let Some(tp) = sent {
        req = req.insert_header(("traceparent", tp));
    }
    let mut res = req.send().await.expect("request");
    let request_id = hdr(&res, "x-request-id");
    let echo = json_body(&mut res).await;
    let tp = echo["headers"]["traceparent"][0]
        .as_str()
        .unwrap_or("")
        .to_owned();
    (tp.split('-').map(str::to_owned).collect(), request_id)
}

fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(-1.0)
}

#[actix_rt::test]
async fn a_callers_trace_is_continued_and_the_upstream_gets_the_gateways_span() {
    let collector = Collector::start();
    let up = spawn_upstream("main");
    let gw = start(&config(&up, &tracing_to(&collector.url, 1.0))).await;

    let sent = format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01");
    let (parts, request_id) = upstream_traceparent(&gw, "/api/items/7", Some(&sent)).await;
    assert_eq!(parts.len(), 4, "upstream traceparent: {parts:?}");
    assert_eq!(parts[1], CALLER_TRACE, "same trace");
    assert_ne!(
        parts[2], CALLER_SPAN,
        "the gateway's span is the parent now"
    );
    assert_eq!(parts[3], "01", "sampled");

    let span = collector.span(|s| s.span_id == parts[2]).await;
    assert_eq!(span.trace_id, CALLER_TRACE);
    assert_eq!(span.parent_span_id, CALLER_SPAN);
    assert_eq!(span.name, "GET api");
    assert_eq!(span.kind, SpanKind::Server as i32);
    assert_eq!(span.service, "edge-gw");
    for (key, value) in [
        ("k8s.namespace.name", "edge"),
        ("k8s.pod.name", "gateway-7d9f-x2k4q"),
        ("k8s.node.name", "node-a"),
    ] {
        assert_eq!(
            attr_of(&span.resource, key).as_deref(),
            Some(value),
            "{key}"
        );
    }
    assert_eq!(span.attr("http.route").as_deref(), Some("api"));
    assert_eq!(
        span.attr("http.response.status_code").as_deref(),
        Some("200")
    );
    assert_eq!(span.attr("url.path").as_deref(), Some("/api/items/7"));
    assert_eq!(span.attr("gateway.upstream").as_deref(), Some("main"));
    assert_eq!(span.attr("gateway.target"), Some(up.url()));
    assert_eq!(span.attr("gateway.request_id"), Some(request_id.clone()));
    assert_eq!(span.attr("client.address").as_deref(), Some("127.0.0.1"));
    assert_ne!(span.status, StatusCode::Error as i32);

    let line = gw.access_log_for(&request_id).await;
    assert_eq!(line["trace_id"], CALLER_TRACE);

    let metrics = gw.metrics().await;
    assert!(metric(&metrics, "gateway_trace_spans_total{result=\"ended\"}") >= 1.0);
    assert!(metric(&metrics, "gateway_trace_spans_total{result=\"exported\"}") >= 1.0);
    assert_eq!(
        metric(&metrics, "gateway_trace_spans_total{result=\"failed\"}"),
        0.0
    );
}

#[actix_rt::test]
async fn without_a_traceparent_a_trace_starts_and_upstream_failures_are_errors() {
    let collector = Collector::start();
    let up = spawn_upstream("main");
    let gw = start(&config(&up, &tracing_to(&collector.url, 1.0))).await;

    // A malformed traceparent is not continued either.
    let (parts, request_id) =
        upstream_traceparent(&gw, "/api/echo", Some("00-not-a-trace-01")).await;
    assert_eq!(parts.len(), 4, "upstream traceparent: {parts:?}");
    assert_eq!(parts[1].len(), 32);
    let span = collector.span(|s| s.span_id == parts[2]).await;
    assert_eq!(span.trace_id, parts[1]);
    assert_eq!(span.parent_span_id, "", "a root span");
    let line = gw.access_log_for(&request_id).await;
    assert_eq!(line["trace_id"].as_str(), Some(parts[1].as_str()));

    let res = client()
        .get(gw.url("/api/status/503"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 503);
    let failed_id = hdr(&res, "x-request-id");
    let span = collector
        .span(|s| s.attr("gateway.request_id").as_deref() == Some(failed_id.as_str()))
        .await;
    assert_eq!(span.status, StatusCode::Error as i32);
    assert_eq!(
        span.attr("http.response.status_code").as_deref(),
        Some("503")
    );

    // A request no route matches is traced too (the gateway's own 404).
    let res = client().get(gw.url("/nowhere")).send().await.unwrap();
    assert_eq!(res.status(), 404);
    let missing_id = hdr(&res, "x-request-id");
    let span = collector
        .span(|s| s.attr("gateway.request_id").as_deref() == Some(missing_id.as_str()))
        .await;
    assert_eq!(span.name, "GET");
    assert_eq!(span.attr("http.route"), None);
}

#[actix_rt::test]
async fn sample_ratio_zero_records_only_traces_the_caller_sampled() {
    let collector = Collector::start();
    let up = spawn_upstream("main");
    let gw = start(&config(&up, &tracing_to(&collector.url, 0.0))).await;

    for _ in 0..5 {
        let (parts, _) = upstream_traceparent(&gw, "/api/x", None).await;
        assert_eq!(parts[3], "00", "not sampled, still propagated: {parts:?}");
    }
    let sent = format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01");
    let (parts, _) = upstream_traceparent(&gw, "/api/x", Some(&sent)).await;
    assert_eq!(parts[3], "01", "the caller's sampled flag is followed");
    collector.span(|s| s.trace_id == CALLER_TRACE).await;
    // The batch that carried the sampled span came after the five others
    // ended: had they been recorded, they would be here.
    assert_eq!(
        collector.count(),
        1,
        "{:#?}",
        collector.spans.lock().unwrap()
    );
    let metrics = gw.metrics().await;
    assert_eq!(
        metric(&metrics, "gateway_trace_spans_total{result=\"ended\"}"),
        1.0
    );
}

#[actix_rt::test]
async fn an_unreachable_collector_costs_no_request_and_is_counted() {
    let up = spawn_upstream("main");
    let dead = format!("http://127.0.0.1:{}/v1/traces", free_port());
    let gw = start(&config(&up, &tracing_to(&dead, 1.0))).await;
    for _ in 0..10 {
        let res = client().get(gw.url("/api/x")).send().await.unwrap();
        assert_eq!(res.status(), 200);
    }
    let failed = eventually(Duration::from_secs(15), || async {
        let metrics = gw.metrics().await;
        metric(&metrics, "gateway_trace_spans_total{result=\"failed\"}") >= 10.0
    })
    .await;
    assert!(failed, "{}", gw.metrics().await);
}

#[actix_rt::test]
async fn with_tracing_off_the_callers_traceparent_passes_unchanged() {
    let up = spawn_upstream("main");
    let gw = start(&config(&up, "")).await;
    let sent = format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01");
    let (parts, request_id) = upstream_traceparent(&gw, "/api/x", Some(&sent)).await;
    assert_eq!(parts.join("-"), sent);
    let line = gw.access_log_for(&request_id).await;
    assert!(
        line.get("trace_id").is_none(),
        "no trace_id with tracing off: {line}"
    );
    let metrics = gw.metrics().await;
    assert_eq!(
        metric(&metrics, "gateway_trace_spans_total{result=\"ended\"}"),
        0.0
    );
}

#[actix_rt::test]
async fn spans_still_queued_at_shutdown_are_exported_before_exit() {
    let collector = Collector::start();
    let up = spawn_upstream("main");
    // Batches every 10 minutes: only the shutdown flush can send this one.
    let gw = Gateway::spawn_env(
        &config(&up, &tracing_to(&collector.url, 1.0)),
        &[],
        &[("OTEL_BSP_SCHEDULE_DELAY", "600000")],
    );
    gw.wait_ready().await;
    let (parts, _) = upstream_traceparent(&gw, "/api/x", None).await;
    actix_rt::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(collector.count(), 0, "held by the batch delay");
    let (status, gw) = gw.terminate(Duration::from_secs(20)).await;
    assert!(
        status.is_some_and(|s| s.success()),
        "exit {status:?}; stderr:\n{}",
        gw.stderr()
    );
    collector.span(|s| s.span_id == parts[2]).await;
}
