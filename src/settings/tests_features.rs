//! Validation of the optional per-route features and `consistent_hash`:
//! what `gateway check` accepts, and every refusal naming file and key.
#![allow(clippy::result_large_err)]

use std::path::PathBuf;
use std::time::Duration;

use super::*;
use figment::Jail;

fn load_file(name: &str) -> Result<Settings, Vec<String>> {
    load(&Sources {
        config_files: vec![PathBuf::from(name)],
        overrides: Vec::new(),
        use_env: false,
    })
    .map_err(|p| p.0.iter().map(ToString::to_string).collect())
}

#[test]
fn a_route_with_every_feature_is_validated() {
    Jail::expect_with(|jail| {
        jail.create_file(
            "f.yaml",
            r#"
upstreams:
  v1: {targets: ["http://10.0.0.1:80", "http://10.0.0.2:80"], balance: consistent_hash, hash_key: "header:X-Tenant"}
  v2: {targets: ["http://10.0.0.3:80"], retry_budget: {percent: 10, min_concurrency: 1}, max_ejected_percent: 34, circuit_breaker: {consecutive_5xx: 5, error_ratio: 0.5, min_requests: 50, window_secs: 30, half_open_successes: 3}}
routes:
  - name: plain
    path_prefix: /plain
    upstream: v1
  - name: all
    path_prefix: /api
    upstreams: [{upstream: v2, weight: 10}, {upstream: v1, weight: 90}]
    timeout_ms: 1500
    max_body_bytes: 4096
    rewrite: {pattern: "^/api/v1/(?P<rest>.*)$", replacement: "/v1/${rest}"}
    request_headers: {set: {X-Env: prod}, remove: [X-Debug]}
    response_headers: {set: {Strict-Transport-Security: "max-age=63072000"}, remove: [Server]}
    cors: {allow_origins: ["https://app.example.com"], allow_methods: [GET, post], allow_credentials: true}
    allow_ips: ["10.0.0.0/8", "192.168.1.7"]
    deny_ips: ["10.1.0.0/16"]
    compress: true
    retry_on: [502, 503]
"#,
        )?;
        let s = load_file("f.yaml").expect("valid");
        assert!(
            s.routes[0].features.is_none(),
            "a plain route carries nothing"
        );
        let all = &s.routes[1];
        let f = all.features.as_deref().expect("features");
        assert_eq!(
            all.upstream, 1,
            "the first split entry stands for the route"
        );
        let split = f.split.as_ref().unwrap();
        assert_eq!(
            (split.entries.clone(), split.total),
            (vec![(1, 10), (0, 90)], 100)
        );
        assert_eq!(f.timeout, Some(Duration::from_millis(1500)));
        assert_eq!(f.max_body_bytes, Some(4096));
        let rewrite = f.rewrite.as_ref().unwrap();
        assert_eq!(rewrite.apply("/api/v1/x/y").as_deref(), Some("/v1/x/y"));
        assert_eq!(f.request_headers.as_ref().unwrap().set.len(), 1);
        let cors = f.cors.as_ref().unwrap();
        assert!(cors.allows_origin(b"https://app.example.com"));
        assert!(!cors.allows_origin(b"https://app.example.com.evil.test"));
        assert_eq!(cors.allow_methods_value, "GET, POST");
        assert!(f
            .ip_rules
            .as_ref()
            .unwrap()
            .permits("192.168.1.7".parse().unwrap()));
        assert!(f.compress && f.shapes_exchange());
        assert_eq!(f.retry_on, vec![502, 503]);
        assert_eq!(s.upstreams[0].balance, Balance::ConsistentHash);
        assert_eq!(
            s.upstreams[0].retry_budget,
            RetryBudget {
                percent: 20,
                min_concurrency: 3
            }
        );
        assert_eq!(s.upstreams[0].max_ejected_percent, 50);
        assert!(s.upstreams[0].circuit_breaker.is_none());
        let b = s.upstreams[1].circuit_breaker.as_ref().expect("breaker");
        assert_eq!(
            (b.consecutive_5xx, b.min_requests, b.half_open_successes),
            (5, 50, 3)
        );
        assert_eq!(b.window, Duration::from_secs(30));
        assert_eq!(
            s.upstreams[1].retry_budget,
            RetryBudget {
                percent: 10,
                min_concurrency: 1
            }
        );
        assert_eq!(
            s.upstreams[0].hash_key,
            Some(HashKey::Header("x-tenant".try_into().unwrap()))
        );
        Ok(())
    });
}

