//! The gateway's own endpoints of the login flow, on the proxy listener:
//! `/oauth2/login`, `/oauth2/callback`, `/oauth2/logout`, `/oauth2/userinfo`.
//!
//! Login: authorization code with PKCE (S256), a random `state` and `nonce`
//! kept in a one-time pre-login record (10 minutes). Callback: the record is
//! taken (so a state works once) and compared in constant time, the code is
//! exchanged, the identity read from the verified ID token (or userinfo), a
//! NEW random session id is minted and only that id goes into the cookie.
//! Logout: the session is deleted everywhere and its tokens revoked; with
//! `auth.logout.provider` the browser then goes to the provider's
//! end-session endpoint (OpenID RP-initiated logout).

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::Method;
use actix_web::{web, HttpRequest, HttpResponse};
use oauth2::{
    AuthorizationCode, CsrfToken, PkceCodeChallenge, PkceCodeVerifier, RefreshToken, Scope,
    TokenResponse as _,
};
use serde::Deserialize;
use serde_json::{json, Value};
use subtle::ConstantTimeEq;

use super::bearer::validate_jwt;
use super::crypto::{digest, random_token};
use super::session::{unix_now, PreLogin, Session, PRE_LOGIN_TTL};
use super::{http, Auth, Identity, TokenResponse};
use crate::error::GatewayError;
use crate::middleware::auth::accepts_html;
use crate::middleware::context::request_id_of;
use crate::state::Gateway;

/// The paths the gateway answers itself when auth is configured.
pub const ENDPOINTS: [&str; 4] = [
    "/oauth2/login",
    "/oauth2/callback",
    "/oauth2/logout",
    "/oauth2/userinfo",
];

pub fn configure(cfg: &mut web::ServiceConfig) {
    let only_get = |path: &str| web::resource(path).default_service(web::to(method_not_allowed));
    cfg.service(
        web::scope("/oauth2")
            .service(only_get("/login").route(web::get().to(login)))
            .service(only_get("/callback").route(web::get().to(callback)))
            .service(
                only_get("/logout")
                    .route(web::get().to(logout))
                    .route(web::post().to(logout)),
            )
            .service(only_get("/userinfo").route(web::get().to(userinfo))),
    );
}

async fn method_not_allowed(req: HttpRequest) -> HttpResponse {
    let allow = if req.path() == "/oauth2/logout" {
        "GET, POST"
    } else {
        "GET"
    };
    fail(
        &req,
        GatewayError::MethodNotAllowed {
            allow: allow.to_owned(),
        },
    )
}

fn fail(req: &HttpRequest, err: GatewayError) -> HttpResponse {
    err.to_response(&request_id_of(req))
}

/// Where the browser may be sent after login or logout: a relative path on
/// this gateway, or an absolute URL on one of `allowed_redirect_hosts`.
pub fn safe_redirect(rd: Option<&str>, allowed_hosts: &[String]) -> Option<String> {
    let rd = match rd {
        None | Some("") => return Some("/".to_owned()),
        Some(rd) => rd,
    };
    // Browsers drop tabs and newlines from URLs and read '\' as '/', so
    // "/\t/evil" would become "//evil": refuse them outright.
    if rd
        .chars()
        .any(|c| c.is_control() || c.is_whitespace() || c == '\\')
    {
        return None;
    }
    // "//evil" and "/\evil" are protocol-relative to browsers.
    if rd.starts_with('/') && !rd.starts_with("//") && !rd.starts_with("/\\") {
        return Some(rd.to_owned());
    }
    let url = url::Url::parse(rd).ok()?;
    let host = url.host_str()?;
    let allowed = matches!(url.scheme(), "http" | "https")
        && allowed_hosts.iter().any(|h| h.eq_ignore_ascii_case(host));
    allowed.then(|| rd.to_owned())
}

/// The session id from the request's cookie, if any.
pub fn session_cookie<'r>(req: &'r HttpRequest, name: &str) -> Option<&'r str> {
    req.headers()
        .get_all(header::COOKIE)
        .find_map(|v| cookie_value(v.as_bytes(), name))
}

