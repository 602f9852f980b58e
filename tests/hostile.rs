//! Hostile clients and faults, through the real binary: what the gateway
//! must cut, refuse or survive (slow request heads, targets that hang or
//! drop connections, ...).

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{
    api_route_config, client, eventually, spawn_hung_upstream, spawn_raw_upstream, spawn_upstream,
    Gateway, RawConnection,
};

/// Opens a connection, completes one request on it (so it is kept alive),
/// then starts the next request head and sends it one byte at a time.
fn kept_alive_then_slow(port: u16) -> RawConnection {
    let mut conn = RawConnection::open(port);
    conn.send(b"GET /api/first HTTP/1.1\r\nHost: gw\r\n\r\n");
    let first = conn.read_response();
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    conn.send(b"G");
    conn
}

/// Dribbles the rest of a request head, one byte per `every`, until the
/// gateway closes the connection or `within` passes; what it answered.
fn dribble(conn: &mut RawConnection, every: Duration, within: Duration) -> Option<String> {
    let head = b"ET /api/second HTTP/1.1\r\nHost: gw\r\nX-Slow: ";
    let started = Instant::now();
    let mut bytes = head.iter().copied().chain(std::iter::repeat(b'a'));
    while started.elapsed() < within {
        if let Some(answer) = conn.read_until_closed(every) {
            return Some(answer);
        }
        let byte = bytes.next().unwrap_or(b'a');
        if !conn.send(&[byte]) {
            return Some(String::new());
        }
    }
    None
}

/// Every request head on a kept-alive connection must arrive within
/// `client_request_timeout_ms`, not only the first one (NGINX's
/// client_header_timeout): one byte at a time used to hold it forever.
#[actix_rt::test]
async fn a_slow_request_head_on_a_kept_alive_connection_is_cut() {
    let up = spawn_upstream("main");
    let gw = Gateway::start(&api_route_config(
        &up,
        "client_request_timeout_ms: 1000\n  keep_alive_secs: 30",
    ))
    .await;
    let port = gw.port;
    let (answer, held) = actix_rt::task::spawn_blocking(move || {
        let mut conn = kept_alive_then_slow(port);
        let started = Instant::now();
        let answer = dribble(
            &mut conn,
            Duration::from_millis(100),
            Duration::from_secs(10),
        );
        (answer, started.elapsed())
    })
    .await
    .unwrap();
    // Bytes keep coming every 100 ms: only a deadline set at the head's
    // first byte (and not moved by the next ones) cuts the connection.
    let answer = answer.unwrap_or_else(|| panic!("connection still held after {held:?}"));
    assert!(held < Duration::from_secs(5), "held {held:?}");
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer}"
    );
}

