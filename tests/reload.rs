//! Live reload as an operator uses it: SIGHUP, or a settings file that
//! changes on disk (a ConfigMap's symlink swap included), swaps routes,
//! upstreams, rate limits, the log level and the TLS certificate without
//! dropping a connection; an invalid file is refused and the old settings
//! serve on; keys that need a restart are named.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;

fn settings_file(gw: &Gateway) -> PathBuf {
    gw.dir.path().join("gateway.yaml")
}

/// Replaces the settings file the way an editor's "save" does.
fn rewrite(gw: &Gateway, yaml: &str) {
    std::fs::write(settings_file(gw), yaml).unwrap();
}

/// Waits until `n` log lines have a message starting with `prefix`.
async fn wait_for_log(gw: &Gateway, prefix: &str, n: usize) {
    let seen = eventually(Duration::from_secs(10), || {
        let seen = gw.count_log_messages(prefix) >= n;
        async move { seen }
    })
    .await;
    assert!(seen, "no {n} x '{prefix}' in:\n{}", gw.stdout_text());
}

/// Waits until the log output contains `needle` (lines are flushed in
/// batches, a little after they happen).
async fn wait_for_text(gw: &Gateway, needle: &str) {
    let seen = eventually(Duration::from_secs(10), || {
        let seen = gw.stdout_text().contains(needle);
        async move { seen }
    })
    .await;
    assert!(seen, "no '{needle}' in:\n{}", gw.stdout_text());
}

/// Sends SIGHUP and waits for the outcome's log line (the `n`th of its kind).
async fn hangup(gw: &Gateway, outcome: &str, n: usize) {
    gw.signal("HUP");
    wait_for_log(gw, outcome, n).await;
}

fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn log_line(gw: &Gateway, prefix: &str) -> serde_json::Value {
    gw.log_lines()
        .into_iter()
        .rev()
        .find(|l| l["msg"].as_str().is_some_and(|m| m.starts_with(prefix)))
        .unwrap_or_else(|| panic!("no '{prefix}' line in:\n{}", gw.stdout_text()))
}

async fn upstream_of(gw: &Gateway, path: &str) -> (u16, String) {
    let mut res = client().get(gw.url(path)).send().await.unwrap();
    let status = res.status().as_u16();
    let body = res.body().await.unwrap_or_default();
    let name = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["upstream"].as_str().map(ToOwned::to_owned))
        .unwrap_or_default();
    (status, name)
}

const NO_WATCH: &str = "server: {watch_settings_files: false}\n";

#[actix_rt::test]
async fn sighup_swaps_routes_and_upstreams_and_counts_the_reload() {
    let (a, b) = (spawn_upstream("a"), spawn_upstream("b"));
    let gw = Gateway::start(&format!(
        "{NO_WATCH}upstreams: {{a: {{targets: [\"{}\"]}}}}\n\
         routes: [{{name: one, path_prefix: /one, upstream: a}}]\n",
        a.url()
    ))
    .await;
    assert_eq!(upstream_of(&gw, "/one").await, (200, "a".into()));
    assert_eq!(upstream_of(&gw, "/two").await.0, 404);

    rewrite(
        &gw,
        &format!(
            "{NO_WATCH}upstreams: {{a: {{targets: [\"{}\"]}}, b: {{targets: [\"{}\"]}}}}\n\
             routes: [{{name: two, path_prefix: /two, upstream: b}}]\n",
            a.url(),
            b.url()
        ),
    );
    hangup(&gw, "settings reloaded", 1).await;

    assert_eq!(upstream_of(&gw, "/two").await, (200, "b".into()));
    assert_eq!(
        upstream_of(&gw, "/one").await.0,
        404,
        "the old route is gone"
    );
    let line = log_line(&gw, "settings reloaded");
    assert_eq!(line["trigger"], "SIGHUP");
    assert_eq!(line["generation"], 2);
    assert_eq!(line["changed"], "upstreams, routes");
    let metrics = gw.metrics().await;
    assert_eq!(
        metric(&metrics, "gateway_config_reloads_total{result=\"success\"}"),
        Some(1.0)
    );
    assert_eq!(
        metric(&metrics, "gateway_config_reloads_total{result=\"failure\"}"),
        Some(0.0)
    );
    assert_eq!(metric(&metrics, "gateway_config_generation"), Some(2.0));
    // The new route's requests are counted under its name.
    assert!(
        metrics.contains("gateway_requests_total{method=\"GET\",route=\"two\",status=\"200\"} 1"),
        "{metrics}"
    );
    wait_for_text(&gw, "\"upstream\":\"b\"").await;
}