/// The value of cookie `name` in one `Cookie` header (`a=1; b=2`).
///
/// Works on bytes and checks only the value it returns: it runs on every
/// request to a session route, and validating the whole header as text
/// cost more than the session lookup.
fn cookie_value<'h>(header: &'h [u8], name: &str) -> Option<&'h str> {
    let name = name.as_bytes();
    let mut rest = header;
    loop {
        rest = rest.trim_ascii_start();
        let end = rest.iter().position(|&b| b == b';').unwrap_or(rest.len());
        let (pair, after) = rest.split_at(end);
        if let Some(value) = pair.strip_prefix(name).and_then(|v| v.strip_prefix(b"=")) {
            let value = value.trim_ascii_end();
            // Visible ASCII only, as a header value's `to_str` requires.
            return value
                .iter()
                .all(|&b| (0x21..0x7f).contains(&b))
                .then(|| std::str::from_utf8(value).ok())
                .flatten();
        }
        rest = after.get(1..)?;
    }
}

fn cookie(auth: &Auth, name: &str, value: &str, max_age: u64) -> String {
    format!(
        "{}={}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}{}",
        name,
        value,
        max_age,
        if auth.settings.session.cookie_secure {
            "; Secure"
        } else {
            ""
        }
    )
}

/// Cookie that ties a login's state to the browser that started it.
fn login_cookie_name(auth: &Auth) -> String {
    login_cookie_for(&auth.settings.session.cookie_name)
}

/// The login cookie's name for a session cookie named `session_cookie`.
pub fn login_cookie_for(session_cookie: &str) -> String {
    format!("{session_cookie}_login")
}

fn redirect(location: &str) -> HttpResponse {
    HttpResponse::Found()
        .insert_header((header::LOCATION, location))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish()
}

#[derive(Deserialize)]
struct LoginQuery {
    rd: Option<String>,
}

