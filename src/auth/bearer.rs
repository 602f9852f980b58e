//! Bearer tokens: JWTs validated locally against the provider's JWKS
//! (signature, `exp`, `nbf`, `iss`, `aud`), opaque tokens through RFC 7662
//! introspection, cached until the token's `exp` or `cache_ttl_secs`,
//! whichever comes first. Also validates ID tokens for the login callback.

use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

use super::crypto::{digest_cache, DigestCache, IdDigest};
use super::http;
use super::identity::Identity;
use super::provider::Provider;
use super::session::model::unix_now;

/// An unknown `kid` triggers a JWKS refetch at most this often (key
/// rotation is rare; a flood of forged kids must not flood the provider).
const JWKS_REFETCH_MIN_INTERVAL: Duration = Duration::from_secs(10);
const CLOCK_LEEWAY_SECS: u64 = 30;

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum BearerError {
    #[error("the token is not valid")]
    Invalid,
    #[error("the token has expired")]
    Expired,
    #[error("the token cannot be checked: no JWKS or introspection endpoint")]
    NoVerifier,
    #[error("the provider could not be reached")]
    Provider,
}

pub struct Jwks {
    url: Option<String>,
    set: RwLock<Arc<JwkSet>>,
    last_fetch: Mutex<Option<Instant>>,
}

impl Jwks {
    pub fn new(url: Option<String>) -> Self {
        Self {
            url,
            set: RwLock::new(Arc::new(JwkSet { keys: Vec::new() })),
            last_fetch: Mutex::new(None),
        }
    }

    pub fn is_configured(&self) -> bool {
        self.url.is_some()
    }

    /// Fetches the key set; keeps the old one if the fetch fails.
    pub async fn refresh(&self) -> bool {
        let Some(url) = &self.url else { return false };
        *self.last_fetch.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        match http::get_json(url, None).await {
            Ok(doc) => match serde_json::from_value::<JwkSet>(doc) {
                Ok(set) => {
                    *self.set.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(set);
                    true
                }
                Err(_) => false,
            },
            Err(_) => false,
        }
    }

    fn find(&self, kid: Option<&str>) -> Option<DecodingKey> {
        let set = self.set.read().unwrap_or_else(|p| p.into_inner()).clone();
        let jwk = match kid {
            Some(kid) => set.find(kid),
            None if set.keys.len() == 1 => set.keys.first(),
            None => None,
        }?;
        DecodingKey::from_jwk(jwk).ok()
    }

    async fn key(&self, kid: Option<&str>) -> Option<DecodingKey> {
        if let Some(key) = self.find(kid) {
            return Some(key);
        }
        let may_refetch = self
            .last_fetch
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_none_or(|at| at.elapsed() >= JWKS_REFETCH_MIN_INTERVAL);
        if may_refetch && self.refresh().await {
            return self.find(kid);
        }
        None
    }
}

fn looks_like_jwt(token: &str) -> bool {
    token.split('.').count() == 3
}

/// Validates a signed JWT against the provider's keys and returns its
/// claims: signature, `exp`, `nbf`, `aud` (one of `audiences`) and `iss`
/// (when the issuer is known).
pub async fn validate_jwt(
    jwks: &Jwks,
    issuer: Option<&str>,
    token: &str,
    audiences: &[String],
) -> Result<Value, BearerError> {
    let header = jsonwebtoken::decode_header(token).map_err(|_| BearerError::Invalid)?;
    // Only asymmetric algorithms: a token signed with a shared secret or
    // "none" is never accepted.
    if !matches!(
        header.alg,
        Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512
            | Algorithm::ES256
            | Algorithm::ES384
            | Algorithm::EdDSA
    ) {
        return Err(BearerError::Invalid);
    }
    let key = jwks
        .key(header.kid.as_deref())
        .await
        .ok_or(BearerError::Invalid)?;
    let mut validation = Validation::new(header.alg);
    validation.leeway = CLOCK_LEEWAY_SECS;
    validation.validate_nbf = true;
    validation.set_audience(audiences);
    // jsonwebtoken checks aud/iss only when present: make them mandatory.
    let mut required = vec!["exp", "aud"];
    if let Some(issuer) = issuer {
        validation.set_issuer(&[issuer]);
        required.push("iss");
    }
    validation.set_required_spec_claims(&required);
    match jsonwebtoken::decode::<Value>(token, &key, &validation) {
        Ok(data) => Ok(data.claims),
        Err(e) if matches!(e.kind(), jsonwebtoken::errors::ErrorKind::ExpiredSignature) => {
            Err(BearerError::Expired)
        }
        Err(_) => Err(BearerError::Invalid),
    }
}

/// Introspection answers, keyed by the token's digest: active tokens until
/// `min(exp, ttl)`, refused ones for `ttl`, so a client replaying a dead or
/// made-up token costs the provider one call per `ttl`, not one per request.
pub struct IntrospectionCache {
    active: DigestCache<Arc<(Identity, u64)>>,
    refused: DigestCache<BearerError>,
    /// `gateway_auth_introspections_total` by result.
    calls: Option<prometheus::IntCounterVec>,
}

impl IntrospectionCache {
    pub fn new(ttl: Duration, calls: Option<prometheus::IntCounterVec>) -> Self {
        Self {
            active: digest_cache(100_000, ttl),
            refused: digest_cache(100_000, ttl),
            calls,
        }
    }

    fn count(&self, result: &str) {
        if let Some(calls) = &self.calls {
            calls.with_label_values(&[result]).inc();
        }
    }
}