#[actix_rt::test]
async fn an_invalid_file_is_refused_and_the_old_settings_serve_on() {
    let a = spawn_upstream("a");
    let good = format!(
        "{NO_WATCH}upstreams: {{a: {{targets: [\"{}\"]}}}}\n\
         routes: [{{name: one, path_prefix: /one, upstream: a}}]\n",
        a.url()
    );
    let gw = Gateway::start(&good).await;
    let before = metric(
        &gw.metrics().await,
        "gateway_config_last_reload_success_timestamp_seconds",
    )
    .expect("timestamp at startup");
    assert!(before > 1.0e9);

    // Two problems: a route naming a missing upstream, and an unknown key.
    rewrite(
        &gw,
        &format!(
            "{NO_WATCH}upstreams: {{a: {{targets: [\"{}\"]}}}}\n\
             routes: [{{name: one, path_prefix: /one, upstream: nope}}]\n\
             logging: {{levle: debug}}\n",
            a.url()
        ),
    );
    hangup(&gw, "settings reload refused", 1).await;
    let refused = log_line(&gw, "settings reload refused");
    assert_eq!(refused["level"], "error");
    assert_eq!(refused["problems"], 2);
    let problems: Vec<String> = gw
        .log_lines()
        .iter()
        .filter(|l| l["msg"] == "settings reload problem")
        .map(|l| l["problem"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert!(
        problems
            .iter()
            .any(|p| p.contains("routes") && p.contains("nope")),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.contains("levle") && p.contains("gateway.yaml")),
        "{problems:?}"
    );
    assert_eq!(upstream_of(&gw, "/one").await, (200, "a".into()));
    let metrics = gw.metrics().await;
    assert_eq!(
        metric(&metrics, "gateway_config_reloads_total{result=\"failure\"}"),
        Some(1.0)
    );
    assert_eq!(metric(&metrics, "gateway_config_generation"), Some(1.0));
    assert_eq!(
        metric(&metrics, "gateway_config_last_reload_successful"),
        Some(0.0)
    );
    assert_eq!(
        metric(
            &metrics,
            "gateway_config_last_reload_success_timestamp_seconds"
        ),
        Some(before),
        "a refused reload is not a success"
    );

    // Fixed, it goes through.
    rewrite(&gw, &good.replace("/one", "/uno"));
    hangup(&gw, "settings reloaded", 1).await;
    assert_eq!(upstream_of(&gw, "/uno").await, (200, "a".into()));
    let metrics = gw.metrics().await;
    assert_eq!(
        metric(&metrics, "gateway_config_last_reload_successful"),
        Some(1.0)
    );
    assert!(metric(
        &metrics,
        "gateway_config_last_reload_success_timestamp_seconds"
    )
    .is_some_and(|t| t > before));
}

/// Kubernetes updates a mounted ConfigMap by writing a new timestamped
/// directory and renaming a `..data` symlink over the old one; the file
/// the gateway was given is a symlink through `..data` that never changes.
#[actix_rt::test]
async fn a_configmap_symlink_swap_is_reloaded_without_a_signal() {
    let (a, b) = (spawn_upstream("a"), spawn_upstream("b"));
    let mount = tempfile::tempdir().unwrap();
    let routes =
        |upstream: &str| format!("routes: [{{name: r, path_prefix: /, upstream: {upstream}}}]\n");
    let publish = |version: &str, body: &str| {
        let dir = mount.path().join(format!("..{version}"));
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("routes.yaml"), body).unwrap();
        let tmp = mount.path().join("..data_tmp");
        std::os::unix::fs::symlink(format!("..{version}"), &tmp).unwrap();
        std::fs::rename(&tmp, mount.path().join("..data")).unwrap();
    };
    publish("2026_12_04_10_00_00.1", &routes("a"));
    std::os::unix::fs::symlink("..data/routes.yaml", mount.path().join("routes.yaml")).unwrap();
    let cm_file = mount.path().join("routes.yaml");
    let gw = Gateway::spawn(
        &format!(
            "upstreams: {{a: {{targets: [\"{}\"]}}, b: {{targets: [\"{}\"]}}}}\n",
            a.url(),
            b.url()
        ),
        &["--config", cm_file.to_str().unwrap()],
    );
    gw.wait_ready().await;
    assert_eq!(upstream_of(&gw, "/x").await, (200, "a".into()));

    publish("2026_12_04_10_05_00.2", &routes("b"));
    wait_for_log(&gw, "settings reloaded", 1).await;
    assert_eq!(log_line(&gw, "settings reloaded")["trigger"], "file change");
    assert_eq!(upstream_of(&gw, "/x").await, (200, "b".into()));

    // Writes that leave the contents as they were reload nothing.
    std::fs::write(
        gw.dir.path().join("gateway.yaml"),
        std::fs::read(settings_file(&gw)).unwrap(),
    )
    .unwrap();
    actix_rt::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(gw.count_log_messages("settings reloaded"), 1);
}

