//! Server-side sessions and the one-time pre-login records of the login flow.
//!
//! The cookie carries only a random id. With `redis.url` set, sessions live
//! in Redis (sealed, keyed by the id's hash, TTL = `ttl_secs`) so every
//! replica sees them, and each replica keeps an in-process cache for
//! `cache_ttl_secs`; unknown ids are cached negatively for a few seconds so
//! garbage cookies cannot hammer Redis. Without Redis the in-process store
//! is the only one (single instance).

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use moka::sync::Cache;
use serde::{Deserialize, Serialize};

use actix::{Actor, Addr};
use slog::Logger;

use super::crypto::{digest, IdDigest, SessionCrypto};
use super::Identity;
use crate::actors::session_cache::{
    DeleteSession, LoadSession, LoadSource, SaveSession, SessionCacheActor,
};
use crate::ratelimit::store::{log_breaker_change, StoreHealth};
use crate::redis_pool::{ConnectionSlot, PooledConnection, RedisPool};
use crate::settings::RedisSettings;

/// The actor gets an arbiter (thread) of its own: store round trips never
/// run on a request worker.
fn start_actor(actor: SessionCacheActor) -> Addr<SessionCacheActor> {
    let arbiter = actix::Arbiter::new();
    SessionCacheActor::start_in_arbiter(&arbiter.handle(), move |_| actor)
}

/// A session id's length: 256 random bits in URL-safe base64
/// (`crypto::random_token`). A cookie of any other shape names no session.
const SESSION_ID_LEN: usize = 43;
const DIGEST_MEMO_CAPACITY: usize = 4096;

thread_local! {
    /// Session ids this worker thread has seen, with their digests. A
    /// digest is a pure function of the id, so the memo is never stale; it
    /// spares a SHA-256 on every request with a cached session (without
    /// SHA CPU instructions, 3,640 of the 8,264 instructions a session
    /// route added per request). Cleared when full, so a flood of made-up
    /// ids costs what it did without the memo.
    static DIGEST_MEMO: RefCell<HashMap<[u8; SESSION_ID_LEN], IdDigest>> =
        RefCell::new(HashMap::new());
}

/// True when `value` has the shape of a session id; anything else names no
/// session and never reaches the caches or the store.
fn is_session_id(value: &str) -> bool {
    value.len() == SESSION_ID_LEN
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The digest a session is cached, stored and locked under: the one way
/// from a session id to its key, remembered per worker thread.
fn id_digest(session_id: &str) -> IdDigest {
    let Ok(id) = <[u8; SESSION_ID_LEN]>::try_from(session_id.as_bytes()) else {
        return IdDigest::of(session_id);
    };
    DIGEST_MEMO.with(|memo| {
        let Ok(mut memo) = memo.try_borrow_mut() else {
            return IdDigest::of(session_id);
        };
        if let Some(digest) = memo.get(&id) {
            return *digest;
        }
        if memo.len() >= DIGEST_MEMO_CAPACITY {
            memo.clear();
        }
        let digest = IdDigest::of(session_id);
        memo.insert(id, digest);
        digest
    })
}

/// Pre-login records live this long: the user has this much time to log in.
pub const PRE_LOGIN_TTL: Duration = Duration::from_secs(600);
const NEGATIVE_TTL: Duration = Duration::from_secs(5);
const CACHE_CAPACITY: u64 = 100_000;

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
    pub created_at: u64,
    pub expires_at: u64,
    /// Built on first use; a cached session serves many requests.
    #[serde(skip)]
    identity: std::sync::OnceLock<Arc<Identity>>,
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
            created_at,
            expires_at,
            identity: std::sync::OnceLock::from(Arc::new(identity)),
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

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("session store unavailable: {0}")]
    Unavailable(String),
    #[error("session cache actor stopped")]
    Stopped,
}

impl From<redis::RedisError> for StoreError {
    fn from(e: redis::RedisError) -> Self {
        Self::Unavailable(e.to_string())
    }
}

fn session_key(id_digest: &IdDigest) -> String {
    format!("gw:session:{id_digest}")
}

