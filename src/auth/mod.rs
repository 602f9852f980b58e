//! Authentication and authorisation: OAuth2 login with server-side
//! sessions, bearer tokens (local JWT validation or introspection), and the
//! route requirements (`require.scopes`, `require.roles`).
//!
//! The auth stage (`middleware/auth.rs`) sits after route matching and
//! before rate limiting and makes one call here, [`Auth::identify`]. The
//! `/oauth2/*` endpoints (`oauth.rs`) are served by the gateway itself on
//! the proxy listener. Everything talks to the identity provider through
//! awc (`http.rs`).
//!
//! ```text
//! mod.rs        Auth: identify a request -> Arc<Identity> | Refusal; metrics
//!   oauth.rs    /oauth2/login, callback, logout, userinfo (handlers; above the shared state)
//!   refresh.rs  refresh exactly once (flight, lock, lease) -> provider
//!   bearer.rs   JWT (JWKS), introspection cache      provider.rs  endpoints, oauth2 client
//!   session/    SessionStore, SessionCache actor, Redis side, model
//!   browser.rs  cookies, redirects, /oauth2 paths     failure.rs  AuthFailure, Refusal
//!   identity.rs Identity, X-Auth-* headers            crypto.rs, http.rs
//! ```

pub mod bearer;
pub mod browser;
pub mod crypto;
pub mod failure;
pub mod http;
pub mod identity;
pub mod oauth;
pub mod provider;
pub mod refresh;
pub mod session;

use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header;
use actix_web::HttpRequest;
use prometheus::{IntCounter, IntCounterVec};

use self::bearer::BearerVerifier;
use self::failure::{AuthFailure, Refusal};
use self::identity::Identity;
use self::provider::Provider;
use self::session::SessionStore;
use crate::redis::pool::RedisPool;
use crate::settings::{AuthMode, AuthSettings, RouteSettings, Settings};
use crate::telemetry::metrics::Metrics;

/// How an identity was established (the `reason` of a success).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    Session = 0,
    Bearer = 1,
}

/// `gateway_auth_outcomes_total`, with the success counters of every route
/// resolved once (the hot path of authenticated traffic).
struct AuthMetrics {
    outcomes: IntCounterVec,
    /// Per route (`None` without auth): `authenticated` by session, by bearer.
    successes: Vec<Option<[IntCounter; 2]>>,
}

impl AuthMetrics {
    fn new(metrics: &Metrics, routes: &[RouteSettings]) -> Self {
        let successes = routes
            .iter()
            .map(|r| {
                (r.auth != AuthMode::None).then(|| {
                    ["session", "bearer"].map(|reason| {
                        metrics
                            .auth_outcomes
                            .with_label_values(&[&r.name, "authenticated", reason])
                    })
                })
            })
            .collect();
        Self {
            outcomes: metrics.auth_outcomes.clone(),
            successes,
        }
    }

    fn count(&self, route: &str, result: &str, reason: &str) {
        self.outcomes
            .with_label_values(&[route, result, reason])
            .inc();
    }
}

/// Everything the auth stage and the `/oauth2/*` endpoints share. The
/// provider, the bearer verifier and the session store are shared with the
/// next generation when a reload leaves their settings alone: sessions
/// (in memory too) and caches survive it.
pub struct Auth {
    pub settings: AuthSettings,
    pub provider: Arc<Provider>,
    pub sessions: Arc<SessionStore>,
    pub bearer: Arc<BearerVerifier>,
    metrics: AuthMetrics,
}

impl Auth {
    /// Builds the auth state when some route uses auth; `None` otherwise:
    /// the provider (trust, discovery, client), the JWKS, the session store
    /// (Redis through `redis_pool` when given, else memory) and the
    /// introspection caches. On a reload, `previous` lends what its equal
    /// settings allow (the store; the provider and verifier).
    pub async fn build(
        settings: &Settings,
        redis_pool: Option<RedisPool>,
        metrics: &Metrics,
        log: &slog::Logger,
        previous: Option<&Auth>,
    ) -> Result<Option<Self>, String> {
        if !settings.uses_auth() {
            return Ok(None);
        }
        let auth = &settings.auth;
        let keep_provider = previous.filter(|p| {
            p.settings.provider == auth.provider
                && p.settings.logout == auth.logout
                && p.settings.roles_claim == auth.roles_claim
                && p.settings.session.cache_ttl == auth.session.cache_ttl
        });
        let (provider, bearer) = match keep_provider {
            Some(p) => (p.provider.clone(), p.bearer.clone()),
            None => {
                let provider = Provider::connect(&auth.provider, &auth.logout).await?;
                let bearer = BearerVerifier::new(
                    &provider,
                    &auth.roles_claim,
                    auth.session.cache_ttl.max(Duration::from_secs(1)),
                    metrics.auth_introspections.clone(),
                )
                .await;
                (Arc::new(provider), Arc::new(bearer))
            }
        };
        let sessions = match previous.filter(|p| p.settings.session == auth.session) {
            Some(p) => p.sessions.clone(),
            None => Arc::new(
                match (redis_pool, &settings.redis) {
                    (Some(pool), Some(redis)) => SessionStore::redis(
                        &auth.session.secret,
                        pool,
                        redis,
                        auth.session.cache_ttl,
                        log.clone(),
                    )?,
                    _ => SessionStore::memory(auth.session.ttl, log.clone()),
                }
                .with_lookup_metric(metrics.session_cache_lookups.clone()),
            ),
        };
        Ok(Some(Self {
            settings: auth.clone(),
            provider,
            sessions,
            bearer,
            metrics: AuthMetrics::new(metrics, &settings.routes),
        }))
    }

