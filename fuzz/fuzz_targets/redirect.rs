//! Arbitrary `rd` values through `auth::browser::safe_redirect`, the check
//! of `/oauth2/login?rd=` and `/oauth2/logout?rd=`.
//!
//! Asserts: an accepted `rd` is returned as given (`/` when absent or
//! empty), and a browser on the gateway that follows it (WHATWG URL parsing,
//! as the `url` crate implements it) stays on the gateway's own origin or
//! goes to an http(s) URL on one of `allowed_redirect_hosts`.
#![no_main]

use gateway::tools::safe_redirect;
use libfuzzer_sys::fuzz_target;
use url::Url;

const GATEWAY: &str = "https://gateway.example/oauth2/login";

fuzz_target!(|data: &[u8]| {
    let Ok(rd) = std::str::from_utf8(data) else {
        return;
    };
    let allowed = [
        "app.example.com".to_owned(),
        "xn--bcher-kva.example".to_owned(),
    ];
    let Some(target) = safe_redirect(Some(rd), &allowed) else {
        return;
    };
    if rd.is_empty() {
        assert_eq!(target, "/");
    } else {
        assert_eq!(target, rd);
    }
    let base = Url::parse(GATEWAY).unwrap();
    let Ok(followed) = base.join(&target) else {
        panic!("{rd:?} accepted but a browser cannot follow it");
    };
    let host = followed.host_str().unwrap_or_default();
    let same_origin = followed.origin() == base.origin();
    let to_allowed = matches!(followed.scheme(), "http" | "https")
        && allowed.iter().any(|h| h.eq_ignore_ascii_case(host));
    assert!(
        same_origin || to_allowed,
        "{rd:?} sends the browser to {followed}"
    );
});
