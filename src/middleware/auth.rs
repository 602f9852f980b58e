//! Auth stage: establishes who is calling and whether the route lets them.
//!
//! Runs after route matching, before rate limiting (so `user` rate-limit
//! keys see the subject). `session` routes read the session cookie (cache
//! first, then the store); `bearer` routes validate the Authorization
//! header; `session_or_bearer` prefers a bearer token when one is sent.
//! Unauthenticated: 401 (browsers on session routes, which accept
//! text/html, get a 302 to `/oauth2/login?rd=...`). Authenticated but
//! missing a required scope or role: 403. On success the identity goes
//! into the request extensions; the proxy turns it into `X-Auth-*` headers.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::Next;
use std::sync::Arc;

use actix_web::{web, Error, HttpMessage, HttpResponse};

use super::context::{request_id_of, MatchedRoute};
use crate::auth::bearer::{self, BearerError};
use crate::auth::oauth::{refresh, session_cookie, RefreshError};
use crate::auth::session::{unix_now, Session, REFRESH_LEASE};
use crate::auth::{Auth, Identity};
use crate::error::GatewayError;
use crate::settings::AuthMode;
use crate::state::Gateway;

/// Refresh an access token this long before it expires.
const REFRESH_AHEAD_SECS: u64 = 30;
/// How long a request waits for another replica's refresh.
const REFRESH_WAIT: std::time::Duration = std::time::Duration::from_secs(5);
const REFRESH_POLL: std::time::Duration = std::time::Duration::from_millis(100);

fn bearer_token(req: &ServiceRequest) -> Option<String> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
        .filter(|t| !t.is_empty())
}

/// A browser navigating (not an API client): it takes a redirect.
pub fn accepts_html(headers: &header::HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"))
}

/// The identity of a session cookie; refreshes tokens close to expiry.
async fn session_identity(
    auth: &Auth,
    req: &ServiceRequest,
    refreshed: &mut bool,
) -> Result<Arc<Identity>, &'static str> {
    let cookie =
        session_cookie(req.request(), &auth.settings.session.cookie_name).ok_or("no_session")?;
    let session = auth
        .sessions
        .load(cookie)
        .await
        .map_err(|_| "store_unavailable")?
        .ok_or("unknown_session")?;
    let now = unix_now();
    // Without a refresh token there is nothing to renew: the session lives
    // its ttl_secs (the gateway itself never presents the access token).
    let due = session.refresh_token.is_some()
        && session.access_expires_at != 0
        && now + REFRESH_AHEAD_SECS >= session.access_expires_at;
    if !due {
        return Ok(identity_of(&session));
    }
    // One refresh per session: single flight inside this replica, and a
    // Redis lock (lease renewed while it runs) across replicas.
    if auth.sessions.begin_refresh(cookie) {
        // Boxed: the refresh machinery is large and rare; inlined, its state
        // would be copied around with every request's future.
        let result = Box::pin(refresh_once(auth, cookie, &session, refreshed)).await;
        auth.sessions.end_refresh(cookie);
        return result;
    }
    if now < session.access_expires_at {
        return Ok(identity_of(&session));
    }
    // Another request of this replica is refreshing a token already
    // expired: wait for its result rather than failing this one.
    Box::pin(wait_for_refresh(auth, cookie, &session, false)).await
}

/// Waits (bounded) until the stored session carries newer tokens than
/// `stale`; `from_store` reads Redis (another replica refreshes) instead of
/// this replica's cache (a local request refreshes).
async fn wait_for_refresh(
    auth: &Auth,
    cookie: &str,
    stale: &Session,
    from_store: bool,
) -> Result<Arc<Identity>, &'static str> {
    let deadline = std::time::Instant::now() + REFRESH_WAIT;
    while std::time::Instant::now() < deadline {
        actix_rt::time::sleep(REFRESH_POLL).await;
        let current = if from_store {
            auth.sessions.load_fresh(cookie).await
        } else {
            auth.sessions.load(cookie).await
        };
        match current {
            Ok(Some(s)) if s.access_expires_at > stale.access_expires_at => {
                return Ok(identity_of(&s));
            }
            Ok(None) => return Err("refresh_failed"),
            _ => {}
        }
    }
    if unix_now() < stale.access_expires_at {
        Ok(identity_of(stale))
    } else {
        Err("refresh_pending")
    }
}

fn identity_of(session: &Session) -> Arc<Identity> {
    session.identity()
}

