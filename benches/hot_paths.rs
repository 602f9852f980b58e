//! Micro-benchmarks of the request pipeline's steps, one function at a time:
//! route match, the upstream request's headers, the local GCRA decision, the
//! session lookup and the access-log line. Each drives the gateway's own code
//! (through `gateway::tools`), on one thread, with nothing on the network.
//!
//! These say what one step costs and catch regressions in it; what a whole
//! request costs (instructions per request, req/s against NGINX) is measured
//! end to end by `bench/instructions.sh` and `bench/run.sh`.
//!
//! `cargo bench --bench hot_paths` (or `make bench-micro`); a quicker run:
//! `cargo bench --bench hot_paths -- --warm-up-time 1 --measurement-time 2`.

use std::hash::{BuildHasher, RandomState};
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use actix_web::http::Method;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use futures_util::FutureExt;
use gateway::logging::push_timestamp;
use gateway::settings::{
    OnStoreError, RateLimitKey, RateLimitPolicy, RateLimitScope, RouteSettings,
};
use gateway::tools::{
    cookie_value, for_each_upstream_header, forwarded_for, random_token, request_skip_list,
    unix_now, AccessLine, ClientInfo, Identity, IpText, KeyMaterial, Policy, RouteTable, Session,
    SessionStore, X_FORWARDED_FOR,
};

const SESSION_COOKIE: &str = "gateway_session";

// Route match: the route_match stage's lookup (normalise the path, walk the trie).

/// `n` routes as a config file lists them (every third one GET/HEAD only),
/// with no catch-all, so that a miss is a 404.
fn route_table(n: usize) -> RouteTable {
    let routes = (0..n)
        .map(|i| {
            let mut route = RouteSettings::prefix_only(&format!("svc{i}"), &format!("/svc{i}/v1"));
            if i % 3 == 0 {
                route.methods = vec![Method::GET, Method::HEAD];
            }
            route
        })
        .collect();
    RouteTable::new(routes)
}

fn route_match(c: &mut Criterion) {
    let mut group = c.benchmark_group("route_match");
    for n in [10, 200] {
        let table = route_table(n);
        let hit = format!("/svc{}/v1/items/42", n - 1);
        let miss = "/nowhere/at/all";
        let host = Some("api.example.com");
        assert!(table.match_request(host, &Method::GET, &hit).is_ok());
        assert!(table.match_request(host, &Method::GET, miss).is_err());
        group.bench_function(BenchmarkId::new("hit", n), |b| {
            b.iter(|| table.match_request(black_box(host), &Method::GET, black_box(&hit)))
        });
        group.bench_function(BenchmarkId::new("miss", n), |b| {
            b.iter(|| table.match_request(black_box(host), &Method::GET, black_box(miss)))
        });
    }
    group.finish();
}

// Header rewrite: proxy::forward building the upstream request's headers.

/// A browser's request head: a session cookie among others, hop-by-hop
/// headers and a forwarding header of its own.
fn client_headers(id: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    let mut add = |name: HeaderName, value: &str| {
        h.append(name, HeaderValue::from_str(value).expect("header value"));
    };
    add(header::HOST, "api.example.com");
    add(
        header::USER_AGENT,
        "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
    );
    add(header::ACCEPT, "application/json, text/plain, */*");
    add(header::ACCEPT_LANGUAGE, "en-GB,en;q=0.5");
    add(header::ACCEPT_ENCODING, "gzip, deflate, br");
    add(header::CONNECTION, "keep-alive");
    add(HeaderName::from_static("keep-alive"), "timeout=5");
    add(
        header::COOKIE,
        &format!("theme=dark; {SESSION_COOKIE}={id}; lang=en"),
    );
    add(X_FORWARDED_FOR, "203.0.113.9, 10.0.0.2");
    add(HeaderName::from_static("x-request-id"), "client-chosen-id");
    h
}

/// What the proxy sends upstream for `incoming`: the client's end-to-end
/// headers less the gateway's cookies, then the forwarding headers.
fn upstream_headers(
    incoming: &HeaderMap,
    client: &ClientInfo,
    skip: &[HeaderName],
    gateway_cookies: &[String],
) -> HeaderMap {
    let xff = forwarded_for(client, incoming);
    let mut out = HeaderMap::new();
    for_each_upstream_header(incoming, skip, gateway_cookies, |name, value| {
        out.append(name.clone(), value.clone())
    });
    if let Some(v) = xff {
        out.append(X_FORWARDED_FOR, v);
    }
    out.append(
        HeaderName::from_static("x-forwarded-proto"),
        HeaderValue::from_static("https"),
    );
    if let Some(host) = incoming.get(header::HOST) {
        out.append(HeaderName::from_static("x-forwarded-host"), host.clone());
    }
    out.append(
        HeaderName::from_static("x-request-id"),
        HeaderValue::from_static("6f1c8e9a-2b4d-4c1e-9f3a-7d5b2e8c0a41"),
    );
    out
}

fn header_rewrite(c: &mut Criterion) {
    let incoming = client_headers(&random_token());
    let skip = request_skip_list(false);
    let gateway_cookies = vec![SESSION_COOKIE.to_owned(), format!("{SESSION_COOKIE}_login")];
    let peer = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7));
    let untrusted = ClientInfo::resolve(peer, &incoming, &[]);
    let proxies: Vec<ipnet::IpNet> = vec!["198.51.100.0/24".parse().expect("a network")];
    let trusted = ClientInfo::resolve(peer, &incoming, &proxies);
    let sent = upstream_headers(&incoming, &untrusted, &skip, &gateway_cookies);
    assert_eq!(sent.get(header::COOKIE).unwrap(), "theme=dark; lang=en");
    assert_eq!(sent.get(X_FORWARDED_FOR).unwrap(), "198.51.100.7");
    assert!(!sent.contains_key(header::CONNECTION) && !sent.contains_key("keep-alive"));

    let mut group = c.benchmark_group("header_rewrite");
    for (name, client) in [("untrusted_peer", &untrusted), ("trusted_peer", &trusted)] {
        group.bench_function(name, |b| {
            b.iter(|| upstream_headers(black_box(&incoming), client, &skip, &gateway_cookies))
        });
    }
    group.finish();
}

