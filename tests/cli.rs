//! The binaries as a new user first meets them: `gateway check` reporting
//! every problem at once and saying when it read nothing, a listener that
//! cannot bind naming its setting and address, `demo_upstream --help`, and
//! `make run-local` (scripts/run-local.sh) stopping with a clear message
//! when a port is taken and ending cleanly on Ctrl-C.

mod common;

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, GATEWAY_BIN};

/// `target/<profile>/examples/demo_upstream`, next to the gateway binary
/// (`make test` builds it before the tests).
fn demo_bin() -> PathBuf {
    let bin = Path::new(GATEWAY_BIN)
        .with_file_name("examples")
        .join("demo_upstream");
    assert!(
        bin.is_file(),
        "{} is missing: cargo build --example demo_upstream (make test does)",
        bin.display()
    );
    bin
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs `cmd` to its end, bounded.
fn run(cmd: &mut Command, within: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + within;
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "still running after {within:?}\nstdout: {}\nstderr: {}",
                text(&out.stdout),
                text(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

fn gateway(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(GATEWAY_BIN);
    cmd.current_dir(dir).args(args);
    // The caller's GATEWAY_* variables must not leak into these runs.
    for (key, _) in std::env::vars() {
        if key.starts_with("GATEWAY_") {
            cmd.env_remove(key);
        }
    }
    cmd
}

#[test]
fn check_reports_unknown_keys_and_validation_problems_together() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("typo.yaml"),
        "server: {workerz: 2, listen: \"0.0.0.0:8080\"}\nextra: 1\n\
         upstreams: {u: {targets: [\"http://127.0.0.1:1\"], balanse: rr}}\n\
         routes: [{name: r, path_prefix: /, upstream: nowhere}]\n",
    )
    .unwrap();
    let out = run(
        &mut gateway(dir.path(), &["check", "--config", "typo.yaml"]),
        Duration::from_secs(20),
    );
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    for line in [
        "typo.yaml: server.workerz: unknown key 'workerz' (expected one of: listen, workers, ",
        "typo.yaml: extra: unknown key 'extra' (expected one of: server, admin, logging, redis, upstreams, rate_limits, auth, routes, tracing)",
        "typo.yaml: upstreams.u.balanse: unknown key 'balanse' (expected one of: targets, balance, ",
        "typo.yaml: routes[0].upstream: upstream \"nowhere\" is not defined in upstreams",
        "gateway: configuration invalid: 4 problem(s); not starting",
    ] {
        assert!(err.lines().any(|l| l.starts_with(line)), "missing {line:?} in:\n{err}");
    }
}

#[test]
fn check_says_when_no_settings_file_was_read_and_no_route_exists() {
    let empty = tempfile::tempdir().unwrap();
    let out = run(
        &mut gateway(empty.path(), &["check"]),
        Duration::from_secs(20),
    );
    let said = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert!(
        said.contains("no settings file was read (no --config given, and settings/default.yaml does not exist)"),
        "{said}"
    );
    assert!(
        said.contains("no routes are defined: the gateway answers 404 to every request"),
        "{said}"
    );
    let configured = tempfile::tempdir().unwrap();
    std::fs::write(
        configured.path().join("one.yaml"),
        "upstreams: {u: {targets: [\"http://127.0.0.1:1\"]}}\n\
         routes: [{name: r, path_prefix: /, upstream: u}]\n",
    )
    .unwrap();
    let out = run(
        &mut gateway(configured.path(), &["check", "--config", "one.yaml"]),
        Duration::from_secs(20),
    );
    let said = text(&out.stdout);
    assert!(said.contains("settings read: one.yaml"), "{said}");
    assert!(!said.contains("note:"), "{said}");
}

#[test]
fn a_listener_that_cannot_bind_names_its_setting_and_address() {
    let dir = tempfile::tempdir().unwrap();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    for (listen, admin, key) in [
        (port, free_port(), "server.listen"),
        (free_port(), port, "admin.listen"),
    ] {
        let out = run(
            &mut gateway(
                dir.path(),
                &[
                    "--set",
                    &format!("server.listen=127.0.0.1:{listen}"),
                    "--set",
                    &format!("admin.listen=127.0.0.1:{admin}"),
                ],
            ),
            Duration::from_secs(30),
        );
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(
            err.contains(&format!("gateway: {key} 127.0.0.1:{port}: address in use")),
            "{err}"
        );
    }
}

#[test]
fn demo_upstream_prints_its_usage_and_refuses_a_taken_port() {
    let out = run(
        Command::new(demo_bin()).arg("--help"),
        Duration::from_secs(10),
    );
    let said = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0));
    assert!(said.contains("Usage: demo_upstream"), "{said}");
    assert!(said.contains("--listen <ADDR>"), "{said}");

    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let out = run(
        Command::new(demo_bin()).args(["--listen", &addr.to_string()]),
        Duration::from_secs(10),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).is_empty(),
        "no 'listening' before binding"
    );
    assert!(
        text(&out.stderr).contains(&format!("cannot listen on {addr}")),
        "{}",
        text(&out.stderr)
    );
}

