//! Upstream resilience end to end: the real gateway binary in front of a
//! target that answers 503 and a healthy one. A circuit breaker takes the
//! failing target out after `consecutive_5xx` answers; without one, a 5xx
//! is an answer like any other.

mod common;

use std::collections::HashMap;

use common::*;

fn config(failing: &str, healthy: &str, breaker: &str) -> String {
    format!(
        r#"
server: {{workers: 1}}
upstreams:
  pool:
    targets: ["http://{failing}", "{healthy}"]
    balance: round_robin
    fail_timeout_secs: 60
    {breaker}
routes:
  - {{name: api, path_prefix: /, upstream: pool}}
"#
    )
}

async fn statuses(gw: &Gateway, n: usize) -> HashMap<u16, usize> {
    let mut seen = HashMap::new();
    for _ in 0..n {
        let res = client().get(gw.url("/x")).send().await.unwrap();
        *seen.entry(res.status().as_u16()).or_insert(0) += 1;
    }
    seen
}

const BUSY: &str =
    "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 4\r\nconnection: close\r\n\r\nbusy";

#[actix_rt::test]
async fn consecutive_5xx_open_the_circuit_of_a_failing_target() {
    let failing = spawn_raw_upstream(BUSY);
    let healthy = spawn_upstream("healthy");
    let gw = Gateway::start(&config(
        &failing.to_string(),
        &healthy.url(),
        "circuit_breaker: {consecutive_5xx: 3}",
    ))
    .await;
    let seen = statuses(&gw, 40).await;
    assert_eq!(
        seen.get(&503),
        Some(&3),
        "three 503s, then the circuit opens: {seen:?}"
    );
    assert_eq!(seen.get(&200), Some(&37));
    let health = gw.health().await;
    let target = health["upstreams"]["pool"]["targets"]
        .as_array()
        .and_then(|t| {
            t.iter()
                .find(|t| t["url"] == format!("http://{failing}"))
                .cloned()
        })
        .expect("target in /health");
    assert_eq!(target["circuit"], "open", "{health}");
    assert_eq!(target["healthy"], false);
    let metrics = gw.metrics().await;
    let series = format!(
        "gateway_upstream_target_healthy{{target=\"http://{failing}\",upstream=\"pool\"}} 0"
    );
    assert!(metrics.contains(&series), "{series} missing");
    let logged = eventually(std::time::Duration::from_secs(5), || {
        let n = gw.count_log_messages("upstream target marked down");
        async move { n == 1 }
    })
    .await;
    assert!(logged, "the opening is logged once:\n{}", gw.stdout_text());
}

#[actix_rt::test]
async fn without_a_breaker_a_5xx_is_passed_on_and_the_target_stays() {
    let failing = spawn_raw_upstream(BUSY);
    let healthy = spawn_upstream("healthy");
    let gw = Gateway::start(&config(&failing.to_string(), &healthy.url(), "")).await;
    let seen = statuses(&gw, 40).await;
    assert_eq!(
        seen.get(&503),
        Some(&20),
        "round robin, nothing opened: {seen:?}"
    );
}