fn refresh_lock_key(id_digest: &IdDigest) -> String {
    format!("gw:refresh-lock:{id_digest}")
}

/// How long a refresh lock holds without renewal.
pub const REFRESH_LEASE: Duration = Duration::from_secs(5);
const RENEW_IF_OWNER: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
    return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end";
const DELETE_IF_OWNER: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
    return redis.call('DEL', KEYS[1]) else return 0 end";

fn pre_login_key(state_digest: &str) -> String {
    format!("gw:prelogin:{state_digest}")
}

/// Sealed sessions in Redis, keyed by the id's digest: the storage that the
/// SessionCache actor reads on a miss and writes through. Every command is
/// bounded by `command_timeout_ms`.
///
/// A circuit breaker (the same rules as the rate limiter's, its own state)
/// stops calling a failing Redis: after 3 failed commands in a row, session
/// commands fail at once for a back-off, the actor PINGs to recover, and
/// `/health` shows the session store degraded.
#[derive(Clone)]
pub struct RedisSessions {
    pool: RedisPool,
    connection: ConnectionSlot,
    crypto: Arc<SessionCrypto>,
    command_timeout: Duration,
    health: Arc<StoreHealth>,
    log: Logger,
}

impl RedisSessions {
    /// Checks Redis while the breaker is open and its back-off is over
    /// (called by the actor on a timer), so recovery needs no traffic.
    pub async fn probe(&self) {
        if self.health.is_open() && self.health.admit() {
            let _ = self.command::<String>(redis::cmd("PING")).await;
        }
    }

    async fn run<T: redis::FromRedisValue>(&self, cmd: redis::Cmd) -> Result<T, StoreError> {
        if !self.health.admit() {
            return Err(StoreError::Unavailable("circuit breaker open".into()));
        }
        self.command(cmd).await
    }

    /// One command, bounded by `command_timeout_ms`, reported to the breaker.
    async fn command<T: redis::FromRedisValue>(&self, cmd: redis::Cmd) -> Result<T, StoreError> {
        let started = crate::ratelimit::store::now_ms();
        let attempt = async {
            let mut conn = self
                .connection
                .get(&self.pool)
                .await
                .map_err(|e| StoreError::Unavailable(e.to_string()))?;
            Ok::<T, StoreError>(cmd.query_async(&mut conn).await?)
        };
        let result = match tokio::time::timeout(self.command_timeout, attempt).await {
            Ok(result) => result,
            Err(_) => Err(StoreError::Unavailable("timed out".into())),
        };
        let (change, error) = match &result {
            Ok(_) => (self.health.record_success(), String::new()),
            Err(e) => {
                self.connection.reset();
                (self.health.record_failure(started), e.to_string())
            }
        };
        log_breaker_change(
            &self.log,
            change,
            "session store circuit breaker opened: uncached sessions get 503",
            "session store circuit breaker closed: sessions served again",
            &error,
        );
        result
    }

    pub async fn get(&self, key: &IdDigest) -> Result<Option<Arc<Session>>, StoreError> {
        let sealed: Option<Vec<u8>> = self.run(redis::Cmd::get(session_key(key))).await?;
        Ok(sealed
            .and_then(|s| self.crypto.open(key.to_string().as_bytes(), &s))
            .and_then(|plain| serde_json::from_slice::<Session>(&plain).ok())
            .map(Arc::new))
    }

    pub async fn put(&self, key: &IdDigest, session: &Session) -> Result<(), StoreError> {
        let ttl = session.expires_at.saturating_sub(unix_now()).max(1);
        let plain =
            serde_json::to_vec(session).map_err(|e| StoreError::Unavailable(e.to_string()))?;
        let sealed = self.crypto.seal(key.to_string().as_bytes(), &plain);
        self.run(redis::Cmd::set_ex(session_key(key), sealed, ttl))
            .await
    }

