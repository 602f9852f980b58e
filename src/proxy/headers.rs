//! What headers cross the gateway, in each direction.
//!
//! Used by the proxy handler when it builds the upstream request and the
//! client response: hop-by-hop headers (the fixed list and every name listed
//! in `Connection`) never cross; `X-Forwarded-*` are rebuilt from what the
//! gateway knows, believing a peer's own forwarding headers only when the
//! peer is a trusted proxy; identity headers (`X-Auth-*`) from clients are
//! always dropped, so only the gateway's auth stage can set them.

use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::auth::browser::cookie_pairs;
use crate::context::{
    forwarded_hops, ClientInfo, IpText, TRACEPARENT, X_FORWARDED_FOR, X_FORWARDED_HOST,
    X_FORWARDED_PROTO, X_REQUEST_ID,
};

/// Headers the auth stage sets for upstreams; clients may never supply them.
pub const IDENTITY_HEADERS: [&str; 4] = [
    "x-auth-subject",
    "x-auth-email",
    "x-auth-roles",
    "x-auth-scopes",
];

/// RFC 9110 §7.6.1 hop-by-hop headers, plus the de-facto `proxy-connection`.
const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Names listed in `Connection` (lower case); those are hop-by-hop too.
fn connection_listed(headers: &HeaderMap) -> Vec<HeaderName> {
    headers
        .get_all(header::CONNECTION)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::try_from(name.trim()).ok())
        .collect()
}

/// Calls `keep` for every header that may cross the gateway.
///
/// `Content-Length` is also left out: the body the gateway forwards carries
/// its own length. `extra_skip` names more headers the caller sets itself.
pub fn for_each_end_to_end(
    headers: &HeaderMap,
    extra_skip: &[HeaderName],
    mut keep: impl FnMut(&HeaderName, &HeaderValue),
) {
    let crosses = crossing_test(headers, extra_skip);
    for (name, value) in headers {
        if crosses(name) {
            keep(name, value);
        }
    }
}

/// [`for_each_end_to_end`] in place: leaves in `headers` only what may
/// cross (no `extra_skip`). For the upstream's response, whose header map
/// becomes the client's instead of being copied header by header.
pub fn retain_end_to_end(headers: &mut HeaderMap) {
    let crosses = crossing_test(headers, &[]);
    // `crosses` owns what it read of `headers` (the listed names).
    headers.retain(|name, _| crosses(name));
}

/// Whether a header of `headers` may cross the gateway: not hop-by-hop,
/// not listed in its `Connection`, not `Content-Length`, not `extra_skip`.
fn crossing_test<'a>(
    headers: &HeaderMap,
    extra_skip: &'a [HeaderName],
) -> impl Fn(&HeaderName) -> bool + 'a {
    let listed = if headers.contains_key(header::CONNECTION) {
        connection_listed(headers)
    } else {
        Vec::new()
    };
    move |name| {
        !(HOP_BY_HOP.contains(name)
            || name == header::CONTENT_LENGTH
            || extra_skip.contains(name)
            || listed.contains(name))
    }
}

/// [`for_each_end_to_end`] for a request going upstream: also takes the
/// gateway's own cookies (`gateway_cookies`) out of `Cookie`.
pub fn for_each_upstream_header(
    headers: &HeaderMap,
    skip: &[HeaderName],
    gateway_cookies: &[String],
    mut keep: impl FnMut(&HeaderName, &HeaderValue),
) {
    for_each_end_to_end(headers, skip, |name, value| {
        if name == header::COOKIE && !gateway_cookies.is_empty() {
            if let Some(value) = without_cookies(value, gateway_cookies) {
                keep(name, &value);
            }
        } else {
            keep(name, value);
        }
    });
}

/// Request headers the gateway sets or refuses to pass on; with `tracing`
/// on, `traceparent` too (the gateway sends its own span as the parent).
pub fn request_skip_list(tracing: bool) -> Vec<HeaderName> {
    let mut skip = vec![
        header::HOST,
        header::EXPECT,
        X_FORWARDED_FOR,
        X_FORWARDED_PROTO,
        X_FORWARDED_HOST,
        X_REQUEST_ID,
        HeaderName::from_static("forwarded"),
    ];
    skip.extend(IDENTITY_HEADERS.iter().map(|h| HeaderName::from_static(h)));
    if tracing {
        skip.push(TRACEPARENT);
    }
    skip
}

/// `X-Forwarded-For` to send upstream: the trusted chain plus the peer, or
/// just the peer when it is not trusted (a client's own list is not passed
/// on). `None` only if a trusted chain held bytes a header cannot carry.
pub fn forwarded_for(client: &ClientInfo, headers: &HeaderMap) -> Option<HeaderValue> {
    if !client.peer_trusted {
        // The usual case: the peer is the client, whose address is already
        // text; one allocation, the value's own.
        return HeaderValue::from_bytes(client.ip_text.as_bytes()).ok();
    }
    let peer = IpText::new(client.peer);
    let mut chain = forwarded_hops(headers);
    if chain.is_empty() {
        return HeaderValue::from_bytes(peer.as_bytes()).ok();
    }
    chain.push(peer.as_str());
    HeaderValue::from_str(&chain.join(", ")).ok()
}

