//! Server-side sessions and the one-time pre-login records of the login flow.
//!
//! The cookie carries only a random id. With `redis.url` set, sessions live
//! in Redis (sealed, keyed by the id's digest, TTL = `ttl_secs`) so every
//! replica sees them, and each replica keeps an in-process cache for
//! `cache_ttl_secs`; unknown ids are cached negatively for a few seconds so
//! garbage cookies cannot hammer Redis. Without Redis the in-process store
//! is the only one (single instance).
//!
//! ```text
//! mod.rs          SessionStore: the workers' face (cache reads, refresh flights and leases)
//!   cache_actor.rs  SessionCache actor: coalesced misses, writes, pub/sub invalidation
//!   redis.rs        sealed sessions, refresh locks, pre-login records in Redis
//!   model.rs        Session, PreLogin, SessionStoreError    id.rs  id shape and digest
//! ```

pub mod cache_actor;
pub mod id;
pub mod model;
pub mod redis;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::Addr;
use moka::sync::Cache;
use slog::Logger;

use self::cache_actor::{DeleteSession, LoadSession, LoadSource, SaveSession, SessionCacheActor};
use self::id::{id_digest, is_session_id};
use self::model::{unix_now, PreLogin, Session, SessionStoreError, PRE_LOGIN_TTL};
use self::redis::{RedisSessions, REFRESH_LEASE};
use crate::auth::crypto::{
    digest, digest_cache, random_token, DigestCache, IdDigest, SessionCrypto,
};
use crate::redis::breaker::CircuitBreaker;
use crate::redis::pool::RedisPool;
use crate::settings::RedisSettings;

const NEGATIVE_TTL: Duration = Duration::from_secs(5);
const CACHE_CAPACITY: u64 = 100_000;

/// The worker-side face of the session store: reads the in-process cache
/// without waiting, sends misses and writes to the SessionCache actor.
pub struct SessionStore {
    /// `gateway_session_cache_lookups_total`, when metrics are attached.
    lookups: Option<prometheus::IntCounterVec>,
    cache_hits: Option<prometheus::IntCounter>,
    /// Sessions being refreshed by this replica right now (single flight).
    refreshing: Mutex<HashSet<IdDigest>>,
    /// Redis mode: replica-local copies. Memory mode: the store itself.
    cache: DigestCache<Arc<Session>>,
    negative: DigestCache<()>,
    actor: Addr<SessionCacheActor>,
    /// Redis mode: refresh locks and pre-login records go here directly.
    redis: Option<RedisSessions>,
    /// Memory mode: the pre-login records.
    pre_login: Cache<String, Arc<PreLogin>>,
}

fn negative_cache() -> DigestCache<()> {
    digest_cache(CACHE_CAPACITY, NEGATIVE_TTL)
}

impl SessionStore {
    fn with_parts(
        cache: DigestCache<Arc<Session>>,
        negative: DigestCache<()>,
        actor: SessionCacheActor,
        redis: Option<RedisSessions>,
    ) -> Self {
        Self {
            lookups: None,
            cache_hits: None,
            refreshing: Mutex::default(),
            cache,
            negative,
            actor: actor.start_on_own_thread(),
            redis,
            pre_login: Cache::builder()
                .max_capacity(CACHE_CAPACITY)
                .time_to_live(PRE_LOGIN_TTL)
                .build(),
        }
    }

    /// One replica, sessions in memory. Starts the SessionCache actor, so
    /// call it inside the actix system.
    pub fn memory(ttl: Duration, log: Logger) -> Self {
        let cache = digest_cache(CACHE_CAPACITY, ttl);
        let negative = negative_cache();
        let actor = SessionCacheActor::new(None, cache.clone(), negative.clone(), log);
        Self::with_parts(cache, negative, actor, None)
    }

    /// Sessions in Redis, sealed with `secret`, shared by every replica;
    /// `cache_ttl` bounds how long this replica trusts its copy. Starts the
    /// SessionCache actor (and its pub/sub subscription).
    pub fn redis(
        secret: &str,
        pool: RedisPool,
        redis: &RedisSettings,
        cache_ttl: Duration,
        log: Logger,
    ) -> Result<Self, String> {
        let crypto = Arc::new(SessionCrypto::new(secret));
        // Cluster PUBLISH reaches subscribers on every node: one seed is enough.
        let subscriber =
            ::redis::Client::open(redis.urls[0].as_str()).map_err(|e| e.to_string())?;
        let store = RedisSessions::new(pool, crypto, redis.command_timeout, log.clone());
        let cache = digest_cache(CACHE_CAPACITY, cache_ttl.max(Duration::from_millis(1)));
        let negative = negative_cache();
        let actor = SessionCacheActor::new(
            Some((store.clone(), subscriber)),
            cache.clone(),
            negative.clone(),
            log,
        );
        Ok(Self::with_parts(cache, negative, actor, Some(store)))
    }

