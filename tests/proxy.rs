//! End-to-end proxy behaviour: the real gateway binary between an awc client
//! and real upstream servers.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;

fn header_values(echo: &serde_json::Value, name: &str) -> Vec<String> {
    echo["headers"][name]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|v| v.as_str().unwrap_or("").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn basic_config(up: &Upstream, extra_server: &str) -> String {
    format!(
        r#"
server:
  workers: 2
  max_body_bytes: 1048576
  {extra_server}
upstreams:
  main:
    targets: ["{up}"]
    request_timeout_ms: 2000
routes:
  - name: api
    path_prefix: /api
    strip_prefix: /api
    upstream: main
  - name: readonly
    path_prefix: /ro
    methods: [GET, HEAD]
    upstream: main
  - name: hosted
    path_prefix: /api
    host: special.example.com
    upstream: main
    preserve_host: true
"#,
        up = up.url()
    )
}

#[actix_rt::test]
async fn forwards_method_path_query_and_body_untouched() {
    let up = spawn_upstream("main");
    let gw = Gateway::start(&basic_config(&up, "")).await;
    let body = Bytes::from((0..300_000u32).map(|i| (i % 7) as u8).collect::<Vec<u8>>());
    let mut res = client()
        .post(gw.url("/api/items/7?b=2&a=%20x&a=y"))
        .insert_header(("content-type", "application/octet-stream"))
        .send_body(body.clone())
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let echo = json_body(&mut res).await;
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["path"], "/items/7", "strip_prefix removes /api");
    assert_eq!(echo["query"], "b=2&a=%20x&a=y");
    assert_eq!(echo["body_len"], 300_000);
    assert_eq!(echo["body_fnv"], fnv(FNV_START, &body));
    assert_eq!(
        header_values(&echo, "content-type"),
        vec!["application/octet-stream"]
    );
}