#[actix_rt::test]
async fn requests_in_flight_finish_on_their_settings_and_connections_stay_open() {
    let (a, b) = (spawn_upstream("a"), spawn_upstream("b"));
    let settings = |upstream: &str| {
        format!(
            "{NO_WATCH}upstreams: {{a: {{targets: [\"{}\"]}}, b: {{targets: [\"{}\"]}}}}\n\
             routes: [{{name: r, path_prefix: /, upstream: {upstream}}}]\n",
            a.url(),
            b.url()
        )
    };
    let gw = Gateway::start(&settings("a")).await;
    // A kept-alive connection that has already carried a request.
    let mut conn = RawConnection::open(gw.port);
    assert!(conn.send(b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n"));
    assert!(conn.read_response().contains("\"upstream\":\"a\""));

    let slow = client()
        .get(gw.url("/slow/1500"))
        .timeout(Duration::from_secs(10))
        .send();
    let in_flight = actix_rt::spawn(async move {
        let mut res = slow.await.expect("slow request");
        (
            res.status().as_u16(),
            hdr(&res, "x-upstream"),
            res.body().await.is_ok(),
        )
    });
    assert!(gw.wait_for_request_at("a").await);

    rewrite(&gw, &settings("b"));
    hangup(&gw, "settings reloaded", 1).await;
    assert_eq!(upstream_of(&gw, "/after").await, (200, "b".into()));
    // The same connection, after the reload: served on the new settings.
    assert!(conn.send(b"GET /second HTTP/1.1\r\nHost: x\r\n\r\n"));
    assert!(conn.read_response().contains("\"upstream\":\"b\""));

    let (status, upstream, body_ok) = in_flight.await.unwrap();
    assert_eq!((status, upstream.as_str(), body_ok), (200, "a", true));
    wait_for_text(&gw, "\"path\":\"/slow/1500\"").await;
}

#[actix_rt::test]
async fn local_rate_limit_state_survives_a_reload_of_other_settings() {
    let a = spawn_upstream("a");
    let settings = |requests: u32, extra_route: &str| {
        format!(
            "{NO_WATCH}upstreams: {{a: {{targets: [\"{}\"]}}}}\n\
             rate_limits: {{tight: {{requests: {requests}, period_secs: 60, burst: 0, key: ip}}}}\n\
             routes: [{{name: r, path_prefix: /, upstream: a, rate_limit: [tight]}}{extra_route}]\n",
            a.url()
        )
    };
    let gw = Gateway::start(&settings(2, "")).await;
    for _ in 0..2 {
        assert_eq!(upstream_of(&gw, "/x").await.0, 200);
    }
    assert_eq!(upstream_of(&gw, "/x").await.0, 429);

    // Another route added; the policy is unchanged: its count is kept.
    rewrite(
        &gw,
        &settings(2, ", {name: other, path_prefix: /other, upstream: a}"),
    );
    hangup(&gw, "settings reloaded", 1).await;
    assert_eq!(
        log_line(&gw, "settings reloaded")["rate_limit_policies_kept"],
        1
    );
    assert_eq!(upstream_of(&gw, "/x").await.0, 429, "still limited");
    assert_eq!(upstream_of(&gw, "/other").await.0, 200);

    // The policy itself changed: it starts afresh.
    rewrite(&gw, &settings(5, ""));
    hangup(&gw, "settings reloaded", 2).await;
    assert_eq!(
        log_line(&gw, "settings reloaded")["rate_limit_policies_kept"],
        0
    );
    assert_eq!(upstream_of(&gw, "/x").await.0, 200);
}

#[actix_rt::test]
async fn keys_that_need_a_restart_are_named_and_keep_their_running_values() {
    let a = spawn_upstream("a");
    let settings = |workers: u32, format: &str, prefix: &str| {
        format!(
            "server: {{watch_settings_files: false, workers: {workers}}}\n\
             logging: {{format: {format}}}\n\
             upstreams: {{a: {{targets: [\"{}\"]}}}}\n\
             routes: [{{name: r, path_prefix: {prefix}, upstream: a}}]\n",
            a.url()
        )
    };
    let gw = Gateway::start(&settings(1, "json", "/one")).await;
    rewrite(&gw, &settings(3, "text", "/two"));
    hangup(&gw, "settings reloaded", 1).await;
    let warning = log_line(&gw, "settings changed that take effect only at startup");
    assert_eq!(warning["level"], "warning");
    assert_eq!(warning["keys"], "server.workers, logging.format");
    // The rest was applied; the running values stayed.
    assert_eq!(upstream_of(&gw, "/two").await.0, 200);
    assert_eq!(gw.health().await["workers"], 1);
    assert_eq!(log_line(&gw, "settings reloaded")["changed"], "routes");
}

#[actix_rt::test]
async fn log_level_and_access_log_follow_a_reload() {
    let a = spawn_upstream("a");
    let settings = |level: &str| {
        format!(
            "{NO_WATCH}logging: {{level: {level}}}\n\
             upstreams: {{a: {{targets: [\"{}\"]}}}}\n\
             routes: [{{name: r, path_prefix: /, upstream: a}}]\n",
            a.url()
        )
    };
    let gw = Gateway::start(&settings("info")).await;
    let request = |id: &'static str| {
        client()
            .get(gw.url("/x"))
            .insert_header(("x-request-id", id))
            .send()
    };
    assert_eq!(request("before").await.unwrap().status(), 200);
    gw.access_log_for("before").await;

    rewrite(&gw, &settings("warning"));
    hangup(&gw, "settings reloaded", 1).await;
    assert_eq!(request("quiet").await.unwrap().status(), 200);
    // A later error-level line proves the output is flowing; the access
    // line of "quiet" (info) must not be among what came before it.
    rewrite(&gw, "not: [valid");
    hangup(&gw, "settings reload refused", 1).await;
    let log = gw.stdout_text();
    assert!(!log.contains("\"request_id\":\"quiet\""), "{log}");

    rewrite(&gw, &settings("info"));
    hangup(&gw, "settings reloaded", 2).await;
    assert_eq!(request("loud").await.unwrap().status(), 200);
    gw.access_log_for("loud").await;
}

fn self_signed(dir: &Path, name: &str) -> (PathBuf, PathBuf, PathBuf) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let pem = dir.join(format!("{name}.pem"));
    let key = dir.join(format!("{name}.key"));
    std::fs::write(&pem, cert.cert.pem()).unwrap();
    std::fs::write(&key, cert.signing_key.serialize_pem()).unwrap();
    (pem.clone(), key, pem)
}

