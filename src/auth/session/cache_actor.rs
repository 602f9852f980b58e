//! The SessionCache actor: owns the session store behind the auth stage,
//! on a thread of its own (store round trips never run on a worker).
//!
//! Workers read sessions from the shared in-process cache (moka) without
//! waiting on anyone. What reaches the store goes through this actor:
//!
//! - cache misses ([`LoadSession`]): concurrent misses of one session are
//!   coalesced into ONE Redis GET whose result answers them all, so a cold
//!   replica (or an expired cache entry under load) costs one round trip
//!   per session, not one per request;
//! - writes ([`SaveSession`], [`DeleteSession`]): a write marks a load of
//!   the same session still in flight as stale, so an old copy read before
//!   a logout or refresh is never cached after it;
//! - invalidation: one Redis pub/sub subscription per replica on
//!   [`INVALIDATION_CHANNEL`]. A logout on any replica publishes the
//!   session's hash; every replica drops its cached copy at once. If the
//!   subscription breaks, the whole cache is cleared when it is back
//!   (invalidations may have been missed) and `cache_ttl_secs` bounds
//!   staleness meanwhile.
//!
//! Without Redis the in-process cache is the store itself (one replica):
//! writes still come here, misses are final and never reach the actor.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use futures_util::StreamExt;
use slog::{info, warn, Logger};
use tokio::sync::oneshot;

use super::model::{Session, SessionStoreError};
use super::redis::{RedisSessions, INVALIDATION_CHANNEL};
use crate::auth::crypto::{DigestCache, IdDigest};

const RESUBSCRIBE_BACKOFF: Duration = Duration::from_secs(1);
/// Queued requests beyond this wait (backpressure) instead of piling up.
const MAILBOX_CAPACITY: usize = 4096;
/// How often an open session-store breaker is checked for a probe.
const PROBE_INTERVAL: Duration = Duration::from_millis(250);

type LoadResult = Result<Option<Arc<Session>>, SessionStoreError>;

/// Where a cache miss was answered from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadSource {
    /// Another request's load filled the cache while this one was queued.
    Cache,
    /// This request's load went to the store.
    Store,
    /// This request shared a load already in flight for the same session.
    Coalesced,
}

pub struct Loaded {
    pub session: Option<Arc<Session>>,
    pub source: LoadSource,
}

/// A cache miss: the session under this id digest, from the store.
#[derive(Message)]
#[rtype(result = "Result<Loaded, SessionStoreError>")]
pub struct LoadSession(pub IdDigest);

#[derive(Message)]
#[rtype(result = "Result<(), SessionStoreError>")]
pub struct SaveSession {
    pub key: IdDigest,
    pub session: Arc<Session>,
}

/// Ends a session everywhere (store, this cache, other replicas' caches).
#[derive(Message)]
#[rtype(result = "Result<(), SessionStoreError>")]
pub struct DeleteSession(pub IdDigest);

/// Another replica changed this session: drop the cached copy.
#[derive(Message)]
#[rtype(result = "()")]
struct Invalidated(IdDigest);

/// Invalidations may have been missed: drop every cached copy.
#[derive(Message)]
#[rtype(result = "()")]
struct InvalidateAll;

struct Loading {
    waiters: Vec<oneshot::Sender<LoadResult>>,
    /// A write or invalidation arrived meanwhile: answer, but do not cache.
    stale: bool,
}

pub struct SessionCacheActor {
    /// `None`: memory mode, the cache is the store.
    store: Option<RedisSessions>,
    /// The pub/sub client (Redis mode).
    subscriber: Option<redis::Client>,
    cache: DigestCache<Arc<Session>>,
    negative: DigestCache<()>,
    loading: HashMap<IdDigest, Loading>,
    log: Logger,
}

impl SessionCacheActor {
    pub fn new(
        store: Option<(RedisSessions, redis::Client)>,
        cache: DigestCache<Arc<Session>>,
        negative: DigestCache<()>,
        log: Logger,
    ) -> Self {
        let (store, subscriber) = match store {
            Some((store, client)) => (Some(store), Some(client)),
            None => (None, None),
        };
        Self {
            store,
            subscriber,
            cache,
            negative,
            loading: HashMap::new(),
            log,
        }
    }

    /// Starts the actor on an arbiter (thread) of its own.
    pub fn start_on_own_thread(self) -> Addr<Self> {
        let arbiter = actix::Arbiter::new();
        Self::start_in_arbiter(&arbiter.handle(), move |_| self)
    }

    fn mark_stale(&mut self, key: &IdDigest) {
        if let Some(loading) = self.loading.get_mut(key) {
            loading.stale = true;
        }
    }

    fn finish_load(&mut self, key: IdDigest, result: LoadResult) {
        let Some(loading) = self.loading.remove(&key) else {
            return;
        };
        if !loading.stale {
            match &result {
                Ok(Some(session)) => self.cache.insert(key, session.clone()),
                Ok(None) => self.negative.insert(key, ()),
                Err(_) => {}
            }
        }
        for waiter in loading.waiters {
            let _ = waiter.send(result.clone());
        }
    }