    /// The circuit breaker of the Redis behind the sessions (`None` in
    /// memory mode).
    pub fn breaker(&self) -> Option<&CircuitBreaker> {
        self.redis.as_ref().map(RedisSessions::breaker)
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
    pub async fn lookup(
        &self,
        session_id: &str,
    ) -> Result<Option<Arc<Session>>, SessionStoreError> {
        if !is_session_id(session_id) {
            self.count("miss");
            return Ok(None);
        }
        let key = id_digest(session_id);
        let found = if let Some(hit) = self.cache.get(&key) {
            self.count("hit");
            Some(hit)
        } else if self.redis.is_none() {
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
                .map_err(|_| SessionStoreError::Stopped)??;
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

    /// The stored session, bypassing this replica's cache (to see another
    /// replica's refresh).
    pub async fn lookup_uncached(
        &self,
        session_id: &str,
    ) -> Result<Option<Arc<Session>>, SessionStoreError> {
        // In memory mode the cache is the store: nothing to bypass.
        if self.redis.is_some() {
            self.cache.invalidate(&id_digest(session_id));
        }
        self.lookup(session_id).await
    }

    pub async fn save(&self, session_id: &str, session: Session) -> Result<(), SessionStoreError> {
        self.actor
            .send(SaveSession {
                key: id_digest(session_id),
                session: Arc::new(session),
            })
            .await
            .map_err(|_| SessionStoreError::Stopped)?
    }

    pub async fn delete(&self, session_id: &str) -> Result<(), SessionStoreError> {
        self.actor
            .send(DeleteSession(id_digest(session_id)))
            .await
            .map_err(|_| SessionStoreError::Stopped)?
    }

    /// This request refreshes the session's tokens (`Some`, until the
    /// flight is dropped), unless another request of this replica already
    /// does (`None`).
    pub fn begin_refresh(&self, session_id: &str) -> Option<RefreshFlight<'_>> {
        let key = id_digest(session_id);
        let taken = self
            .refreshing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key);
        // Built only when taken: dropping a flight ends it.
        taken.then(|| RefreshFlight { store: self, key })
    }

    /// Takes the cluster-wide refresh lock of a session (Redis), so that
    /// one replica refreshes while the others wait for its result: `None`
    /// when another replica holds it. Memory stores are single-replica:
    /// always granted.
    pub async fn lock_refresh(
        &self,
        session_id: &str,
    ) -> Result<Option<RefreshLease<'_>>, SessionStoreError> {
        let key = id_digest(session_id);
        let owner = random_token();
        if let Some(redis) = &self.redis {
            if !redis.lock_refresh(&key, &owner).await? {
                return Ok(None);
            }
        }
        Ok(Some(RefreshLease {
            redis: self.redis.as_ref(),
            key,
            owner,
        }))
    }

    pub async fn put_pre_login(
        &self,
        state: &str,
        record: PreLogin,
    ) -> Result<(), SessionStoreError> {
        let key = digest(state);
        match &self.redis {
            Some(redis) => redis.put_pre_login(&key, &record).await,
            None => {
                self.pre_login.insert(key, Arc::new(record));
                Ok(())
            }
        }
    }

    /// Takes the record of `state` out of the store: a state works once.
    pub async fn take_pre_login(&self, state: &str) -> Result<Option<PreLogin>, SessionStoreError> {
        let key = digest(state);
        match &self.redis {
            Some(redis) => redis.take_pre_login(&key).await,
            None => Ok(self.pre_login.remove(&key).map(|r| (*r).clone())),
        }
    }
}

/// This replica's single flight of one session's refresh: other requests
/// of the replica wait for its result while it lives.
#[must_use = "the flight ends when this is dropped"]
pub struct RefreshFlight<'a> {
    store: &'a SessionStore,
    key: IdDigest,
}

impl Drop for RefreshFlight<'_> {
    fn drop(&mut self) {
        self.store
            .refreshing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.key);
    }
}

/// The cross-replica refresh lock, held until [`RefreshLease::release`]
/// (or its lease runs out, [`REFRESH_LEASE`], unless kept alive).
#[must_use = "release the lease, or other replicas wait for it to run out"]
pub struct RefreshLease<'a> {
    /// `None` in memory mode: nothing to hold.
    redis: Option<&'a RedisSessions>,
    key: IdDigest,
    owner: String,
}

impl RefreshLease<'_> {
    /// Renews the lease every half lease, forever: run it beside the
    /// refresh and drop it when the refresh ends.
    pub async fn keep_alive(&self) {
        loop {
            actix_rt::time::sleep(REFRESH_LEASE / 2).await;
            if let Some(redis) = self.redis {
                // A failed renewal is not fatal: the refresh goes on, and
                // at worst another replica refreshes too.
                let _ = redis.renew_refresh(&self.key, &self.owner).await;
            }
        }
    }

    /// Lets other replicas refresh this session again.
    pub async fn release(self) {
        if let Some(redis) = self.redis {
            let _ = redis.unlock_refresh(&self.key, &self.owner).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[actix_rt::test]
    async fn one_refresh_flight_per_session_until_it_ends() {
        let store = SessionStore::memory(
            Duration::from_secs(60),
            Logger::root(slog::Discard, slog::o!()),
        );
        let id = random_token();
        let first = store.begin_refresh(&id).expect("the first request flies");
        assert!(store.begin_refresh(&id).is_none(), "a second one waits");
        assert!(
            store.begin_refresh(&id).is_none(),
            "a refused request does not end the flight"
        );
        assert!(
            store.begin_refresh(&random_token()).is_some(),
            "per session"
        );
        drop(first);
        assert!(store.begin_refresh(&id).is_some(), "free once it ended");
    }
}
