//! Rate limiting end to end: local policies in one gateway, cluster policies
//! shared by two gateway processes through a real redis-server that the test
//! starts, kills and restarts.

mod common;

use std::time::{Duration, Instant};

use common::*;

fn config(
    up: &Upstream,
    redis: Option<&RedisServer>,
    policies: &str,
    route_limits: &str,
) -> String {
    let redis = redis.map_or(String::new(), |r| {
        format!("redis: {{url: \"{}\", command_timeout_ms: 200}}\n", r.url())
    });
    format!(
        "{redis}upstreams: {{u: {{targets: [\"{}\"]}}}}\nrate_limits:\n{policies}\nroutes:\n  - {{name: r, path_prefix: /, upstream: u, rate_limit: {route_limits}}}\n",
        up.url()
    )
}

async fn status_of(
    c: &awc::Client,
    url: &str,
    headers: &[(&str, &str)],
) -> (
    u16,
    awc::ClientResponse<
        impl futures_util::Stream<Item = Result<bytes::Bytes, awc::error::PayloadError>>,
    >,
) {
    let mut req = c.get(url);
    for (k, v) in headers {
        req = req.insert_header((*k, *v));
    }
    let res = req.send().await.expect("response");
    (res.status().as_u16(), res)
}

#[actix_rt::test]
async fn local_policy_admits_the_budget_then_429_with_headers() {
    let up = spawn_upstream("u");
    let gw = Gateway::start(&config(
        &up,
        None,
        "  five: {requests: 5, period_secs: 60, burst: 0, key: ip}",
        "[five]",
    ))
    .await;
    let c = client();
    for i in 0..5 {
        // A spoofed X-Forwarded-For from an untrusted peer changes nothing.
        let spoof = format!("10.9.9.{i}");
        let (status, res) =
            status_of(&c, &gw.url("/x"), &[("x-forwarded-for", spoof.as_str())]).await;
        assert_eq!(status, 200, "request {i}");
        assert_eq!(hdr(&res, "ratelimit-limit"), "5");
        assert_eq!(hdr(&res, "ratelimit-remaining"), (4 - i).to_string());
        assert!(!hdr(&res, "ratelimit-reset").is_empty());
    }
    let (status, mut res) = status_of(&c, &gw.url("/x"), &[]).await;
    assert_eq!(status, 429);
    let retry: u64 = hdr(&res, "retry-after").parse().unwrap();
    assert!((1..=12).contains(&retry), "one request per 12 s: {retry}");
    assert_eq!(hdr(&res, "ratelimit-remaining"), "0");
    let body = json_body(&mut res).await;
    assert_eq!(body["error"]["code"], "rate_limited");
    assert_eq!(body["error"]["status"], 429);
    let metrics = gw.metrics().await;
    assert!(metrics
        .contains("gateway_ratelimit_decisions_total{outcome=\"limited\",policy=\"five\"} 1"));
    assert!(metrics
        .contains("gateway_ratelimit_decisions_total{outcome=\"allowed\",policy=\"five\"} 5"));
}

#[actix_rt::test]
async fn header_keys_are_isolated_and_missing_header_falls_back_to_ip() {
    let up = spawn_upstream("u");
    let gw = Gateway::start(&config(
        &up,
        None,
        "  per_key: {requests: 2, period_secs: 60, burst: 0, key: \"header:X-Api-Key\"}",
        "[per_key]",
    ))
    .await;
    let c = client();
    for _ in 0..2 {
        assert_eq!(
            status_of(&c, &gw.url("/x"), &[("x-api-key", "alice")])
                .await
                .0,
            200
        );
    }
    assert_eq!(
        status_of(&c, &gw.url("/x"), &[("x-api-key", "alice")])
            .await
            .0,
        429
    );
    assert_eq!(
        status_of(&c, &gw.url("/x"), &[("x-api-key", "bob")])
            .await
            .0,
        200
    );
    // No header: keyed by client IP, a budget of its own.
    assert_eq!(status_of(&c, &gw.url("/x"), &[]).await.0, 200);
    assert_eq!(status_of(&c, &gw.url("/x"), &[]).await.0, 200);
    assert_eq!(status_of(&c, &gw.url("/x"), &[]).await.0, 429);
}

