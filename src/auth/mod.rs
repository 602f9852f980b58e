//! Authentication and authorisation: OAuth2 login with server-side
//! sessions, bearer tokens (local JWT validation or introspection), and the
//! route requirements (`require.scopes`, `require.roles`).
//!
//! The auth middleware (`middleware/auth.rs`) sits after route matching and
//! before rate limiting; the `/oauth2/*` endpoints (`oauth.rs`) are served
//! by the gateway itself on the proxy listener. Everything here talks to the
//! identity provider through awc (`http.rs`).

pub mod bearer;
pub mod crypto;
pub mod http;
pub mod oauth;
pub mod session;

use actix_web::http::header::{HeaderName, HeaderValue};
use std::time::Duration;

use oauth2::basic::{
    BasicErrorResponse, BasicRevocationErrorResponse, BasicTokenIntrospectionResponse,
    BasicTokenType,
};
use oauth2::{
    AuthUrl, ClientId, ClientSecret, EndpointNotSet, EndpointSet, ExtraTokenFields, RedirectUrl,
    StandardRevocableToken, StandardTokenResponse, TokenUrl,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::settings::{RawAuth, RouteSettings, Settings};
use session::SessionStore;

/// Who made the request, as far as the gateway could establish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub subject: String,
    pub email: Option<String>,
    pub roles: Vec<String>,
    pub scopes: Vec<String>,
    /// `X-Auth-*` for upstreams, built once per identity (a cached session
    /// serves many requests).
    upstream_headers: std::sync::OnceLock<Vec<(HeaderName, HeaderValue)>>,
}

impl Identity {
    pub fn new(
        subject: String,
        email: Option<String>,
        roles: Vec<String>,
        scopes: Vec<String>,
    ) -> Self {
        Self {
            subject,
            email,
            roles,
            scopes,
            upstream_headers: std::sync::OnceLock::new(),
        }
    }

    /// `X-Auth-Subject`, `X-Auth-Email`, `X-Auth-Roles` (comma-separated)
    /// and `X-Auth-Scopes` (space-separated); a value that is not a valid
    /// header value is left out.
    pub fn upstream_headers(&self) -> &[(HeaderName, HeaderValue)] {
        self.upstream_headers.get_or_init(|| {
            let mut out = Vec::with_capacity(4);
            let mut push = |name: &'static str, value: &str| {
                if let Ok(v) = HeaderValue::from_str(value) {
                    out.push((HeaderName::from_static(name), v));
                }
            };
            push("x-auth-subject", &self.subject);
            if let Some(email) = &self.email {
                push("x-auth-email", email);
            }
            push("x-auth-roles", &self.roles.join(","));
            push("x-auth-scopes", &self.scopes.join(" "));
            out
        })
    }

    /// Reads subject, email, roles (`roles_claim`, a list or a space- or
    /// comma-separated string) and scopes (`scope` string or `scp` list).
    pub fn from_claims(claims: &Value, roles_claim: &str) -> Option<Self> {
        // Client-credentials tokens have no user: the client is the subject.
        let subject = claims
            .get("sub")
            .or_else(|| claims.get("client_id"))?
            .as_str()?
            .to_owned();
        let list = |v: Option<&Value>| -> Vec<String> {
            match v {
                Some(Value::Array(items)) => items
                    .iter()
                    .filter_map(|i| i.as_str().map(str::to_owned))
                    .collect(),
                Some(Value::String(s)) => s
                    .split([' ', ','])
                    .filter(|p| !p.is_empty())
                    .map(str::to_owned)
                    .collect(),
                _ => Vec::new(),
            }
        };
        let mut scopes = list(claims.get("scope"));
        if scopes.is_empty() {
            scopes = list(claims.get("scp"));
        }
        Some(Self::new(
            subject,
            claims
                .get("email")
                .and_then(Value::as_str)
                .map(str::to_owned),
            list(claims.get(roles_claim)),
            scopes,
        ))
    }

    /// All of the route's requirements hold.
    pub fn satisfies(&self, route: &RouteSettings) -> bool {
        // Lists are a handful of entries: a scan beats building a set.
        let has_all = |have: &[String], want: &[String]| want.iter().all(|w| have.contains(w));
        has_all(&self.scopes, &route.require_scopes) && has_all(&self.roles, &route.require_roles)
    }
}

/// The ID token, which `oauth2`'s basic token response leaves out.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IdTokenField {
    pub id_token: Option<String>,
}

impl ExtraTokenFields for IdTokenField {}

pub type TokenResponse = StandardTokenResponse<IdTokenField, BasicTokenType>;

pub type OAuthClient = oauth2::Client<
    BasicErrorResponse,
    TokenResponse,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
>;

/// Provider endpoints after discovery; explicit settings win.
#[derive(Debug, Clone, Default)]
pub struct Endpoints {
    pub issuer: Option<String>,
    pub authorization: Option<String>,
    pub token: Option<String>,
    pub introspection: Option<String>,
    pub revocation: Option<String>,
    pub userinfo: Option<String>,
    pub jwks: Option<String>,
    pub end_session: Option<String>,
}

/// Everything the auth stage and the `/oauth2/*` endpoints share.
pub struct Auth {
    pub settings: RawAuth,
    pub endpoints: Endpoints,
    pub oauth: Option<OAuthClient>,
    pub sessions: SessionStore,
    pub jwks: bearer::Jwks,
    pub introspection: bearer::IntrospectionCache,
    pub audiences: Vec<String>,
}

fn non_empty(v: &Option<String>) -> Option<String> {
    v.as_deref().filter(|s| !s.is_empty()).map(str::to_owned)
}