/// A request head larger than the gateway's first 8 KiB read, a 300 KB
/// body and the next request, all in one write: the read buffer goes to the
/// decoder whenever it fills and grows only when a head needs more room
/// (patches/README.md #20), so both requests are answered, the body intact.
#[actix_rt::test]
async fn a_large_head_its_body_and_a_pipelined_request_in_one_write() {
    let up = spawn_upstream("main");
    let gw = Gateway::start(&basic_config(&up, "")).await;
    let port = gw.port;
    let filler = "f".repeat(20_000);
    let body: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let body_fnv = fnv(FNV_START, &body);
    let mut bytes = format!(
        "POST /api/big HTTP/1.1\r\nHost: gw\r\nX-Filler: {filler}\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    bytes.extend_from_slice(&body);
    bytes.extend_from_slice(b"GET /api/next HTTP/1.1\r\nHost: gw\r\n\r\n");
    let answers = actix_rt::task::spawn_blocking(move || {
        let mut conn = RawConnection::open(port);
        let mut writer = conn.stream().try_clone().expect("clone");
        let sender = std::thread::spawn(move || std::io::Write::write_all(&mut writer, &bytes));
        let answers = conn.read_responses(2);
        sender
            .join()
            .expect("sender")
            .expect("the gateway read the whole write");
        answers
    })
    .await
    .unwrap();
    assert_eq!(answers.len(), 2, "{answers:?}");
    let (status, first) = &answers[0];
    assert_eq!(*status, 200, "{}", String::from_utf8_lossy(first));
    let first: serde_json::Value = serde_json::from_slice(first).expect("echo JSON");
    assert_eq!(first["path"], "/big");
    assert_eq!(header_values(&first, "x-filler"), vec![filler]);
    assert_eq!(first["body_len"], 300_000);
    assert_eq!(first["body_fnv"], body_fnv);
    let (status, second) = &answers[1];
    assert_eq!(*status, 200, "{}", String::from_utf8_lossy(second));
    let second: serde_json::Value = serde_json::from_slice(second).expect("echo JSON");
    assert_eq!(second["path"], "/next");
}

/// A 20 MB response, written with its head in vectored writes straight
/// from the upstream's chunks (patches/README.md #21), reaches a client
/// that reads slowly intact, and the next response on the connection
/// (pipelined, below the size that is queued) comes after all of it.
#[actix_rt::test]
async fn a_large_response_to_a_slow_reader_is_intact_and_in_order() {
    let up = spawn_upstream("main");
    let gw = Gateway::start(&basic_config(&up, "")).await;
    let port = gw.port;
    let (large, small) = (20_000_000usize, 5_000usize);
    let answers = actix_rt::task::spawn_blocking(move || {
        let mut conn = RawConnection::open(port);
        conn.send(
            format!(
                "GET /api/bytes/{large} HTTP/1.1\r\nHost: gw\r\n\r\n\
                 GET /api/bytes/{small} HTTP/1.1\r\nHost: gw\r\n\r\n"
            )
            .as_bytes(),
        );
        // The gateway fills the socket buffers and must wait to write on.
        std::thread::sleep(Duration::from_millis(300));
        conn.read_responses(2)
    })
    .await
    .unwrap();
    assert_eq!(answers.len(), 2);
    // The upstream's pattern: byte i is (i mod 65,536) mod 251.
    let pattern = |n: usize| -> Vec<u8> { (0..n).map(|i| (i % 65_536 % 251) as u8).collect() };
    for ((status, body), n) in answers.iter().zip([large, small]) {
        assert_eq!(*status, 200);
        assert_eq!(body.len(), n);
        assert!(*body == pattern(n), "the {n}-byte body differs");
    }
}

#[actix_rt::test]
async fn request_id_is_kept_when_sane_and_minted_otherwise() {
    let up = spawn_upstream("main");
    let gw = Gateway::start(&basic_config(&up, "")).await;
    let c = client();

    let mut res = c
        .get(gw.url("/api/x"))
        .insert_header(("x-request-id", "client-id-123"))
        .send()
        .await
        .unwrap();
    assert_eq!(hdr(&res, "x-request-id"), "client-id-123");
    let echo = json_body(&mut res).await;
    assert_eq!(header_values(&echo, "x-request-id"), vec!["client-id-123"]);

    let mut res = c
        .get(gw.url("/api/x"))
        .insert_header(("x-request-id", "bad id with spaces"))
        .send()
        .await
        .unwrap();
    let minted = hdr(&res, "x-request-id");
    assert_ne!(minted, "bad id with spaces");
    assert_eq!(minted.len(), 36, "a UUID: {minted}");
    let echo = json_body(&mut res).await;
    assert_eq!(header_values(&echo, "x-request-id"), vec![minted.clone()]);

    // Gateway-made errors carry the id too.
    let mut res = c.get(gw.url("/nothing-here")).send().await.unwrap();
    let id = hdr(&res, "x-request-id");
    let err = json_body(&mut res).await;
    assert_eq!(err["error"]["request_id"], id);
}

#[actix_rt::test]
async fn forwarded_headers_ignore_untrusted_claims() {
    let up = spawn_upstream("main");
    let gw = Gateway::start(&basic_config(&up, "")).await;
    let mut res = client()
        .get(gw.url("/api/who"))
        .insert_header(("x-forwarded-for", "6.6.6.6"))
        .insert_header(("x-forwarded-proto", "https"))
        .insert_header(("x-forwarded-host", "evil.example"))
        .send()
        .await
        .unwrap();
    let id = hdr(&res, "x-request-id");
    let echo = json_body(&mut res).await;
    assert_eq!(header_values(&echo, "x-forwarded-for"), vec!["127.0.0.1"]);
    assert_eq!(header_values(&echo, "x-forwarded-proto"), vec!["http"]);
    assert_eq!(
        header_values(&echo, "x-forwarded-host"),
        vec![format!("127.0.0.1:{}", gw.port)]
    );
    // The upstream's own address is the Host unless preserve_host is set.
    assert_eq!(header_values(&echo, "host"), vec![up.addr.to_string()]);
    let line = gw.access_log_for(&id).await;
    assert_eq!(line["client_ip"], "127.0.0.1");
}

#[actix_rt::test]
async fn forwarded_headers_from_trusted_proxies_are_believed() {
    let up = spawn_upstream("main");
    let gw = Gateway::start(&basic_config(&up, "trusted_proxies: [\"127.0.0.0/8\"]")).await;
    let mut res = client()
        .get(gw.url("/api/who"))
        .insert_header(("x-forwarded-for", "203.0.113.9, 127.0.0.5"))
        .insert_header(("x-forwarded-proto", "https"))
        .send()
        .await
        .unwrap();
    let id = hdr(&res, "x-request-id");
    let echo = json_body(&mut res).await;
    assert_eq!(
        header_values(&echo, "x-forwarded-for"),
        vec!["203.0.113.9, 127.0.0.5, 127.0.0.1"]
    );
    assert_eq!(header_values(&echo, "x-forwarded-proto"), vec!["https"]);
    let line = gw.access_log_for(&id).await;
    assert_eq!(line["client_ip"], "203.0.113.9");
}

#[actix_rt::test]
async fn hop_by_hop_and_identity_headers_do_not_cross() {
    let up = spawn_upstream("main");
    let gw = Gateway::start(&basic_config(&up, "")).await;
    // awc writes its own Connection header, so this request goes out raw.
    let raw = raw_request(
        gw.port,
        "GET /api/echo HTTP/1.1\r\nHost: gw\r\nConnection: keep-alive, X-Client-Hop\r\n\
         X-Client-Hop: 1\r\nKeep-Alive: timeout=9\r\nTE: trailers\r\n\
         Proxy-Authorization: Basic Zm9vOmJhcg==\r\nX-Auth-Subject: admin\r\n\
         X-Auth-Roles: root\r\nX-End-To-End: kept\r\nContent-Length: 0\r\n\r\n",
    );
    let body = &raw[raw.find("\r\n\r\n").expect("a response") + 4..];
    let echo: serde_json::Value = serde_json::from_str(body.trim()).expect("echo JSON");
    let headers = echo["headers"].as_object().unwrap();
    for gone in [
        "x-client-hop",
        "keep-alive",
        "te",
        "proxy-authorization",
        "x-auth-subject",
        "x-auth-roles",
    ] {
        assert!(!headers.contains_key(gone), "{gone} reached the upstream");
    }
    assert_eq!(header_values(&echo, "x-end-to-end"), vec!["kept"]);

    let raw_up = spawn_raw_upstream(
        "HTTP/1.1 200 OK\r\nConnection: close, X-Upstream-Hop\r\nX-Upstream-Hop: secret\r\n\
         Keep-Alive: timeout=5\r\nX-End-To-End: yes\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\
         Content-Length: 3\r\n\r\nhop",
    );
    let gw2 = Gateway::start(&format!(
        "upstreams: {{raw: {{targets: [\"http://{raw_up}\"]}}}}\n\
         routes: [{{name: raw, path_prefix: /, upstream: raw}}]\n"
    ))
    .await;
    let mut res = client().get(gw2.url("/hop")).send().await.unwrap();
    assert_eq!(res.body().await.unwrap(), "hop");
    assert!(res.headers().get("x-upstream-hop").is_none());
    assert!(res.headers().get("keep-alive").is_none());
    assert_eq!(hdr(&res, "x-end-to-end"), "yes");
    let cookies: Vec<_> = res.headers().get_all("set-cookie").collect();
    assert_eq!(cookies.len(), 2, "every Set-Cookie passes");
}

#[actix_rt::test]
async fn errors_are_json_with_the_contract_statuses() {
    let up = spawn_upstream("main");
    let gw = Gateway::start(&basic_config(&up, "")).await;
    let c = client();

    let mut res = c.get(gw.url("/unknown")).send().await.unwrap();
    assert_eq!(res.status(), 404);
    assert_eq!(hdr(&res, "content-type"), "application/json");
    let body = json_body(&mut res).await;
    assert_eq!(body["error"]["status"], 404);
    assert_eq!(body["error"]["code"], "not_found");

    let mut res = c.delete(gw.url("/ro/x")).send().await.unwrap();
    assert_eq!(res.status(), 405);
    assert_eq!(hdr(&res, "allow"), "GET, HEAD");
    assert_eq!(json_body(&mut res).await["error"]["status"], 405);

    // Content-Length over the limit: refused before anything is read.
    let big = Bytes::from(vec![b'x'; 2 * 1024 * 1024]);
    let mut res = c.post(gw.url("/api/upload")).send_body(big).await.unwrap();
    assert_eq!(res.status(), 413);
    assert_eq!(
        json_body(&mut res).await["error"]["code"],
        "payload_too_large"
    );

    // Chunked body over the limit: cut off while streaming.
    let chunks = futures_util::stream::iter(
        (0..40).map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![b'y'; 64 * 1024]))),
    );
    let res = c.post(gw.url("/api/upload")).send_stream(chunks).await;
    match res {
        Ok(res) => assert_eq!(res.status(), 413),
        // The gateway may close the connection while the client still sends.
        Err(e) => eprintln!("connection closed during oversized upload: {e}"),
    }
}