/// The head and keep-alive timers are reused from request to request on a
/// connection (patches/README.md #8). A request whose head comes in parts
/// after the previous head's deadline has passed is still served (its
/// timer starts anew), and after several requests the keep-alive timeout
/// still closes an idle connection, on time.
#[actix_rt::test]
async fn kept_alive_connections_keep_their_timers_from_request_to_request() {
    let up = spawn_upstream("main");
    let gw = Gateway::start(&api_route_config(
        &up,
        "client_request_timeout_ms: 1000\n  keep_alive_secs: 3",
    ))
    .await;
    let port = gw.port;
    let (answers, closed) = actix_rt::task::spawn_blocking(move || {
        let mut conn = RawConnection::open(port);
        let mut answers = Vec::new();
        for _ in 0..3 {
            // In two parts, 100 ms apart: the head's timer must start anew
            // at its first byte, not keep the last head's deadline.
            conn.send(b"GET /api/again HTTP/1.1\r\n");
            std::thread::sleep(Duration::from_millis(100));
            conn.send(b"Host: gw\r\n\r\n");
            answers.push(conn.read_response());
            // Past the last head's deadline, within the keep-alive.
            std::thread::sleep(Duration::from_millis(1300));
        }
        let idle_from = Instant::now();
        let closed = conn.read_until_closed(Duration::from_secs(6));
        (answers, closed.map(|rest| (rest, idle_from.elapsed())))
    })
    .await
    .unwrap();
    for answer in &answers {
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
    let (rest, idle) = closed.expect("an idle kept-alive connection is closed");
    assert!(rest.is_empty(), "nothing sent before closing: {rest}");
    // Keep-alive 3 s from the last response (actix's clock may run up to
    // 500 ms behind), 1.3 s of which already passed: neither an earlier
    // request's deadline nor one moved away.
    assert!(
        idle > Duration::from_millis(900) && idle < Duration::from_secs(4),
        "closed after {idle:?} idle"
    );
}

/// Slow heads on many kept-alive connections cannot lock other clients out
/// once they are cut: with `max_connections` taken by them, a new client is
/// served as soon as the request timeout has passed.
#[actix_rt::test]
async fn slow_kept_alive_clients_cannot_lock_others_out() {
    let up = spawn_upstream("main");
    let gw = Gateway::start(&api_route_config(
        &up,
        "client_request_timeout_ms: 1000\n  keep_alive_secs: 30\n  max_connections: 20",
    ))
    .await;
    let port = gw.port;
    let kept_alive = Arc::new(AtomicUsize::new(0));
    let slow: Vec<_> = (0..40)
        .map(|_| {
            let kept_alive = kept_alive.clone();
            std::thread::spawn(move || {
                // Beyond max_connections a connection waits to be accepted.
                let mut conn = RawConnection::open(port);
                conn.send(b"GET /api/first HTTP/1.1\r\nHost: gw\r\n\r\n");
                let _ = conn.read_response();
                conn.send(b"G");
                kept_alive.fetch_add(1, Ordering::SeqCst);
                dribble(
                    &mut conn,
                    Duration::from_millis(100),
                    Duration::from_secs(15),
                )
            })
        })
        .collect();
    // The slow clients hold every connection slot before the normal one comes.
    let full = eventually(Duration::from_secs(5), || {
        let n = kept_alive.load(Ordering::SeqCst);
        async move { n >= 20 }
    })
    .await;
    assert!(full, "20 slow clients hold the 20 slots");
    let started = Instant::now();
    let res = client()
        .get(gw.url("/api/normal"))
        .timeout(Duration::from_secs(10))
        .send()
        .await;
    let waited = started.elapsed();
    assert!(
        res.is_ok_and(|r| r.status() == 200),
        "a normal client is served"
    );
    assert!(waited < Duration::from_secs(5), "it waited {waited:?}");
    for t in slow {
        let answer = t.join().unwrap();
        assert!(answer.is_some(), "every slow connection is cut");
    }
}

/// Two targets behind one route, `first` then `second`, round robin, one
/// worker (so requests alternate strictly), a failed target skipped after
/// two failures.
fn two_targets(first: &str, second: &str) -> String {
    format!(
        r#"
server: {{workers: 1}}
upstreams:
  pool:
    targets: ["{first}", "{second}"]
    request_timeout_ms: 300
    max_fails: 2
    fail_timeout_secs: 60
    retries: 1
routes:
  - {{name: api, path_prefix: /api, upstream: pool}}
"#
    )
}

async fn target_health(gw: &Gateway, url: &str) -> serde_json::Value {
    let health = gw.health().await;
    health["upstreams"]["pool"]["targets"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["url"] == url).cloned())
        .unwrap_or_else(|| panic!("no target {url} in {health}"))
}

/// A target that accepts connections and never answers costs each request
/// sent to it the whole `request_timeout_ms` (504): its timeouts count as
/// failures, so after `max_fails` of them it is out of rotation.
#[actix_rt::test]
async fn a_target_that_never_answers_is_taken_out_of_rotation() {
    let good = spawn_upstream("good");
    let hung = format!("http://{}", spawn_hung_upstream());
    let gw = Gateway::start(&two_targets(&good.url(), &hung)).await;
    let mut statuses = Vec::new();
    for i in 0..12 {
        let res = client().get(gw.url(&format!("/api/{i}"))).send().await;
        statuses.push(res.map_or(0, |r| r.status().as_u16()));
    }
    let timeouts = statuses.iter().filter(|&&s| s == 504).count();
    assert_eq!(
        timeouts, 2,
        "only max_fails requests wait for it: {statuses:?}"
    );
    assert!(
        statuses.iter().all(|&s| s == 200 || s == 504),
        "{statuses:?}"
    );
    let hung_health = target_health(&gw, &hung).await;
    assert_eq!(hung_health["healthy"], false, "{hung_health}");
}