    /// Deletes, then tells every replica to drop its cached copy (two
    /// commands: a cluster routes them to different nodes).
    pub async fn remove(&self, key: &IdDigest) -> Result<(), StoreError> {
        self.run::<()>(redis::Cmd::del(session_key(key))).await?;
        self.run(redis::Cmd::publish(
            crate::actors::session_cache::INVALIDATION_CHANNEL,
            key.to_string(),
        ))
        .await
    }
}

/// Where one-time pre-login records live.
enum PreLoginBackend {
    Memory(Cache<String, Arc<PreLogin>>),
    Redis(RedisPool),
}

/// The worker-side face of the session store: reads the in-process cache
/// without waiting, sends misses and writes to the SessionCache actor.
pub struct SessionStore {
    /// `gateway_session_cache_lookups_total`, when metrics are attached.
    lookups: Option<prometheus::IntCounterVec>,
    cache_hits: Option<prometheus::IntCounter>,
    /// Sessions being refreshed by this replica right now (single flight).
    refreshing: std::sync::Mutex<std::collections::HashSet<IdDigest>>,
    /// Redis mode: replica-local copies. Memory mode: the store itself.
    cache: Cache<IdDigest, Arc<Session>>,
    negative: Cache<IdDigest, ()>,
    /// Redis sits behind the cache (misses go to the actor).
    shared: bool,
    /// The Redis session commands' circuit breaker (Redis mode).
    health: Option<Arc<StoreHealth>>,
    actor: Addr<SessionCacheActor>,
    pre_login: PreLoginBackend,
    crypto: Arc<SessionCrypto>,
}

fn negative_cache() -> Cache<IdDigest, ()> {
    Cache::builder()
        .max_capacity(CACHE_CAPACITY)
        .time_to_live(NEGATIVE_TTL)
        .build()
}

impl SessionStore {
    /// One replica, sessions in memory. Starts the SessionCache actor, so
    /// call it inside the actix system.
    pub fn memory(secret: &str, ttl: Duration, log: Logger) -> Self {
        let cache = Cache::builder()
            .max_capacity(CACHE_CAPACITY)
            .time_to_live(ttl)
            .build();
        let negative = negative_cache();
        let actor = SessionCacheActor::new(None, cache.clone(), negative.clone(), log);
        Self {
            lookups: None,
            cache_hits: None,
            refreshing: Default::default(),
            cache,
            negative,
            shared: false,
            health: None,
            actor: start_actor(actor),
            pre_login: PreLoginBackend::Memory(
                Cache::builder()
                    .max_capacity(CACHE_CAPACITY)
                    .time_to_live(PRE_LOGIN_TTL)
                    .build(),
            ),
            crypto: Arc::new(SessionCrypto::new(secret)),
        }
    }

    /// Sessions in Redis, shared by every replica; `cache_ttl` bounds how
    /// long this replica trusts its copy. Starts the SessionCache actor
    /// (and its pub/sub subscription).
    pub fn redis(
        secret: &str,
        pool: RedisPool,
        redis: &RedisSettings,
        cache_ttl: Duration,
        log: Logger,
    ) -> Result<Self, String> {
        let crypto = Arc::new(SessionCrypto::new(secret));
        // Cluster PUBLISH reaches subscribers on every node: one seed is enough.
        let subscriber = redis::Client::open(redis.urls[0].as_str()).map_err(|e| e.to_string())?;
        let health = Arc::new(StoreHealth::default());
        let backend = RedisSessions {
            pool: pool.clone(),
            connection: ConnectionSlot::default(),
            crypto: crypto.clone(),
            command_timeout: redis.command_timeout,
            health: health.clone(),
            log: log.clone(),
        };
        let cache = Cache::builder()
            .max_capacity(CACHE_CAPACITY)
            .time_to_live(cache_ttl.max(Duration::from_millis(1)))
            .build();
        let negative = negative_cache();
        let actor = SessionCacheActor::new(
            Some((backend, subscriber)),
            cache.clone(),
            negative.clone(),
            log,
        );
        Ok(Self {
            lookups: None,
            cache_hits: None,
            refreshing: Default::default(),
            cache,
            negative,
            shared: true,
            health: Some(health),
            actor: start_actor(actor),
            pre_login: PreLoginBackend::Redis(pool),
            crypto,
        })
    }