#[actix_rt::test]
async fn host_routes_and_preserve_host() {
    let up = spawn_upstream("main");
    let gw = Gateway::start(&basic_config(&up, "")).await;
    let mut res = client()
        .get(gw.url("/api/h"))
        .insert_header(("host", "Special.Example.com:8443"))
        .send()
        .await
        .unwrap();
    let echo = json_body(&mut res).await;
    assert_eq!(
        echo["path"], "/api/h",
        "the hosted route has no strip_prefix"
    );
    assert_eq!(
        header_values(&echo, "host"),
        vec!["Special.Example.com:8443"]
    );
}

#[actix_rt::test]
async fn path_traversal_cannot_reach_another_route() {
    let public = spawn_upstream("public");
    let admin = spawn_upstream("admin");
    let gw = Gateway::start(&format!(
        r#"
upstreams:
  public: {{targets: ["{}"]}}
  admin: {{targets: ["{}"]}}
routes:
  - {{name: public, path_prefix: /public, upstream: public}}
  - {{name: admin, path_prefix: /admin, upstream: admin}}
"#,
        public.url(),
        admin.url()
    ))
    .await;
    let c = client();
    for (raw, want_upstream, want_path) in [
        ("/public/../admin/users", "admin", "/admin/users"),
        ("/public/%2e%2e/admin/users", "admin", "/admin/users"),
        ("/public/%2E%2E%2Fadmin/users", "admin", "/admin/users"),
        ("/public//./x/../file", "public", "/public/file"),
        ("/public/%61dmin", "public", "/public/admin"),
        ("/%61dmin/x", "admin", "/admin/x"),
    ] {
        let mut res = c.get(gw.url(raw)).send().await.unwrap();
        assert_eq!(res.status(), 200, "{raw}");
        let echo = json_body(&mut res).await;
        assert_eq!(echo["upstream"], want_upstream, "{raw}");
        assert_eq!(echo["path"], want_path, "{raw}");
    }
    let res = c.get(gw.url("/public/a%00b")).send().await.unwrap();
    assert_eq!(res.status(), 400);
    let res = c
        .get(gw.url("/public/..%5c..%5cadmin"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
}

#[actix_rt::test]
async fn round_robin_and_least_requests_spread_load() {
    let a = spawn_upstream("a");
    let b = spawn_upstream("b");
    let gw = Gateway::start(&format!(
        r#"
upstreams:
  rr: {{targets: ["{a}", "{b}"], balance: round_robin}}
  lr: {{targets: ["{a}", "{b}"], balance: least_requests}}
  rnd: {{targets: ["{a}", "{b}"], balance: random}}
routes:
  - {{name: rr, path_prefix: /rr, strip_prefix: /rr, upstream: rr}}
  - {{name: lr, path_prefix: /lr, strip_prefix: /lr, upstream: lr}}
  - {{name: rnd, path_prefix: /rnd, strip_prefix: /rnd, upstream: rnd}}
"#,
        a = a.url(),
        b = b.url()
    ))
    .await;
    let c = client();
    let mut counts = std::collections::HashMap::new();
    for _ in 0..10 {
        let res = c.get(gw.url("/rr/x")).send().await.unwrap();
        let who = hdr(&res, "x-upstream");
        *counts.entry(who).or_insert(0) += 1;
    }
    assert_eq!(counts.get("a"), Some(&5), "{counts:?}");
    assert_eq!(counts.get("b"), Some(&5), "{counts:?}");

    let mut seen = std::collections::HashSet::new();
    for _ in 0..40 {
        let res = c.get(gw.url("/rnd/x")).send().await.unwrap();
        seen.insert(hdr(&res, "x-upstream"));
    }
    assert_eq!(seen.len(), 2, "random uses both targets");

    // Hold one slow request on some target; the next quick ones go elsewhere.
    let slow = actix_rt::spawn({
        let url = gw.url("/lr/slow/1500");
        async move {
            client()
                .get(url)
                .send()
                .await
                .map(|r| hdr(&r, "x-upstream"))
        }
    });
    assert!(
        gw.wait_for_request_at("lr").await,
        "the slow request reaches a target"
    );
    let mut quick = std::collections::HashSet::new();
    for _ in 0..6 {
        let res = c.get(gw.url("/lr/x")).send().await.unwrap();
        quick.insert(hdr(&res, "x-upstream"));
    }
    let busy = slow.await.unwrap().unwrap();
    assert_eq!(quick.len(), 1, "all quick requests avoid the busy target");
    assert!(!quick.contains(&busy));
}

#[actix_rt::test]
async fn dead_target_is_retried_around_and_then_skipped() {
    let live = spawn_upstream("live");
    let dead_port = free_port();
    let gw = Gateway::start(&format!(
        r#"
upstreams:
  pool:
    targets: ["http://127.0.0.1:{dead_port}", "{live}"]
    retries: 1
    max_fails: 2
    fail_timeout_secs: 60
    connect_timeout_ms: 300
routes:
  - {{name: pool, path_prefix: /svc, strip_prefix: /svc, upstream: pool}}
"#,
        live = live.url()
    ))
    .await;
    let c = client();
    // Idempotent requests without a body are retried on the live target,
    // with the path (prefix stripped) and query of the first attempt.
    for _ in 0..6 {
        let mut res = c.get(gw.url("/svc/x/y?q=1&r=%20")).send().await.unwrap();
        assert_eq!(res.status(), 200);
        let echo = json_body(&mut res).await;
        assert_eq!(echo["path"], "/x/y", "{echo}");
        assert_eq!(echo["query"], "q=1&r=%20", "{echo}");
    }
    let mut health = c.get(gw.admin_url("/health")).send().await.unwrap();
    let health = json_body(&mut health).await;
    let targets = health["upstreams"]["pool"]["targets"].as_array().unwrap();
    assert_eq!(targets[0]["healthy"], false, "{health}");
    assert_eq!(targets[1]["healthy"], true);
    let metrics = gw.metrics().await;
    assert!(metrics.contains(&format!(
        "gateway_upstream_target_healthy{{target=\"http://127.0.0.1:{dead_port}\",upstream=\"pool\"}} 0"
    )));
    assert!(metrics.contains("kind=\"connect\""));
    // Once marked down, even POSTs (never retried) only reach the live target.
    for _ in 0..4 {
        let res = c.post(gw.url("/svc/x")).send_body("data").await.unwrap();
        assert_eq!(res.status(), 200);
    }
}

#[actix_rt::test]
async fn all_targets_down_is_502_then_503() {
    let gw = Gateway::start(&format!(
        r#"
upstreams:
  gone:
    targets: ["http://127.0.0.1:{}"]
    max_fails: 1
    fail_timeout_secs: 60
routes:
  - {{name: gone, path_prefix: /, upstream: gone}}
"#,
        free_port()
    ))
    .await;
    let c = client();
    let mut res = c.get(gw.url("/x")).send().await.unwrap();
    assert_eq!(res.status(), 502);
    assert_eq!(
        json_body(&mut res).await["error"]["code"],
        "upstream_unreachable"
    );
    let mut res = c.get(gw.url("/x")).send().await.unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(
        json_body(&mut res).await["error"]["code"],
        "no_healthy_upstream"
    );
}

#[actix_rt::test]
async fn slow_upstream_is_504() {
    let up = spawn_upstream("slow");
    let gw = Gateway::start(&format!(
        r#"
upstreams:
  slow: {{targets: ["{}"], request_timeout_ms: 300}}
routes:
  - {{name: slow, path_prefix: /, upstream: slow}}
"#,
        up.url()
    ))
    .await;
    let started = std::time::Instant::now();
    let mut res = client().get(gw.url("/slow/3000")).send().await.unwrap();
    assert_eq!(res.status(), 504);
    assert_eq!(
        json_body(&mut res).await["error"]["code"],
        "upstream_timeout"
    );
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "did not wait for the upstream"
    );
    assert!(gw.metrics().await.contains("kind=\"timeout\""));

    // The timeout covers the whole exchange: a body that stalls after the
    // head is cut off at the same deadline.
    let started = std::time::Instant::now();
    let mut res = client().get(gw.url("/dribble/5000")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let body = res.body().await;
    // The connection is closed mid-body (no final chunk); awc may report
    // that as an error or as a short body.
    assert!(
        !matches!(&body, Ok(b) if b.as_ref() == b"part;part;"),
        "the stalled body must not complete: {body:?}"
    );
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "body cut at the deadline"
    );
}

#[actix_rt::test]
async fn head_keeps_content_length_and_redirects_pass_through() {
    let up = spawn_upstream("main");
    let gw = Gateway::start(&basic_config(&up, "")).await;
    let c = client();
    let res = c.head(gw.url("/api/bytes/12345")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(hdr(&res, "content-length"), "12345");
    let res = c.get(gw.url("/api/status/302")).send().await.unwrap();
    assert_eq!(res.status(), 302, "the gateway never follows redirects");
    let res = c.get(gw.url("/api/status/204")).send().await.unwrap();
    assert_eq!(res.status(), 204);
}

#[actix_rt::test]
async fn access_log_and_metrics_describe_requests_without_secrets() {
    let up = spawn_upstream("main");
    let gw = Gateway::start(&basic_config(&up, "")).await;
    let c = client();
    let res = c
        .get(gw.url("/api/secret?token=qs-secret-value"))
        .insert_header(("authorization", "Bearer auth-secret-value"))
        .insert_header(("cookie", "gateway_session=cookie-secret-value"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let id = hdr(&res, "x-request-id");
    let line = gw.access_log_for(&id).await;
    for field in [
        "ts",
        "level",
        "msg",
        "method",
        "path",
        "status",
        "duration_ms",
        "route",
        "upstream",
        "client_ip",
    ] {
        assert!(!line[field].is_null(), "{field} missing in {line}");
    }
    assert_eq!(line["method"], "GET");
    assert_eq!(line["path"], "/api/secret");
    assert_eq!(line["status"], 200);
    assert_eq!(line["route"], "api");
    assert_eq!(line["upstream"], "main");
    let all_logs = gw.stdout_text();
    for secret in [
        "auth-secret-value",
        "cookie-secret-value",
        "qs-secret-value",
    ] {
        assert!(!all_logs.contains(secret), "{secret} leaked into the log");
    }

    // Unmatched raw paths never become label values.
    c.get(gw.url("/random-path-123456")).send().await.unwrap();
    let metrics = gw.metrics().await;
    assert!(
        metrics.contains("gateway_requests_total{method=\"GET\",route=\"api\",status=\"200\"} 1")
    );
    assert!(metrics.contains("gateway_request_duration_seconds_bucket{route=\"api\""));
    assert!(metrics.contains("gateway_upstream_duration_seconds_count{target="));
    assert!(metrics.contains("gateway_in_flight_requests"));
    assert!(metrics.contains("route=\"_none\",status=\"404\""));
    assert!(!metrics.contains("random-path-123456"));
}

#[actix_rt::test]
async fn websocket_upgrades_are_proxied_both_ways() {
    use actix_http::ws::{Frame, Message};
    use futures_util::{SinkExt, StreamExt};

    let up = spawn_upstream("ws");
    let gw = Gateway::start(&basic_config(&up, "")).await;
    let (res, mut conn) = client()
        .ws(gw.url("/api/ws?room=1").replace("http://", "ws://"))
        .protocols(["chat"])
        .header("x-auth-subject", "spoofed")
        .connect()
        .await
        .expect("websocket handshake through the gateway");
    assert_eq!(res.status(), 101);
    assert_eq!(hdr(&res, "sec-websocket-protocol"), "chat");
    assert!(!hdr(&res, "x-request-id").is_empty());

    conn.send(Message::Text("whoami".into())).await.unwrap();
    let Some(Ok(Frame::Text(seen))) = conn.next().await else {
        panic!("no answer to whoami");
    };
    let seen: serde_json::Value = serde_json::from_slice(&seen).unwrap();
    assert_eq!(seen["path"], "/ws?room=1");
    assert_eq!(seen["headers"]["x-forwarded-for"], "127.0.0.1");
    assert!(seen["headers"].get("x-auth-subject").is_none());

    for i in 0..50 {
        conn.send(Message::Text(format!("m{i}").into()))
            .await
            .unwrap();
        let Some(Ok(Frame::Text(echo))) = conn.next().await else {
            panic!("no echo for m{i}");
        };
        assert_eq!(echo, format!("echo:m{i}"));
    }
    // Under the 64 KiB frame limit of both WebSocket ends (not of the tunnel).
    let blob = Bytes::from(vec![42u8; 60_000]);
    conn.send(Message::Binary(blob.clone())).await.unwrap();
    let Some(Ok(Frame::Binary(back))) = conn.next().await else {
        panic!("no binary echo");
    };
    assert_eq!(back, blob);
    conn.send(Message::Close(None)).await.unwrap();
    assert!(matches!(
        conn.next().await,
        Some(Ok(Frame::Close(_))) | None
    ));
}

#[actix_rt::test]
async fn a_refused_websocket_upgrade_keeps_the_upstream_status() {
    let up = spawn_upstream("ws");
    let gw = Gateway::start(&basic_config(&up, "")).await;
    let ws_url = |path: &str| gw.url(path).replace("http://", "ws://");
    for (path, status) in [("/api/status/403", 403), ("/api/status/503", 503)] {
        let err = client()
            .ws(ws_url(path))
            .connect()
            .await
            .err()
            .expect("no tunnel when the upstream refuses");
        assert!(
            matches!(err, awc::error::WsClientError::InvalidResponseStatus(s) if s == status),
            "{path}: {err:?}"
        );
    }
    // A refusal is the upstream's answer, not its failure: no upstream
    // error is counted, and passive health counts it as a response.
    let metrics = gw.metrics().await;
    assert!(
        !metrics.contains("gateway_upstream_errors_total{"),
        "{metrics}"
    );
    // An upstream that answers 200 without switching protocols is broken.
    let err = client().ws(ws_url("/api/bytes/10")).connect().await.err();
    assert!(
        matches!(err, Some(awc::error::WsClientError::InvalidResponseStatus(s)) if s == 502),
        "{err:?}"
    );
    let metrics = gw.metrics().await;
    assert!(
        metrics.contains("gateway_upstream_errors_total{kind=\"send\""),
        "{metrics}"
    );
    // The client gets the contract's JSON error with the upstream's status.
    let answer = raw_request(
        gw.port,
        "GET /api/status/403 HTTP/1.1\r\nHost: gw\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n",
    );
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert!(answer.contains(r#""code":"upgrade_refused""#), "{answer}");
}

#[actix_rt::test]
async fn a_websocket_upgrade_without_a_key_is_refused_before_any_upstream() {
    let up = spawn_upstream("ws");
    let gw = Gateway::start(&basic_config(&up, "")).await;
    let answer = raw_request(
        gw.port,
        "GET /api/ws HTTP/1.1\r\nHost: gw\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n",
    );
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains(r#""code":"bad_request""#), "{answer}");
    // The client's mistake: no upstream was asked, none is blamed.
    let metrics = gw.metrics().await;
    assert!(
        !metrics.contains("gateway_upstream_errors_total{"),
        "{metrics}"
    );
}

#[actix_rt::test]
async fn slow_clients_are_cut_off() {
    use std::io::{Read, Write};
    let up = spawn_upstream("main");
    let gw = Gateway::start(&basic_config(&up, "client_request_timeout_ms: 300")).await;
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", gw.port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    // Half a request head, then silence.
    stream
        .write_all(b"GET /api/x HTTP/1.1\r\nHost: gw\r\n")
        .unwrap();
    let started = std::time::Instant::now();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let waited = started.elapsed();
    assert!(
        waited < Duration::from_secs(3),
        "connection held for {waited:?}"
    );
    let text = String::from_utf8_lossy(&answer);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408"),
        "{text}"
    );
}

/// An HTTPS upstream (for `localhost`, offering h2 and http/1.1) and its
/// CA certificate in a PEM file (kept while the directory lives).
fn tls_upstream_and_ca_file(name: &str) -> (Upstream, tempfile::TempDir, std::path::PathBuf) {
    let (up, ca_pem) = spawn_tls_upstream(name);
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, ca_pem).unwrap();
    (up, dir, ca)
}

#[actix_rt::test]
async fn http2_upstreams_get_http2_and_websockets_still_work() {
    use actix_http::ws::{Frame, Message};
    use futures_util::{SinkExt, StreamExt};

    let (up, _dir, ca) = tls_upstream_and_ca_file("h2");
    let port = up.addr.port();
    let gw = Gateway::start(&format!(
        r#"
upstreams:
  h2: {{targets: ["https://localhost:{port}"], tls_ca_file: "{ca}", http2: true}}
  h1: {{targets: ["https://localhost:{port}"], tls_ca_file: "{ca}"}}
routes:
  - {{name: h2, path_prefix: /h2, strip_prefix: /h2, upstream: h2}}
  - {{name: h1, path_prefix: /h1, strip_prefix: /h1, upstream: h1}}
"#,
        ca = ca.display()
    ))
    .await;

    // The upstream (which offers h2 and http/1.1) is spoken to in HTTP/2;
    // the client's HTTP/1.1 exchange and the proxy headers are unchanged.
    let mut res = client()
        .get(gw.url("/h2/hello?x=1"))
        .insert_header(("te", "gzip"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(hdr(&res, "x-upstream"), "h2");
    let echo = json_body(&mut res).await;
    assert_eq!(echo["version"], "HTTP/2.0", "{echo}");
    assert_eq!(echo["path"], "/hello");
    assert_eq!(echo["query"], "x=1");
    assert_eq!(echo["headers"]["x-forwarded-for"][0], "127.0.0.1");
    assert!(echo["headers"].get("te").is_none(), "{echo}");

    // A streamed request body of 3 MB arrives whole.
    let body = Bytes::from(
        (0..3_000_000u32)
            .map(|i| (i % 251) as u8)
            .collect::<Vec<u8>>(),
    );
    let mut res = client()
        .post(gw.url("/h2/upload"))
        .send_body(body.clone())
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let echo = json_body(&mut res).await;
    assert_eq!(echo["version"], "HTTP/2.0");
    assert_eq!(echo["body_len"], 3_000_000);
    assert_eq!(echo["body_fnv"], fnv(FNV_START, &body));

    // Without http2 the same upstream is spoken to in HTTP/1.1.
    let mut res = client().get(gw.url("/h1/hello")).send().await.unwrap();
    assert_eq!(json_body(&mut res).await["version"], "HTTP/1.1");

    // WebSocket upgrades to an http2 upstream go over HTTP/1.1.
    let (res, mut conn) = client()
        .ws(gw.url("/h2/ws").replace("http://", "ws://"))
        .connect()
        .await
        .expect("websocket handshake through the gateway");
    assert_eq!(res.status(), 101);
    conn.send(Message::Text("ping".into())).await.unwrap();
    let Some(Ok(Frame::Text(echo))) = conn.next().await else {
        panic!("no echo over the tunnel");
    };
    assert_eq!(echo, "echo:ping");
}

#[actix_rt::test]
async fn https_upstreams_are_verified_against_the_configured_ca() {
    let (up, _dir, ca) = tls_upstream_and_ca_file("secure");
    let port = up.addr.port();
    let gw = Gateway::start(&format!(
        r#"
upstreams:
  trusted: {{targets: ["https://localhost:{port}"], tls_ca_file: "{ca}"}}
  untrusted: {{targets: ["https://localhost:{port}"], retries: 0}}
routes:
  - {{name: trusted, path_prefix: /t, strip_prefix: /t, upstream: trusted}}
  - {{name: untrusted, path_prefix: /u, strip_prefix: /u, upstream: untrusted}}
"#,
        ca = ca.display()
    ))
    .await;
    let mut res = client().get(gw.url("/t/hello")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(json_body(&mut res).await["path"], "/hello");
    // A certificate no trusted CA signed is refused: 502, never proxied.
    let res = client().get(gw.url("/u/hello")).send().await.unwrap();
    assert_eq!(res.status(), 502);
}

/// awc writes a `Date` on every upstream request; since actix-http patch #6
/// it comes from one clock per worker thread instead of a new one per
/// request, so it must stay current from request to request.
#[actix_rt::test]
async fn upstream_requests_carry_a_current_date() {
    let up = spawn_upstream("main");
    let gw = Gateway::start(&basic_config(&up, "")).await;
    let c = client();
    for round in 0..3 {
        if round > 0 {
            actix_rt::time::sleep(Duration::from_millis(1200)).await;
        }
        let mut res = c.get(gw.url("/api/date")).send().await.unwrap();
        let echo = json_body(&mut res).await;
        let dates = header_values(&echo, "date");
        assert_eq!(dates.len(), 1, "one Date per upstream request: {dates:?}");
        let sent = httpdate::parse_http_date(&dates[0]).expect("an HTTP date");
        let now = std::time::SystemTime::now();
        let age = now.duration_since(sent).unwrap_or_default();
        let ahead = sent.duration_since(now).unwrap_or_default();
        assert!(
            age < Duration::from_secs(2) && ahead < Duration::from_secs(1),
            "round {round}: Date {} is not current",
            dates[0]
        );
    }
}

/// The per-thread client configuration of patch #6 outlives the runtime it
/// was made on: a later runtime on the same thread (a restarted `System`,
/// one test after another) must not send the first runtime's frozen date.
#[test]
fn a_later_runtime_on_the_same_thread_sends_a_current_date() {
    let up = spawn_upstream("main");
    let sent_date = || {
        actix_rt::System::new().block_on(async {
            let mut res = client().get(up.url() + "/date").send().await.unwrap();
            let echo = json_body(&mut res).await;
            let dates = header_values(&echo, "date");
            httpdate::parse_http_date(&dates[0]).expect("an HTTP date")
        })
    };
    let first = sent_date();
    std::thread::sleep(Duration::from_millis(2100));
    let second = sent_date();
    let moved = second.duration_since(first).unwrap_or_default();
    assert!(
        moved >= Duration::from_secs(2),
        "the second runtime sent a date {moved:?} after the first, 2.1 s later"
    );
}

/// `pool_max_connections` bounds the connections one worker opens to an
/// upstream: past it, requests wait for a free connection instead of
/// failing, and are all answered (awc's pool permits, patch #11's fast
/// path for a free one).
#[actix_rt::test]
async fn requests_past_the_pool_limit_wait_for_a_free_connection() {
    const LIMIT: usize = 2;
    const REQUESTS: usize = 6;
    const UPSTREAM_MS: u64 = 300;
    let up = spawn_upstream("main");
    let gw = Gateway::start(&format!(
        r#"
server: {{workers: 1}}
upstreams:
  main: {{targets: ["{up}"], pool_max_connections: {LIMIT}, request_timeout_ms: 10000}}
routes:
  - {{name: api, path_prefix: /api, strip_prefix: /api, upstream: main}}
"#,
        up = up.url()
    ))
    .await;
    let started = std::time::Instant::now();
    let answers = futures_util::future::join_all((0..REQUESTS).map(|_| async {
        client()
            .get(gw.url(&format!("/api/slow/{UPSTREAM_MS}")))
            .timeout(Duration::from_secs(20))
            .send()
            .await
            .map(|res| res.status().as_u16())
    }))
    .await;
    let elapsed = started.elapsed();
    for answer in &answers {
        assert_eq!(answer.as_ref().ok(), Some(&200), "{answers:?}");
    }
    // Two at a time, 300 ms each: three rounds at least. Without the limit
    // all six would overlap and take about 300 ms.
    let rounds = REQUESTS.div_ceil(LIMIT) as u64;
    assert!(
        elapsed >= Duration::from_millis(UPSTREAM_MS * rounds - 50),
        "{REQUESTS} requests through a pool of {LIMIT} took {elapsed:?}"
    );
}