/// A target that breaks the exchange after reading the request (it crashes
/// halfway through its answer): idempotent requests without a body go to
/// the other target instead of failing, the failures count for passive
/// health, and a request with a body is not sent twice.
#[actix_rt::test]
async fn idempotent_requests_survive_a_target_that_breaks_exchanges() {
    let dropper = format!(
        "http://{}",
        spawn_raw_upstream("HTTP/1.1 200 OK\r\nContent-Le")
    );
    let good = spawn_upstream("good");
    let gw = Gateway::start(&two_targets(&dropper, &good.url())).await;
    // The first request goes to the first target: a POST is not retried.
    let post = client()
        .post(gw.url("/api/order"))
        .send_body("one order")
        .await
        .unwrap();
    assert_eq!(post.status(), 502, "a body is never sent twice");
    let mut statuses = Vec::new();
    for i in 0..10 {
        let res = client().get(gw.url(&format!("/api/{i}"))).send().await;
        statuses.push(res.map_or(0, |r| r.status().as_u16()));
    }
    assert!(statuses.iter().all(|&s| s == 200), "{statuses:?}");
    let dropper_health = target_health(&gw, &dropper).await;
    assert_eq!(dropper_health["healthy"], false, "{dropper_health}");
    let metrics = gw.metrics().await;
    assert!(
        metrics.contains("gateway_upstream_errors_total{kind=\"send\""),
        "{metrics}"
    );
}

/// The gateway's TCP sockets in CLOSE-WAIT (the peer has closed, the
/// gateway not yet), from /proc.
fn close_wait_sockets(pid: u32) -> usize {
    let inodes: std::collections::HashSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| {
            dir.flatten()
                .filter_map(|fd| std::fs::read_link(fd.path()).ok())
                .filter_map(|link| {
                    let link = link.to_string_lossy().into_owned();
                    link.strip_prefix("socket:[")
                        .and_then(|rest| rest.strip_suffix(']'))
                        .map(str::to_owned)
                })
                .collect()
        })
        .unwrap_or_default();
    ["tcp", "tcp6"]
        .iter()
        .filter_map(|table| std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).ok())
        .flat_map(|text| text.lines().skip(1).map(str::to_owned).collect::<Vec<_>>())
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // st 08 = CLOSE_WAIT; the inode is the tenth field.
            fields.get(3) == Some(&"08") && fields.get(9).is_some_and(|i| inodes.contains(*i))
        })
        .count()
}