/// Whether curl, trusting only `ca`, completes a request to the gateway.
fn curl_trusting(port: u16, ca: &Path) -> bool {
    Command::new("curl")
        .args(["-sf", "--max-time", "10", "--cacert"])
        .arg(ca)
        .arg(format!("https://localhost:{port}/tls"))
        .output()
        .expect("curl is installed")
        .status
        .success()
}

/// cert-manager and `kubectl create secret` replace the files of a mounted
/// Secret: the gateway notices by itself.
#[actix_rt::test]
async fn replacing_the_certificate_files_rotates_it_for_new_connections() {
    let a = spawn_upstream("a");
    let certs = tempfile::tempdir().unwrap();
    let (old_pem, old_key, old_ca) = self_signed(certs.path(), "old");
    let (new_pem, new_key, new_ca) = self_signed(certs.path(), "new");
    let live_pem = certs.path().join("tls.crt");
    let live_key = certs.path().join("tls.key");
    std::fs::copy(&old_pem, &live_pem).unwrap();
    std::fs::copy(&old_key, &live_key).unwrap();
    let gw = Gateway::start(&format!(
        "server: {{tls: {{cert_file: \"{}\", key_file: \"{}\"}}}}\n\
         upstreams: {{a: {{targets: [\"{}\"]}}}}\n\
         routes: [{{name: r, path_prefix: /, upstream: a}}]\n",
        live_pem.display(),
        live_key.display(),
        a.url()
    ))
    .await;
    assert!(curl_trusting(gw.port, &old_ca));
    assert!(!curl_trusting(gw.port, &new_ca));

    // Same paths, new contents: what cert-manager does to a Secret.
    std::fs::copy(&new_pem, &live_pem).unwrap();
    std::fs::copy(&new_key, &live_key).unwrap();
    wait_for_log(&gw, "settings reloaded", 1).await;
    assert_eq!(log_line(&gw, "settings reloaded")["trigger"], "file change");
    assert!(curl_trusting(gw.port, &new_ca));
    assert!(!curl_trusting(gw.port, &old_ca));

    // A key that does not match the certificate is refused; the new
    // certificate stays in use.
    std::fs::copy(&old_key, &live_key).unwrap();
    wait_for_log(&gw, "settings reload refused", 1).await;
    assert!(log_line(&gw, "settings reload problem")["problem"]
        .as_str()
        .unwrap()
        .contains("server.tls"));
    assert!(curl_trusting(gw.port, &new_ca));
}
