//! Raw routes and auth to validated ones: each route's matchers, upstream,
//! prefix stripping, auth mode and policies; the `auth` section, checked
//! against what the routes' auth modes need of the provider.

use std::collections::HashSet;
use std::time::Duration;

use actix_web::http::Method;

use super::checker::Checker;
use super::raw::{RawAuth, RawSettings};
use super::types::{
    AuthMode, AuthSettings, LogoutSettings, ProviderEndpoints, ProviderSettings, RateLimitPolicy,
    RouteSettings, SessionSettings, UpstreamSettings,
};
use super::validate_features::validate_features;
use crate::path::{has_segment_prefix, normalize_path, strip_port};

/// Routes, with their upstream and policies resolved to indices.
pub fn validate_routes(
    c: &mut Checker,
    raw: &RawSettings,
    upstreams: &[UpstreamSettings],
    rate_limits: &[RateLimitPolicy],
) -> Vec<RouteSettings> {
    let mut names = HashSet::new();
    let mut seen_matchers = HashSet::new();
    let mut out = Vec::with_capacity(raw.routes.len());
    for (i, r) in raw.routes.iter().enumerate() {
        let base = format!("routes[{i}]");
        let fail = |c: &mut Checker, field: &str, msg: String| {
            c.fail("routes", &format!("{base}.{field}"), msg);
        };
        if r.name.trim().is_empty() {
            fail(c, "name", "is required".into());
        } else if !names.insert(r.name.clone()) {
            fail(c, "name", format!("{:?} is used by another route", r.name));
        }
        let path_prefix = if !r.path_prefix.starts_with('/') {
            fail(
                c,
                "path_prefix",
                format!("{:?} must start with '/'", r.path_prefix),
            );
            "/".to_owned()
        } else {
            match normalize_path(&r.path_prefix) {
                // "/api/" and "/api" match the same requests.
                Some(p) if p.len() > 1 => p.trim_end_matches('/').to_owned(),
                Some(p) => p,
                None => {
                    fail(
                        c,
                        "path_prefix",
                        format!("{:?} is not a valid path", r.path_prefix),
                    );
                    "/".to_owned()
                }
            }
        };
        let mut methods = Vec::with_capacity(r.methods.len());
        for m in &r.methods {
            match Method::from_bytes(m.to_ascii_uppercase().as_bytes()) {
                Ok(method) => methods.push(method),
                Err(_) => fail(c, "methods", format!("{m:?} is not an HTTP method")),
            }
        }
        let host = r
            .host
            .as_deref()
            .filter(|h| !h.is_empty())
            .map(|h| strip_port(h).to_ascii_lowercase());
        let matcher_key = (path_prefix.clone(), host.clone(), {
            let mut m: Vec<String> = methods.iter().map(|m| m.to_string()).collect();
            m.sort();
            m
        });
        if !seen_matchers.insert(matcher_key) {
            fail(
                c,
                "path_prefix",
                "another route has the same path_prefix, host and methods".into(),
            );
        }
        // `upstream` or a weighted `upstreams` split, never both; with a
        // split, the first entry stands for the route where one upstream is
        // needed (the websocket path, the access log before a pick).
        let named = match (r.upstream.is_empty(), r.upstreams.first()) {
            (false, Some(_)) => {
                fail(
                    c,
                    "upstreams",
                    "set either upstream or upstreams (a weighted split), not both".into(),
                );
                r.upstream.as_str()
            }
            (true, Some(first)) => first.upstream.as_str(),
            (_, None) => r.upstream.as_str(),
        };
        let upstream = match upstreams.iter().position(|u| u.name == named) {
            Some(idx) => {
                if r.preserve_host && upstreams[idx].http2 {
                    fail(
                        c,
                        "preserve_host",
                        format!(
                            "upstream {named:?} has http2: true, and over HTTP/2 the upstream \
                             sees the target's authority, not the client's Host: turn one off"
                        ),
                    );
                }
                idx
            }
            // A split reports its unknown upstreams entry by entry.
            None if !r.upstreams.is_empty() => 0,
            None => {
                fail(
                    c,
                    "upstream",
                    format!("upstream {named:?} is not defined in upstreams"),
                );
                0
            }
        };
        let strip_prefix = match r.strip_prefix.as_deref().filter(|s| !s.is_empty()) {
            None => None,
            Some(s) => match normalize_path(s) {
                Some(norm) if norm == "/" => None,
                Some(norm) if has_segment_prefix(&path_prefix, &norm) => Some(norm),
                _ => {
                    fail(
                        c,
                        "strip_prefix",
                        format!(
                            "{s:?} must be a path-segment prefix of path_prefix {path_prefix:?}"
                        ),
                    );
                    None
                }
            },
        };
        let auth = match r.auth.as_str() {
            "none" => AuthMode::None,
            "session" => AuthMode::Session,
            "bearer" => AuthMode::Bearer,
            "session_or_bearer" => AuthMode::SessionOrBearer,
            other => {
                fail(
                    c,
                    "auth",
                    format!("{other:?} is not one of none, session, bearer, session_or_bearer"),
                );
                AuthMode::None
            }
        };
        if auth == AuthMode::None && (!r.require.scopes.is_empty() || !r.require.roles.is_empty()) {
            fail(
                c,
                "require",
                "requirements need an authenticated route (auth is none)".into(),
            );
        }
        let policies = resolve_policies(
            c,
            ("routes", &format!("{base}.rate_limit")),
            &r.rate_limit,
            rate_limits,
        );
        out.push(RouteSettings {
            name: r.name.clone(),
            path_prefix,
            methods,
            host,
            upstream,
            strip_prefix,
            auth,
            require_scopes: r.require.scopes.clone(),
            require_roles: r.require.roles.clone(),
            rate_limits: policies,
            preserve_host: r.preserve_host,
            features: validate_features(c, &base, r, upstreams).map(Box::new),
        });
    }
    out
}