/// Fills in endpoints from `<issuer>/.well-known/openid-configuration`.
pub async fn resolve_endpoints(auth: &RawAuth) -> Result<Endpoints, String> {
    let p = &auth.provider;
    let mut e = Endpoints {
        issuer: non_empty(&p.issuer),
        authorization: non_empty(&p.authorization_url),
        token: non_empty(&p.token_url),
        introspection: non_empty(&p.introspection_url),
        revocation: non_empty(&p.revocation_url),
        userinfo: non_empty(&p.userinfo_url),
        jwks: non_empty(&p.jwks_url),
        end_session: non_empty(&p.end_session_url),
    };
    if let Some(issuer) = &e.issuer {
        let url = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let doc = http::get_json(&url, None)
            .await
            .map_err(|err| format!("OpenID discovery at {url} failed: {err}"))?;
        let field = |name: &str| doc.get(name).and_then(Value::as_str).map(str::to_owned);
        // OpenID Discovery 4.3: a document naming another issuer must not
        // be used (its tokens would all fail the `iss` check anyway).
        if let Some(announced) = field("issuer") {
            if announced.trim_end_matches('/') != issuer.trim_end_matches('/') {
                return Err(format!(
                    "OpenID discovery at {url}: the document is for issuer {announced}, \
                     not auth.provider.issuer {issuer}"
                ));
            }
        }
        e.authorization = e.authorization.or_else(|| field("authorization_endpoint"));
        e.token = e.token.or_else(|| field("token_endpoint"));
        e.introspection = e.introspection.or_else(|| field("introspection_endpoint"));
        e.revocation = e.revocation.or_else(|| field("revocation_endpoint"));
        e.userinfo = e.userinfo.or_else(|| field("userinfo_endpoint"));
        e.jwks = e.jwks.or_else(|| field("jwks_uri"));
        e.end_session = e.end_session.or_else(|| field("end_session_endpoint"));
    }
    Ok(e)
}

/// Builds the auth state when some route uses auth; `None` otherwise.
pub async fn build(
    settings: &Settings,
    redis_pool: Option<crate::redis_pool::RedisPool>,
    metrics: &crate::telemetry::metrics::Metrics,
    log: &slog::Logger,
) -> Result<Option<Auth>, String> {
    let uses_auth = settings
        .routes
        .iter()
        .any(|r| r.auth != crate::settings::AuthMode::None);
    if !uses_auth {
        return Ok(None);
    }
    let raw = &settings.auth;
    http::trust(raw.provider.tls_ca_path())
        .map_err(|e| format!("auth.provider.tls_ca_file: {e}"))?;
    let endpoints = resolve_endpoints(raw).await?;
    if raw.logout.provider && endpoints.end_session.is_none() {
        return Err(
            "auth.logout.provider is true but the provider announces no \
             end_session_endpoint: set auth.provider.end_session_url"
                .to_owned(),
        );
    }
    let oauth = match (&endpoints.authorization, &endpoints.token) {
        (Some(authorization), Some(token)) => Some(
            oauth2::Client::new(ClientId::new(raw.provider.client_id.clone()))
                .set_client_secret(ClientSecret::new(raw.provider.client_secret.clone()))
                .set_auth_uri(AuthUrl::new(authorization.clone()).map_err(|e| e.to_string())?)
                .set_token_uri(TokenUrl::new(token.clone()).map_err(|e| e.to_string())?)
                .set_redirect_uri(
                    RedirectUrl::new(raw.provider.redirect_url.clone())
                        .map_err(|e| e.to_string())?,
                ),
        ),
        _ => None,
    };
    let ttl = Duration::from_secs(raw.session.ttl_secs);
    let sessions = match (redis_pool, &settings.redis) {
        (Some(pool), Some(redis)) => SessionStore::redis(
            &raw.session.secret,
            pool,
            redis,
            Duration::from_secs(raw.session.cache_ttl_secs),
            log.clone(),
        )?,
        _ => SessionStore::memory(&raw.session.secret, ttl, log.clone()),
    }
    .with_lookup_metric(metrics.session_cache_lookups.clone());
    let audiences = if raw.provider.audiences.is_empty() {
        vec![raw.provider.client_id.clone()]
    } else {
        raw.provider.audiences.clone()
    };
    let jwks = bearer::Jwks::new(endpoints.jwks.clone());
    jwks.refresh().await;
    Ok(Some(Auth {
        settings: raw.clone(),
        introspection: bearer::IntrospectionCache::new(
            Duration::from_secs(raw.session.cache_ttl_secs.max(1)),
            Some(metrics.auth_introspections.clone()),
        ),
        endpoints,
        oauth,
        sessions,
        jwks,
        audiences,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn identity_reads_lists_and_strings() {
        let id = Identity::from_claims(
            &json!({"sub": "u1", "email": "u1@x", "groups": "a b,c", "scope": "read write"}),
            "groups",
        )
        .unwrap();
        assert_eq!(id.roles, vec!["a", "b", "c"]);
        assert_eq!(id.scopes, vec!["read", "write"]);
        let id = Identity::from_claims(
            &json!({"sub": "u2", "roles": ["admin"], "scp": ["x"]}),
            "roles",
        )
        .unwrap();
        assert_eq!(id.roles, vec!["admin"]);
        assert_eq!(id.scopes, vec!["x"]);
        assert!(Identity::from_claims(&json!({"email": "no-sub"}), "roles").is_none());
        let client = Identity::from_claims(&json!({"client_id": "svc", "scope": "a"}), "roles");
        assert_eq!(client.unwrap().subject, "svc");
    }
}