    /// Follows [`INVALIDATION_CHANNEL`] for the actor's lifetime,
    /// resubscribing after a broken connection.
    fn subscribe(&self, client: redis::Client, me: Addr<Self>) {
        let log = self.log.clone();
        actix::spawn(async move {
            let mut first = true;
            loop {
                match client.get_async_pubsub().await {
                    Ok(mut pubsub) => {
                        if pubsub.subscribe(INVALIDATION_CHANNEL).await.is_ok() {
                            if !first {
                                me.do_send(InvalidateAll);
                                info!(log, "session invalidation subscription restored");
                            }
                            first = false;
                            let mut messages = pubsub.on_message();
                            while let Some(msg) = messages.next().await {
                                let payload = msg.get_payload::<String>().ok();
                                match payload.as_deref().and_then(IdDigest::parse) {
                                    Some(digest) => me.do_send(Invalidated(digest)),
                                    // Not ours to read: drop everything
                                    // rather than keep a stale copy.
                                    None => me.do_send(InvalidateAll),
                                }
                            }
                        }
                        warn!(log, "session invalidation subscription lost; retrying");
                    }
                    Err(e) => {
                        if first {
                            warn!(log, "cannot subscribe to session invalidations; retrying";
                                "error" => %e);
                            first = false;
                        }
                    }
                }
                actix_rt::time::sleep(RESUBSCRIBE_BACKOFF).await;
            }
        });
    }
}

impl Actor for SessionCacheActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
        if let Some(client) = self.subscriber.clone() {
            self.subscribe(client, ctx.address());
        }
        if let Some(store) = self.store.clone() {
            ctx.run_interval(PROBE_INTERVAL, move |_, _| {
                let store = store.clone();
                actix::spawn(async move { store.probe().await });
            });
        }
    }
}

impl Handler<LoadSession> for SessionCacheActor {
    type Result = ResponseFuture<Result<Loaded, SessionStoreError>>;

    fn handle(&mut self, LoadSession(key): LoadSession, ctx: &mut Self::Context) -> Self::Result {
        if let Some(session) = self.cache.get(&key) {
            return Box::pin(async move {
                Ok(Loaded {
                    session: Some(session),
                    source: LoadSource::Cache,
                })
            });
        }
        let Some(store) = self.store.clone() else {
            return Box::pin(async {
                Ok(Loaded {
                    session: None,
                    source: LoadSource::Store,
                })
            });
        };
        let (tx, rx) = oneshot::channel();
        let source = match self.loading.entry(key) {
            Entry::Occupied(mut loading) => {
                loading.get_mut().waiters.push(tx);
                LoadSource::Coalesced
            }
            Entry::Vacant(slot) => {
                slot.insert(Loading {
                    waiters: vec![tx],
                    stale: false,
                });
                let fetch_key = key;
                let fetch = async move { store.get(&fetch_key).await };
                ctx.spawn(
                    fetch
                        .into_actor(self)
                        .map(move |result, act, _| act.finish_load(key, result)),
                );
                LoadSource::Store
            }
        };
        Box::pin(async move {
            let session = rx.await.map_err(|_| SessionStoreError::Stopped)??;
            Ok(Loaded { session, source })
        })
    }
}

impl Handler<SaveSession> for SessionCacheActor {
    type Result = ResponseFuture<Result<(), SessionStoreError>>;

    fn handle(&mut self, msg: SaveSession, _ctx: &mut Self::Context) -> Self::Result {
        self.mark_stale(&msg.key);
        let Some(store) = self.store.clone() else {
            self.cache.insert(msg.key, msg.session);
            return Box::pin(async { Ok(()) });
        };
        let cache = self.cache.clone();
        let negative = self.negative.clone();
        Box::pin(async move {
            store.put(&msg.key, &msg.session).await?;
            negative.invalidate(&msg.key);
            cache.insert(msg.key, msg.session);
            Ok(())
        })
    }
}

impl Handler<DeleteSession> for SessionCacheActor {
    type Result = ResponseFuture<Result<(), SessionStoreError>>;

    fn handle(
        &mut self,
        DeleteSession(key): DeleteSession,
        _ctx: &mut Self::Context,
    ) -> Self::Result {
        self.mark_stale(&key);
        self.cache.invalidate(&key);
        let Some(store) = self.store.clone() else {
            return Box::pin(async { Ok(()) });
        };
        Box::pin(async move { store.remove(&key).await })
    }
}

impl Handler<Invalidated> for SessionCacheActor {
    type Result = ();

    fn handle(&mut self, Invalidated(key): Invalidated, _ctx: &mut Self::Context) {
        self.mark_stale(&key);
        self.cache.invalidate(&key);
    }
}

impl Handler<InvalidateAll> for SessionCacheActor {
    type Result = ();

    fn handle(&mut self, _: InvalidateAll, _ctx: &mut Self::Context) {
        for loading in self.loading.values_mut() {
            loading.stale = true;
        }
        self.cache.invalidate_all();
    }
}
