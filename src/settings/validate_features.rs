//! Raw per-route features to validated ones ([`RouteFeatures`]): each key
//! checked with a message naming it, so `gateway check` refuses a rewrite
//! that cannot compile, a header the gateway owns, `*` with credentials or
//! a split over an unknown upstream.

use std::time::Duration;

use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::http::Method;
use ipnet::IpNet;
use regex::Regex;

use super::checker::Checker;
use super::features::{Cors, HeaderRules, IpRules, PathRewrite, RouteFeatures, WeightedSplit};
use super::raw::{RawCors, RawHeaderRules, RawRewrite, RawRoute};
use super::types::UpstreamSettings;

/// Headers only the gateway sets or that frame the message: never settable
/// or removable by header rules.
const RESERVED: [&str; 14] = [
    "host",
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "x-request-id",
    "forwarded",
    "set-cookie",
];

fn reserved(name: &str) -> Option<&'static str> {
    let lower = name.to_ascii_lowercase();
    if lower.starts_with("x-auth-") {
        Some("X-Auth-* headers carry the gateway's verified identity")
    } else if lower.starts_with("x-forwarded-") || lower == "forwarded" {
        Some("forwarding headers are rebuilt by the gateway")
    } else if lower == "set-cookie" {
        Some("cookies are the application's or the gateway's session, not a header rule's")
    } else if RESERVED.contains(&lower.as_str()) {
        Some("the gateway sets it (framing, hop-by-hop or request id)")
    } else {
        None
    }
}

/// A CIDR (`10.0.0.0/8`) or a single address; shared with `trusted_proxies`.
pub fn parse_net(entry: &str) -> Option<IpNet> {
    let entry = entry.trim();
    entry
        .parse::<IpNet>()
        .ok()
        .or_else(|| entry.parse::<std::net::IpAddr>().ok().map(IpNet::from))
}

/// The features of route `base` (`routes[i]`); `None` when it sets none.
pub fn validate_features(
    c: &mut Checker,
    base: &str,
    r: &RawRoute,
    upstreams: &[UpstreamSettings],
) -> Option<RouteFeatures> {
    let fail = |c: &mut Checker, field: &str, msg: String| {
        c.fail("routes", &format!("{base}.{field}"), msg);
    };
    if let Some(0) = r.timeout_ms {
        fail(c, "timeout_ms", "must be greater than 0".into());
    }
    if let Some(0) = r.max_body_bytes {
        fail(c, "max_body_bytes", "must be greater than 0".into());
    }
    let rewrite = r.rewrite.as_ref().and_then(|rw| rewrite(c, base, rw));
    let request_headers = r
        .request_headers
        .as_ref()
        .map(|h| header_rules(c, &format!("{base}.request_headers"), h));
    let response_headers = r
        .response_headers
        .as_ref()
        .map(|h| header_rules(c, &format!("{base}.response_headers"), h));
    let cors = r
        .cors
        .as_ref()
        .and_then(|cors| validate_cors(c, base, cors));
    let ip_list = |c: &mut Checker, field: &str, list: &[String]| -> Vec<IpNet> {
        let mut nets = Vec::with_capacity(list.len());
        for (i, entry) in list.iter().enumerate() {
            match parse_net(entry) {
                Some(net) => nets.push(net),
                None => c.fail(
                    "routes",
                    &format!("{base}.{field}[{i}]"),
                    format!("{entry:?} is not a CIDR (10.0.0.0/8) or an IP address"),
                ),
            }
        }
        nets
    };
    let allow = ip_list(c, "allow_ips", &r.allow_ips);
    let deny = ip_list(c, "deny_ips", &r.deny_ips);
    let ip_rules = (!allow.is_empty() || !deny.is_empty()).then_some(IpRules { allow, deny });
    for status in &r.retry_on {
        if !(500..=599).contains(status) {
            fail(
                c,
                "retry_on",
                format!("{status} is not a 5xx status: only upstream failures are retried"),
            );
        }
    }
    let split = weighted_split(c, base, r, upstreams);
    let features = RouteFeatures {
        timeout: r.timeout_ms.map(Duration::from_millis),
        max_body_bytes: r.max_body_bytes,
        rewrite,
        request_headers,
        response_headers,
        cors,
        ip_rules,
        compress: r.compress,
        retry_on: r.retry_on.clone(),
        split,
    };
    (features != RouteFeatures::default()).then_some(features)
}

