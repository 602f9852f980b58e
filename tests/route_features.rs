//! The optional per-route features end to end: the real gateway binary in
//! front of real upstream servers, one feature (or one pair that interact)
//! per test: rewrite, header rules, CORS, IP rules, per-route limits,
//! retry_on, the weighted split, consistent hashing and compression.

mod common;

use std::collections::HashMap;
use std::io::Read;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;

async fn get_json(url: &str, headers: &[(&str, &str)]) -> (u16, serde_json::Value) {
    let mut req = client().get(url);
    for &(k, v) in headers {
        req = req.insert_header((k, v));
    }
    let mut res = req.send().await.expect("request");
    (res.status().as_u16(), json_body(&mut res).await)
}

fn upstream_header(echo: &serde_json::Value, name: &str) -> Option<String> {
    echo["headers"][name][0].as_str().map(str::to_owned)
}

#[actix_rt::test]
async fn rewrite_and_header_rules_shape_the_exchange_and_gateway_errors() {
    let up = spawn_upstream("app");
    let gw = Gateway::start(&format!(
        r#"
upstreams:
  app: {{targets: ["{up}"]}}
routes:
  - name: api
    path_prefix: /api
    strip_prefix: /api
    upstream: app
    max_body_bytes: 64
    rewrite: {{pattern: "^/v1/(.*)$", replacement: "/internal/v1/../v2/$1"}}
    request_headers: {{set: {{X-Env: prod}}, remove: [X-Debug]}}
    response_headers: {{set: {{X-Frame-Options: DENY}}, remove: [X-Upstream]}}
  - name: plain
    path_prefix: /plain
    upstream: app
"#,
        up = up.url()
    ))
    .await;

    let (status, echo) = get_json(
        &gw.url("/api/v1/users/7?x=1"),
        &[("x-debug", "1"), ("x-env", "dev")],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        echo["path"], "/internal/v2/users/7",
        "rewritten after strip_prefix, then normalised again"
    );
    assert_eq!(echo["query"], "x=1", "the query is untouched");
    assert_eq!(upstream_header(&echo, "x-env").as_deref(), Some("prod"));
    assert_eq!(upstream_header(&echo, "x-debug"), None);

    // A path the pattern does not match goes upstream unchanged.
    let (_, echo) = get_json(&gw.url("/api/other"), &[]).await;
    assert_eq!(echo["path"], "/other");

    let res = client().get(gw.url("/api/v1/a")).send().await.unwrap();
    assert_eq!(hdr(&res, "x-frame-options"), "DENY");
    assert_eq!(
        hdr(&res, "x-upstream"),
        "",
        "removed from the upstream's answer"
    );

    // The route's own limit (64 bytes, not the server's) and its 413 carry
    // the response header rules too.
    let mut res = client()
        .post(gw.url("/api/v1/upload"))
        .send_body(Bytes::from(vec![b'x'; 100]))
        .await
        .unwrap();
    assert_eq!(res.status(), 413);
    assert_eq!(hdr(&res, "x-frame-options"), "DENY", "gateway errors too");
    assert_eq!(
        json_body(&mut res).await["error"]["code"],
        "payload_too_large"
    );
    let res = client()
        .post(gw.url("/plain/upload"))
        .send_body(Bytes::from(vec![b'x'; 100]))
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "other routes keep the server's limit");
    assert_eq!(
        hdr(&res, "x-frame-options"),
        "",
        "rules belong to their route"
    );
    assert_eq!(hdr(&res, "x-upstream"), "app");

    // A chunked body over the route's limit is cut with 413 as well.
    let chunks = futures_util::stream::iter(
        (0..4).map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![b'y'; 40]))),
    );
    let res = client()
        .post(gw.url("/api/v1/stream"))
        .send_stream(chunks)
        .await
        .unwrap();
    assert_eq!(res.status(), 413);
}

