//! Properties of path normalisation and route matching, over generated
//! paths made of the pieces path tricks use (dots, slashes, `%`-escapes of
//! dots and slashes, stray `%`s, escaped escapes) and arbitrary short
//! segments:
//! - a path the route table matches to prefix P is P or starts with P + "/"
//!   (normalisation never lets a request escape the prefix it matched), and
//!   the route is the longest such prefix;
//! - normalisation is idempotent, and its output holds no `//`, `.` or `..`
//!   segment;
//! - decoding the normalised path once (as an upstream does) yields no `..`
//!   segment.
//!
//! Pure functions, a few thousand cases each: a few seconds in all.

use actix_web::http::Method;
use gateway::settings::RouteSettings;
use gateway::tools::{is_normal, normalize_path, GatewayError, RouteTable};
use proptest::prelude::*;

const PREFIXES: [&str; 6] = ["/", "/public", "/api", "/api/users", "/admin", "/a/b/c"];

fn table() -> RouteTable {
    RouteTable::new(
        PREFIXES
            .iter()
            .enumerate()
            .map(|(i, p)| RouteSettings::prefix_only(&format!("r{i}"), p))
            .collect(),
    )
}

fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "", ".", "..", "%2e", "%2E", "%2e%2e", ".%2e", "%2E.", "%2f", "%2F", "%2e%2e%2f",
            "%25", "%252e", "%252e%252e", "%", "%%", "%%32%65", "%%32%65%%32%65", "%%32%66",
            "%3", "%g0", "%61", "%7E", "%00", "%5c", "%3F", "%20", "public", "api", "users",
            "admin", "a", "b", "c", "é",
        ])
        .prop_map(str::to_owned),
        2 => "[a-c./%0-9eEfF]{0,6}",
    ]
}

fn raw_path() -> impl Strategy<Value = String> {
    (prop::collection::vec(segment(), 0..8), any::<bool>()).prop_map(|(segs, trailing)| {
        let mut p = format!("/{}", segs.join("/"));
        if trailing {
            p.push('/');
        }
        p
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

fn under(path: &str, prefix: &str) -> bool {
    prefix == "/" || path == prefix || path.starts_with(&format!("{prefix}/"))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn a_matched_path_stays_under_its_prefix(raw in raw_path()) {
        let t = table();
        match t.match_request(None, &Method::GET, &raw) {
            Ok(m) => {
                let path = m.path(&raw);
                let prefix = &t.get(m.index).path_prefix;
                prop_assert!(under(path, prefix), "{raw:?} -> {path:?} under {prefix:?}");
                let longest = PREFIXES.iter().filter(|p| under(path, p)).max_by_key(|p| p.len());
                prop_assert_eq!(Some(prefix.as_str()), longest.copied(), "{:?} -> {:?}", raw, path);
            }
            Err(GatewayError::BadPath) => prop_assert_eq!(normalize_path(&raw), None),
            Err(other) => {
                return Err(TestCaseError::fail(format!("{raw:?}: {other:?} with a root route")));
            }
        }
    }

    #[test]
    fn normalisation_is_idempotent_and_leaves_no_dot_segments(raw in raw_path()) {
        if let Some(n) = normalize_path(&raw) {
            let again = normalize_path(&n);
            prop_assert_eq!(again.as_deref(), Some(n.as_str()), "{:?}", raw);
            prop_assert!(n.starts_with('/'));
            for bad in ["//", "/./", "/../"] {
                prop_assert!(!n.contains(bad), "{raw:?} -> {n:?}");
            }
            prop_assert!(!n.ends_with("/.") && !n.ends_with("/.."), "{raw:?} -> {n:?}");
        }
    }

    #[test]
    fn a_path_taken_as_normal_is_its_own_normal_form(raw in raw_path()) {
        // The route stage skips normalising such a path: that must change nothing.
        if is_normal(&raw) {
            let normal = normalize_path(&raw);
            prop_assert_eq!(normal.as_deref(), Some(raw.as_str()));
        }
    }

    #[test]
    fn one_decode_of_a_normalised_path_yields_no_parent_segment(raw in raw_path()) {
        if let Some(n) = normalize_path(&raw) {
            let once = decode_once(&n);
            prop_assert!(
                !once.split(|&b| b == b'/').any(|seg| seg == b".."),
                "{raw:?} -> {n:?} -> {:?}",
                String::from_utf8_lossy(&once)
            );
        }
    }
}

#[test]
fn a_percent_that_starts_no_escape_is_a_bad_path() {
    let t = table();
    for raw in ["/public/%%32%65%%32%65/admin", "/api/%%32%66x", "/api/100%"] {
        assert_eq!(
            t.match_request(None, &Method::GET, raw).err(),
            Some(GatewayError::BadPath),
            "{raw}"
        );
    }
}