fn rewrite(c: &mut Checker, base: &str, rw: &RawRewrite) -> Option<PathRewrite> {
    let key = format!("{base}.rewrite");
    let pattern = match Regex::new(&rw.pattern) {
        Ok(p) => p,
        Err(e) => {
            c.fail(
                "routes",
                &format!("{key}.pattern"),
                format!("not a valid regex: {e}"),
            );
            return None;
        }
    };
    if !rw.replacement.starts_with('/') {
        c.fail(
            "routes",
            &format!("{key}.replacement"),
            format!("{:?} must start with '/'", rw.replacement),
        );
        return None;
    }
    // Every `$n` / `${name}` must name a group of the pattern: a typo would
    // silently expand to nothing.
    let groups: Vec<&str> = pattern.capture_names().flatten().collect();
    let count = pattern.captures_len();
    let refs = Regex::new(r"\$(?:\{([^}]*)\}|([0-9]+|[A-Za-z_][A-Za-z0-9_]*))").ok()?;
    for cap in refs.captures_iter(&rw.replacement.replace("$$", "")) {
        let name = cap.get(1).or_else(|| cap.get(2)).map_or("", |m| m.as_str());
        let known = match name.parse::<usize>() {
            Ok(n) => n < count,
            Err(_) => groups.contains(&name),
        };
        if !known {
            c.fail(
                "routes",
                &format!("{key}.replacement"),
                format!("refers to group {name:?}, which the pattern does not have"),
            );
        }
    }
    // A `%` of the replacement's own text must start an escape: the
    // rewritten path is normalised again and would be refused with 400 on
    // every request otherwise.
    let without_dollars = rw.replacement.replace("$$", "");
    let literal = refs.replace_all(&without_dollars, "");
    if !percent_escapes_complete(&literal) {
        c.fail(
            "routes",
            &format!("{key}.replacement"),
            format!(
                "{:?} has a '%' not followed by two hex digits (write %25 for a literal '%')",
                rw.replacement
            ),
        );
        return None;
    }
    Some(PathRewrite {
        pattern,
        replacement: rw.replacement.clone(),
    })
}

fn percent_escapes_complete(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.iter().enumerate().all(|(i, &b)| {
        b != b'%'
            || bytes
                .get(i + 1..i + 3)
                .is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit))
    })
}

fn header_name(c: &mut Checker, key: &str, name: &str) -> Option<HeaderName> {
    if let Some(why) = reserved(name) {
        c.fail("routes", key, format!("{name:?} cannot be changed: {why}"));
        return None;
    }
    match HeaderName::try_from(name) {
        Ok(n) => Some(n),
        Err(_) => {
            c.fail("routes", key, format!("{name:?} is not a header name"));
            None
        }
    }
}

fn header_rules(c: &mut Checker, key: &str, raw: &RawHeaderRules) -> HeaderRules {
    let mut rules = HeaderRules::default();
    for (name, value) in &raw.set {
        let at = format!("{key}.set.{name}");
        let Some(name) = header_name(c, &at, name) else {
            continue;
        };
        match HeaderValue::from_str(value) {
            Ok(v) => rules.set.push((name, v)),
            Err(_) => c.fail(
                "routes",
                &at,
                format!("{value:?} is not a valid header value"),
            ),
        }
    }
    for (i, name) in raw.remove.iter().enumerate() {
        if let Some(name) = header_name(c, &format!("{key}.remove[{i}]"), name) {
            rules.remove.push(name);
        }
    }
    rules
}