#[actix_rt::test]
async fn cors_preflights_are_answered_by_the_gateway_before_limits() {
    let up = spawn_upstream("app");
    let gw = Gateway::start(&format!(
        r#"
upstreams:
  app: {{targets: ["{up}"]}}
rate_limits:
  one: {{requests: 1, period_secs: 3600, burst: 0, key: ip}}
routes:
  - name: api
    path_prefix: /api
    methods: [GET, POST]
    upstream: app
    rate_limit: [one]
    cors:
      allow_origins: ["https://app.example.com"]
      allow_methods: [GET, POST]
      allow_headers: [Content-Type, Authorization]
      expose_headers: [X-Upstream]
      allow_credentials: true
      max_age_secs: 300
"#,
        up = up.url()
    ))
    .await;
    let preflight = |origin: &'static str, method: &'static str| {
        client()
            .request(awc::http::Method::OPTIONS, gw.url("/api/items"))
            .insert_header(("origin", origin))
            .insert_header(("access-control-request-method", method))
            .insert_header(("access-control-request-headers", "content-type"))
            .send()
    };
    for _ in 0..5 {
        let res = preflight("https://app.example.com", "POST").await.unwrap();
        assert_eq!(
            res.status(),
            204,
            "answered although OPTIONS is not a route method"
        );
        assert_eq!(
            hdr(&res, "access-control-allow-origin"),
            "https://app.example.com"
        );
        assert_eq!(hdr(&res, "access-control-allow-methods"), "GET, POST");
        assert_eq!(
            hdr(&res, "access-control-allow-headers"),
            "Content-Type, Authorization"
        );
        assert_eq!(hdr(&res, "access-control-allow-credentials"), "true");
        assert_eq!(hdr(&res, "access-control-max-age"), "300");
        assert!(hdr(&res, "vary").contains("Origin"));
    }
    let res = preflight("https://evil.example.com", "POST").await.unwrap();
    assert_eq!(res.status(), 204);
    assert_eq!(hdr(&res, "access-control-allow-origin"), "", "not allowed");
    let res = preflight("https://app.example.com", "DELETE")
        .await
        .unwrap();
    assert_eq!(
        hdr(&res, "access-control-allow-origin"),
        "",
        "method not allowed"
    );

    // None of the preflights used the one request the limit allows, and none
    // reached the upstream.
    let res = client()
        .get(gw.url("/api/items"))
        .insert_header(("origin", "https://app.example.com"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        hdr(&res, "access-control-allow-origin"),
        "https://app.example.com"
    );
    assert_eq!(hdr(&res, "access-control-expose-headers"), "X-Upstream");
    assert!(hdr(&res, "vary").contains("Origin"));
    let res = client()
        .get(gw.url("/api/items"))
        .insert_header(("origin", "https://app.example.com"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        429,
        "the limit is spent by the actual request"
    );
    assert_eq!(
        hdr(&res, "access-control-allow-origin"),
        "https://app.example.com",
        "a browser can read the gateway's error"
    );
    // Nine requests were logged; only the first actual one went upstream.
    let lines = || {
        gw.log_lines()
            .into_iter()
            .filter(|l| l["msg"] == "request")
            .collect::<Vec<_>>()
    };
    let all_logged = eventually(Duration::from_secs(5), || {
        let n = lines().len();
        async move { n == 9 }
    })
    .await;
    assert!(all_logged, "{:#?}", lines());
    let upstream_seen = lines().iter().filter(|l| l["upstream"] == "app").count();
    assert_eq!(upstream_seen, 1, "preflights never go upstream");
}

#[actix_rt::test]
async fn cors_gives_a_disallowed_origin_no_cors_headers() {
    let up = spawn_upstream("app");
    let gw = Gateway::start(&format!(
        r#"
upstreams:
  app: {{targets: ["{up}"]}}
routes:
  - name: api
    path_prefix: /
    upstream: app
    cors: {{allow_origins: ["https://app.example.com"]}}
"#,
        up = up.url()
    ))
    .await;
    let res = client()
        .get(gw.url("/x"))
        .insert_header(("origin", "https://evil.example.com"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "the request itself is served");
    assert_eq!(hdr(&res, "access-control-allow-origin"), "");
    assert_eq!(hdr(&res, "access-control-allow-credentials"), "");
    assert!(
        hdr(&res, "vary").contains("Origin"),
        "caches keep answers apart"
    );
}

#[actix_rt::test]
async fn ip_rules_use_the_client_address_behind_trusted_proxies() {
    let up = spawn_upstream("app");
    let gw = Gateway::start(&format!(
        r#"
server: {{trusted_proxies: ["127.0.0.1/32"]}}
upstreams:
  app: {{targets: ["{up}"]}}
routes:
  - name: office
    path_prefix: /office
    upstream: app
    allow_ips: ["10.0.0.0/8", "127.0.0.1"]
    deny_ips: ["10.9.0.0/16"]
  - name: open
    path_prefix: /open
    upstream: app
"#,
        up = up.url()
    ))
    .await;
    let status_from = |path: &'static str, xff: Option<&'static str>| {
        let mut req = client().get(gw.url(path));
        if let Some(xff) = xff {
            req = req.insert_header(("x-forwarded-for", xff));
        }
        async move {
            let mut res = req.send().await.unwrap();
            let status = res.status().as_u16();
            let body = res.body().await.unwrap();
            (status, String::from_utf8_lossy(&body).into_owned())
        }
    };
    assert_eq!(
        status_from("/office/a", None).await.0,
        200,
        "127.0.0.1 itself"
    );
    assert_eq!(status_from("/office/a", Some("10.2.3.4")).await.0, 200);
    let (status, body) = status_from("/office/a", Some("10.9.1.1")).await;
    assert_eq!(status, 403, "deny wins over allow");
    assert!(body.contains("\"ip_denied\""), "{body}");
    assert_eq!(status_from("/office/a", Some("8.8.8.8")).await.0, 403);
    assert_eq!(status_from("/open/a", Some("8.8.8.8")).await.0, 200);
    let metrics = gw.metrics().await;
    assert!(
        metrics.contains("gateway_route_ip_denied_total{route=\"office\"} 2"),
        "{}",
        metrics
            .lines()
            .filter(|l| l.contains("ip_denied"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[actix_rt::test]
async fn ip_rules_ignore_forwarding_headers_from_untrusted_peers() {
    let up = spawn_upstream("app");
    let gw = Gateway::start(&format!(
        r#"
upstreams:
  app: {{targets: ["{up}"]}}
routes:
  - name: office
    path_prefix: /
    upstream: app
    allow_ips: ["10.0.0.0/8"]
"#,
        up = up.url()
    ))
    .await;
    let res = client()
        .get(gw.url("/a"))
        .insert_header(("x-forwarded-for", "10.2.3.4"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        403,
        "a client cannot claim an allowed address"
    );
}

#[actix_rt::test]
async fn a_route_timeout_overrides_the_upstream_timeout() {
    let up = spawn_upstream("app");
    let gw = Gateway::start(&format!(
        r#"
upstreams:
  app: {{targets: ["{up}"], request_timeout_ms: 5000}}
routes:
  - name: quick
    path_prefix: /quick
    strip_prefix: /quick
    upstream: app
    timeout_ms: 300
  - name: patient
    path_prefix: /patient
    strip_prefix: /patient
    upstream: app
"#,
        up = up.url()
    ))
    .await;
    let started = Instant::now();
    let mut res = client()
        .get(gw.url("/quick/slow/2000"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 504);
    assert_eq!(
        json_body(&mut res).await["error"]["code"],
        "upstream_timeout"
    );
    assert!(started.elapsed() < Duration::from_millis(1900));
    let res = client()
        .get(gw.url("/patient/slow/800"))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        200,
        "the upstream's 5 s still holds elsewhere"
    );
}

#[actix_rt::test]
async fn retry_on_sends_idempotent_requests_to_another_target() {
    let failing = spawn_raw_upstream(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 4\r\nconnection: close\r\n\r\nbusy",
    );
    let up = spawn_upstream("healthy");
    let gw = Gateway::start(&format!(
        r#"
upstreams:
  pair: {{targets: ["http://{failing}", "{up}"], balance: round_robin, max_fails: 1000}}
routes:
  - name: retried
    path_prefix: /r
    upstream: pair
    retry_on: [502, 503]
  - name: plain
    path_prefix: /p
    upstream: pair
"#,
        up = up.url()
    ))
    .await;
    for _ in 0..10 {
        let res = client().get(gw.url("/r/x")).send().await.unwrap();
        assert_eq!(
            res.status(),
            200,
            "a 503 from one target is retried on the other"
        );
    }
    let mut plain = HashMap::new();
    for _ in 0..10 {
        let res = client().get(gw.url("/p/x")).send().await.unwrap();
        *plain.entry(res.status().as_u16()).or_insert(0) += 1;
    }
    assert!(
        plain.get(&503).is_some_and(|&n| n > 0),
        "without retry_on: {plain:?}"
    );
    let mut posts = HashMap::new();
    for _ in 0..10 {
        let res = client()
            .post(gw.url("/r/x"))
            .send_body("once")
            .await
            .unwrap();
        *posts.entry(res.status().as_u16()).or_insert(0) += 1;
    }
    assert!(
        posts.get(&503).is_some_and(|&n| n > 0),
        "POST is never retried: {posts:?}"
    );
    let metrics = gw.metrics().await;
    let retried: u64 = metrics
        .lines()
        .find(|l| {
            l.starts_with("gateway_upstream_retries_total") && l.contains("reason=\"status\"")
        })
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0);
    assert!((5..=10).contains(&retried), "retries counted: {retried}");
}

#[actix_rt::test]
async fn a_weighted_split_follows_its_weights_and_names_the_choice() {
    let stable = spawn_upstream("stable");
    let canary = spawn_upstream("canary");
    let gw = Gateway::start(&format!(
        r#"
upstreams:
  stable: {{targets: ["{stable}"]}}
  canary: {{targets: ["{canary}"]}}
routes:
  - name: split
    path_prefix: /
    upstreams: [{{upstream: canary, weight: 10}}, {{upstream: stable, weight: 90}}]
"#,
        stable = stable.url(),
        canary = canary.url()
    ))
    .await;
    let c = client();
    let total = 10_000;
    let mut to_canary = 0;
    for _ in 0..total {
        let res = c.get(gw.url("/w")).send().await.unwrap();
        assert_eq!(res.status(), 200);
        if hdr(&res, "x-upstream") == "canary" {
            to_canary += 1;
        }
    }
    let share = f64::from(to_canary) / f64::from(total);
    assert!(
        (0.08..=0.12).contains(&share),
        "canary share {share} (weight 10%, within 2 points)"
    );
    let logged = eventually(Duration::from_secs(5), || {
        let lines = gw.log_lines();
        async move {
            lines
                .iter()
                .filter(|l| l["msg"] == "request" && l["upstream"] == "canary")
                .count()
                == to_canary as usize
        }
    })
    .await;
    assert!(logged, "the access log names the chosen upstream");
}

#[actix_rt::test]
async fn consistent_hash_keeps_keys_on_targets_and_moves_a_quarter_for_a_fourth() {
    let targets: Vec<Upstream> = (1..=4).map(|i| spawn_upstream(&format!("t{i}"))).collect();
    let config = |n: usize| {
        let list: Vec<String> = targets[..n]
            .iter()
            .map(|t| format!("\"{}\"", t.url()))
            .collect();
        format!(
            r#"
upstreams:
  app: {{targets: [{}], balance: consistent_hash, hash_key: "header:X-Tenant"}}
routes:
  - {{name: app, path_prefix: /, upstream: app}}
"#,
            list.join(", ")
        )
    };
    let c = client();
    let placement = |gw: &Gateway, tenants: usize| {
        let base = gw.url("/h");
        let c = c.clone();
        async move {
            let mut out = Vec::with_capacity(tenants);
            for tenant in 0..tenants {
                let res = c
                    .get(&base)
                    .insert_header(("x-tenant", format!("tenant-{tenant}")))
                    .send()
                    .await
                    .unwrap();
                out.push(hdr(&res, "x-upstream"));
            }
            out
        }
    };
    let tenants = 600;
    let three = Gateway::start(&config(3)).await;
    let first = placement(&three, tenants).await;
    assert_eq!(
        first,
        placement(&three, tenants).await,
        "same key, same target"
    );
    for name in ["t1", "t2", "t3"] {
        let n = first.iter().filter(|t| *t == name).count();
        assert!((140..=260).contains(&n), "{name} holds {n} of {tenants}");
    }
    let four = Gateway::start(&config(4)).await;
    let second = placement(&four, tenants).await;
    let moved: Vec<_> = first.iter().zip(&second).filter(|(a, b)| a != b).collect();
    assert!(
        moved.iter().all(|(_, to)| *to == "t4"),
        "keys only move to the new target"
    );
    let share = moved.len() as f64 / tenants as f64;
    assert!(
        (0.17..=0.33).contains(&share),
        "{share} of keys moved (about 1/4)"
    );
}

fn gunzip(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(body)
        .read_to_end(&mut out)
        .expect("valid gzip");
    out
}

fn unbrotli(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    brotli::Decompressor::new(body, 4096)
        .read_to_end(&mut out)
        .expect("valid brotli");
    out
}

#[actix_rt::test]
async fn compress_streams_gzip_and_brotli_only_where_it_pays() {
    let up = spawn_upstream("app");
    let gw = Gateway::start(&format!(
        r#"
upstreams:
  app: {{targets: ["{up}"]}}
routes:
  - {{name: zipped, path_prefix: /z, strip_prefix: /z, upstream: app, compress: true}}
  - {{name: plain, path_prefix: /p, strip_prefix: /p, upstream: app}}
"#,
        up = up.url()
    ))
    .await;
    let fetch =
        |path: &str, accept: Option<&'static str>, extra: Option<(&'static str, &'static str)>| {
            let mut req = client().get(gw.url(path));
            if let Some(a) = accept {
                req = req.insert_header(("accept-encoding", a));
            }
            if let Some(h) = extra {
                req = req.insert_header(h);
            }
            async move {
                let mut res = req.send().await.unwrap();
                let body = res.body().limit(64 << 20).await.unwrap();
                (
                    res.status().as_u16(),
                    hdr(&res, "content-encoding"),
                    hdr(&res, "vary"),
                    body,
                )
            }
        };
    let size = 3 << 20;
    let original = text_body(size);
    let (status, encoding, vary, body) =
        fetch(&format!("/z/text/{size}"), Some("gzip"), None).await;
    assert_eq!((status, encoding.as_str()), (200, "gzip"));
    assert!(vary.to_ascii_lowercase().contains("accept-encoding"));
    assert!(body.len() < size / 10, "{} bytes for {size}", body.len());
    assert!(gunzip(&body) == original, "gzip round trip");
    let (_, encoding, _, body) =
        fetch(&format!("/z/text/{size}"), Some("gzip, deflate, br"), None).await;
    assert_eq!(encoding, "br", "br preferred at equal weight");
    assert!(unbrotli(&body) == original, "brotli round trip");

    // Not compressed: no Accept-Encoding, small bodies, incompressible
    // types, already-encoded bodies, ranges, routes without compress.
    let cases = [
        (format!("/z/text/{size}"), None, None),
        ("/z/text/500".to_owned(), Some("gzip"), None),
        (
            format!("/z/text/{size}?type=image%2Fpng"),
            Some("gzip"),
            None,
        ),
        ("/z/text/5000?encoded=1".to_owned(), Some("br"), None),
        (
            "/z/text/5000".to_owned(),
            Some("gzip"),
            Some(("range", "bytes=0-9")),
        ),
        (format!("/p/text/{size}"), Some("gzip"), None),
    ];
    for (path, accept, extra) in cases {
        let (_, encoding, _, _) = fetch(&path, accept, extra).await;
        let expected = if path.contains("encoded=1") {
            "gzip"
        } else {
            ""
        };
        assert_eq!(encoding, expected, "{path} {accept:?} {extra:?}");
    }
    let (status, _, _, body) =
        fetch("/z/text/5000", Some("gzip"), Some(("range", "bytes=0-9"))).await;
    assert_eq!((status, body.len()), (206, 10), "ranges pass untouched");
}

#[actix_rt::test]
async fn the_access_log_records_sizes_upstream_time_and_user_agent() {
    let up = spawn_upstream("app");
    let gw = Gateway::start(&format!(
        r#"
upstreams:
  app: {{targets: ["{up}"]}}
routes:
  - {{name: app, path_prefix: /, upstream: app}}
"#,
        up = up.url()
    ))
    .await;
    let agent = format!("curl/8.0 {}", "x".repeat(1000));
    let res = client()
        .post(gw.url("/bytes/5000"))
        .insert_header(("user-agent", agent.as_str()))
        .insert_header(("x-request-id", "log-fields-1"))
        .send_body(Bytes::from(vec![b'a'; 1234]))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let line = gw.access_log_for("log-fields-1").await;
    assert_eq!(line["bytes_in"], 1234);
    assert_eq!(line["bytes_out"], 5000);
    assert!(
        line["upstream_ms"].as_f64().is_some_and(|ms| ms >= 0.0),
        "{line}"
    );
    let logged_agent = line["user_agent"].as_str().unwrap_or_default();
    assert!(
        agent.starts_with(logged_agent) && logged_agent.len() == 256,
        "{line}"
    );
    assert_eq!(line["upstream"], "app");

    // A streamed (chunked) body is counted as it is sent; the line is
    // written when it ends.
    let mut res = client()
        .get(gw.url("/bytes/200000?chunked=1"))
        .insert_header(("x-request-id", "log-fields-2"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.body().limit(1 << 20).await.unwrap().len(), 200_000);
    let line = gw.access_log_for("log-fields-2").await;
    assert_eq!(
        (line["bytes_in"].as_u64(), line["bytes_out"].as_u64()),
        (Some(0), Some(200_000))
    );

    // A chunked upload's size is what the proxy read of it.
    let chunks = (0..7).map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![b'c'; 10_000])));
    let mut res = client()
        .post(gw.url("/echo"))
        .insert_header(("x-request-id", "log-fields-3"))
        .send_stream(futures_util::stream::iter(chunks))
        .await
        .unwrap();
    assert_eq!(json_body(&mut res).await["body_len"], 70_000);
    let line = gw.access_log_for("log-fields-3").await;
    assert_eq!(line["bytes_in"], 70_000, "{line}");
}

#[actix_rt::test]
async fn compression_streams_what_the_upstream_has_sent_while_it_waits() {
    use futures_util::StreamExt;
    use std::io::Write;

    let up = spawn_upstream("app");
    let gw = Gateway::start(&format!(
        r#"
upstreams:
  app: {{targets: ["{up}"]}}
routes:
  - {{name: zipped, path_prefix: /, upstream: app, compress: true}}
"#,
        up = up.url()
    ))
    .await;
    // The upstream sends half of the body, then waits until told to go on:
    // a gateway holding the body whole would send nothing before that.
    let size = 4 << 20;
    let original = text_body(size);
    let mut res = client()
        .get(gw.url(&format!("/text/{size}?hold=1")))
        .insert_header(("accept-encoding", "gzip"))
        .insert_header(("x-request-id", "held-1"))
        .send()
        .await
        .expect("response head");
    assert_eq!(hdr(&res, "content-encoding"), "gzip");
    let mut decoded = flate2::write::GzDecoder::new(Vec::new());
    let mut sent = 0;
    let started = Instant::now();
    while decoded.get_ref().len() < size / 2 {
        let chunk = actix_rt::time::timeout(Duration::from_secs(20), res.next())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "only {} of the {} bytes the upstream sent arrived, {:?} after the head",
                    decoded.get_ref().len(),
                    size / 2,
                    started.elapsed()
                )
            })
            .expect("body open")
            .expect("body chunk");
        sent += chunk.len();
        decoded.write_all(&chunk).expect("gzip so far");
        // The decoder holds up to 32 KiB of output until flushed.
        decoded.flush().expect("gzip so far");
    }
    assert!(original.starts_with(decoded.get_ref()));
    held_text().notify_one();
    while let Some(chunk) = res.next().await {
        let chunk = chunk.expect("body chunk");
        sent += chunk.len();
        decoded.write_all(&chunk).expect("gzip");
    }
    assert!(
        decoded.finish().expect("gzip end") == original,
        "gzip round trip"
    );
    // What was sent, compressed, once the body has ended.
    let line = gw.access_log_for("held-1").await;
    assert_eq!(line["bytes_out"].as_u64(), Some(sent as u64), "{line}");
}

#[actix_rt::test]
async fn request_header_rules_also_shape_websocket_handshakes() {
    use actix_http::ws::{Frame, Message};
    use futures_util::{SinkExt, StreamExt};

    let up = spawn_upstream("ws");
    let gw = Gateway::start(&format!(
        r#"
upstreams:
  app: {{targets: ["{up}"]}}
routes:
  - name: live
    path_prefix: /
    upstream: app
    request_headers: {{set: {{X-Tenant: blue}}, remove: [X-Debug]}}
"#,
        up = up.url()
    ))
    .await;
    let (res, mut conn) = client()
        .ws(gw.url("/ws").replace("http://", "ws://"))
        .header("x-debug", "1")
        .header("x-tenant", "red")
        .connect()
        .await
        .expect("websocket handshake through the gateway");
    assert_eq!(res.status(), 101);
    conn.send(Message::Text("whoami".into())).await.unwrap();
    let Some(Ok(Frame::Text(seen))) = conn.next().await else {
        panic!("no answer to whoami");
    };
    let seen: serde_json::Value = serde_json::from_slice(&seen).unwrap();
    assert_eq!(seen["headers"]["x-tenant"], "blue", "{seen}");
    assert!(seen["headers"].get("x-debug").is_none(), "{seen}");
}