/// A `Cookie` header without the gateway's own cookies (`names`): the
/// session id is the gateway's credential, and an upstream that logs or
/// leaks headers must not be able to replay it. `None` when nothing is
/// left.
pub fn without_cookies(value: &HeaderValue, names: &[String]) -> Option<HeaderValue> {
    // Bytes, not text: a header with one non-ASCII byte elsewhere must not
    // carry the session cookie past this filter.
    let bytes = value.as_bytes();
    let is_ours = |pair: &[u8]| {
        let name = &pair[..memchr::memchr(b'=', pair).unwrap_or(pair.len())];
        let name = name.trim_ascii();
        names.iter().any(|n| n.as_bytes() == name)
    };
    if !cookie_pairs(bytes).any(is_ours) {
        return Some(value.clone());
    }
    let mut kept: Vec<u8> = Vec::with_capacity(bytes.len());
    for pair in cookie_pairs(bytes) {
        let pair = pair.trim_ascii();
        if pair.is_empty() || is_ours(pair) {
            continue;
        }
        if !kept.is_empty() {
            kept.extend_from_slice(b"; ");
        }
        kept.extend_from_slice(pair);
    }
    if kept.is_empty() {
        return None;
    }
    HeaderValue::from_bytes(&kept).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    #[test]
    fn gateway_cookies_are_removed_others_kept() {
        let names = vec!["gw".to_owned(), "gw_login".to_owned()];
        let v = |s: &'static str| HeaderValue::from_static(s);
        assert_eq!(without_cookies(&v("gw=secret"), &names), None);
        assert_eq!(
            without_cookies(&v("theme=dark; gw=secret; gw_login=x; lang=en"), &names),
            Some(v("theme=dark; lang=en"))
        );
        assert_eq!(
            without_cookies(&v("gwx=1; a=2"), &names),
            Some(v("gwx=1; a=2")),
            "untouched when no gateway cookie is present"
        );
    }

    #[test]
    fn non_ascii_cookie_headers_still_lose_the_gateway_cookie() {
        let names = vec!["gw".to_owned()];
        let value = HeaderValue::from_bytes(b"name=J\xc3\xbcrgen; gw=secret; a=\xff").unwrap();
        let kept = without_cookies(&value, &names).expect("other cookies stay");
        assert_eq!(kept.as_bytes(), b"name=J\xc3\xbcrgen; a=\xff");
        let only = HeaderValue::from_bytes(b"gw=secret;\xff").unwrap();
        assert_eq!(without_cookies(&only, &names).unwrap().as_bytes(), b"\xff");
    }

    #[test]
    fn forwarded_for_keeps_a_trusted_chain_only() {
        let mut h = HeaderMap::new();
        for line in ["6.6.6.6, 1.2.3.4", "10.0.0.7"] {
            h.append(X_FORWARDED_FOR, HeaderValue::from_static(line));
        }
        let peer: IpAddr = "10.0.0.1".parse().unwrap();
        let trusted: Vec<ipnet::IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let client = |headers: &HeaderMap, trusted: &[ipnet::IpNet]| {
            ClientInfo::resolve(peer, headers, trusted)
        };
        let xff = |trusted: &[ipnet::IpNet]| {
            forwarded_for(&client(&h, trusted), &h).expect("a header value")
        };
        assert_eq!(xff(&[]), "10.0.0.1");
        assert_eq!(xff(&trusted), "6.6.6.6, 1.2.3.4, 10.0.0.7, 10.0.0.1");
        let none = HeaderMap::new();
        assert_eq!(
            forwarded_for(&client(&none, &trusted), &none).unwrap(),
            "10.0.0.1"
        );
    }

    #[test]
    fn hop_by_hop_and_connection_listed_headers_are_dropped() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, X-Secret-Hop"),
        );
        h.insert(
            HeaderName::from_static("x-secret-hop"),
            HeaderValue::from_static("1"),
        );
        h.insert(
            HeaderName::from_static("keep-alive"),
            HeaderValue::from_static("timeout=5"),
        );
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("3"));
        h.insert(
            HeaderName::from_static("x-auth-subject"),
            HeaderValue::from_static("root"),
        );
        h.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        let mut kept = Vec::new();
        for_each_end_to_end(&h, &request_skip_list(false), |n, _| {
            kept.push(n.to_string())
        });
        assert_eq!(kept, vec!["accept".to_string()]);

        // In place (a response): the same test, no caller's skip list.
        retain_end_to_end(&mut h);
        let mut left: Vec<String> = h.keys().map(|n| n.to_string()).collect();
        left.sort();
        assert_eq!(
            left,
            vec!["accept".to_string(), "x-auth-subject".to_string()]
        );
    }
}