/// Fires `n` requests at each gateway concurrently; counts 200s and 429s.
async fn hammer(urls: &[String], n: usize) -> (usize, usize, usize) {
    let mut tasks = Vec::new();
    for url in urls {
        for _ in 0..n {
            let url = url.clone();
            tasks.push(actix_rt::spawn(async move {
                client().get(url).send().await.map(|r| r.status().as_u16())
            }));
        }
    }
    let (mut ok, mut limited, mut other) = (0, 0, 0);
    for t in tasks {
        match t.await.unwrap() {
            Ok(200) => ok += 1,
            Ok(429) => limited += 1,
            _ => other += 1,
        }
    }
    (ok, limited, other)
}

#[actix_rt::test]
async fn two_gateways_share_one_budget_through_redis() {
    let up = spawn_upstream("u");
    let redis = RedisServer::start();
    let yaml = config(
        &up,
        Some(&redis),
        "  shared: {requests: 200, period_secs: 3600, burst: 0, key: global, scope: cluster}",
        "[shared]",
    );
    let a = Gateway::start(&yaml).await;
    let b = Gateway::start(&yaml).await;
    let (ok, limited, other) = hammer(&[a.url("/x"), b.url("/x")], 300).await;
    assert_eq!(other, 0, "no errors");
    assert_eq!(ok + limited, 600);
    // One request per 18 s replenishes: the budget is 200 within 2%.
    assert!((200..=204).contains(&ok), "admitted {ok} of a 200 budget");
    let metrics = a.metrics().await;
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().last())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    let trips = value("gateway_ratelimit_redis_roundtrips_total");
    let decisions = value("gateway_ratelimit_redis_decisions_total");
    eprintln!("gateway a: {decisions} redis decisions in {trips} round trips");
    assert!(decisions >= 300.0 && trips >= 1.0 && trips <= decisions);
}

async fn redis_outage(mode: &str) -> (u16, Vec<u16>, Duration) {
    let up = spawn_upstream("u");
    let mut redis = RedisServer::start();
    let gw = Gateway::start(&config(
        &up,
        Some(&redis),
        &format!(
            "  c: {{requests: 3, period_secs: 3600, burst: 0, key: ip, scope: cluster, on_store_error: {mode}}}"
        ),
        "[c]",
    ))
    .await;
    let c = client();
    let before = status_of(&c, &gw.url("/x"), &[]).await.0;
    redis.kill();
    let started = Instant::now();
    let mut during = Vec::new();
    for _ in 0..8 {
        during.push(status_of(&c, &gw.url("/x"), &[]).await.0);
    }
    let elapsed = started.elapsed();

    // Restarted (empty) Redis: cluster limiting resumes by itself.
    redis.restart();
    let resumed = eventually(Duration::from_secs(20), || {
        let req = c.get(gw.admin_url("/health")).send();
        async move {
            match req.await {
                Ok(mut r) => json_body(&mut r).await["redis"]["status"] == "ok",
                Err(_) => false,
            }
        }
    })
    .await;
    assert!(resumed, "breaker closes once Redis is back");
    let after: Vec<u16> = {
        let mut v = Vec::new();
        for _ in 0..4 {
            v.push(status_of(&c, &gw.url("/x"), &[]).await.0);
        }
        v
    };
    assert_eq!(
        after,
        vec![200, 200, 200, 429],
        "{mode}: limits resume in Redis"
    );
    let metrics = gw.metrics().await;
    assert!(
        metrics.contains("gateway_ratelimit_store_errors_total"),
        "{metrics}"
    );
    // Operators see both transitions in the log, once each.
    let logged = eventually(Duration::from_secs(3), || {
        let seen = gw.count_log_messages("redis circuit breaker closed") == 1;
        async move { seen }
    })
    .await;
    assert!(logged, "breaker closing logged: {}", gw.stdout_text());
    assert_eq!(gw.count_log_messages("redis circuit breaker opened"), 1);
    (before, during, elapsed)
}

#[actix_rt::test]
async fn redis_down_local_mode_falls_back_without_errors() {
    let (before, during, elapsed) = redis_outage("local").await;
    assert_eq!(before, 200);
    // The local fallback has its own budget of 3 for this client.
    assert_eq!(during, vec![200, 200, 200, 429, 429, 429, 429, 429]);
    assert!(elapsed < Duration::from_secs(4), "no hang: {elapsed:?}");
}

#[actix_rt::test]
async fn redis_down_allow_mode_admits() {
    let (_, during, elapsed) = redis_outage("allow").await;
    assert!(during.iter().all(|s| *s == 200), "{during:?}");
    assert!(elapsed < Duration::from_secs(4), "no hang: {elapsed:?}");
}