fn joined(c: &mut Checker, key: &str, names: &[String]) -> Option<HeaderValue> {
    if names.is_empty() {
        return None;
    }
    for name in names {
        if HeaderName::try_from(name.as_str()).is_err() {
            c.fail("routes", key, format!("{name:?} is not a header name"));
        }
    }
    HeaderValue::from_str(&names.join(", ")).ok()
}

fn validate_cors(c: &mut Checker, base: &str, raw: &RawCors) -> Option<Cors> {
    let key = format!("{base}.cors");
    let at = |field: &str| format!("{key}.{field}");
    let any = raw.allow_origins.iter().any(|o| o == "*");
    if raw.allow_origins.is_empty() {
        c.fail("routes", &at("allow_origins"), "lists no origin");
    } else if any && raw.allow_credentials {
        c.fail(
            "routes",
            &at("allow_origins"),
            "\"*\" cannot be combined with allow_credentials: true (browsers refuse it); list the origins",
        );
    } else if any && raw.allow_origins.len() > 1 {
        c.fail(
            "routes",
            &at("allow_origins"),
            "\"*\" must be the only entry",
        );
    }
    for origin in raw.allow_origins.iter().filter(|o| *o != "*") {
        let exact = url::Url::parse(origin).ok().is_some_and(|u| {
            matches!(u.scheme(), "http" | "https")
                && u.host_str().is_some()
                && u.origin().ascii_serialization() == *origin
        });
        if !exact {
            c.fail(
                "routes",
                &at("allow_origins"),
                format!("{origin:?} is not an exact origin like https://app.example.com (no path, no trailing slash, lower case)"),
            );
        }
    }
    let mut methods = Vec::with_capacity(raw.allow_methods.len());
    for m in &raw.allow_methods {
        match Method::from_bytes(m.to_ascii_uppercase().as_bytes()) {
            Ok(method) => methods.push(method),
            Err(_) => c.fail(
                "routes",
                &at("allow_methods"),
                format!("{m:?} is not an HTTP method"),
            ),
        }
    }
    let methods_text = if methods.is_empty() {
        "GET, HEAD, POST, PUT, PATCH, DELETE".to_owned()
    } else {
        methods
            .iter()
            .map(Method::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    };
    Some(Cors {
        allow_origins: (!any).then(|| raw.allow_origins.clone()),
        allow_methods: methods,
        allow_methods_value: HeaderValue::from_str(&methods_text).ok()?,
        allow_headers_value: joined(c, &at("allow_headers"), &raw.allow_headers),
        expose_headers_value: joined(c, &at("expose_headers"), &raw.expose_headers),
        allow_credentials: raw.allow_credentials,
        max_age_value: HeaderValue::from(raw.max_age_secs),
    })
}

fn weighted_split(
    c: &mut Checker,
    base: &str,
    r: &RawRoute,
    upstreams: &[UpstreamSettings],
) -> Option<WeightedSplit> {
    if r.upstreams.is_empty() {
        return None;
    }
    let mut entries = Vec::with_capacity(r.upstreams.len());
    for (i, entry) in r.upstreams.iter().enumerate() {
        match upstreams.iter().position(|u| u.name == entry.upstream) {
            Some(idx) => entries.push((idx, entry.weight)),
            None => c.fail(
                "routes",
                &format!("{base}.upstreams[{i}].upstream"),
                format!("upstream {:?} is not defined in upstreams", entry.upstream),
            ),
        }
    }
    let total: u64 = r.upstreams.iter().map(|e| u64::from(e.weight)).sum();
    if total == 0 || total > u64::from(u32::MAX) {
        c.fail(
            "routes",
            &format!("{base}.upstreams"),
            "weights must add up to more than 0 (and fit in 32 bits)",
        );
        return None;
    }
    Some(WeightedSplit {
        entries,
        total: total as u32,
    })
}