async fn login(
    req: HttpRequest,
    gw: web::Data<Gateway>,
    q: web::Query<LoginQuery>,
) -> HttpResponse {
    let Some(auth) = gw.auth.as_ref() else {
        return fail(&req, GatewayError::NoRoute);
    };
    let Some(oauth) = &auth.oauth else {
        return fail(&req, GatewayError::NoRoute);
    };
    let Some(rd) = safe_redirect(q.rd.as_deref(), &auth.settings.allowed_redirect_hosts) else {
        return fail(
            &req,
            GatewayError::BadRequest("rd is not an allowed redirect target"),
        );
    };
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let nonce = random_token();
    let mut builder = oauth
        .authorize_url(CsrfToken::new_random)
        .set_pkce_challenge(challenge)
        .add_extra_param("nonce", &nonce);
    for scope in &auth.settings.provider.scopes {
        builder = builder.add_scope(Scope::new(scope.clone()));
    }
    let (url, state) = builder.url();
    // The state is bound to this browser: the callback must come with the
    // same login cookie, or an attacker could log a victim into the
    // attacker's account (login CSRF).
    let binding = random_token();
    let record = PreLogin {
        binding_digest: digest(&binding),
        state_digest: digest(state.secret()),
        pkce_verifier: verifier.secret().clone(),
        nonce,
        redirect_to: rd,
    };
    if auth
        .sessions
        .put_pre_login(state.secret(), record)
        .await
        .is_err()
    {
        return fail(&req, GatewayError::Unavailable);
    }
    gw.metrics
        .auth_outcomes
        .with_label_values(&["_oauth2", "login_started", "none"])
        .inc();
    let mut res = redirect(url.as_str());
    let login_cookie = cookie(
        auth,
        &login_cookie_name(auth),
        &binding,
        PRE_LOGIN_TTL.as_secs(),
    );
    if let Ok(v) = HeaderValue::from_str(&login_cookie) {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
    res
}

#[derive(Deserialize)]
struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

/// Identity from a verified ID token, completed by userinfo when known.
async fn identity_of(auth: &Auth, token: &TokenResponse, nonce: &str) -> Option<Identity> {
    let mut claims = Value::Null;
    if let Some(id_token) = &token.extra_fields().id_token {
        if auth.jwks.is_configured() {
            let audience = [auth.settings.provider.client_id.clone()];
            let verified = validate_jwt(auth, id_token, &audience).await.ok()?;
            let got = verified.get("nonce").and_then(Value::as_str).unwrap_or("");
            if !bool::from(got.as_bytes().ct_eq(nonce.as_bytes())) {
                return None;
            }
            claims = verified;
        }
    }
    if let Some(url) = &auth.endpoints.userinfo {
        if let Ok(Value::Object(info)) =
            http::get_json(url, Some(token.access_token().secret())).await
        {
            match &mut claims {
                Value::Object(map) => {
                    // userinfo fills in; a verified ID token's subject stays.
                    if info.get("sub") != map.get("sub") && map.contains_key("sub") {
                        return None;
                    }
                    for (k, v) in info {
                        map.entry(k).or_insert(v);
                    }
                }
                _ => claims = Value::Object(info),
            }
        }
    }
    let mut identity = Identity::from_claims(&claims, &auth.settings.roles_claim)?;
    identity.scopes = match token.scopes() {
        Some(scopes) => scopes.iter().map(|s| s.to_string()).collect(),
        None => auth.settings.provider.scopes.clone(),
    };
    Some(identity)
}

async fn callback(
    req: HttpRequest,
    gw: web::Data<Gateway>,
    q: web::Query<CallbackQuery>,
) -> HttpResponse {
    let Some(auth) = gw.auth.as_ref() else {
        return fail(&req, GatewayError::NoRoute);
    };
    let Some(oauth) = &auth.oauth else {
        return fail(&req, GatewayError::NoRoute);
    };
    let outcome = |what: &str| {
        gw.metrics
            .auth_outcomes
            .with_label_values(&["_oauth2", "callback", what])
            .inc();
    };
    if q.error.is_some() {
        outcome("provider_refused");
        return fail(&req, GatewayError::Unauthenticated);
    }
    let (Some(code), Some(state)) = (&q.code, &q.state) else {
        outcome("bad_request");
        return fail(
            &req,
            GatewayError::BadRequest("callback without code and state"),
        );
    };
    let record = match auth.sessions.take_pre_login(state).await {
        Ok(Some(record)) => record,
        Ok(None) => {
            outcome("unknown_state");
            return fail(
                &req,
                GatewayError::BadRequest("unknown, expired or replayed login state"),
            );
        }
        Err(_) => return fail(&req, GatewayError::Unavailable),
    };
    if !bool::from(
        digest(state)
            .as_bytes()
            .ct_eq(record.state_digest.as_bytes()),
    ) {
        outcome("state_mismatch");
        return fail(&req, GatewayError::BadRequest("login state mismatch"));
    }
    let binding = session_cookie(&req, &login_cookie_name(auth)).unwrap_or_default();
    if !bool::from(
        digest(binding)
            .as_bytes()
            .ct_eq(record.binding_digest.as_bytes()),
    ) {
        outcome("browser_mismatch");
        return fail(
            &req,
            GatewayError::BadRequest("login was started in another browser"),
        );
    }
    let token = match oauth
        .exchange_code(AuthorizationCode::new(code.clone()))
        .set_pkce_verifier(PkceCodeVerifier::new(record.pkce_verifier.clone()))
        .request_async(&http::oauth_http)
        .await
    {
        Ok(token) => token,
        Err(_) => {
            outcome("code_exchange_failed");
            return fail(&req, GatewayError::Unauthenticated);
        }
    };
    let Some(identity) = identity_of(auth, &token, &record.nonce).await else {
        outcome("identity_unverified");
        return fail(&req, GatewayError::Unauthenticated);
    };
    let now = unix_now();
    let mut session = Session::new(
        identity,
        token.access_token().secret().clone(),
        token.refresh_token().map(|t| t.secret().clone()),
        token.expires_in().map_or(0, |d| now + d.as_secs()),
        now,
        now + auth.settings.session.ttl_secs,
    );
    // Kept only when needed: the provider's logout takes it as a hint.
    if auth.settings.logout.provider {
        session.id_token = token.extra_fields().id_token.clone();
    }
    let session_id = random_token();
    if auth.sessions.save(&session_id, session).await.is_err() {
        return fail(&req, GatewayError::Unavailable);
    }
    outcome("session_created");
    let mut res = redirect(&record.redirect_to);
    let s = &auth.settings.session;
    let set = [
        cookie(auth, &s.cookie_name, &session_id, s.ttl_secs),
        cookie(auth, &login_cookie_name(auth), "", 0),
    ];
    for c in set {
        if let Ok(v) = HeaderValue::from_str(&c) {
            res.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    res
}

/// Revokes what the provider issued for a session (RFC 7009), best effort.
async fn revoke(auth: &Auth, session: &Session) {
    let Some(url) = &auth.endpoints.revocation else {
        return;
    };
    let p = &auth.settings.provider;
    if let Some(refresh) = &session.refresh_token {
        let _ = http::post_form(
            url,
            &p.client_id,
            &p.client_secret,
            &[("token", refresh), ("token_type_hint", "refresh_token")],
        )
        .await;
    }
    let _ = http::post_form(
        url,
        &p.client_id,
        &p.client_secret,
        &[
            ("token", &session.access_token),
            ("token_type_hint", "access_token"),
        ],
    )
    .await;
}

/// The provider's end-session URL (OpenID RP-initiated logout) when
/// `auth.logout.provider` is on: the browser goes there so the user's
/// session at the provider ends too, not only the gateway's. Without a
/// session (expired cookie) it still goes, with no `id_token_hint`.
fn provider_logout_url(auth: &Auth, ended: Option<&Session>) -> Option<String> {
    if !auth.settings.logout.provider {
        return None;
    }
    let mut url = url::Url::parse(auth.endpoints.end_session.as_deref()?).ok()?;
    {
        let mut query = url.query_pairs_mut();
        query.append_pair("client_id", &auth.settings.provider.client_id);
        if let Some(hint) = ended.and_then(|s| s.id_token.as_deref()) {
            query.append_pair("id_token_hint", hint);
        }
        if let Some(back) = &auth.settings.logout.post_logout_redirect_url {
            query.append_pair("post_logout_redirect_uri", back);
        }
    }
    Some(url.into())
}

#[derive(Deserialize)]
struct LogoutQuery {
    rd: Option<String>,
}

async fn logout(
    req: HttpRequest,
    gw: web::Data<Gateway>,
    q: web::Query<LogoutQuery>,
) -> HttpResponse {
    let Some(auth) = gw.auth.as_ref() else {
        return fail(&req, GatewayError::NoRoute);
    };
    // A cross-site page must not log users out with a GET (CSRF).
    if req.method() == Method::GET {
        let site = req
            .headers()
            .get("sec-fetch-site")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("none");
        if !matches!(site, "same-origin" | "same-site" | "none") {
            return fail(&req, GatewayError::Forbidden);
        }
    }
    let Some(rd) = safe_redirect(q.rd.as_deref(), &auth.settings.allowed_redirect_hosts) else {
        return fail(
            &req,
            GatewayError::BadRequest("rd is not an allowed redirect target"),
        );
    };
    let mut ended = None;
    if let Some(id) = session_cookie(&req, &auth.settings.session.cookie_name) {
        if let Ok(Some(session)) = auth.sessions.load(id).await {
            revoke(auth, &session).await;
            ended = Some(session);
        }
        if auth.sessions.delete(id).await.is_err() {
            return fail(&req, GatewayError::Unavailable);
        }
    }
    gw.metrics
        .auth_outcomes
        .with_label_values(&["_oauth2", "logout", "none"])
        .inc();
    let at_provider = provider_logout_url(auth, ended.as_deref());
    let mut res = match at_provider {
        Some(url) if q.rd.is_some() || accepts_html(req.headers()) => redirect(&url),
        _ if q.rd.is_some() => redirect(&rd),
        at_provider => HttpResponse::Ok()
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .json(match at_provider {
                Some(url) => json!({"status": "logged_out", "provider_logout_url": url}),
                None => json!({"status": "logged_out"}),
            }),
    };
    if let Ok(v) = HeaderValue::from_str(&cookie(auth, &auth.settings.session.cookie_name, "", 0)) {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
    res
}

async fn userinfo(req: HttpRequest, gw: web::Data<Gateway>) -> HttpResponse {
    let Some(auth) = gw.auth.as_ref() else {
        return fail(&req, GatewayError::NoRoute);
    };
    let session = match session_cookie(&req, &auth.settings.session.cookie_name) {
        Some(id) => auth.sessions.load(id).await.ok().flatten(),
        None => None,
    };
    match session {
        Some(s) => HttpResponse::Ok()
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .json(json!({
                "sub": s.subject,
                "email": s.email,
                "roles": s.roles,
                "scopes": s.scopes,
                "expires_at": s.expires_at,
            })),
        None => fail(&req, GatewayError::Unauthenticated),
    }
}

/// Why a refresh did not produce fresh tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshError {
    /// The provider refused the refresh token: the session is over.
    Refused,
    /// The provider could not be asked: try again later.
    Unreachable,
}

/// Swaps a session's tokens for fresh ones with its refresh token.
pub async fn refresh(auth: &Auth, session: &Session) -> Result<Session, RefreshError> {
    let (Some(oauth), Some(refresh_token)) = (auth.oauth.as_ref(), session.refresh_token.as_ref())
    else {
        return Err(RefreshError::Refused);
    };
    let token = oauth
        .exchange_refresh_token(&RefreshToken::new(refresh_token.clone()))
        .request_async(&http::oauth_http)
        .await
        .map_err(|e| match e {
            oauth2::RequestTokenError::ServerResponse(_) => RefreshError::Refused,
            _ => RefreshError::Unreachable,
        })?;
    let now = unix_now();
    let mut fresh = session.clone();
    fresh.access_token = token.access_token().secret().clone();
    if let Some(rt) = token.refresh_token() {
        fresh.refresh_token = Some(rt.secret().clone());
    }
    fresh.access_expires_at = token.expires_in().map_or(0, |d| now + d.as_secs());
    if auth.settings.logout.provider {
        if let Some(id_token) = &token.extra_fields().id_token {
            fresh.id_token = Some(id_token.clone());
        }
    }
    Ok(fresh)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_cookie_is_found_among_others() {
        fn find(header: &str) -> Option<&str> {
            cookie_value(header.as_bytes(), "gateway_session")
        }
        assert_eq!(find("gateway_session=abc"), Some("abc"));
        assert_eq!(find("a=1; gateway_session=abc; b=2"), Some("abc"));
        assert_eq!(find("a=1;gateway_session=abc"), Some("abc"));
        assert_eq!(find("  gateway_session=abc  "), Some("abc"));
        assert_eq!(find("gateway_session="), Some(""));
        // Longer names that start with ours, and ours only as a value.
        assert_eq!(find("gateway_session_login=x; y=gateway_session"), None);
        assert_eq!(find("gateway_sessio=x"), None);
        assert_eq!(find(""), None);
        // A value that could not be a header value's text is no cookie.
        assert_eq!(find("gateway_session=a\u{7f}b"), None);
        assert_eq!(
            cookie_value(b"gateway_session=\xc3\xa9", "gateway_session"),
            None
        );
    }

    #[test]
    fn open_redirects_are_refused() {
        let allowed = vec!["app.example.com".to_owned()];
        assert_eq!(safe_redirect(None, &allowed).as_deref(), Some("/"));
        assert_eq!(
            safe_redirect(Some("/x?y=1"), &allowed).as_deref(),
            Some("/x?y=1")
        );
        assert_eq!(
            safe_redirect(Some("https://APP.example.com/p"), &allowed).as_deref(),
            Some("https://APP.example.com/p")
        );
        for bad in [
            "//evil.example/x",
            "/\\evil.example",
            "https://evil.example/",
            "javascript:alert(1)",
            "https://app.example.com.evil.example/",
            "/\t/evil.example",
            "/\n/evil.example",
            "/ /evil.example",
        ] {
            assert_eq!(safe_redirect(Some(bad), &allowed), None, "{bad}");
        }
    }
}
