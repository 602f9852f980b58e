//! The SessionCache actor: keeps every replica's in-process session cache
//! honest when sessions change elsewhere.
//!
//! Workers read sessions from the shared in-process cache without waiting
//! on anyone and load misses from Redis themselves (deadpool). What must be
//! serialised lives here: one Redis pub/sub subscription per replica on
//! [`INVALIDATION_CHANNEL`]. A logout on any replica publishes the session's
//! hash; every replica drops its cached copy at once. If the subscription
//! breaks, the actor clears the whole cache when it is back (invalidations
//! may have been missed) and `cache_ttl_secs` bounds staleness meanwhile.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use futures_util::StreamExt;
use moka::sync::Cache;
use slog::{info, warn, Logger};

use crate::auth::session::Session;

pub const INVALIDATION_CHANNEL: &str = "gw:session:invalidate";
const RESUBSCRIBE_BACKOFF: Duration = Duration::from_secs(1);

pub struct SessionCacheActor {
    client: redis::Client,
    cache: Cache<String, Arc<Session>>,
    log: Logger,
}

impl SessionCacheActor {
    pub fn new(client: redis::Client, cache: Cache<String, Arc<Session>>, log: Logger) -> Self {
        Self { client, cache, log }
    }
}

impl Actor for SessionCacheActor {
    type Context = Context<Self>;

    fn started(&mut self, _ctx: &mut Self::Context) {
        let client = self.client.clone();
        let cache = self.cache.clone();
        let log = self.log.clone();
        actix::spawn(async move {
            let mut first = true;
            loop {
                match client.get_async_pubsub().await {
                    Ok(mut pubsub) => {
                        if pubsub.subscribe(INVALIDATION_CHANNEL).await.is_ok() {
                            if !first {
                                // Messages sent while we were away are lost.
                                cache.invalidate_all();
                                info!(log, "session invalidation subscription restored");
                            }
                            first = false;
                            let mut messages = pubsub.on_message();
                            while let Some(msg) = messages.next().await {
                                if let Ok(digest) = msg.get_payload::<String>() {
                                    cache.invalidate(&digest);
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
