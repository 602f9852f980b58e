//! Startup and shutdown as an operator sees them: bad configurations are
//! refused with messages naming file and key; SIGTERM drains in-flight
//! requests, readiness turns 503 at once, and the process exits 0.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

fn check(files: &[(&str, &str)]) -> (bool, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(GATEWAY_BIN);
    cmd.arg("check").current_dir(dir.path());
    for (name, body) in files {
        std::fs::write(dir.path().join(name), body).unwrap();
        cmd.arg("--config").arg(name);
    }
    let out = cmd.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_accepts_a_good_configuration() {
    let (ok, stdout, stderr) = check(&[(
        "good.yaml",
        "upstreams: {u: {targets: [\"http://127.0.0.1:9\"]}}\nroutes: [{name: r, path_prefix: /, upstream: u}]\n",
    )]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("configuration OK: 1 route(s), 1 upstream(s)"),
        "{stdout}"
    );
}

#[test]
fn check_names_file_and_key_for_each_problem() {
    let (ok, _, stderr) = check(&[
        ("base.yaml", "server: {workers: 2}\n"),
        (
            "bad.yaml",
            "server: {wrokers: 2}\nupstreams: {u: {targets: [\"http://127.0.0.1:9\"]}}\n",
        ),
    ]);
    assert!(!ok);
    assert!(
        stderr.contains(
            "bad.yaml: server.wrokers: unknown key 'wrokers' (expected one of: listen, workers,"
        ),
        "{stderr}"
    );

    let (ok, _, stderr) = check(&[(
        "routes.yaml",
        "routes: [{name: r, path_prefix: /, upstream: ghost}]\n",
    )]);
    assert!(!ok);
    assert!(
        stderr.contains(
            "routes.yaml: routes[0].upstream: upstream \"ghost\" is not defined in upstreams"
        ),
        "{stderr}"
    );

    let (ok, _, stderr) = check(&[("broken.yaml", "server:\n  listen: [oops\n")]);
    assert!(!ok);
    assert!(stderr.starts_with("broken.yaml: -:"), "{stderr}");

    let (ok, _, stderr) = check(&[(
        "dur.toml",
        "[upstreams.u]\ntargets = [\"http://h:1\"]\nrequest_timeout_ms = \"soon\"\n",
    )]);
    assert!(!ok);
    assert!(
        stderr.contains("dur.toml: upstreams.u.request_timeout_ms:"),
        "{stderr}"
    );
}

#[actix_rt::test]
async fn run_refuses_a_bad_configuration_and_binds_nothing() {
    let mut gw = Gateway::spawn(
        "routes: [{name: r, path_prefix: /, upstream: ghost}]\n",
        &[],
    );
    let status = gw
        .wait_exit(Duration::from_secs(10))
        .expect("a bad configuration exits at once");
    assert_eq!(status.code(), Some(2));
    assert!(
        gw.stderr().contains("routes[0].upstream"),
        "{}",
        gw.stderr()
    );
    assert!(gw.stderr().contains("not starting"));
    assert!(std::net::TcpStream::connect(("127.0.0.1", gw.port)).is_err());
}

#[actix_rt::test]
async fn environment_overrides_files_and_set_overrides_environment() {
    let up = spawn_upstream("main");
    let yaml = format!(
        "server: {{max_body_bytes: 1000000}}\nupstreams: {{u: {{targets: [\"{}\"]}}}}\nroutes: [{{name: r, path_prefix: /, upstream: u}}]\n",
        up.url()
    );
    let gw = Gateway::spawn_env(
        &yaml,
        &["--set", "logging.access_log=false"],
        &[
            ("GATEWAY_SERVER__MAX_BODY_BYTES", "10"),
            ("GATEWAY_LOGGING__ACCESS_LOG", "true"),
        ],
    );
    gw.wait_ready().await;
    let res = client()
        .post(gw.url("/upload"))
        .send_body("more than ten bytes")
        .await
        .unwrap();
    assert_eq!(res.status(), 413, "the environment beats the file");
    // Everything the gateway wrote is flushed by the time it has exited.
    let (status, gw) = gw.terminate(Duration::from_secs(15)).await;
    assert_eq!(status.and_then(|s| s.code()), Some(0), "clean exit");
    assert!(gw.stdout_text().contains("gateway stopped"), "log complete");
    assert!(
        !gw.log_lines().iter().any(|l| l["msg"] == "request"),
        "--set beats the environment: no access log"
    );
}

#[actix_rt::test]
async fn sigterm_drains_in_flight_requests_then_exits_zero() {
    let up = spawn_upstream("slow");
    let gw = Gateway::start(&format!(
        "server: {{shutdown_timeout_secs: 10}}\nupstreams: {{u: {{targets: [\"{}\"]}}}}\nroutes: [{{name: r, path_prefix: /, upstream: u}}]\n",
        up.url()
    ))
    .await;
    let c = client();
    let in_flight = actix_rt::spawn({
        let url = gw.url("/slow/2000");
        async move {
            let mut res = client()
                .get(url)
                .send()
                .await
                .expect("in-flight request answered");
            (res.status(), res.body().await.expect("body"))
        }
    });
    assert!(
        gw.wait_for_request_at("u").await,
        "the slow request is in flight before the signal"
    );
    gw.signal("TERM");

    let admin = gw.admin_url("/health/ready");
    let not_ready = eventually(Duration::from_secs(2), || {
        let req = c.get(&admin).send();
        async move { matches!(req.await, Ok(r) if r.status() == 503) }
    })
    .await;
    assert!(not_ready, "readiness must turn 503 while draining");
    let port = gw.port;
    let closed = eventually(Duration::from_secs(2), || async move {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err()
    })
    .await;
    assert!(closed, "the proxy listener stops accepting");

    let (status, body) = in_flight.await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(body, "slow done");
    let (status, gw) = gw.exited(Duration::from_secs(15)).await;
    assert_eq!(status.and_then(|s| s.code()), Some(0), "clean exit");
    let logs = gw.stdout_text();
    assert!(logs.contains("shutdown signal received; draining"));
    assert!(logs.contains("gateway stopped"));
}

/// An idle kept-alive connection does not hold up the exit: at shutdown
/// the gateway closes it at once, not at its keep-alive (60 s here) or the
/// shutdown timeout (30 s).
#[actix_rt::test]
async fn sigterm_closes_idle_kept_alive_connections_at_once() {
    use std::io::Read;
    let up = spawn_upstream("main");
    let gw = Gateway::start(&format!(
        "server: {{keep_alive_secs: 60, shutdown_timeout_secs: 30}}\n\
         upstreams: {{u: {{targets: [\"{}\"]}}}}\n\
         routes: [{{name: r, path_prefix: /, upstream: u}}]\n",
        up.url()
    ))
    .await;
    let mut idle = RawConnection::open(gw.port);
    idle.send(b"GET /kept HTTP/1.1\r\nHost: a\r\n\r\n");
    let answer = idle.read_response();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(!answer.to_ascii_lowercase().contains("connection: close"));

    let signalled = std::time::Instant::now();
    gw.signal("TERM");
    let closed = actix_rt::task::spawn_blocking(move || {
        let stream = idle.stream();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        let mut byte = [0u8; 1];
        // EOF (or a reset) is the gateway closing the connection.
        let _ = stream.read(&mut byte);
        signalled.elapsed()
    })
    .await
    .unwrap();
    assert!(
        closed < Duration::from_secs(5),
        "the idle connection was closed {closed:?} after the signal"
    );
    let (status, _gw) = gw.exited(Duration::from_secs(10)).await;
    assert_eq!(status.and_then(|s| s.code()), Some(0), "clean exit");
}

#[actix_rt::test]
async fn tls_listener_serves_https_and_bad_pem_is_refused() {
    let up = spawn_upstream("main");
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let yaml = format!(
        "server: {{tls: {{cert_file: \"{}\", key_file: \"{}\"}}}}\nupstreams: {{u: {{targets: [\"{}\"]}}}}\nroutes: [{{name: r, path_prefix: /, upstream: u}}]\n",
        cert_path.display(),
        key_path.display(),
        up.url()
    );
    let gw = Gateway::start(&yaml).await;
    // awc here is built without TLS; curl is the HTTPS client.
    let out = Command::new("curl")
        .args(["-sk", "--max-time", "10"])
        .arg(format!("https://localhost:{}/tls-check", gw.port))
        .output()
        .expect("curl is installed");
    let echo: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(echo["path"], "/tls-check");
    assert_eq!(echo["headers"]["x-forwarded-proto"][0], "https");

    std::fs::write(&key_path, "not a key").unwrap();
    let (ok, _, stderr) = {
        let out = Command::new(GATEWAY_BIN)
            .arg("check")
            .arg("--config")
            .arg(gw.dir.path().join("gateway.yaml"))
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    assert!(!ok);
    assert!(stderr.contains("server.tls"), "{stderr}");
}

/// What the clients of a load balancer saw while one replica shut down.
#[derive(Debug, Default)]
struct LoadOutcome {
    ok: u64,
    /// Answered, but not 2xx.
    non_2xx: u64,
    /// Sent on an open connection that the gateway then closed without an
    /// answer: lost, although the gateway had accepted it.
    lost: u64,
    /// Answers after readiness had turned 503 that left the connection
    /// open (each should have said `Connection: close`).
    kept_alive_while_draining: u64,
}

/// One connection of a load balancer: requests on a kept-alive connection;
/// after `Connection: close` it asks readiness, and stops using this
/// replica once that is 503 (as a load balancer takes it out).
fn balancer_connection(
    port: u16,
    admin: u16,
    draining: &std::sync::atomic::AtomicBool,
) -> LoadOutcome {
    use std::io::{Read, Write};
    use std::sync::atomic::Ordering;
    let ready = || {
        let answer = raw_request(admin, "GET /health/ready HTTP/1.1\r\nHost: a\r\n\r\n");
        answer.starts_with("HTTP/1.1 200")
    };
    let mut seen = LoadOutcome::default();
    let mut conn: Option<std::net::TcpStream> = None;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        let stream = match conn.as_mut() {
            Some(stream) => stream,
            None => {
                if !ready() {
                    break;
                }
                match std::net::TcpStream::connect(("127.0.0.1", port)) {
                    Ok(stream) => conn.insert(stream),
                    Err(_) => break,
                }
            }
        };
        let was_draining = draining.load(Ordering::SeqCst);
        if stream
            .write_all(b"GET /lb HTTP/1.1\r\nHost: gw\r\n\r\n")
            .is_err()
        {
            conn = None;
            continue;
        }
        let mut got = Vec::new();
        let mut buf = [0u8; 16384];
        let complete = loop {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => break None,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
            let text = String::from_utf8_lossy(&got).to_ascii_lowercase();
            let Some(end) = text.find("\r\n\r\n") else {
                continue;
            };
            let length = text[..end].lines().find_map(|l| {
                l.strip_prefix("content-length:")
                    .and_then(|v| v.trim().parse::<usize>().ok())
            });
            if got.len() >= end + 4 + length.unwrap_or(0) {
                break Some(text[..end].to_owned());
            }
        };
        match complete {
            None => {
                seen.lost += 1;
                conn = None;
            }
            Some(head) => {
                if head.starts_with("http/1.1 2") {
                    seen.ok += 1;
                } else {
                    seen.non_2xx += 1;
                }
                if head.contains("connection: close") {
                    conn = None;
                } else if was_draining {
                    seen.kept_alive_while_draining += 1;
                }
            }
        }
    }
    seen
}

/// SIGTERM while a load balancer's connections are busy: no request the
/// gateway accepted is lost; from the signal on every answer says
/// `Connection: close`, and the listener stays open `drain_delay_secs`.
#[actix_rt::test]
async fn sigterm_under_load_loses_no_accepted_request() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let up = spawn_upstream("main");
    let gw = Gateway::start(&format!(
        "server: {{workers: 2, shutdown_timeout_secs: 10, drain_delay_secs: 1}}\n\
         upstreams: {{u: {{targets: [\"{}\"]}}}}\n\
         routes: [{{name: r, path_prefix: /, upstream: u}}]\n",
        up.url()
    ))
    .await;
    let (port, admin) = (gw.port, gw.admin_port);
    let draining = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..32)
        .map(|_| {
            let draining = draining.clone();
            std::thread::spawn(move || balancer_connection(port, admin, &draining))
        })
        .collect();
    actix_rt::time::sleep(Duration::from_millis(700)).await;
    let signalled = std::time::Instant::now();
    gw.signal("TERM");
    // Draining from when the gateway says so (readiness 503), not from when
    // the signal was sent: a request sent before it handled the signal
    // rightly gets an answer that keeps the connection (this raced on a
    // loaded machine).
    let noticed = eventually(Duration::from_secs(5), || async move {
        !raw_request(admin, "GET /health/ready HTTP/1.1\r\nHost: a\r\n\r\n")
            .starts_with("HTTP/1.1 200")
    })
    .await;
    assert!(noticed, "readiness turns 503 after SIGTERM");
    draining.store(true, Ordering::SeqCst);
    // The listener still accepts for drain_delay_secs after the signal.
    let refused_after = actix_rt::task::spawn_blocking(move || {
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            std::thread::sleep(Duration::from_millis(20));
        }
        signalled.elapsed()
    });
    let mut total = LoadOutcome::default();
    for client in clients {
        let seen = client.join().unwrap();
        total.ok += seen.ok;
        total.non_2xx += seen.non_2xx;
        total.lost += seen.lost;
        total.kept_alive_while_draining += seen.kept_alive_while_draining;
    }
    assert!(total.ok > 100, "{total:?}");
    assert_eq!(total.lost, 0, "{total:?}");
    assert_eq!(total.non_2xx, 0, "{total:?}");
    assert_eq!(total.kept_alive_while_draining, 0, "{total:?}");
    let refused_after = refused_after.await.unwrap();
    assert!(
        refused_after >= Duration::from_millis(900),
        "new connections refused {refused_after:?} after the signal"
    );
    let (exit, gw) = gw.exited(Duration::from_secs(20)).await;
    assert_eq!(exit.and_then(|s| s.code()), Some(0));
    // Every answer has its access-log line: none is lost at exit.
    let lines = gw.count_log_messages("request") as u64;
    assert_eq!(lines, total.ok, "access-log lines for {total:?}");
    assert!(gw.stdout_text().contains("proxy listener drained"));
}

