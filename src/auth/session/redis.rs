//! The session store's Redis side: sealed sessions keyed by the id's
//! digest, the cross-replica refresh lock, the one-time pre-login records
//! and the invalidation channel. The SessionCache actor reads and writes
//! sessions through it; the workers take refresh locks and pre-login
//! records through it directly.
//!
//! Every command is bounded by `command_timeout_ms` and goes through the
//! session store's circuit breaker (the same rules as the rate limiter's,
//! its own state): after 3 failed commands in a row, session commands fail
//! at once for a back-off, the actor PINGs to recover, and `/health` shows
//! the session store degraded.

use std::sync::Arc;
use std::time::Duration;

use slog::Logger;

use super::model::{unix_now, PreLogin, Session, SessionStoreError, PRE_LOGIN_TTL};
use crate::auth::crypto::{IdDigest, SessionCrypto};
use crate::redis::breaker::{now_ms, BreakerChange, BreakerMessages, CircuitBreaker};
use crate::redis::pool::{ConnectionSlot, RedisPool};

/// Where a logout on one replica tells every replica to drop its copy.
pub const INVALIDATION_CHANNEL: &str = "gw:session:invalidate";
/// How long a refresh lock holds without renewal.
pub const REFRESH_LEASE: Duration = Duration::from_secs(5);

const RENEW_IF_OWNER: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
    return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end";
const DELETE_IF_OWNER: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
    return redis.call('DEL', KEYS[1]) else return 0 end";

const BREAKER_MESSAGES: BreakerMessages = BreakerMessages {
    opened: "session store circuit breaker opened: uncached sessions get 503",
    closed: "session store circuit breaker closed: sessions served again",
};

fn session_key(id_digest: &IdDigest) -> String {
    format!("gw:session:{id_digest}")
}

fn refresh_lock_key(id_digest: &IdDigest) -> String {
    format!("gw:refresh-lock:{id_digest}")
}

fn pre_login_key(state_digest: &str) -> String {
    format!("gw:prelogin:{state_digest}")
}

#[derive(Clone)]
pub struct RedisSessions {
    pool: RedisPool,
    connection: ConnectionSlot,
    crypto: Arc<SessionCrypto>,
    command_timeout: Duration,
    breaker: Arc<CircuitBreaker>,
    log: Logger,
}

impl RedisSessions {
    pub fn new(
        pool: RedisPool,
        crypto: Arc<SessionCrypto>,
        command_timeout: Duration,
        log: Logger,
    ) -> Self {
        Self {
            pool,
            connection: ConnectionSlot::default(),
            crypto,
            command_timeout,
            breaker: Arc::default(),
            log,
        }
    }