/// `auth`: URLs, the session cookie and secret, and what the routes' auth
/// modes need of the provider.
pub fn validate_auth(
    c: &mut Checker,
    auth: &RawAuth,
    routes: &[RouteSettings],
    rate_limits: &[RateLimitPolicy],
) -> AuthSettings {
    let p = &auth.provider;
    let endpoints = [
        ("auth.provider.issuer", &p.issuer),
        ("auth.provider.authorization_url", &p.authorization_url),
        ("auth.provider.token_url", &p.token_url),
        ("auth.provider.introspection_url", &p.introspection_url),
        ("auth.provider.revocation_url", &p.revocation_url),
        ("auth.provider.userinfo_url", &p.userinfo_url),
        ("auth.provider.jwks_url", &p.jwks_url),
        ("auth.provider.end_session_url", &p.end_session_url),
        (
            "auth.logout.post_logout_redirect_url",
            &auth.logout.post_logout_redirect_url,
        ),
    ];
    for (key, value) in endpoints {
        if let Some(v) = value.as_deref().filter(|v| !v.is_empty()) {
            c.url(key, v, &["http", "https"]);
        }
    }
    let tls_ca_file = c.ca_file("auth.provider.tls_ca_file", &p.tls_ca_file);
    c.url(
        "auth.provider.redirect_url",
        &p.redirect_url,
        &["http", "https"],
    );
    c.positive("auth.session.ttl_secs", auth.session.ttl_secs);
    if auth.session.cookie_name.is_empty()
        || !auth
            .session
            .cookie_name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        c.key(
            "auth.session.cookie_name",
            "must be non-empty letters, digits, '_' or '-'",
        );
    }
    let set = |v: &Option<String>| non_empty(v).is_some();
    let uses = |modes: &[AuthMode]| routes.iter().any(|r| modes.contains(&r.auth));
    if uses(&[
        AuthMode::Session,
        AuthMode::Bearer,
        AuthMode::SessionOrBearer,
    ]) {
        if p.client_id.is_empty() {
            c.key("auth.provider.client_id", "required when a route uses auth");
        }
        if auth.session.secret.len() < 32 {
            c.key(
                "auth.session.secret",
                "must be at least 32 bytes when a route uses auth (set GATEWAY_AUTH__SESSION__SECRET)",
            );
        }
    }
    if uses(&[AuthMode::Session, AuthMode::SessionOrBearer])
        && !set(&p.issuer)
        && !(set(&p.authorization_url) && set(&p.token_url))
    {
        c.key(
            "auth.provider",
            "session routes need issuer, or authorization_url and token_url",
        );
    }
    if auth.logout.provider && !set(&p.issuer) && !set(&p.end_session_url) {
        c.key(
            "auth.logout.provider",
            "needs issuer (discovery's end_session_endpoint) or auth.provider.end_session_url",
        );
    }
    if uses(&[AuthMode::Bearer, AuthMode::SessionOrBearer])
        && !set(&p.issuer)
        && !set(&p.introspection_url)
        && !set(&p.jwks_url)
    {
        c.key(
            "auth.provider",
            "bearer routes need issuer, introspection_url or jwks_url",
        );
    }
    let rate_limits = resolve_policies(
        c,
        ("auth.rate_limit", "auth.rate_limit"),
        &auth.rate_limit,
        rate_limits,
    );
    AuthSettings {
        provider: ProviderSettings {
            endpoints: ProviderEndpoints {
                issuer: non_empty(&p.issuer),
                authorization: non_empty(&p.authorization_url),
                token: non_empty(&p.token_url),
                introspection: non_empty(&p.introspection_url),
                revocation: non_empty(&p.revocation_url),
                userinfo: non_empty(&p.userinfo_url),
                jwks: non_empty(&p.jwks_url),
                end_session: non_empty(&p.end_session_url),
            },
            tls_ca_file,
            client_id: p.client_id.clone(),
            client_secret: p.client_secret.clone(),
            audiences: if p.audiences.is_empty() {
                vec![p.client_id.clone()]
            } else {
                p.audiences.clone()
            },
            scopes: p.scopes.clone(),
            redirect_url: p.redirect_url.clone(),
        },
        roles_claim: auth.roles_claim.clone(),
        allowed_redirect_hosts: auth.allowed_redirect_hosts.clone(),
        session: SessionSettings {
            cookie_name: auth.session.cookie_name.clone(),
            cookie_secure: auth.session.cookie_secure,
            secret: auth.session.secret.clone(),
            ttl: Duration::from_secs(auth.session.ttl_secs),
            cache_ttl: Duration::from_secs(auth.session.cache_ttl_secs),
        },
        logout: LogoutSettings {
            provider: auth.logout.provider,
            post_logout_redirect_url: non_empty(&auth.logout.post_logout_redirect_url),
        },
        rate_limits,
    }
}

/// Optional text left empty is not set.
fn non_empty(value: &Option<String>) -> Option<String> {
    value
        .as_deref()
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

/// Policy names (a route's or `auth.rate_limit`) to indices into `rate_limits`.
fn resolve_policies(
    c: &mut Checker,
    (figment_key, key): (&str, &str),
    names: &[String],
    rate_limits: &[RateLimitPolicy],
) -> Vec<usize> {
    let mut policies = Vec::with_capacity(names.len());
    for p in names {
        match rate_limits.iter().position(|x| &x.name == p) {
            Some(idx) => policies.push(idx),
            None => c.fail(
                figment_key,
                key,
                format!("policy {p:?} is not defined in rate_limits"),
            ),
        }
    }
    policies
}