/// After a burst, an upstream closes the idle connections it kept (its own
/// keep-alive is shorter than the gateway's pool's): the gateway closes its
/// side too, within about a second, instead of holding them in CLOSE-WAIT
/// until traffic for that upstream comes back.
#[actix_rt::test]
async fn idle_upstream_connections_the_upstream_closed_are_reaped() {
    use actix_web::{web, App, HttpResponse, HttpServer};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = HttpServer::new(|| {
        App::new().default_service(web::to(|| async {
            actix_rt::time::sleep(Duration::from_millis(50)).await;
            HttpResponse::Ok().body("ok")
        }))
    })
    .keep_alive(Duration::from_secs(1))
    .workers(1)
    .disable_signals()
    .listen(listener)
    .unwrap()
    .run();
    let server_handle = server.handle();
    actix_rt::spawn(server);
    let gw = Gateway::start(&format!(
        "server: {{workers: 1}}\nupstreams: {{u: {{targets: [\"http://{addr}\"], pool_keep_alive_secs: 60}}}}\n\
         routes: [{{name: r, path_prefix: /, upstream: u}}]\n"
    ))
    .await;
    let burst: Vec<_> = (0..40)
        .map(|i| actix_rt::spawn(client().get(gw.url(&format!("/b{i}"))).send()))
        .collect();
    for request in burst {
        assert_eq!(request.await.unwrap().unwrap().status(), 200);
    }
    // The upstream closes its idle side after 1 s; the gateway must follow.
    actix_rt::time::sleep(Duration::from_millis(1200)).await;
    let pid = gw.pid();
    let reaped = eventually(Duration::from_secs(5), || {
        let left = close_wait_sockets(pid);
        async move { left == 0 }
    })
    .await;
    assert!(
        reaped,
        "{} sockets still in CLOSE-WAIT",
        close_wait_sockets(pid)
    );
    // The pool still works afterwards.
    let res = client().get(gw.url("/after")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    server_handle.stop(false).await;
}

/// A request head with bare LF line ends is refused (400, connection
/// closed), and a request pipelined behind it never reaches the upstream:
/// parsers that disagree on line ends are how one request becomes two.
#[actix_rt::test]
async fn bare_lf_request_heads_are_refused_and_nothing_behind_them_passes() {
    let up = spawn_upstream("main");
    let gw = Gateway::start(&api_route_config(&up, "")).await;
    let answer = common::raw_request(
        gw.port,
        "POST /api/first HTTP/1.1\nHost: gw\nContent-Length: 0\n\n\
         GET /api/smuggled HTTP/1.1\r\nHost: gw\r\n\r\n",
    );
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert_eq!(
        answer.matches("HTTP/1.1 ").count(),
        1,
        "one answer: {answer}"
    );
    let metrics = gw.metrics().await;
    assert!(
        !metrics.contains("gateway_requests_total{method="),
        "nothing was proxied: {metrics}"
    );
    // Mixed: a bare LF in one header line is refused too.
    let answer = common::raw_request(gw.port, "GET /api/x HTTP/1.1\r\nHost: gw\nX-A: 1\r\n\r\n");
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    // CR LF throughout still works.
    let answer = common::raw_request(gw.port, "GET /api/x HTTP/1.1\r\nHost: gw\r\n\r\n");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

/// Request smuggling: heads that two parsers could frame differently are
/// refused with one 4xx and the connection closed. A chunked body whose
/// framing breaks mid-way (its head was fine, so it is already streaming
/// upstream) ends the connection without an answer. Either way the
/// request hidden behind never reaches an upstream.
#[actix_rt::test]
async fn ambiguous_framing_never_lets_a_hidden_request_through() {
    let up = spawn_upstream("main");
    let gw = Gateway::start(&api_route_config(&up, "")).await;
    const HIDDEN: &str = "GET /api/smuggled HTTP/1.1\r\nHost: gw\r\n\r\n";
    let cases: &[(&str, String)] = &[
        (
            "CL then TE",
            format!(
                "POST /api/a HTTP/1.1\r\nHost: gw\r\nContent-Length: 5\r\n\
                 Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n{HIDDEN}"
            ),
        ),
        (
            "TE then CL",
            format!(
                "POST /api/a HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\
                 Content-Length: 48\r\n\r\n0\r\n\r\n{HIDDEN}"
            ),
        ),
        (
            "two different Content-Length",
            format!(
                "POST /api/a HTTP/1.1\r\nHost: gw\r\nContent-Length: 0\r\n\
                 Content-Length: 40\r\n\r\n{HIDDEN}"
            ),
        ),
        (
            "Content-Length list",
            format!("POST /api/a HTTP/1.1\r\nHost: gw\r\nContent-Length: 0, 40\r\n\r\n{HIDDEN}"),
        ),
        (
            "obs-fold",
            format!(
                "POST /api/a HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding:\r\n chunked\r\n\
                 Content-Length: 0\r\n\r\n0\r\n\r\n{HIDDEN}"
            ),
        ),
        (
            "space before colon",
            format!(
                "POST /api/a HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding : chunked\r\n\
                 Content-Length: 0\r\n\r\n0\r\n\r\n{HIDDEN}"
            ),
        ),
        (
            "invalid chunk size",
            format!(
                "POST /api/a HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n\
                 zz\r\nabc\r\n0\r\n\r\n{HIDDEN}"
            ),
        ),
        (
            "overflowing chunk size",
            format!(
                "POST /api/a HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n\
                 1000000000000000000000003\r\nabc\r\n0\r\n\r\n{HIDDEN}"
            ),
        ),
        (
            "unknown transfer coding",
            format!(
                "POST /api/a HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: xchunked\r\n\r\n\
                 0\r\n\r\n{HIDDEN}"
            ),
        ),
        (
            "NUL in a header value",
            format!("GET /api/a HTTP/1.1\r\nHost: gw\r\nX-A: a\0b\r\n\r\n{HIDDEN}"),
        ),
        (
            "control byte in a header value",
            format!("GET /api/a HTTP/1.1\r\nHost: gw\r\nX-A: a\x01b\r\n\r\n{HIDDEN}"),
        ),
    ];
    let mut failures = Vec::new();
    for (name, request) in cases {
        let mut conn = RawConnection::open(gw.port);
        conn.send(request.as_bytes());
        let Some(answers) = conn.read_until_closed(Duration::from_secs(3)) else {
            failures.push(format!("{name}: connection left open"));
            continue;
        };
        let statuses: Vec<&str> = answers
            .match_indices("HTTP/1.1 ")
            .map(|(i, _)| &answers[i + 9..i + 12])
            .collect();
        let refused = statuses.len() == 1 && statuses[0].starts_with('4');
        let body_cut = name.contains("chunk size") && statuses.is_empty();
        if !(refused || body_cut) {
            failures.push(format!("{name}: {statuses:?} {answers:?}"));
        }
    }
    // Every answer's access line is out before the check.
    actix_rt::time::sleep(Duration::from_millis(300)).await;
    let log = gw.stdout_text();
    assert!(
        !log.contains("/api/smuggled"),
        "a hidden request was proxied:\n{log}"
    );
    assert!(failures.is_empty(), "{failures:#?}");
}

/// Request targets and header blocks over their limits are answered by the
/// gateway (414, 431, the JSON error) and never reach the upstream.
#[actix_rt::test]
async fn oversized_targets_and_header_blocks_are_refused() {
    let up = spawn_upstream("main");
    let gw = Gateway::start(&api_route_config(
        &up,
        "max_uri_bytes: 100\n  max_header_bytes: 300",
    ))
    .await;
    let status_of = |path: String, header: String| {
        let req = client()
            .get(gw.url(&path))
            .insert_header(("x-filler", header));
        async move {
            let mut res = req.send().await.expect("answer");
            let body = common::json_body(&mut res).await;
            (res.status().as_u16(), body)
        }
    };
    let (status, body) = status_of(format!("/api/{}", "a".repeat(96)), "x".into()).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (414, Some("uri_too_long"))
    );
    let (status, body) = status_of("/api/x".into(), "x".repeat(300)).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (431, Some("headers_too_large"))
    );
    // Within both limits (the query counts towards the target).
    let (status, body) = status_of(format!("/api/{}?q=1", "a".repeat(80)), "x".repeat(200)).await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = status_of(format!("/api/x?{}", "q".repeat(100)), "x".into()).await;
    assert_eq!(status, 414);
    let metrics = gw.metrics().await;
    assert!(
        metrics.contains("gateway_requests_total{method=\"GET\",route=\"_none\",status=\"414\"} 2"),
        "{metrics}"
    );
    assert!(!metrics.contains("route=\"api\",status=\"414\""));
}

