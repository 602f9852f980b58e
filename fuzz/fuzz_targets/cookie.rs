//! Arbitrary `Cookie` header bytes through the two cookie readers:
//! - `proxy::headers::without_cookies`, which strips the gateway's cookies
//!   before a request goes upstream: no pair named like one of them may
//!   survive (names compared as the gateway reads them: split on `;`, the
//!   part before the first `=`, ASCII whitespace trimmed), every other
//!   non-empty pair is kept in order, and `None` only when nothing is left;
//! - `auth::browser::cookie_value`, which finds the session id: what it
//!   returns is visible ASCII, holds no `;`, and appears as `name=value` in
//!   the header; whatever it finds, `without_cookies` removes.
#![no_main]

use actix_web::http::header::HeaderValue;
use gateway::tools::{cookie_value, without_cookies};
use libfuzzer_sys::fuzz_target;

const SESSION: &str = "gateway_session";
const LOGIN: &str = "gateway_session_login";

fn pairs(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    bytes
        .split(|&b| b == b';')
        .map(<[u8]>::trim_ascii)
        .filter(|p| !p.is_empty())
}

fn name_of(pair: &[u8]) -> &[u8] {
    pair.split(|&b| b == b'=')
        .next()
        .unwrap_or(pair)
        .trim_ascii()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fuzz_target!(|data: &[u8]| {
    let names = [SESSION.to_owned(), LOGIN.to_owned()];
    let ours = |pair: &[u8]| names.iter().any(|n| n.as_bytes() == name_of(pair));

    // The session reader sees whatever bytes a header line holds.
    for name in &names {
        if let Some(value) = cookie_value(data, name) {
            assert!(
                value
                    .bytes()
                    .all(|b| (0x21..0x7f).contains(&b) && b != b';'),
                "{name}: {value:?}"
            );
            let pair = format!("{name}={value}");
            assert!(
                contains(data, pair.as_bytes()),
                "{name}: {value:?} not in the header"
            );
        }
    }

    // The filter sees only what a header value may hold.
    let Ok(header) = HeaderValue::from_bytes(data) else {
        return;
    };
    let out = without_cookies(&header, &names);
    if let Some(out) = &out {
        let bytes = out.as_bytes();
        assert!(
            !pairs(bytes).any(ours),
            "a gateway cookie survived: {:?} -> {:?}",
            String::from_utf8_lossy(data),
            String::from_utf8_lossy(bytes)
        );
        for name in &names {
            assert_eq!(cookie_value(bytes, name), None, "{name} still readable");
        }
        if pairs(data).any(ours) {
            let want: Vec<&[u8]> = pairs(data).filter(|p| !ours(p)).collect();
            let got: Vec<&[u8]> = pairs(bytes).collect();
            assert_eq!(got, want, "other cookies are kept, in order");
        } else {
            assert_eq!(bytes, data, "a header without our cookies passes unchanged");
        }
    } else {
        assert!(
            pairs(data).all(ours),
            "other cookies were dropped: {:?}",
            String::from_utf8_lossy(data)
        );
    }
});
