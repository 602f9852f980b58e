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
    let mut gw = Gateway::spawn_env(
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
    gw.signal("TERM");
    let (status, gw) = actix_rt::task::spawn_blocking(move || {
        let status = gw.wait_exit(Duration::from_secs(15));
        (status, gw)
    })
    .await
    .unwrap();
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
    let mut gw = Gateway::start(&format!(
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
    let exit = actix_rt::task::spawn_blocking(move || {
        let status = gw.wait_exit(Duration::from_secs(15));
        (status, gw)
    })
    .await
    .unwrap();
    let (status, gw) = exit;
    assert_eq!(status.and_then(|s| s.code()), Some(0), "clean exit");
    let logs = gw.stdout_text();
    assert!(logs.contains("shutdown signal received; draining"));
    assert!(logs.contains("gateway stopped"));
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