/// RFC 7662 leaves `iss` and `aud` optional; when the provider sends them
/// they must name our issuer and one of the accepted audiences, like a JWT's.
fn introspected_claims_match(answer: &Value, issuer: Option<&str>, audiences: &[String]) -> bool {
    if let (Some(expected), Some(iss)) = (issuer, answer.get("iss")) {
        if iss.as_str() != Some(expected) {
            return false;
        }
    }
    match answer.get("aud") {
        None => true,
        Some(Value::String(aud)) => audiences.contains(aud),
        Some(Value::Array(auds)) => auds
            .iter()
            .filter_map(Value::as_str)
            .any(|aud| audiences.iter().any(|a| a == aud)),
        Some(_) => false,
    }
}

async fn introspect(
    provider: &Provider,
    cache: &IntrospectionCache,
    roles_claim: &str,
    token: &str,
) -> Result<Identity, BearerError> {
    let url = provider
        .endpoints
        .introspection
        .as_deref()
        .ok_or(BearerError::NoVerifier)?;
    let key = IdDigest::of(token);
    if let Some(hit) = cache.active.get(&key) {
        if hit.1 > unix_now() {
            return Ok(hit.0.clone());
        }
        cache.active.invalidate(&key);
    }
    if let Some(refused) = cache.refused.get(&key) {
        return Err(refused);
    }
    let answer = match provider
        .post_form(
            url,
            &[("token", token), ("token_type_hint", "access_token")],
        )
        .await
    {
        Ok(answer) => answer,
        Err(_) => {
            // Not cached: the provider may be back for the next request.
            cache.count("error");
            return Err(BearerError::Provider);
        }
    };
    let verdict = identity_from_introspection(provider, roles_claim, &answer);
    match &verdict {
        Ok((identity, exp)) => {
            cache.count("active");
            cache.active.insert(key, Arc::new((identity.clone(), *exp)));
        }
        Err(refused) => {
            cache.count("inactive");
            cache.refused.insert(key, refused.clone());
        }
    }
    verdict.map(|(identity, _)| identity)
}

/// The identity and expiry of an introspection answer, or why it is refused.
fn identity_from_introspection(
    provider: &Provider,
    roles_claim: &str,
    answer: &Value,
) -> Result<(Identity, u64), BearerError> {
    if answer.get("active").and_then(Value::as_bool) != Some(true) {
        return Err(BearerError::Invalid);
    }
    let (issuer, audiences) = (
        provider.endpoints.issuer.as_deref(),
        &provider.settings.audiences,
    );
    if !introspected_claims_match(answer, issuer, audiences) {
        return Err(BearerError::Invalid);
    }
    let identity = Identity::from_claims(answer, roles_claim).ok_or(BearerError::Invalid)?;
    let exp = answer
        .get("exp")
        .and_then(Value::as_u64)
        .unwrap_or(u64::MAX);
    if exp <= unix_now() {
        return Err(BearerError::Expired);
    }
    Ok((identity, exp))
}

/// Checks bearer tokens: the provider's keys and the introspection answers.
pub struct BearerVerifier {
    pub jwks: Jwks,
    introspection: IntrospectionCache,
    roles_claim: String,
}

impl BearerVerifier {
    /// Fetches the JWKS once (a failure is tolerated: keys are refetched on
    /// demand); introspection answers are kept `cache_ttl`.
    pub async fn new(
        provider: &Provider,
        roles_claim: &str,
        cache_ttl: Duration,
        calls: prometheus::IntCounterVec,
    ) -> Self {
        let jwks = Jwks::new(provider.endpoints.jwks.clone());
        jwks.refresh().await;
        Self {
            jwks,
            introspection: IntrospectionCache::new(cache_ttl, Some(calls)),
            roles_claim: roles_claim.to_owned(),
        }
    }

    /// Authenticates a bearer token: JWTs locally when a JWKS is known,
    /// everything else (or everything, without JWKS) by introspection.
    pub async fn authenticate(
        &self,
        provider: &Provider,
        token: &str,
    ) -> Result<Identity, BearerError> {
        if looks_like_jwt(token) && self.jwks.is_configured() {
            let issuer = provider.endpoints.issuer.as_deref();
            let claims =
                validate_jwt(&self.jwks, issuer, token, &provider.settings.audiences).await?;
            return Identity::from_claims(&claims, &self.roles_claim).ok_or(BearerError::Invalid);
        }
        introspect(provider, &self.introspection, &self.roles_claim, token).await
    }
}

#[cfg(test)]
mod tests {
    use super::introspected_claims_match;
    use serde_json::json;

    #[test]
    fn introspection_iss_and_aud_must_match_when_present() {
        let auds = ["api".to_owned(), "gateway".to_owned()];
        let issuer = Some("https://idp.example");
        let ok = |answer| introspected_claims_match(&answer, issuer, &auds);
        assert!(ok(json!({"active": true})), "both are optional");
        assert!(ok(json!({"iss": "https://idp.example", "aud": "api"})));
        assert!(ok(json!({"aud": ["other", "gateway"]})));
        assert!(!ok(json!({"iss": "https://evil.example"})));
        assert!(!ok(json!({"aud": "other"})));
        assert!(!ok(json!({"aud": ["other"]})));
        assert!(!ok(json!({"aud": 7})));
        assert!(
            introspected_claims_match(&json!({"iss": "anyone"}), None, &auds),
            "without an issuer setting there is nothing to compare"
        );
    }
}