async fn refresh_once(
    auth: &Auth,
    cookie: &str,
    session: &Session,
    refreshed: &mut bool,
) -> Result<Arc<Identity>, &'static str> {
    let owner = crate::auth::crypto::random_token();
    let locked = auth
        .sessions
        .lock_refresh(cookie, &owner)
        .await
        .map_err(|_| "store_unavailable")?;
    if !locked {
        // Another replica refreshes: wait for its result.
        return Box::pin(wait_for_refresh(auth, cookie, session, true)).await;
    }
    // Another replica may have finished just before we took the lock.
    if let Ok(Some(latest)) = auth.sessions.load_fresh(cookie).await {
        if latest.access_expires_at > session.access_expires_at {
            auth.sessions.unlock_refresh(cookie, &owner).await;
            return Ok(identity_of(&latest));
        }
    }
    let renew = async {
        loop {
            actix_rt::time::sleep(REFRESH_LEASE / 2).await;
            auth.sessions.renew_refresh(cookie, &owner).await;
        }
    };
    let work = refresh(auth, session);
    futures_util::pin_mut!(work);
    futures_util::pin_mut!(renew);
    let renewed = match futures_util::future::select(work, renew).await {
        futures_util::future::Either::Left((result, _)) => result,
        futures_util::future::Either::Right(((), _)) => Err(RefreshError::Unreachable),
    };
    let got_fresh_tokens = renewed.is_ok();
    let outcome = match renewed {
        Ok(fresh) => {
            let identity = identity_of(&fresh);
            auth.sessions
                .save(cookie, fresh)
                .await
                .map(|()| identity)
                .map_err(|_| "store_unavailable")
        }
        // A refresh the provider refuses ends the session.
        Err(RefreshError::Refused) => {
            let _ = auth.sessions.delete(cookie).await;
            Err("refresh_failed")
        }
        // Provider unreachable: keep the session while its token lives.
        Err(RefreshError::Unreachable) if unix_now() < session.access_expires_at => {
            Ok(identity_of(session))
        }
        Err(RefreshError::Unreachable) => Err("provider_error"),
    };
    auth.sessions.unlock_refresh(cookie, &owner).await;
    if got_fresh_tokens && outcome.is_ok() {
        *refreshed = true;
    }
    outcome
}

pub async fn authenticate(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    let Some(gw) = req.app_data::<web::Data<Gateway>>().cloned() else {
        return Ok(next.call(req).await?.map_into_left_body());
    };
    let Some(route_idx) = req.extensions().get::<MatchedRoute>().map(|m| m.index) else {
        return Ok(next.call(req).await?.map_into_left_body());
    };
    let route = gw.routes.get(route_idx);
    if route.auth == AuthMode::None {
        return Ok(next.call(req).await?.map_into_left_body());
    }
    let outcome = |result: &str, reason: &str| {
        gw.metrics
            .auth_outcomes
            .with_label_values(&[&route.name, result, reason])
            .inc();
    };
    let Some(auth) = gw.auth.as_ref() else {
        let id = request_id_of(&req);
        return Ok(req
            .into_response(GatewayError::Internal.to_response(&id))
            .map_into_right_body());
    };

    let token = bearer_token(&req);
    let mut refreshed = false;
    let result: Result<Arc<Identity>, &'static str> = match (route.auth, &token) {
        (AuthMode::Bearer | AuthMode::SessionOrBearer, Some(token)) => {
            Box::pin(bearer::authenticate(auth, token))
                .await
                .map(Arc::new)
                .map_err(|e| match e {
                    BearerError::Invalid => "invalid_token",
                    BearerError::Expired => "expired_token",
                    BearerError::NoVerifier => "no_verifier",
                    BearerError::Provider => "provider_error",
                })
        }
        (AuthMode::Bearer, None) => Err("no_token"),
        _ => session_identity(auth, &req, &mut refreshed).await,
    };

    let identity = match result {
        Ok(identity) => identity,
        Err(reason) => {
            outcome("unauthenticated", reason);
            let id = request_id_of(&req);
            let status = if reason == "store_unavailable" || reason == "provider_error" {
                GatewayError::Unavailable
            } else {
                GatewayError::Unauthenticated
            };
            let browser_login = matches!(route.auth, AuthMode::Session | AuthMode::SessionOrBearer)
                && token.is_none()
                && status == GatewayError::Unauthenticated
                && accepts_html(req.headers());
            let res = if browser_login {
                let rd = match req.uri().path_and_query() {
                    Some(pq) => pq.as_str().to_owned(),
                    None => "/".to_owned(),
                };
                let rd: String = url::form_urlencoded::byte_serialize(rd.as_bytes()).collect();
                HttpResponse::Found()
                    .insert_header((header::LOCATION, format!("/oauth2/login?rd={rd}")))
                    .insert_header((header::CACHE_CONTROL, "no-store"))
                    .finish()
            } else {
                let mut res = status.to_response(&id);
                if status == GatewayError::Unauthenticated
                    && (token.is_some() || route.auth == AuthMode::Bearer)
                {
                    res.headers_mut().insert(
                        header::WWW_AUTHENTICATE,
                        HeaderValue::from_static("Bearer error=\"invalid_token\""),
                    );
                }
                res
            };
            return Ok(req.into_response(res).map_into_right_body());
        }
    };
    if !identity.satisfies(route) {
        outcome("forbidden", "requirement_unmet");
        let id = request_id_of(&req);
        return Ok(req
            .into_response(GatewayError::Forbidden.to_response(&id))
            .map_into_right_body());
    }
    if refreshed {
        outcome("refreshed", "session");
    }
    if let Some(counters) = &gw.auth_successes[route_idx] {
        counters[usize::from(token.is_some())].inc();
    }
    // The access log, the rate limiter (`user` keys) and the proxy
    // (`X-Auth-*`) read it from here.
    req.extensions_mut().insert(identity);
    Ok(next.call(req).await?.map_into_left_body())
}
