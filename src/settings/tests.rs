//! Settings loading and validation, through figment's `Jail` (a temporary
//! working directory and environment per test).
// figment::Jail closures return figment::Error, which clippy finds large.
#![allow(clippy::result_large_err)]

use std::path::PathBuf;
use std::time::Duration;

use actix_web::http::Method;

use super::raw::RawSettings;
use super::*;
use figment::Jail;

fn sources(files: &[&str], overrides: &[&str]) -> Sources {
    Sources {
        config_files: files.iter().map(PathBuf::from).collect(),
        overrides: overrides.iter().map(|s| s.to_string()).collect(),
        use_env: true,
    }
}

fn problems(result: Result<Settings, Problems>) -> Vec<String> {
    match result {
        Ok(_) => panic!("expected problems"),
        Err(p) => p.0.iter().map(ToString::to_string).collect(),
    }
}

/// One of `problems` starts with `expect` (`file: key: message`).
fn assert_reported(problems: &[String], expect: &str) {
    assert!(
        problems.iter().any(|m| m.starts_with(expect)),
        "missing {expect:?} in {problems:#?}"
    );
}

const GOOD: &str = r#"
server:
  listen: "127.0.0.1:8000"
  workers: 3
upstreams:
  users:
    targets: ["http://10.0.0.5:8080", "http://10.0.0.6:8080/"]
    balance: least_requests
routes:
  - name: users
    path_prefix: /api/users/
    strip_prefix: /api
    methods: [get, POST]
    host: API.Example.com:443
    upstream: users
"#;

#[test]
fn defaults_without_any_file() {
    Jail::expect_with(|_jail| {
        let s = load(&sources(&[], &[])).expect("defaults are valid");
        assert_eq!(s.server.listen.to_string(), "0.0.0.0:8080");
        assert_eq!(s.admin_listen.to_string(), "0.0.0.0:9090");
        assert!(s.server.workers >= 1);
        assert_eq!(s.server.max_body_bytes, 10 * 1024 * 1024);
        assert_eq!(s.server.shutdown_timeout, Duration::from_secs(30));
        assert!(s.redis.is_none());
        assert!(s.routes.is_empty());
        Ok(())
    });
}

#[test]
fn default_file_is_read_when_no_config_given() {
    Jail::expect_with(|jail| {
        jail.create_dir("settings")?;
        jail.create_file("settings/default.yaml", "server: {workers: 5}")?;
        let s = load(&sources(&[], &[])).unwrap();
        assert_eq!(s.server.workers, 5);
        Ok(())
    });
}

#[test]
fn a_good_file_is_validated_into_trusted_types() {
    Jail::expect_with(|jail| {
        jail.create_file("gw.yaml", GOOD)?;
        let s = load(&sources(&["gw.yaml"], &[])).unwrap();
        assert_eq!(s.server.workers, 3);
        let u = &s.upstreams[0];
        assert_eq!(
            u.targets,
            vec!["http://10.0.0.5:8080", "http://10.0.0.6:8080"]
        );
        assert_eq!(u.balance, Balance::LeastRequests);
        assert_eq!(u.request_timeout, Duration::from_millis(30_000));
        let r = &s.routes[0];
        assert_eq!(r.path_prefix, "/api/users");
        assert_eq!(r.strip_prefix.as_deref(), Some("/api"));
        assert_eq!(r.methods, vec![Method::GET, Method::POST]);
        assert_eq!(r.host.as_deref(), Some("api.example.com"));
        Ok(())
    });
}