#[test]
fn bad_features_are_refused_with_file_and_key() {
    Jail::expect_with(|jail| {
        jail.create_file(
            "bad.yaml",
            r#"
upstreams:
  u: {targets: ["http://10.0.0.1:80"], hash_key: ip}
  h: {targets: ["http://10.0.0.1:80"], balance: consistent_hash, hash_key: "body"}
  r: {targets: ["http://10.0.0.1:80"], retry_budget: {percent: 150}, max_ejected_percent: 101, circuit_breaker: {error_ratio: 1.5, window_secs: 0}}
  n: {targets: ["http://10.0.0.1:80"], circuit_breaker: {}}
routes:
  - name: a
    path_prefix: /a
    upstream: u
    timeout_ms: 0
    rewrite: {pattern: "^/(x", replacement: "/y"}
    request_headers: {set: {X-Auth-Subject: root, X-Forwarded-For: 1.2.3.4}, remove: [Host]}
    response_headers: {set: {Transfer-Encoding: chunked}}
    cors: {allow_origins: ["*"], allow_credentials: true}
    allow_ips: ["10.0.0.0/33"]
    retry_on: [404]
  - name: b
    path_prefix: /b
    upstream: u
    upstreams: [{upstream: nowhere, weight: 1}]
    rewrite: {pattern: "^/(.*)$", replacement: "/$2"}
    cors: {allow_origins: ["https://app.example.com/"]}
  - name: c
    path_prefix: /c
    upstreams: [{upstream: u, weight: 0}]
    rewrite: {pattern: "^/(.*)$", replacement: "relative/$1"}
  - name: d
    path_prefix: /d
    upstream: u
    rewrite: {pattern: "^/(.*)$", replacement: "/100%/$1%2F"}
"#,
        )?;
        let p = load_file("bad.yaml").expect_err("refused");
        let expect = [
            "bad.yaml: upstreams.u.hash_key: only used with balance: consistent_hash",
            "bad.yaml: upstreams.h.hash_key: \"body\" is not one of",
            "bad.yaml: upstreams.r.retry_budget.percent: must be between 0 and 100",
            "bad.yaml: upstreams.r.max_ejected_percent: must be between 0 and 100",
            "bad.yaml: upstreams.r.circuit_breaker.error_ratio: 1.5 must be between 0 (off) and 1",
            "bad.yaml: upstreams.r.circuit_breaker.window_secs: must be greater than 0",
            "bad.yaml: upstreams.n.circuit_breaker: sets neither consecutive_5xx nor error_ratio",
            "bad.yaml: routes[0].timeout_ms: must be greater than 0",
            "bad.yaml: routes[0].rewrite.pattern: not a valid regex",
            "bad.yaml: routes[0].request_headers.set.X-Auth-Subject: \"X-Auth-Subject\" cannot be changed",
            "bad.yaml: routes[0].request_headers.set.X-Forwarded-For:",
            "bad.yaml: routes[0].request_headers.remove[0]: \"Host\" cannot be changed",
            "bad.yaml: routes[0].response_headers.set.Transfer-Encoding:",
            "bad.yaml: routes[0].cors.allow_origins: \"*\" cannot be combined with allow_credentials",
            "bad.yaml: routes[0].allow_ips[0]:",
            "bad.yaml: routes[0].retry_on: 404 is not a 5xx status",
            "bad.yaml: routes[1].upstreams: set either upstream or upstreams",
            "bad.yaml: routes[1].upstreams[0].upstream: upstream \"nowhere\" is not defined",
            "bad.yaml: routes[1].rewrite.replacement: refers to group \"2\"",
            "bad.yaml: routes[1].cors.allow_origins: \"https://app.example.com/\" is not an exact origin",
            "bad.yaml: routes[2].upstreams: weights must add up to more than 0",
            "bad.yaml: routes[2].rewrite.replacement: \"relative/$1\" must start with '/'",
            "bad.yaml: routes[3].rewrite.replacement: \"/100%/$1%2F\" has a '%' not followed by two hex digits",
        ];
        for e in expect {
            assert!(
                p.iter().any(|m| m.starts_with(e)),
                "missing {e:?} in {p:#?}"
            );
        }
        Ok(())
    });
}
