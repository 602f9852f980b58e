//! The monitoring assets only name metrics the gateway really exports.
//!
//! Collects every metric name used by the Grafana dashboards
//! (`grafana/dashboards/*.json`: each panel `expr` and each variable query)
//! and by the alerting rules (`prometheus/alerts.yaml`, scanned as raw text),
//! boots the real gateway with every feature that works without an identity
//! provider exercised (live and dead upstreams, a retry to a second target,
//! local and cluster rate limits, a Redis outage, bearer auth, a route's IP
//! rules, 404 and 405), and requires each name
//! to be a series in the gateway's `/metrics`. Histogram names are compared
//! with their suffixes (`_bucket`, `_sum`, `_count`), exactly as PromQL uses
//! them. Renaming a metric without updating the dashboards and alerts fails
//! here; the PromQL syntax and the alert logic are checked by
//! `scripts/check-monitoring.sh` (promtool).

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use common::*;

const SECRET: &str = "monitoring-test-session-secret-0123456789";

fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// Metric names in PromQL (or any text): identifiers that start with
/// `gateway_` or `process_`, plus `up` (Prometheus' own series, the one
/// non-gateway metric the alerts may use). Function names, keywords, label
/// names and `$__rate_interval` never match the prefixes.
fn metric_tokens(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|t| {
            *t == "up"
                || ((t.starts_with("gateway_") || t.starts_with("process_"))
                    && t.len() > "gateway_".len())
        })
        .map(str::to_owned)
        .collect()
}

/// Every PromQL string of a Grafana dashboard: `expr` anywhere in the
/// model, and the queries of the template variables.
fn dashboard_queries(model: &serde_json::Value, out: &mut Vec<String>) {
    match model {
        serde_json::Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("expr", serde_json::Value::String(expr)) => out.push(expr.clone()),
                    ("templating", templating) => {
                        for var in templating["list"].as_array().into_iter().flatten() {
                            if var["type"] != "query" {
                                continue;
                            }
                            let query = var["query"]
                                .as_str()
                                .or_else(|| var["query"]["query"].as_str());
                            out.extend(query.map(str::to_owned));
                        }
                    }
                    _ => dashboard_queries(value, out),
                }
            }
        }
        serde_json::Value::Array(items) => {
            for item in items {
                dashboard_queries(item, out);
            }
        }
        _ => {}
    }
}

/// (source, metric name) for every metric the monitoring assets reference.
fn referenced_metrics() -> Vec<(String, String)> {
    let mut refs = Vec::new();
    let dir = repo_file("grafana/dashboards");
    let mut dashboards: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    dashboards.sort();
    assert!(
        dashboards.len() >= 2,
        "expected the overview and protection dashboards in {}",
        dir.display()
    );
    for path in &dashboards {
        let text = std::fs::read_to_string(path).expect("read dashboard");
        let model: serde_json::Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
        let mut queries = Vec::new();
        dashboard_queries(&model, &mut queries);
        assert!(
            !queries.is_empty(),
            "{}: no expressions found",
            path.display()
        );
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        for query in queries {
            for metric in metric_tokens(&query) {
                refs.push((name.clone(), metric));
            }
        }
    }
    let alerts = repo_file("prometheus/alerts.yaml");
    let text = std::fs::read_to_string(&alerts).expect("read prometheus/alerts.yaml");
    for metric in metric_tokens(&text) {
        refs.push(("alerts.yaml".to_owned(), metric));
    }
    refs
}

/// Series names present in a Prometheus text exposition (histograms appear
/// as `<name>_bucket`, `<name>_sum` and `<name>_count`).
fn exposed_series(exposition: &str) -> BTreeSet<String> {
    exposition
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

fn missing<'a>(
    refs: &'a [(String, String)],
    exposed: &BTreeSet<String>,
) -> Vec<&'a (String, String)> {
    refs.iter()
        // `up` is written by Prometheus for every scrape, not by the gateway.
        .filter(|(_, metric)| metric != "up" && !exposed.contains(metric))
        .collect()
}

async fn status(c: &awc::Client, method: &str, url: &str, headers: &[(&str, &str)]) -> u16 {
    let method = awc::http::Method::from_bytes(method.as_bytes()).expect("method");
    let mut req = c.request(method, url);
    for (k, v) in headers {
        req = req.insert_header((*k, *v));
    }
    let mut res = req.send().await.expect("response");
    let _ = res.body().limit(1 << 20).await;
    res.status().as_u16()
}