/// A target whose health endpoint fails is taken out of rotation by the
/// active checks, though its 503s alone never trip passive health (which
/// counts only connect failures, timeouts and broken exchanges).
#[actix_rt::test]
async fn active_health_checks_take_a_failing_target_out_of_rotation() {
    let good = spawn_upstream("good");
    let bad = spawn_raw_upstream(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\nConnection: close\r\n\r\ndown",
    );
    let bad_url = format!("http://{bad}");
    let gw = Gateway::start(&format!(
        r#"
upstreams:
  main:
    targets: ["{good}", "{bad_url}"]
    health_check: {{path: /healthz, interval_ms: 100, timeout_ms: 500, unhealthy_threshold: 2}}
routes:
  - {{name: api, path_prefix: /api, upstream: main}}
"#,
        good = good.url()
    ))
    .await;
    let out = eventually(Duration::from_secs(10), || async {
        let health = gw.health().await;
        health["upstreams"]["main"]["targets"]
            .as_array()
            .is_some_and(|ts| {
                ts.iter()
                    .any(|t| t["url"] == bad_url.as_str() && t["health_check"] == "failing")
            })
    })
    .await;
    assert!(out, "{}", gw.health().await);
    let health = gw.health().await;
    assert_eq!(
        health["upstreams"]["main"]["healthy_targets"], 1,
        "{health}"
    );
    for _ in 0..20 {
        let res = client().get(gw.url("/api/x")).send().await.unwrap();
        assert_eq!(res.status(), 200, "only the passing target gets traffic");
    }
    // The gauge follows within its one-second refresh; the log line within
    // a flush.
    let gauge =
        format!("gateway_upstream_target_healthy{{target=\"{bad_url}\",upstream=\"main\"}} 0");
    let seen = eventually(Duration::from_secs(5), || async {
        gw.metrics().await.contains(&gauge)
            && gw
                .stdout_text()
                .contains("upstream target failing health checks")
    })
    .await;
    assert!(seen, "{}\n{}", gw.metrics().await, gw.stdout_text());
}

/// Two thousand connections that never send a byte do not keep a normal
/// client from being served (one worker), while they are still held.
#[actix_rt::test]
async fn idle_connections_cannot_starve_a_normal_client() {
    let up = spawn_upstream("main");
    let gw = Gateway::start(&api_route_config(&up, "client_request_timeout_ms: 20000")).await;
    // As many as this process may open, up to 2,000 (a soft limit of
    // 1,024 file descriptors is common).
    let count = open_files_limit().saturating_sub(200).min(2000);
    assert!(
        count >= 500,
        "too few file descriptors for this test: {count}"
    );
    let mut idle: Vec<RawConnection> = (0..count).map(|_| RawConnection::open(gw.port)).collect();
    for _ in 0..5 {
        let res = client().get(gw.url("/api/x")).send().await.expect("served");
        assert_eq!(res.status(), 200);
    }
    // The idle connections were all open meanwhile (none cut or refused).
    let first = idle.first_mut().unwrap();
    assert!(first
        .read_until_closed(Duration::from_millis(200))
        .is_none());
    let last = idle.last_mut().unwrap();
    assert!(last.read_until_closed(Duration::from_millis(200)).is_none());
}

/// This process's soft limit of open files (`/proc/self/limits`).
fn open_files_limit() -> usize {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|limits| {
            limits
                .lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(1024)
}