    /// Whether this generation's provider and sessions are `other`'s.
    pub fn shares_state_with(&self, other: &Auth) -> (bool, bool) {
        (
            Arc::ptr_eq(&self.provider, &other.provider),
            Arc::ptr_eq(&self.sessions, &other.sessions),
        )
    }

    /// Counts an outcome of the gateway's own endpoints (route `_oauth2`).
    pub fn count_endpoint(&self, result: &str, reason: &str) {
        self.metrics.count("_oauth2", result, reason);
    }

    /// Who sent `req`, and may they use `route` (number `route_index`)?
    /// Counts the outcome; a refusal says how to answer.
    pub async fn identify(
        &self,
        req: &HttpRequest,
        route_index: usize,
        route: &RouteSettings,
    ) -> Result<Arc<Identity>, Refusal> {
        let token = bearer_token(req);
        let result = match (route.auth, token) {
            (AuthMode::Bearer | AuthMode::SessionOrBearer, Some(token)) => {
                // Boxed: large and less common than a cached session.
                Box::pin(self.bearer.authenticate(&self.provider, token))
                    .await
                    .map(|identity| (Arc::new(identity), Via::Bearer, false))
                    .map_err(AuthFailure::from)
            }
            (AuthMode::Bearer, None) => Err(AuthFailure::NoToken),
            _ => self
                .session_identity(req)
                .await
                .map(|(identity, refreshed)| (identity, Via::Session, refreshed)),
        };
        let result = result.and_then(|verified| {
            if verified.0.satisfies(route) {
                Ok(verified)
            } else {
                Err(AuthFailure::RequirementUnmet)
            }
        });
        match result {
            Ok((identity, via, refreshed)) => {
                if refreshed {
                    self.metrics.count(&route.name, "refreshed", "session");
                }
                if let Some(successes) = &self.metrics.successes[route_index] {
                    successes[via as usize].inc();
                }
                Ok(identity)
            }
            Err(failure) => {
                self.metrics
                    .count(&route.name, failure.result(), failure.reason());
                Err(refusal(req, route.auth, token.is_some(), failure))
            }
        }
    }

    /// The identity of the session cookie; tokens close to expiry are
    /// refreshed first (`true` when this request refreshed them).
    async fn session_identity(
        &self,
        req: &HttpRequest,
    ) -> Result<(Arc<Identity>, bool), AuthFailure> {
        let cookie = browser::cookie_of(req, &self.settings.session.cookie_name)
            .ok_or(AuthFailure::NoSession)?;
        let session = self
            .sessions
            .lookup(cookie)
            .await
            .map_err(|_| AuthFailure::StoreUnavailable)?
            .ok_or(AuthFailure::UnknownSession)?;
        if !refresh::is_due(&session) {
            return Ok((session.identity(), false));
        }
        // Boxed: the refresh machinery is large and rare; inlined, its state
        // would be copied around with every request's future.
        Box::pin(refresh::refresh_session(
            &self.sessions,
            &self.provider,
            cookie,
            &session,
        ))
        .await
    }
}

/// The token of `Authorization: Bearer <token>`, if sent.
fn bearer_token(req: &HttpRequest) -> Option<&str> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// How to answer a refused request: browsers without credentials on a
/// session route are sent to log in; bearer clients get a challenge.
fn refusal(req: &HttpRequest, mode: AuthMode, token_sent: bool, failure: AuthFailure) -> Refusal {
    let unauthenticated = failure.gateway_error() == crate::error::GatewayError::Unauthenticated;
    let session_route = matches!(mode, AuthMode::Session | AuthMode::SessionOrBearer);
    if session_route && !token_sent && unauthenticated && browser::accepts_html(req.headers()) {
        let path_and_query = req
            .uri()
            .path_and_query()
            .map_or("/", |pq| pq.as_str())
            .to_owned();
        return Refusal::Login { path_and_query };
    }
    Refusal::Error {
        failure,
        challenge: unauthenticated && (token_sent || mode == AuthMode::Bearer),
    }
}