    pub fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }

    /// Checks Redis while the breaker is open and its back-off is over
    /// (called by the actor on a timer), so recovery needs no traffic.
    pub async fn probe(&self) {
        if self.breaker.should_probe() {
            let _ = self.command::<String>(&redis::cmd("PING")).await;
        }
    }

    async fn run<T: redis::FromRedisValue>(
        &self,
        cmd: &redis::Cmd,
    ) -> Result<T, SessionStoreError> {
        if !self.breaker.admit() {
            return Err(SessionStoreError::Unavailable(
                "circuit breaker open".into(),
            ));
        }
        self.command(cmd).await
    }

    /// One command, bounded by `command_timeout_ms`, reported to the breaker.
    async fn command<T: redis::FromRedisValue>(
        &self,
        cmd: &redis::Cmd,
    ) -> Result<T, SessionStoreError> {
        let started = now_ms();
        let attempt = async {
            let mut conn = self
                .connection
                .get(&self.pool)
                .await
                .map_err(|e| SessionStoreError::Unavailable(e.to_string()))?;
            Ok::<T, SessionStoreError>(cmd.query_async(&mut conn).await?)
        };
        let result = match tokio::time::timeout(self.command_timeout, attempt).await {
            Ok(result) => result,
            Err(_) => Err(SessionStoreError::Unavailable("timed out".into())),
        };
        let (change, error) = match &result {
            Ok(_) => (self.breaker.record_success(), String::new()),
            Err(e) => {
                self.connection.reset();
                (self.breaker.record_failure(started), e.to_string())
            }
        };
        BreakerChange::log(change, &self.log, &BREAKER_MESSAGES, &error);
        result
    }

    pub async fn get(&self, key: &IdDigest) -> Result<Option<Arc<Session>>, SessionStoreError> {
        let sealed: Option<Vec<u8>> = self.run(&redis::Cmd::get(session_key(key))).await?;
        Ok(sealed
            .and_then(|s| self.crypto.open(key.to_string().as_bytes(), &s))
            .and_then(|plain| serde_json::from_slice::<Session>(&plain).ok())
            .map(Arc::new))
    }

    pub async fn put(&self, key: &IdDigest, session: &Session) -> Result<(), SessionStoreError> {
        let ttl = session.expires_at.saturating_sub(unix_now()).max(1);
        let plain = serde_json::to_vec(session)
            .map_err(|e| SessionStoreError::Unavailable(e.to_string()))?;
        let sealed = self.crypto.seal(key.to_string().as_bytes(), &plain);
        self.run(&redis::Cmd::set_ex(session_key(key), sealed, ttl))
            .await
    }

    /// Deletes, then tells every replica to drop its cached copy (two
    /// commands: a cluster routes them to different nodes).
    pub async fn remove(&self, key: &IdDigest) -> Result<(), SessionStoreError> {
        self.run::<()>(&redis::Cmd::del(session_key(key))).await?;
        self.run(&redis::Cmd::publish(INVALIDATION_CHANNEL, key.to_string()))
            .await
    }

    /// Takes the refresh lock of a session for `owner` unless another
    /// replica holds it: true when taken.
    pub async fn lock_refresh(
        &self,
        key: &IdDigest,
        owner: &str,
    ) -> Result<bool, SessionStoreError> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(refresh_lock_key(key))
            .arg(owner)
            .arg("NX")
            .arg("PX")
            .arg(REFRESH_LEASE.as_millis() as u64);
        let granted: Option<String> = self.run(&cmd).await?;
        Ok(granted.is_some())
    }

    /// Extends `owner`'s lease (a no-op once the lock is someone else's).
    pub async fn renew_refresh(
        &self,
        key: &IdDigest,
        owner: &str,
    ) -> Result<(), SessionStoreError> {
        self.owner_script(RENEW_IF_OWNER, key, owner, Some(REFRESH_LEASE))
            .await
    }

    /// Releases the lock if `owner` still holds it.
    pub async fn unlock_refresh(
        &self,
        key: &IdDigest,
        owner: &str,
    ) -> Result<(), SessionStoreError> {
        self.owner_script(DELETE_IF_OWNER, key, owner, None).await
    }

    async fn owner_script(
        &self,
        script: &str,
        key: &IdDigest,
        owner: &str,
        lease: Option<Duration>,
    ) -> Result<(), SessionStoreError> {
        // EVAL (not EVALSHA): rare, and never NOSCRIPT after a restart.
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(script).arg(1).arg(refresh_lock_key(key)).arg(owner);
        if let Some(lease) = lease {
            cmd.arg(lease.as_millis() as u64);
        }
        self.run::<i64>(&cmd).await.map(drop)
    }

    /// Stores a pre-login record (sealed) for [`PRE_LOGIN_TTL`].
    pub async fn put_pre_login(
        &self,
        state_digest: &str,
        record: &PreLogin,
    ) -> Result<(), SessionStoreError> {
        let plain = serde_json::to_vec(record)
            .map_err(|e| SessionStoreError::Unavailable(e.to_string()))?;
        let sealed = self.crypto.seal(state_digest.as_bytes(), &plain);
        let mut cmd = redis::cmd("SET");
        cmd.arg(pre_login_key(state_digest))
            .arg(sealed)
            .arg("EX")
            .arg(PRE_LOGIN_TTL.as_secs());
        self.run(&cmd).await
    }

    /// Takes a pre-login record out (GETDEL): a state works once.
    pub async fn take_pre_login(
        &self,
        state_digest: &str,
    ) -> Result<Option<PreLogin>, SessionStoreError> {
        let mut cmd = redis::cmd("GETDEL");
        cmd.arg(pre_login_key(state_digest));
        let sealed: Option<Vec<u8>> = self.run(&cmd).await?;
        Ok(sealed
            .and_then(|s| self.crypto.open(state_digest.as_bytes(), &s))
            .and_then(|plain| serde_json::from_slice(&plain).ok()))
    }
}
