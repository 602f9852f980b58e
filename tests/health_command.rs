//! `gateway health`, the container health check (the image has no curl),
//! against the real binary: 0 when the running gateway's admin listener
//! answers 200, 1 with one line on stderr otherwise (nothing listening, an
//! answer that never comes, a gateway draining after SIGTERM), and the
//! address found in the settings the same way `gateway run` finds it.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{free_port, spawn_hung_upstream, Gateway, GATEWAY_BIN};

/// `gateway health ARGS` in `dir`, without the caller's GATEWAY_* variables
/// (plus `envs`).
fn health(dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(GATEWAY_BIN);
    cmd.current_dir(dir).arg("health").args(args);
    for (key, _) in std::env::vars() {
        if key.starts_with("GATEWAY_") {
            cmd.env_remove(key);
        }
    }
    cmd.envs(envs.iter().copied())
        .output()
        .expect("run gateway health")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Exit status 1 and exactly one line on stderr, containing `expect`.
fn assert_unhealthy(out: &Output, expect: &str) {
    let stderr = text(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "stdout: {}\nstderr: {stderr}",
        text(&out.stdout)
    );
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr:?}");
    assert!(stderr.starts_with("gateway health: "), "{stderr:?}");
    assert!(stderr.contains(expect), "{expect:?} not in {stderr:?}");
}

fn assert_healthy(out: &Output, expect: &str) {
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout: {stdout}\nstderr: {}",
        text(&out.stderr)
    );
    assert!(stdout.contains(expect), "{expect:?} not in {stdout:?}");
}

const MINIMAL: &str = "upstreams: {u: {targets: [\"http://127.0.0.1:1\"]}}\n\
                       routes: [{name: r, path_prefix: /, upstream: u}]\n";

#[actix_rt::test]
async fn ready_gateway_is_healthy_wherever_the_address_comes_from() {
    let gw = Gateway::start(MINIMAL).await;
    let dir = gw.dir.path();
    let admin = gw.admin_port;
    let base = format!("http://127.0.0.1:{admin}");

    // --url: the admin listener's base URL; the endpoint's path is added.
    let out = health(dir, &["--url", &base], &[]);
    assert_healthy(&out, &format!("{base}/health/ready: 200 OK (ready)"));
    let out = health(dir, &["--url", &base, "--live"], &[]);
    assert_healthy(&out, &format!("{base}/health/live: 200 OK (alive)"));

    // The settings file's admin.listen, 0.0.0.0 meaning this host.
    std::fs::write(
        dir.join("health.yaml"),
        format!("admin: {{listen: \"0.0.0.0:{admin}\"}}\n"),
    )
    .expect("write settings");
    let out = health(dir, &["--config", "health.yaml"], &[]);
    assert_healthy(&out, &format!("{base}/health/ready: 200"));

    // GATEWAY_* variables and --set override the file, as for `run`.
    let elsewhere = format!("127.0.0.1:{}", free_port());
    std::fs::write(
        dir.join("elsewhere.yaml"),
        format!("admin: {{listen: \"{elsewhere}\"}}\n"),
    )
    .expect("write settings");
    let listen = format!("0.0.0.0:{admin}");
    let out = health(
        dir,
        &["--config", "elsewhere.yaml"],
        &[("GATEWAY_ADMIN__LISTEN", &listen)],
    );
    assert_healthy(&out, &format!("{base}/health/ready: 200"));
    let set = format!("admin.listen=127.0.0.1:{admin}");
    let out = health(dir, &["-c", "elsewhere.yaml", "--set", &set], &[]);
    assert_healthy(&out, &format!("{base}/health/ready: 200"));

    // Only admin.listen is read: a file invalid elsewhere (a reload would
    // refuse it while the old settings serve on) still finds the gateway.
    std::fs::write(
        dir.join("broken.yaml"),
        format!(
            "admin: {{listen: \"127.0.0.1:{admin}\"}}\n\
             routes: [{{name: r, path_prefix: /, upstream: nowhere}}]\nbogus: 1\n"
        ),
    )
    .expect("write settings");
    let out = health(dir, &["-c", "broken.yaml"], &[]);
    assert_healthy(&out, "200 OK (ready)");

    // A file that cannot be read, or an admin.listen that is no address.
    let out = health(dir, &["-c", "missing.yaml"], &[]);
    assert_unhealthy(
        &out,
        "cannot tell admin.listen: missing.yaml: -: settings file not found",
    );
    let out = health(dir, &["--set", "admin.listen=localhost"], &[]);
    assert_unhealthy(&out, "admin.listen: \"localhost\" is not a socket address");
    let out = health(dir, &["--url", &format!("https://127.0.0.1:{admin}")], &[]);
    assert_unhealthy(&out, "only http://");
}

#[test]
fn nothing_listening_is_unhealthy_with_a_clear_reason() {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let started = Instant::now();
    let out = health(
        dir.path(),
        &["--url", &format!("http://127.0.0.1:{port}")],
        &[],
    );
    assert_unhealthy(
        &out,
        &format!("http://127.0.0.1:{port}/health/ready: connection refused: nothing listens there"),
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    // The same through the built-in default admin.listen (0.0.0.0:9090)
    // would depend on this machine; through a settings file it does not.
    std::fs::write(
        dir.path().join("s.yaml"),
        format!("admin: {{listen: \"0.0.0.0:{port}\"}}\n"),
    )
    .expect("write settings");
    let out = health(dir.path(), &["-c", "s.yaml", "--live"], &[]);
    assert_unhealthy(
        &out,
        &format!("http://127.0.0.1:{port}/health/live: connection refused"),
    );
}

#[test]
fn an_answer_that_never_comes_is_unhealthy_after_the_timeout() {
    let dir = tempfile::tempdir().expect("temp dir");
    let hung = spawn_hung_upstream();
    let started = Instant::now();
    let out = health(
        dir.path(),
        &["--url", &format!("http://{hung}"), "--timeout-ms", "300"],
        &[],
    );
    assert_unhealthy(&out, "no answer within 300 ms");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(3), "took {took:?}");
}

#[actix_rt::test]
async fn a_draining_gateway_is_not_ready_but_still_live() {
    let gw = Gateway::start(&format!(
        "server: {{drain_delay_secs: 3, shutdown_timeout_secs: 5}}\n{MINIMAL}"
    ))
    .await;
    let base = format!("http://127.0.0.1:{}", gw.admin_port);
    gw.signal("TERM");
    // Readiness turns 503 at once; the admin listener serves on through
    // the drain delay.
    let dir = gw.dir.path().to_owned();
    let deadline = Instant::now() + Duration::from_secs(2);
    let out = loop {
        // The signal is handled asynchronously: allow it a moment.
        let out = health(&dir, &["--url", &base], &[]);
        if out.status.code() != Some(0) || Instant::now() >= deadline {
            break out;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_unhealthy(
        &out,
        &format!("{base}/health/ready: 503 Service Unavailable (draining)"),
    );
    let out = health(&dir, &["--url", &base, "--live"], &[]);
    assert_healthy(&out, "200 OK (alive)");
    let (exit, _gw) = gw.exited(Duration::from_secs(15)).await;
    assert_eq!(exit.and_then(|s| s.code()), Some(0));
    let out = health(&dir, &["--url", &base], &[]);
    assert_unhealthy(&out, "connection refused");
}