#[test]
fn layers_apply_in_order_file_env_set() {
    Jail::expect_with(|jail| {
        jail.create_file("a.yaml", "server: {workers: 1, backlog: 10}")?;
        jail.create_file("b.toml", "[server]\nworkers = 2\nkeep_alive_secs = 7\n")?;
        jail.create_file("c.json", r#"{"server": {"max_connections": 99}}"#)?;
        jail.set_env("GATEWAY_SERVER__WORKERS", "4");
        jail.set_env("GATEWAY_REDIS__URL", "redis://r:6379/0");
        let s = load(&sources(&["a.yaml", "b.toml", "c.json"], &[])).unwrap();
        assert_eq!(s.server.workers, 4);
        assert_eq!(s.server.backlog, 10);
        assert_eq!(s.server.keep_alive, Duration::from_secs(7));
        assert_eq!(s.server.max_connections, 99);
        assert_eq!(s.redis.unwrap().urls, vec!["redis://r:6379/0"]);
        let s = load(&sources(&["a.yaml"], &["server.workers=2"])).unwrap();
        assert_eq!(s.server.workers, 2);
        Ok(())
    });
}

#[test]
fn unknown_keys_name_file_and_key() {
    Jail::expect_with(|jail| {
        jail.create_file("bad.yaml", "server:\n  workerz: 2\nextra: 1\n")?;
        let p = problems(load(&sources(&["bad.yaml"], &[])));
        assert_reported(
            &p,
            "bad.yaml: server.workerz: unknown key 'workerz' (expected one of: listen, workers,",
        );
        assert_reported(
            &p,
            "bad.yaml: extra: unknown key 'extra' (expected one of: server, admin, logging, \
             redis, upstreams, rate_limits, auth, routes, tracing)",
        );
        assert!(!p.iter().any(|m| m.contains('`')), "{p:#?}");
        Ok(())
    });
}

/// One message per problem, all of them at once: several refused keys in
/// one section, values of the wrong type, and the validation problems of
/// the rest, without repeating what a refused key already says.
#[test]
fn every_problem_is_reported_together() {
    Jail::expect_with(|jail| {
        jail.create_file(
            "many.yaml",
            r#"
server: {lisen: "0.0.0.0:1", workers: many, backlog: -1, keep_alive_secs: 0}
upstreams:
  u: {targets: ["http://10.0.0.1:80"], balanse: rr, retries: lots}
  v: "not a map"
routes:
  - {name: a, path_prefix: /a, upstream: u, methods: [GET, 5], methodz: [GET]}
  - 7
  - {name: c, path_prefix: /c, upstream: nowhere}
  - {name: d, path_prefix: /d, upstream: v, auth: sometimes}
"#,
        )?;
        let p = problems(load(&sources(&["many.yaml"], &[])));
        for expect in [
            "many.yaml: server.lisen: unknown key 'lisen'",
            "many.yaml: server.workers: invalid type: found string \"many\"",
            "many.yaml: server.backlog: invalid value: found signed int '-1', expected u32",
            "many.yaml: upstreams.u.balanse: unknown key 'balanse'",
            "many.yaml: upstreams.u.retries: invalid type",
            "many.yaml: upstreams.v: invalid type",
            "many.yaml: routes[0].methods[1]: invalid type",
            "many.yaml: routes[0].methodz: unknown key 'methodz'",
            "many.yaml: routes[1]: invalid type: found unsigned int '7', expected a map",
            // Validation of the rest, indices as in the file.
            "many.yaml: routes[2].upstream: upstream \"nowhere\" is not defined",
            "many.yaml: routes[3].auth: \"sometimes\" is not one of",
        ] {
            assert_reported(&p, expect);
        }
        // A refused value is said once: no follow-on problem about it.
        assert!(
            !p.iter().any(|m| m.contains("upstreams.v.targets")),
            "{p:#?}"
        );
        assert!(
            !p.iter().any(|m| m.starts_with("many.yaml: routes[1].")),
            "{p:#?}"
        );
        Ok(())
    });
}

#[test]
fn unknown_env_key_names_the_variable() {
    Jail::expect_with(|jail| {
        jail.set_env("GATEWAY_SERVER__WORKRES", "2");
        let p = problems(load(&sources(&[], &[])));
        assert!(p[0].contains("GATEWAY_SERVER__WORKRES"), "{p:?}");
        Ok(())
    });
}

#[test]
fn malformed_yaml_names_the_file() {
    Jail::expect_with(|jail| {
        jail.create_file("broken.yaml", "server: [unclosed\n")?;
        let p = problems(load(&sources(&["broken.yaml"], &[])));
        assert!(p[0].starts_with("broken.yaml"), "{p:?}");
        Ok(())
    });
}

#[test]
fn missing_file_and_bad_extension_are_reported() {
    Jail::expect_with(|jail| {
        jail.create_file("x.ini", "a=1")?;
        let p = problems(load(&sources(&["nope.yaml", "x.ini"], &[])));
        assert!(
            p[0].starts_with("nope.yaml: -: settings file not found"),
            "{p:?}"
        );
        assert!(
            p[1].contains("unsupported settings file extension"),
            "{p:?}"
        );
        Ok(())
    });
}

#[test]
fn http2_needs_https_targets_and_no_preserve_host() {
    Jail::expect_with(|jail| {
        jail.create_file(
            "ok.yaml",
            "upstreams: {u: {targets: [\"https://api.internal\"], http2: true}}\n\
             routes: [{name: a, path_prefix: /, upstream: u}]\n",
        )?;
        let settings = load(&sources(&["ok.yaml"], &[])).expect("http2 over https");
        assert!(settings.upstreams[0].http2);
        jail.create_file(
            "plain.yaml",
            "upstreams: {u: {targets: [\"https://a.internal\", \"http://b.internal\"], http2: true}}\n\
             routes: [{name: a, path_prefix: /, upstream: u}]\n",
        )?;
        jail.create_file(
            "host.yaml",
            "upstreams: {u: {targets: [\"https://api.internal\"], http2: true}}\n\
             routes: [{name: a, path_prefix: /, upstream: u, preserve_host: true}]\n",
        )?;
        for (file, expect) in [
            (
                "plain.yaml",
                "plain.yaml: upstreams.u.http2: needs https:// targets",
            ),
            (
                "host.yaml",
                "host.yaml: routes[0].preserve_host: upstream \"u\" has http2",
            ),
        ] {
            assert_reported(&problems(load(&sources(&[file], &[]))), expect);
        }
        Ok(())
    });
}

#[test]
fn redis_urls_may_use_tls_but_not_without_checks() {
    Jail::expect_with(|jail| {
        let base = "upstreams: {u: {targets: [\"http://127.0.0.1:1\"]}}\nroutes: [{name: a, path_prefix: /, upstream: u}]\n";
        jail.create_file(
            "tls.yaml",
            &format!("{base}redis: {{url: \"rediss://:pw@cache.internal:6380/0\"}}\n"),
        )?;
        let settings = load(&sources(&["tls.yaml"], &[])).expect("rediss:// is accepted");
        assert_eq!(
            settings.redis.map(|r| r.urls),
            Some(vec!["rediss://:pw@cache.internal:6380/0".to_owned()])
        );
        jail.create_file(
            "insecure.yaml",
            &format!("{base}redis: {{url: \"rediss://cache:6380/0#insecure\"}}\n"),
        )?;
        jail.create_file(
            "http.yaml",
            &format!("{base}redis: {{url: \"http://cache:6379\"}}\n"),
        )?;
        for (file, expect) in [
            ("insecure.yaml", "insecure.yaml: redis.url: #insecure"),
            ("http.yaml", "http.yaml: redis.url:"),
        ] {
            assert_reported(&problems(load(&sources(&[file], &[]))), expect);
        }
        Ok(())
    });
}

#[test]
fn bad_values_are_all_reported_with_their_keys() {
    Jail::expect_with(|jail| {
        jail.create_file(
            "bad.yaml",
            r#"
server: {listen: "nowhere", trusted_proxies: ["10.0.0.0/8", "banana"]}
logging: {level: loud}
upstreams:
  u: {targets: ["ftp://x", "http://h:1/path"], balance: fastest, request_timeout_ms: 0}
rate_limits:
  p: {key: "cookie", scope: cluster}
routes:
  - {name: a, path_prefix: "/a", upstream: missing, rate_limit: [nope], strip_prefix: "/b"}
  - {name: a, path_prefix: "nope", upstream: u, auth: magic}
"#,
        )?;
        let p = problems(load(&sources(&["bad.yaml"], &[])));
        let expect = [
            "bad.yaml: server.listen:",
            "bad.yaml: server.trusted_proxies[1]:",
            "bad.yaml: logging.level:",
            "bad.yaml: upstreams.u.targets[0]:",
            "bad.yaml: upstreams.u.targets[1]:",
            "bad.yaml: upstreams.u.balance:",
            "bad.yaml: upstreams.u.request_timeout_ms: must be greater than 0",
            "bad.yaml: rate_limits.p.key:",
            "bad.yaml: rate_limits.p.scope: cluster scope needs redis.url",
            "bad.yaml: routes[0].upstream: upstream \"missing\" is not defined",
            "bad.yaml: routes[0].rate_limit: policy \"nope\" is not defined",
            "bad.yaml: routes[0].strip_prefix:",
            "bad.yaml: routes[1].name: \"a\" is used by another route",
            "bad.yaml: routes[1].path_prefix:",
            "bad.yaml: routes[1].auth:",
        ];
        for e in expect {
            assert_reported(&p, e);
        }
        Ok(())
    });
}

#[test]
fn negative_durations_are_type_errors() {
    Jail::expect_with(|jail| {
        jail.create_file("neg.yaml", "server: {keep_alive_secs: -1}")?;
        let p = problems(load(&sources(&["neg.yaml"], &[])));
        assert!(
            p[0].starts_with("neg.yaml: server.keep_alive_secs:"),
            "{p:?}"
        );
        Ok(())
    });
}

#[test]
fn auth_routes_need_provider_and_secret() {
    Jail::expect_with(|jail| {
        jail.create_file(
            "auth.yaml",
            r#"
upstreams: {u: {targets: ["http://127.0.0.1:1"]}}
routes:
  - {name: s, path_prefix: /s, upstream: u, auth: session}
  - {name: b, path_prefix: /b, upstream: u, auth: bearer, require: {roles: [admin]}}
  - {name: n, path_prefix: /n, upstream: u, require: {scopes: [x]}}
auth:
  logout: {provider: true, post_logout_redirect_url: "javascript:alert(1)"}
  rate_limit: [ghost]
"#,
        )?;
        let p = problems(load(&sources(&["auth.yaml"], &[])));
        for e in [
            "auth.logout.provider: needs issuer",
            "auth.logout.post_logout_redirect_url:",
            "auth.yaml: auth.rate_limit: policy \"ghost\" is not defined",
            "auth.provider.client_id: required",
            "auth.session.secret: must be at least 32 bytes",
            "auth.provider: session routes need issuer",
            "auth.provider: bearer routes need issuer",
            "routes[2].require: requirements need an authenticated route",
        ] {
            assert!(p.iter().any(|m| m.contains(e)), "missing {e:?} in {p:#?}");
        }
        Ok(())
    });
}

#[test]
fn set_override_must_be_key_value() {
    Jail::expect_with(|_jail| {
        let p = problems(load(&sources(&[], &["server.workers"])));
        assert!(p[0].starts_with("--set: server.workers: expected dotted.key=value"));
        Ok(())
    });
}

#[test]
fn secrets_stay_out_of_debug_output() {
    let mut raw = RawSettings::default();
    raw.auth.provider.client_secret = "s3cr3t-client".into();
    raw.auth.session.secret = "s3cr3t-session-0123456789abcdef0123".into();
    let shown = format!("{raw:?}");
    assert!(!shown.contains("s3cr3t"), "{shown}");
    Jail::expect_with(|_jail| {
        let overrides = [
            "auth.provider.client_secret=s3cr3t-client",
            "auth.session.secret=s3cr3t-session-0123456789abcdef0123",
        ];
        let settings = load(&sources(&[], &overrides)).expect("valid");
        assert_eq!(settings.auth.provider.client_secret, "s3cr3t-client");
        let shown = format!("{settings:?}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
        Ok(())
    });
}

#[test]
fn unsafe_or_unsupported_targets_and_port_clashes_are_refused() {
    Jail::expect_with(|jail| {
        jail.create_file(
            "t.yaml",
            r#"
server: {listen: "0.0.0.0:8080"}
admin: {listen: "127.0.0.1:8080"}
upstreams:
  u: {targets: ["http://user:pw@h:1", "https://h:2", "http://h:3#frag"], tls_ca_file: "missing.pem"}
routes:
  - {name: a, path_prefix: /a/, upstream: u}
  - {name: b, path_prefix: /a, upstream: u}
"#,
        )?;
        let p = problems(load(&sources(&["t.yaml"], &[])));
        for e in [
            "t.yaml: admin.listen: must not share server.listen's port",
            "t.yaml: upstreams.u.targets[0]:",
            "t.yaml: upstreams.u.targets[2]:",
            "t.yaml: upstreams.u.tls_ca_file: missing.pem:",
            "t.yaml: routes[1].path_prefix: another route has the same",
        ] {
            assert_reported(&p, e);
        }
        Ok(())
    });
}

#[test]
fn tracing_is_off_by_default_and_checked_even_while_off() {
    Jail::expect_with(|jail| {
        let s = load(&sources(&[], &[])).expect("defaults are valid");
        assert_eq!(s.tracing, None);
        jail.create_file(
            "tracing.yaml",
            "tracing: {otlp_endpoint: \"collector:4318\", sample_ratio: 1.5, \
             service_name: \" \", export_timeout_ms: 0}\n",
        )?;
        let p = problems(load(&sources(&["tracing.yaml"], &[])));
        for expect in [
            "tracing.yaml: tracing.otlp_endpoint: \"collector:4318\" must be an absolute URL",
            "tracing.yaml: tracing.sample_ratio: 1.5 is not between 0 and 1",
            "tracing.yaml: tracing.service_name: must not be empty",
            "tracing.yaml: tracing.export_timeout_ms: must be greater than 0",
        ] {
            assert_reported(&p, expect);
        }
        jail.set_env("GATEWAY_TRACING__ENABLED", "true");
        jail.set_env("GATEWAY_TRACING__SAMPLE_RATIO", "0.25");
        let s = load(&sources(&[], &[])).expect("valid");
        let t = s.tracing.expect("enabled from the environment");
        assert_eq!(t.otlp_endpoint.as_str(), "http://127.0.0.1:4318/v1/traces");
        assert_eq!(t.service_name, "gateway");
        assert_eq!(t.sample_ratio, 0.25);
        assert_eq!(t.export_timeout, Duration::from_millis(5000));
        Ok(())
    });
}
