//! Arbitrary host, method and path through `RouteTable::match_request`.
//!
//! Input: `host\nmethod\npath` (an empty host line means no Host header).
//! Asserts, for every request the table routes:
//! - the route's prefix is a whole-segment prefix of the normalised path;
//! - the normalised path holds no `//`, `/./` or `/../` (nor ends in `/.`
//!   or `/..`), and normalising it again changes nothing;
//! - decoding it once (as an upstream does) yields no `..` segment.
#![no_main]

use std::sync::OnceLock;

use actix_web::http::Method;
use gateway::settings::RouteSettings;
use gateway::tools::{normalize_path, RouteTable};
use libfuzzer_sys::fuzz_target;

fn table() -> &'static RouteTable {
    static TABLE: OnceLock<RouteTable> = OnceLock::new();
    TABLE.get_or_init(|| {
        let route =
            |name: &str, prefix: &str, methods: &[Method], host: Option<&str>| RouteSettings {
                methods: methods.to_vec(),
                host: host.map(str::to_owned),
                ..RouteSettings::prefix_only(name, prefix)
            };
        RouteTable::new(vec![
            route("public", "/public", &[], None),
            route("api", "/api", &[], None),
            route("users", "/api/users", &[Method::GET, Method::HEAD], None),
            route("admin", "/admin", &[Method::GET], None),
            route("hosted", "/a", &[], Some("api.example.com")),
            route("static", "/static/v1", &[], None),
            route("root", "/", &[Method::POST], None),
        ])
    })
}

/// `%XY` decoded once, everything else as is.
fn decode_once(path: &str) -> Vec<u8> {
    let b = path.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = |c: u8| (c as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut parts = text.splitn(3, '\n');
    let (Some(host), Some(method), Some(raw)) = (parts.next(), parts.next(), parts.next()) else {
        return;
    };
    let host = (!host.is_empty()).then_some(host);
    let Ok(method) = Method::from_bytes(method.as_bytes()) else {
        return;
    };
    let t = table();
    let Ok(m) = t.match_request(host, &method, raw) else {
        return;
    };
    let path = m.path(raw);
    let prefix = &t.get(m.index).path_prefix;
    assert!(
        prefix == "/" || path == prefix || path.starts_with(&format!("{prefix}/")),
        "{raw:?} -> {path:?} matched prefix {prefix:?}"
    );
    assert!(path.starts_with('/'), "{raw:?} -> {path:?}");
    for bad in ["//", "/./", "/../"] {
        assert!(!path.contains(bad), "{raw:?} -> {path:?} holds {bad}");
    }
    assert!(
        !path.ends_with("/.") && !path.ends_with("/.."),
        "{raw:?} -> {path:?}"
    );
    assert_eq!(
        normalize_path(path).as_deref(),
        Some(path),
        "normalising {raw:?} twice"
    );
    let once = decode_once(path);
    assert!(
        !once.split(|&b| b == b'/').any(|seg| seg == b".."),
        "{raw:?} -> {path:?} is `..` one decode later: {:?}",
        String::from_utf8_lossy(&once)
    );
});