/// scripts/run-local.sh, as `make run-local` runs it, with its binaries.
fn run_local(demo: u16, listen: u16, admin: u16) -> Command {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let bin_dir = Path::new(GATEWAY_BIN).parent().unwrap();
    demo_bin();
    let mut cmd = Command::new("bash");
    cmd.current_dir(root)
        .arg("scripts/run-local.sh")
        .env("BIN_DIR", bin_dir)
        .env("DEMO_LISTEN", format!("127.0.0.1:{demo}"))
        .env("GATEWAY_SERVER__LISTEN", format!("127.0.0.1:{listen}"))
        .env("GATEWAY_ADMIN__LISTEN", format!("127.0.0.1:{admin}"));
    cmd
}

#[test]
fn run_local_stops_with_a_clear_message_when_a_port_is_taken() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();

    let out = run(
        &mut run_local(port, free_port(), free_port()),
        Duration::from_secs(30),
    );
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "the demo upstream could not start on 127.0.0.1:{port}"
        )),
        "{err}"
    );

    let out = run(
        &mut run_local(free_port(), port, free_port()),
        Duration::from_secs(30),
    );
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("server.listen 127.0.0.1:{port}: address in use")),
        "{err}"
    );
    assert!(
        err.contains("run-local: the gateway stopped with status 1"),
        "{err}"
    );
}

/// Sends SIGINT to `child`'s process group, as a terminal's Ctrl-C does.
fn interrupt_group(child: &Child) {
    let status = Command::new("kill")
        .args(["-INT", "--", &format!("-{}", child.id())])
        .status()
        .expect("kill");
    assert!(status.success());
}

#[actix_rt::test]
async fn run_local_serves_the_demo_and_ends_cleanly_on_ctrl_c() {
    let (demo, listen, admin) = (free_port(), free_port(), free_port());
    let mut cmd = run_local(demo, listen, admin);
    // Its own process group, like a job in a terminal.
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let url = format!("http://127.0.0.1:{listen}/demo/hello");
    let served = common::eventually(Duration::from_secs(30), || {
        let req = common::client().get(&url).send();
        async move {
            match req.await {
                Ok(mut res) => res
                    .body()
                    .await
                    .is_ok_and(|b| b.starts_with(b"hello from the demo")),
                Err(_) => false,
            }
        }
    })
    .await;
    if !served {
        let _ = child.kill();
    }
    assert!(served, "the demo answers through the gateway");

    interrupt_group(&child);
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "still running after Ctrl-C");
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(status.code(), Some(0), "Ctrl-C is a clean end: {err}");
    // Nothing is left listening.
    for port in [demo, listen, admin] {
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
            "port {port} still open"
        );
    }
}

/// A settings file that sets nothing (empty, comments only, truncated to
/// nothing) or writes a key twice is refused by `check` and `run` alike,
/// naming the file and, for a repeated key, the key and the line.
#[test]
fn empty_files_and_repeated_keys_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let files = [
        ("empty.yaml", String::new()),
        ("comments.yaml", "# the settings were here\n".to_owned()),
        ("null.yaml", "server:\n".to_owned()),
        (
            "twice.yaml",
            "upstreams:\n  u:\n    targets: [\"http://127.0.0.1:1\"]\n    retries: 1\n    retries: 3\n\
             routes: [{name: r, path_prefix: /, upstream: u}]\n"
                .to_owned(),
        ),
        (
            "twice.json",
            r#"{"server": {"workers": 2, "workers": 4}}"#.to_owned(),
        ),
    ];
    for (name, body) in &files {
        std::fs::write(dir.path().join(name), body).unwrap();
    }
    let (port, admin) = (free_port(), free_port());
    let listen = [
        "--set".to_owned(),
        format!("server.listen=127.0.0.1:{port}"),
        "--set".to_owned(),
        format!("admin.listen=127.0.0.1:{admin}"),
    ];
    for (name, expect) in [
        ("empty.yaml", "empty.yaml: -: the file sets nothing"),
        ("comments.yaml", "comments.yaml: -: the file sets nothing"),
        ("null.yaml", "null.yaml: -: the file sets nothing"),
        (
            "twice.yaml",
            "twice.yaml: -: key 'upstreams.u.retries' is written twice (in the map at line 3)",
        ),
        (
            "twice.json",
            "twice.json: -: key 'workers' is written twice",
        ),
    ] {
        for command in ["check", "run"] {
            let mut args = vec![command, "--config", name];
            args.extend(listen.iter().map(String::as_str));
            let out = run(&mut gateway(dir.path(), &args), Duration::from_secs(20));
            let err = text(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{command} {name}: {err}");
            assert!(
                err.lines().any(|l| l.starts_with(expect)),
                "{command} {name}: missing {expect:?} in {err}"
            );
        }
    }
}