#[test]
fn metric_names_are_found_in_the_assets() {
    let refs = referenced_metrics();
    let by = |source: &str| -> BTreeSet<&str> {
        refs.iter()
            .filter(|(s, _)| s.contains(source))
            .map(|(_, m)| m.as_str())
            .collect()
    };
    // Guards against a scanner that silently finds nothing.
    let overview = by("overview");
    for m in [
        "gateway_requests_total",
        "gateway_request_duration_seconds_bucket",
        "gateway_upstream_duration_seconds_bucket",
        "process_resident_memory_bytes",
        "gateway_upstream_retries_total",
        "gateway_upstream_target_healthy",
    ] {
        assert!(overview.contains(m), "overview dashboard lacks {m}");
    }
    let protection = by("protection");
    for m in [
        "gateway_ratelimit_decisions_total",
        "gateway_ratelimit_store_degraded",
        "gateway_auth_outcomes_total",
        "gateway_session_cache_lookups_total",
        "gateway_auth_introspections_total",
        "gateway_route_ip_denied_total",
    ] {
        assert!(protection.contains(m), "protection dashboard lacks {m}");
    }
    let alerts = by("alerts.yaml");
    for m in [
        "up",
        "gateway_upstream_target_healthy",
        "gateway_auth_outcomes_total",
        "gateway_upstream_retries_total",
    ] {
        assert!(alerts.contains(m), "alerts lack {m}");
    }
    assert_eq!(
        metric_tokens(
            "sum by (le) (rate(gateway_x_bucket{job=~\".*gateway.*\"}[$__rate_interval])) / up"
        ),
        BTreeSet::from(["gateway_x_bucket".to_owned(), "up".to_owned()])
    );
}

