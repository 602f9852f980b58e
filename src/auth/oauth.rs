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
use actix_web::{guard, web, HttpRequest, HttpResponse};
use oauth2::{
    AuthorizationCode, CsrfToken, PkceCodeChallenge, PkceCodeVerifier, Scope, TokenResponse as _,
};
use serde::Deserialize;
use serde_json::{json, Value};
use subtle::ConstantTimeEq;

use super::bearer::validate_jwt;
use super::browser::{
    accepts_html, cookie_of, login_cookie_for, redirect, safe_redirect, set_cookie,
};
use super::crypto::{digest, random_token};
use super::identity::Identity;
use super::provider::TokenResponse;
use super::session::model::{unix_now, PreLogin, Session, PRE_LOGIN_TTL};
use super::{http, Auth};
use crate::context::request_id_of;
use crate::error::GatewayError;
use crate::state::Pinned;

/// Registers the endpoints. They answer only while the request's settings
/// generation has auth (a reload may add or remove it); otherwise
/// `/oauth2/*` is an ordinary path, matched against the routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    let only_get = |path: &str| web::resource(path).default_service(web::to(method_not_allowed));
    let with_auth = guard::fn_guard(|ctx| {
        ctx.req_data()
            .get::<Pinned>()
            .is_some_and(|gw| gw.auth.is_some())
    });
    cfg.service(
        web::scope("/oauth2")
            .guard(with_auth)
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

/// Appends a `Set-Cookie` for one of the gateway's cookies.
fn add_cookie(res: &mut HttpResponse, auth: &Auth, name: &str, value: &str, max_age: u64) {
    let cookie = set_cookie(&auth.settings.session, name, value, max_age);
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
}

/// The login cookie's name of this gateway.
fn login_cookie_name(auth: &Auth) -> String {
    login_cookie_for(&auth.settings.session.cookie_name)
}

#[derive(Deserialize)]
struct LoginQuery {
    rd: Option<String>,
}

async fn login(req: HttpRequest, gw: Pinned, q: web::Query<LoginQuery>) -> HttpResponse {
    let Some(auth) = gw.auth.as_ref() else {
        return fail(&req, GatewayError::NoRoute);
    };
    let Some(oauth) = &auth.provider.oauth else {
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
    auth.count_endpoint("login_started", "none");
    let mut res = redirect(url.as_str());
    let name = login_cookie_name(auth);
    add_cookie(&mut res, auth, &name, &binding, PRE_LOGIN_TTL.as_secs());
    res
}

#[derive(Deserialize)]
struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

/// Identity from a verified ID token, completed by userinfo when known.
async fn verified_identity(auth: &Auth, token: &TokenResponse, nonce: &str) -> Option<Identity> {
    let mut claims = Value::Null;
    let provider = &auth.provider;
    if let Some(id_token) = &token.extra_fields().id_token {
        if auth.bearer.jwks.is_configured() {
            let audience = [provider.settings.client_id.clone()];
            let issuer = provider.endpoints.issuer.as_deref();
            let verified = validate_jwt(&auth.bearer.jwks, issuer, id_token, &audience)
                .await
                .ok()?;
            let got = verified.get("nonce").and_then(Value::as_str).unwrap_or("");
            if !bool::from(got.as_bytes().ct_eq(nonce.as_bytes())) {
                return None;
            }
            claims = verified;
        }
    }
    if let Some(url) = &provider.endpoints.userinfo {
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

async fn callback(req: HttpRequest, gw: Pinned, q: web::Query<CallbackQuery>) -> HttpResponse {
    let Some(auth) = gw.auth.as_ref() else {
        return fail(&req, GatewayError::NoRoute);
    };
    let Some(oauth) = &auth.provider.oauth else {
        return fail(&req, GatewayError::NoRoute);
    };
    let outcome = |what: &str| auth.count_endpoint("callback", what);
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
    let binding = cookie_of(&req, &login_cookie_name(auth)).unwrap_or_default();
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
    let Some(identity) = verified_identity(auth, &token, &record.nonce).await else {
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
        now + auth.settings.session.ttl.as_secs(),
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
    add_cookie(&mut res, auth, &s.cookie_name, &session_id, s.ttl.as_secs());
    add_cookie(&mut res, auth, &login_cookie_name(auth), "", 0);
    res
}

/// Revokes what the provider issued for a session (RFC 7009), best effort.
async fn revoke(auth: &Auth, session: &Session) {
    let provider = &auth.provider;
    let Some(url) = &provider.endpoints.revocation else {
        return;
    };
    if let Some(refresh) = &session.refresh_token {
        let form = [
            ("token", refresh.as_str()),
            ("token_type_hint", "refresh_token"),
        ];
        let _ = provider.post_form(url, &form).await;
    }
    let form = [
        ("token", session.access_token.as_str()),
        ("token_type_hint", "access_token"),
    ];
    let _ = provider.post_form(url, &form).await;
}

#[derive(Deserialize)]
struct LogoutQuery {
    rd: Option<String>,
}

async fn logout(req: HttpRequest, gw: Pinned, q: web::Query<LogoutQuery>) -> HttpResponse {
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
    if let Some(id) = cookie_of(&req, &auth.settings.session.cookie_name) {
        if let Ok(Some(session)) = auth.sessions.lookup(id).await {
            revoke(auth, &session).await;
            ended = Some(session);
        }
        if auth.sessions.delete(id).await.is_err() {
            return fail(&req, GatewayError::Unavailable);
        }
    }
    auth.count_endpoint("logout", "none");
    let id_token = ended.as_deref().and_then(|s| s.id_token.as_deref());
    let at_provider = auth.provider.logout_url(id_token);
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
    add_cookie(&mut res, auth, &auth.settings.session.cookie_name, "", 0);
    res
}

async fn userinfo(req: HttpRequest, gw: Pinned) -> HttpResponse {
    let Some(auth) = gw.auth.as_ref() else {
        return fail(&req, GatewayError::NoRoute);
    };
    let session = match cookie_of(&req, &auth.settings.session.cookie_name) {
        Some(id) => auth.sessions.lookup(id).await.ok().flatten(),
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