/// A request still running at `shutdown_timeout_secs` is cut: the log says
/// so and how many, and does not claim the listener drained.
#[actix_rt::test]
async fn requests_cut_at_the_shutdown_timeout_are_counted() {
    let up = spawn_upstream("slow");
    let gw = Gateway::start(&format!(
        "server: {{shutdown_timeout_secs: 1}}\nupstreams: {{u: {{targets: [\"{}\"]}}}}\n\
         routes: [{{name: r, path_prefix: /, upstream: u}}]\n",
        up.url()
    ))
    .await;
    let slow = actix_rt::spawn(client().get(gw.url("/slow/5000")).send());
    assert!(
        gw.wait_for_request_at("u").await,
        "the slow request is in flight"
    );
    let (exit, gw) = gw.terminate(Duration::from_secs(15)).await;
    assert_eq!(exit.and_then(|s| s.code()), Some(0));
    assert!(slow.await.unwrap().is_err(), "the slow request was cut");
    let cut: Vec<_> = gw
        .log_lines()
        .into_iter()
        .filter(|l| {
            l["msg"]
                .as_str()
                .is_some_and(|m| m.starts_with("shutdown timeout reached"))
        })
        .collect();
    assert_eq!(cut.len(), 1, "{}", gw.stdout_text());
    assert_eq!(cut[0]["cut"], 1, "{}", cut[0]);
    assert_eq!(cut[0]["level"], "warning");
    assert!(!gw.stdout_text().contains("proxy listener drained"));
}