#[actix_rt::test]
async fn every_metric_in_dashboards_and_alerts_is_exported() {
    let refs = referenced_metrics();

    let up = spawn_upstream("live");
    let dead_port = free_port(); // nobody listens: connect errors, target down
    let jwks_port = free_port(); // no identity provider: JWKS fetch fails, harmlessly
    let mut redis = RedisServer::start();
    let yaml = format!(
        r#"redis: {{url: "{redis}", command_timeout_ms: 200}}
upstreams:
  live: {{targets: ["{live}"]}}
  dead:
    targets: ["http://127.0.0.1:{dead_port}"]
    retries: 0
    max_fails: 1
    fail_timeout_secs: 600
    connect_timeout_ms: 500
  # A dead target before a live one: requests that try it first are
  # retried on the live one (connect), and answered.
  flaky:
    targets: ["http://127.0.0.1:{dead_port}", "{live}"]
    retries: 1
    max_fails: 100
    connect_timeout_ms: 500
rate_limits:
  tight: {{requests: 2, period_secs: 3600, burst: 0, key: ip}}
  shared: {{requests: 1000, period_secs: 3600, burst: 0, key: ip, scope: cluster, on_store_error: local}}
auth:
  provider:
    jwks_url: "http://127.0.0.1:{jwks_port}/jwks"
    authorization_url: "http://127.0.0.1:{jwks_port}/auth"
    token_url: "http://127.0.0.1:{jwks_port}/token"
    client_id: gateway
  session: {{secret: "{SECRET}"}}
routes:
  - {{name: live, path_prefix: /live, upstream: live}}
  - {{name: dead, path_prefix: /dead, upstream: dead}}
  - {{name: get_only, path_prefix: /get-only, upstream: live, methods: [GET]}}
  - {{name: limited, path_prefix: /limited, upstream: live, rate_limit: [tight]}}
  - {{name: cluster, path_prefix: /cluster, upstream: live, rate_limit: [shared]}}
  - {{name: secure, path_prefix: /secure, upstream: live, auth: bearer}}
  - {{name: app, path_prefix: /app, upstream: live, auth: session}}
  - {{name: flaky, path_prefix: /flaky, upstream: flaky}}
  - {{name: denied, path_prefix: /denied, upstream: live, deny_ips: ["127.0.0.1"]}}
"#,
        redis = redis.url(),
        live = up.url(),
    );
    let gw = Gateway::start(&yaml).await;
    let c = client();

    assert_eq!(status(&c, "GET", &gw.url("/live/a"), &[]).await, 200);
    assert_eq!(status(&c, "POST", &gw.url("/live/a"), &[]).await, 200);
    assert_eq!(status(&c, "GET", &gw.url("/dead/a"), &[]).await, 502);
    assert_eq!(status(&c, "GET", &gw.url("/dead/a"), &[]).await, 503);
    assert_eq!(status(&c, "GET", &gw.url("/nowhere"), &[]).await, 404);
    // Round robin over two targets: at least one of these tries the dead
    // one first, and every one is answered by the live one.
    for _ in 0..4 {
        assert_eq!(status(&c, "GET", &gw.url("/flaky/a"), &[]).await, 200);
    }
    assert_eq!(status(&c, "GET", &gw.url("/denied/a"), &[]).await, 403);
    assert_eq!(status(&c, "DELETE", &gw.url("/get-only/a"), &[]).await, 405);
    let limited: Vec<u16> = {
        let mut v = Vec::new();
        for _ in 0..3 {
            v.push(status(&c, "GET", &gw.url("/limited/a"), &[]).await);
        }
        v
    };
    assert_eq!(limited, vec![200, 200, 429]);
    // A decision by Redis (round trips, decisions), then an outage: store
    // errors, the breaker opens, the local fallback decides.
    assert_eq!(status(&c, "GET", &gw.url("/cluster/a"), &[]).await, 200);
    // Bearer auth needs no provider to refuse: no token, and a garbage one.
    assert_eq!(status(&c, "GET", &gw.url("/secure/a"), &[]).await, 401);
    let bearer = [("authorization", "Bearer not.a.jwt")];
    assert_eq!(status(&c, "GET", &gw.url("/secure/a"), &bearer).await, 401);
    // A session lookup (an unknown cookie) feeds the session cache metric.
    let cookie = [("cookie", "gateway_session=unknown-session-id")];
    assert_eq!(status(&c, "GET", &gw.url("/app/a"), &cookie).await, 401);
    redis.kill();
    for _ in 0..10 {
        assert_eq!(status(&c, "GET", &gw.url("/cluster/a"), &[]).await, 200);
    }

    // Gauges refresh every second and local-key counts after the first
    // eviction sweep (10 s): wait for the exposition to settle.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let (exposition, complete) = loop {
        let exposition = gw.metrics().await;
        let complete = missing(&refs, &exposed_series(&exposition)).is_empty()
            && exposition.contains("gateway_ratelimit_store_degraded 1");
        if complete || std::time::Instant::now() >= deadline {
            break (exposition, complete);
        }
        actix_rt::time::sleep(Duration::from_millis(250)).await;
    };

    let exposed = exposed_series(&exposition);
    let absent = missing(&refs, &exposed);
    assert!(
        absent.is_empty(),
        "metrics referenced by dashboards/alerts but not exported by the gateway:\n{}\n\n\
         series the gateway exports:\n{}",
        absent
            .iter()
            .map(|(source, metric)| format!("  {metric} (in {source})"))
            .collect::<Vec<_>>()
            .join("\n"),
        exposed.iter().cloned().collect::<Vec<_>>().join("\n"),
    );
    assert!(
        complete,
        "the Redis outage never showed as gateway_ratelimit_store_degraded 1:\n{exposition}"
    );
    // The scenario produced what the panels plot, not just empty families.
    for needle in [
        "gateway_upstream_target_healthy{target=\"http://127.0.0.1:",
        "gateway_upstream_errors_total{kind=\"connect\"",
        "gateway_requests_total{method=\"GET\",route=\"limited\",status=\"429\"} 1",
        "gateway_requests_total{method=\"GET\",route=\"_none\",status=\"404\"} 1",
        // A 405 matched no route fully: it counts under `_none`.
        "gateway_requests_total{method=\"DELETE\",route=\"_none\",status=\"405\"} 1",
        "gateway_ratelimit_decisions_total{outcome=\"fallback_allowed\",policy=\"shared\"}",
        "gateway_auth_outcomes_total{reason=\"no_token\",result=\"unauthenticated\",route=\"secure\"} 1",
        "gateway_upstream_retries_total{reason=\"connect\",upstream=\"flaky\"}",
        "gateway_route_ip_denied_total{route=\"denied\"} 1",
        // No introspection endpoint here: the series exist from startup.
        "gateway_auth_introspections_total{result=\"error\"} 0",
    ] {
        assert!(exposition.contains(needle), "no {needle} in:\n{exposition}");
    }
    assert!(
        exposition
            .lines()
            .any(|l| l.starts_with("gateway_upstream_target_healthy{") && l.ends_with(" 0")),
        "the dead target is not marked down:\n{exposition}"
    );
}