// GCRA decision: the rate-limit stage's local check (key hash, governor's keyed GCRA).

/// A local policy of `requests` per `period`, no burst, keyed by IP.
fn local_policy(requests: u64, period: Duration) -> Policy {
    Policy::new(RateLimitPolicy {
        name: "per_ip".into(),
        requests,
        period,
        burst: 0,
        key: RateLimitKey::Ip,
        scope: RateLimitScope::Local,
        on_store_error: OnStoreError::Local,
    })
}

fn gcra_decision(c: &mut Criterion) {
    // Hashed with a per-process seed, as RateLimiting::decide does.
    let seed = RandomState::new();
    let client = KeyMaterial::Ip(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7)));
    // A budget no benchmark can spend (10^8 per second): always allowed.
    let roomy = local_policy(100_000_000, Duration::from_secs(1));
    // One request an hour, already spent: always refused.
    let spent = local_policy(1, Duration::from_secs(3600));
    assert!(roomy.check_local(seed.hash_one(&client)).allowed);
    assert!(spent.check_local(seed.hash_one(&client)).allowed);
    assert!(!spent.check_local(seed.hash_one(&client)).allowed);

    let mut group = c.benchmark_group("gcra");
    for (name, policy) in [("allowed", &roomy), ("denied", &spent)] {
        group.bench_function(name, |b| {
            b.iter(|| policy.check_local(seed.hash_one(black_box(&client))))
        });
    }
    group.finish();
}

// Session lookup: the auth stage reading the session cookie, then the in-memory store's hit.

fn session_lookup(c: &mut Criterion) {
    // The store's cache actor runs on an arbiter: build it inside a system.
    let system = actix_rt::System::new();
    let id = random_token();
    let store = system.block_on(async {
        let log = slog::Logger::root(slog::Discard, slog::o!());
        let lookups = prometheus::IntCounterVec::new(
            prometheus::Opts::new("session_cache_lookups_total", "bench"),
            &["result"],
        )
        .expect("counter");
        let store =
            SessionStore::memory(Duration::from_secs(3600), log).with_lookup_metric(lookups);
        let now = unix_now();
        let identity = Identity::new(
            "bench-user".into(),
            Some("bench-user@example.com".into()),
            vec!["staff".into()],
            vec!["openid".into(), "profile".into(), "email".into()],
        );
        let session = Session::new(identity, random_token(), None, 0, now, now + 3600);
        store.save(&id, session).await.expect("save");
        store
    });
    let cookie = format!("theme=dark; {SESSION_COOKIE}={id}; lang=en");
    assert_eq!(
        cookie_value(cookie.as_bytes(), SESSION_COOKIE),
        Some(&id[..])
    );
    // A cache hit never waits: the lookup is ready at its first poll.
    let found = store.lookup(&id).now_or_never().expect("ready");
    assert!(found.expect("store").is_some());

    let mut group = c.benchmark_group("session_lookup");
    group.bench_function("cookie_value", |b| {
        b.iter(|| cookie_value(black_box(cookie.as_bytes()), SESSION_COOKIE))
    });
    group.bench_function("memory_hit", |b| {
        b.iter(|| store.lookup(black_box(&id)).now_or_never())
    });
    group.finish();
}

// Access-log line: the access-log stage encoding one JSON line into the worker's reused buffer.

/// One proxied request's line, with the fields `WorkerTelemetry` logs.
fn request_line<'a>(user_agent: &'a str, client_ip: &'a IpText) -> AccessLine<'a> {
    AccessLine {
        request_id: "6f1c8e9a-2b4d-4c1e-9f3a-7d5b2e8c0a41",
        method: "GET",
        path: "/svc7/v1/items/42",
        status: 200,
        duration: Duration::from_micros(1_284),
        upstream_duration: Some(Duration::from_micros(913)),
        bytes_in: Some(0),
        bytes_out: Some(1_843),
        user_agent: Some(user_agent),
        route: Some("svc7"),
        upstream: Some("backend"),
        target: Some("http://10.0.3.21:8080"),
        client_ip: Some(client_ip),
        user: Some("bench-user"),
        trace_id: None,
    }
}

fn access_log_line(c: &mut Criterion) {
    let user_agent = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
    let client_ip = IpText::new([198, 51, 100, 7].into());
    let mut buf = Vec::with_capacity(512);
    request_line(user_agent, &client_ip).write_json(&mut buf, push_timestamp);
    let line: serde_json::Value = serde_json::from_slice(&buf).expect("one JSON line");
    assert_eq!(line["status"], 200);
    assert_eq!(line["duration_ms"], 1.284);

    let mut group = c.benchmark_group("access_log");
    group.bench_function("encode_line", |b| {
        b.iter(|| {
            buf.clear();
            black_box(request_line(black_box(user_agent), &client_ip))
                .write_json(&mut buf, push_timestamp);
            black_box(&buf);
        })
    });
    group.finish();
}

criterion_group!(
    hot_paths,
    route_match,
    header_rewrite,
    gcra_decision,
    session_lookup,
    access_log_line
);
criterion_main!(hot_paths);
