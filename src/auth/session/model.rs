//! What a session is: the identity and tokens kept server-side behind the
//! cookie's random id, and the one-time pre-login record of a login in
//! progress. A leaf of the session store; only `redis.rs` serialises them
//! (sealed), and `Debug` never shows a token.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::auth::identity::Identity;

/// Pre-login records live this long: the user has this much time to log in.
pub const PRE_LOGIN_TTL: Duration = Duration::from_secs(600);

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[derive(Clone, Serialize, Deserialize)]
pub struct Session {
    pub subject: String,
    pub email: Option<String>,
    pub roles: Vec<String>,
    pub scopes: Vec<String>,
    pub access_token: String,
    pub refresh_token: Option<String>,
    /// Sent back as `id_token_hint` when logging out at the provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    /// Unix seconds; 0 = unknown.
    pub access_expires_at: u64,
    /// When the access token was obtained, unix seconds (0 in sessions
    /// stored before this was kept): with its expiry, the token's lifetime.
    #[serde(default)]
    pub access_issued_at: u64,
    pub created_at: u64,
    pub expires_at: u64,
    /// Built on first use; a cached session serves many requests.
    #[serde(skip)]
    identity: OnceLock<Arc<Identity>>,
}

impl Session {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        identity: Identity,
        access_token: String,
        refresh_token: Option<String>,
        access_expires_at: u64,
        created_at: u64,
        expires_at: u64,
    ) -> Self {
        Self {
            subject: identity.subject.clone(),
            email: identity.email.clone(),
            roles: identity.roles.clone(),
            scopes: identity.scopes.clone(),
            access_token,
            refresh_token,
            id_token: None,
            access_expires_at,
            access_issued_at: created_at,
            created_at,
            expires_at,
            identity: OnceLock::from(Arc::new(identity)),
        }
    }

    /// Who the session belongs to.
    pub fn identity(&self) -> Arc<Identity> {
        self.identity
            .get_or_init(|| {
                Arc::new(Identity::new(
                    self.subject.clone(),
                    self.email.clone(),
                    self.roles.clone(),
                    self.scopes.clone(),
                ))
            })
            .clone()
    }
}

// Tokens never reach a log through Debug.
impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("subject", &self.subject)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// What the callback needs back from the login request.
#[derive(Clone, Serialize, Deserialize)]
pub struct PreLogin {
    /// Digest of the login cookie's value set on the browser that started.
    pub binding_digest: String,
    /// Digest of the state, compared in constant time on the way back.
    pub state_digest: String,
    pub pkce_verifier: String,
    pub nonce: String,
    pub redirect_to: String,
}

/// Why the session store could not answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SessionStoreError {
    #[error("session store unavailable: {0}")]
    Unavailable(String),
    #[error("session cache actor stopped")]
    Stopped,
}

impl From<redis::RedisError> for SessionStoreError {
    fn from(e: redis::RedisError) -> Self {
        Self::Unavailable(e.to_string())
    }
}