/// The value of the one sample of `name` carrying every label of `labels`.
fn sample(exposition: &str, name: &str, labels: &[&str]) -> Option<f64> {
    exposition
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .find(|l| labels.iter().all(|label| l.contains(label)))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[actix_rt::test]
async fn retry_and_ip_denial_counters_exist_at_zero_before_any_request() {
    let up = spawn_upstream("live");
    let gw = Gateway::start(&format!(
        r#"
upstreams:
  live: {{targets: ["{live}"]}}
routes:
  - {{name: guarded, path_prefix: /guarded, upstream: live, deny_ips: ["10.0.0.0/8"]}}
  - {{name: open, path_prefix: /, upstream: live}}
"#,
        live = up.url()
    ))
    .await;
    // rate() and increase() only see an increment from a series that
    // already existed: the first retry or denial would be lost otherwise.
    let m = gw.metrics().await;
    for reason in ["status", "connect", "send"] {
        let labels = [r#"upstream="live""#, &format!(r#"reason="{reason}""#)];
        assert_eq!(
            sample(&m, "gateway_upstream_retries_total", &labels),
            Some(0.0),
            "{reason}"
        );
    }
    let denied = "gateway_route_ip_denied_total";
    assert_eq!(sample(&m, denied, &[r#"route="guarded""#]), Some(0.0));
    assert_eq!(sample(&m, denied, &[r#"route="open""#]), None);
}

#[actix_rt::test]
async fn open_connections_and_body_bytes_are_counted() {
    use std::io::{Read, Write};

    let up = spawn_upstream("live");
    let gw = Gateway::start(&format!(
        r#"
upstreams:
  live: {{targets: ["{live}"]}}
routes:
  - {{name: app, path_prefix: /, upstream: live}}
"#,
        live = up.url()
    ))
    .await;
    let open = |m: &str| {
        m.lines()
            .find_map(|l| l.strip_prefix("gateway_open_connections "))
            .and_then(|v| v.parse::<f64>().ok())
    };
    // Three kept-alive connections, each after one answered request.
    let mut conns: Vec<std::net::TcpStream> = (0..3)
        .map(|_| {
            let mut c = std::net::TcpStream::connect(("127.0.0.1", gw.port)).expect("connect");
            c.write_all(b"GET /bytes/10 HTTP/1.1\r\nHost: gw\r\n\r\n")
                .expect("send");
            let mut buf = [0u8; 1024];
            let n = c.read(&mut buf).expect("answer");
            assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
            c
        })
        .collect();
    assert_eq!(open(&gw.metrics().await), Some(3.0));
    conns.clear();
    assert!(
        eventually(Duration::from_secs(10), || async {
            open(&gw.metrics().await) == Some(0.0)
        })
        .await,
        "closed connections still counted"
    );
    let m = gw.metrics().await;
    assert!(m.contains("gateway_connections_total 3"), "{m}");

    let c = client();
    let res = c
        .post(gw.url("/echo"))
        .send_body(Bytes::from(vec![b'a'; 1234]))
        .await
        .expect("post");
    assert_eq!(res.status(), 200);
    let mut res = c
        .get(gw.url("/bytes/200000?chunked=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.body().limit(1 << 20).await.unwrap().len(), 200_000);
    let m = gw.metrics().await;
    let bytes = |direction: &str| {
        sample(
            &m,
            "gateway_body_bytes_total",
            &[r#"route="app""#, &format!(r#"direction="{direction}""#)],
        )
    };
    assert_eq!(bytes("in"), Some(1234.0));
    // 3 x 10 bytes, the echo's JSON answer and the streamed 200,000.
    assert!(bytes("out").is_some_and(|n| n > 200_030.0), "{m}");
}