    async fn conn(pool: &RedisPool) -> Result<PooledConnection, StoreError> {
        pool.get()
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))
    }

    /// Health of the Redis behind the sessions (`None` in memory mode).
    pub fn health(&self) -> Option<&StoreHealth> {
        self.health.as_deref()
    }

    fn redis_pool(&self) -> Option<&RedisPool> {
        match &self.pre_login {
            PreLoginBackend::Redis(pool) => Some(pool),
            PreLoginBackend::Memory(_) => None,
        }
    }

    /// Counts session lookups by result.
    pub fn with_lookup_metric(mut self, lookups: prometheus::IntCounterVec) -> Self {
        self.cache_hits = Some(lookups.with_label_values(&["hit"]));
        self.lookups = Some(lookups);
        self
    }

    fn count(&self, result: &str) {
        if result == "hit" {
            // The hot path: resolved once, no label lookup.
            if let Some(hits) = &self.cache_hits {
                hits.inc();
            }
        } else if let Some(lookups) = &self.lookups {
            lookups.with_label_values(&[result]).inc();
        }
    }

    /// The session behind a cookie value, if it exists and has not expired.
    pub async fn load(&self, session_id: &str) -> Result<Option<Arc<Session>>, StoreError> {
        if !is_session_id(session_id) {
            self.count("miss");
            return Ok(None);
        }
        let key = id_digest(session_id);
        let found = if let Some(hit) = self.cache.get(&key) {
            self.count("hit");
            Some(hit)
        } else if !self.shared {
            self.count("miss");
            None
        } else if self.negative.contains_key(&key) {
            self.count("negative_hit");
            None
        } else {
            let loaded = self
                .actor
                .send(LoadSession(key))
                .await
                .map_err(|_| StoreError::Stopped)??;
            self.count(match (loaded.source, &loaded.session) {
                (LoadSource::Cache, _) => "hit",
                (LoadSource::Coalesced, _) => "coalesced",
                (LoadSource::Store, Some(_)) => "store_hit",
                (LoadSource::Store, None) => "miss",
            });
            loaded.session
        };
        Ok(found.filter(|s| s.expires_at > unix_now()))
    }

    pub async fn save(&self, session_id: &str, session: Session) -> Result<(), StoreError> {
        self.actor
            .send(SaveSession {
                key: id_digest(session_id),
                session: Arc::new(session),
            })
            .await
            .map_err(|_| StoreError::Stopped)?
    }

    pub async fn delete(&self, session_id: &str) -> Result<(), StoreError> {
        self.actor
            .send(DeleteSession(id_digest(session_id)))
            .await
            .map_err(|_| StoreError::Stopped)?
    }

    /// Takes the cluster-wide refresh lock of a session (Redis), so that one
    /// replica refreshes while the others wait for its result. Memory
    /// stores are single-replica: always granted.
    pub async fn lock_refresh(&self, session_id: &str, owner: &str) -> Result<bool, StoreError> {
        let Some(pool) = self.redis_pool() else {
            return Ok(true);
        };
        let mut conn = Self::conn(pool).await?;
        let granted: Option<String> = redis::cmd("SET")
            .arg(refresh_lock_key(&id_digest(session_id)))
            .arg(owner)
            .arg("NX")
            .arg("PX")
            .arg(REFRESH_LEASE.as_millis() as u64)
            .query_async(&mut conn)
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        Ok(granted.is_some())
    }

    /// Extends the lease while the refresh is still running.
    pub async fn renew_refresh(&self, session_id: &str, owner: &str) {
        if let Some(pool) = self.redis_pool() {
            if let Ok(mut conn) = Self::conn(pool).await {
                let _: Result<i64, _> = redis::Script::new(RENEW_IF_OWNER)
                    .key(refresh_lock_key(&id_digest(session_id)))
                    .arg(owner)
                    .arg(REFRESH_LEASE.as_millis() as u64)
                    .invoke_async(&mut conn)
                    .await;
            }
        }
    }

    pub async fn unlock_refresh(&self, session_id: &str, owner: &str) {
        if let Some(pool) = self.redis_pool() {
            if let Ok(mut conn) = Self::conn(pool).await {
                let _: Result<i64, _> = redis::Script::new(DELETE_IF_OWNER)
                    .key(refresh_lock_key(&id_digest(session_id)))
                    .arg(owner)
                    .invoke_async(&mut conn)
                    .await;
            }
        }
    }

    /// The stored session, bypassing this replica's cache (to see another
    /// replica's refresh).
    pub async fn load_fresh(&self, session_id: &str) -> Result<Option<Arc<Session>>, StoreError> {
        // In memory mode the cache is the store: nothing to bypass.
        if self.shared {
            self.cache.invalidate(&id_digest(session_id));
        }
        self.load(session_id).await
    }

    /// True when this caller should refresh the session's tokens; false
    /// when another request of this replica already does.
    pub fn begin_refresh(&self, session_id: &str) -> bool {
        self.refreshing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id_digest(session_id))
    }

    pub fn end_refresh(&self, session_id: &str) {
        self.refreshing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id_digest(session_id));
    }

    pub async fn put_pre_login(&self, state: &str, record: PreLogin) -> Result<(), StoreError> {
        let key = digest(state);
        match &self.pre_login {
            PreLoginBackend::Memory(records) => records.insert(key, Arc::new(record)),
            PreLoginBackend::Redis(pool) => {
                let plain = serde_json::to_vec(&record)
                    .map_err(|e| StoreError::Unavailable(e.to_string()))?;
                let sealed = self.crypto.seal(key.as_bytes(), &plain);
                let mut conn = Self::conn(pool).await?;
                redis::cmd("SET")
                    .arg(pre_login_key(&key))
                    .arg(sealed)
                    .arg("EX")
                    .arg(PRE_LOGIN_TTL.as_secs())
                    .query_async::<()>(&mut conn)
                    .await
                    .map_err(|e| StoreError::Unavailable(e.to_string()))?;
            }
        }
        Ok(())
    }

    /// Takes the record of `state` out of the store: a state works once.
    pub async fn take_pre_login(&self, state: &str) -> Result<Option<PreLogin>, StoreError> {
        let key = digest(state);
        match &self.pre_login {
            PreLoginBackend::Memory(records) => Ok(records.remove(&key).map(|r| (*r).clone())),
            PreLoginBackend::Redis(pool) => {
                let mut conn = Self::conn(pool).await?;
                let sealed: Option<Vec<u8>> = redis::cmd("GETDEL")
                    .arg(pre_login_key(&key))
                    .query_async(&mut conn)
                    .await
                    .map_err(|e| StoreError::Unavailable(e.to_string()))?;
                Ok(sealed
                    .and_then(|s| self.crypto.open(key.as_bytes(), &s))
                    .and_then(|plain| serde_json::from_slice(&plain).ok()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::crypto::random_token;

    #[test]
    fn only_the_shape_of_a_minted_id_is_a_session_id() {
        let id = random_token();
        assert!(is_session_id(&id));
        for bad in [
            "",
            "unknown-session-id",
            &id[..42],
            &format!("{id}A"),
            &format!("{}+", &id[..42]),
            &format!("{}=", &id[..42]),
        ] {
            assert!(!is_session_id(bad), "{bad}");
        }
    }

    #[test]
    fn id_digest_is_the_ids_digest_remembered_or_not() {
        let id = random_token();
        let expected = IdDigest::of(&id);
        // First computed, then remembered: the same either way.
        assert_eq!(id_digest(&id), expected);
        assert_eq!(id_digest(&id), expected);
        assert_eq!(id_digest("short"), IdDigest::of("short"));
    }

    #[test]
    fn id_digest_memo_stays_bounded() {
        for _ in 0..DIGEST_MEMO_CAPACITY + 10 {
            let id = random_token();
            assert_eq!(id_digest(&id), IdDigest::of(&id));
        }
        assert!(DIGEST_MEMO.with(|m| m.borrow().len()) <= DIGEST_MEMO_CAPACITY);
    }
}