#[actix_rt::test]
async fn redis_down_deny_mode_answers_503() {
    let (_, during, elapsed) = redis_outage("deny").await;
    assert!(during.iter().all(|s| *s == 503), "{during:?}");
    assert!(elapsed < Duration::from_secs(4), "no hang: {elapsed:?}");
}

#[actix_rt::test]
async fn redis_cluster_shares_budgets_across_slots() {
    let up = spawn_upstream("u");
    let cluster = RedisCluster::start();
    let yaml = format!(
        "redis: {{url: \"{}\", cluster: true, command_timeout_ms: 500}}\nupstreams: {{u: {{targets: [\"{}\"]}}}}\nrate_limits:\n  per_key: {{requests: 20, period_secs: 3600, burst: 0, key: \"header:X-Tenant\", scope: cluster}}\nroutes:\n  - {{name: r, path_prefix: /, upstream: u, rate_limit: [per_key]}}\n",
        cluster.urls(),
        up.url()
    );
    let a = Gateway::start(&yaml).await;
    let b = Gateway::start(&yaml).await;
    // Several tenants: their keys hash to different slots (and nodes).
    for tenant in ["t1", "t2", "t3", "t4", "t5", "t6"] {
        let mut tasks = Vec::new();
        for gw in [&a, &b] {
            for _ in 0..15 {
                let req = client()
                    .get(gw.url("/x"))
                    .insert_header(("x-tenant", tenant));
                tasks.push(actix_rt::spawn(async move {
                    req.send().await.map(|r| r.status().as_u16())
                }));
            }
        }
        let mut ok = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(200) => ok += 1,
                Ok(429) => {}
                other => panic!("{tenant}: unexpected {other:?}"),
            }
        }
        assert_eq!(
            ok, 20,
            "{tenant}: 30 requests against a shared budget of 20"
        );
    }
    let keys: usize = cluster
        .nodes
        .iter()
        .map(|n| {
            n.cli(&["DBSIZE"])
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0)
        })
        .sum();
    assert_eq!(keys, 6, "one GCRA key per tenant across the cluster");
    let spread = cluster
        .nodes
        .iter()
        .filter(|n| n.cli(&["DBSIZE"]).is_some_and(|v| v.trim() != "0"))
        .count();
    assert!(spread >= 2, "keys land on several nodes");
}

#[actix_rt::test]
async fn cluster_limits_work_over_tls_to_redis() {
    let redis = RedisServer::start_tls();
    assert!(redis.url().starts_with("rediss://"));
    let up = spawn_upstream("u");
    let yaml = config(
        &up,
        Some(&redis),
        "  three: {requests: 3, period_secs: 60, burst: 0, key: global, scope: cluster, on_store_error: deny}",
        "[three]",
    );
    // The server's certificate is trusted through the system CA store's
    // SSL_CERT_FILE override: three admitted, the fourth refused, and the
    // state is in Redis.
    let ca = redis.tls_cert().display().to_string();
    let gw = Gateway::spawn_env(&yaml, &[], &[("SSL_CERT_FILE", ca.as_str())]);
    gw.wait_ready().await;
    let c = client();
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(status_of(&c, &gw.url("/x"), &[]).await.0);
    }
    assert_eq!(statuses, [200, 200, 200, 429]);
    let keys = redis.cli(&["KEYS", "gw:rl:*"]).expect("redis-cli over TLS");
    assert_eq!(keys.lines().count(), 1, "{keys}");

    // Without that trust every handshake fails: the policy's deny mode
    // answers 503, and after a few failures (failures of one moment count
    // once) the breaker opens and /health shows Redis degraded.
    let untrusting = Gateway::spawn_env(&yaml, &[], &[("SSL_CERT_FILE", "/nonexistent")]);
    untrusting.wait_ready().await;
    let mut health = serde_json::Value::Null;
    for _ in 0..20 {
        assert_eq!(status_of(&c, &untrusting.url("/x"), &[]).await.0, 503);
        let mut res = c.get(untrusting.admin_url("/health")).send().await.unwrap();
        health = json_body(&mut res).await;
        if health["redis"]["breaker_open"] == true {
            break;
        }
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(health["redis"]["breaker_open"], true, "{health}");
    assert_eq!(health["degraded"], true, "{health}");
}
