//! Redis connection pools shared by the stateful parts of the gateway: the
//! RateLimiter actors (cluster rate limits) and the session store. One type
//! for a single server and for a Redis Cluster (`redis.cluster: true`), so
//! both features work on either.
//!
//! A leaf under both features; it knows connections, not keys.

use std::sync::{Arc, Mutex};

use redis::aio::ConnectionLike;
use redis::{Cmd, Pipeline, RedisFuture, Value};

use crate::settings::RedisSettings;

/// Upper bound for opening a connection.
pub const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

#[derive(Clone)]
pub enum RedisPool {
    Single(deadpool_redis::Pool),
    Cluster(deadpool_redis::cluster::Pool),
}

/// A multiplexed connection kept for many concurrent users (no pool
/// check-out per use: deadpool verifies a connection with a PING on every
/// check-out, which would double the round trips of a hot path).
#[derive(Clone)]
pub enum SharedConnection {
    Single(redis::aio::MultiplexedConnection),
    Cluster(redis::cluster_async::ClusterConnection),
}

/// A connection taken from either pool.
pub enum PooledConnection {
    Single(deadpool_redis::Connection),
    Cluster(deadpool_redis::cluster::Connection),
}

#[derive(Debug, thiserror::Error)]
#[error("redis pool: {0}")]
pub struct PoolError(String);

impl RedisPool {
    /// Builds the pool (lazily connecting). Waiting for a free connection
    /// and recycling one are bounded by `command_timeout_ms`; opening one
    /// may take up to [`CONNECT_TIMEOUT`] (a cluster connection first reads
    /// the slot map), which only the first requests after a (re)connect see.
    pub fn new(redis: &RedisSettings) -> Result<Self, PoolError> {
        let mut pool = deadpool_redis::PoolConfig::new(redis.pool_size);
        pool.timeouts.wait = Some(redis.command_timeout);
        pool.timeouts.create = Some(redis.command_timeout.max(CONNECT_TIMEOUT));
        pool.timeouts.recycle = Some(redis.command_timeout);
        let runtime = Some(deadpool_redis::Runtime::Tokio1);
        if redis.cluster {
            let mut cfg = deadpool_redis::cluster::Config::from_urls(redis.urls.clone());
            cfg.pool = Some(pool);
            cfg.create_pool(runtime)
                .map(Self::Cluster)
                .map_err(|e| PoolError(e.to_string()))
        } else {
            let mut cfg = deadpool_redis::Config::from_url(redis.urls[0].clone());
            cfg.pool = Some(pool);
            cfg.create_pool(runtime)
                .map(Self::Single)
                .map_err(|e| PoolError(e.to_string()))
        }
    }

    pub async fn get(&self) -> Result<PooledConnection, PoolError> {
        match self {
            Self::Single(p) => p.get().await.map(PooledConnection::Single),
            Self::Cluster(p) => p.get().await.map(PooledConnection::Cluster),
        }
        .map_err(|e| PoolError(e.to_string()))
    }
}

/// A pooled connection unused for this long is closed: a burst of
/// concurrency (or Redis stalling, so that checks-outs time out and new
/// connections are opened) leaves no lasting trail of idle connections.
pub const MAX_IDLE: std::time::Duration = std::time::Duration::from_secs(60);

impl RedisPool {
    /// Closes the idle pooled connections unused for `max_idle`; returns
    /// how many. Connections held by `ConnectionSlot`s stay open as long
    /// as their holders keep them.
    pub fn close_idle(&self, max_idle: std::time::Duration) -> usize {
        match self {
            Self::Single(p) => p.retain(|_, m| m.last_used() < max_idle).removed.len(),
            Self::Cluster(p) => p.retain(|_, m| m.last_used() < max_idle).removed.len(),
        }
    }

    /// Runs [`RedisPool::close_idle`] every 10 s for as long as the process.
    pub fn close_idle_periodically(&self) {
        let pool = self.clone();
        actix_rt::spawn(async move {
            let mut tick = actix_rt::time::interval(std::time::Duration::from_secs(10));
            loop {
                tick.tick().await;
                pool.close_idle(MAX_IDLE);
            }
        });
    }

    /// A clone of a pooled multiplexed connection, to keep and share.
    pub async fn shared(&self) -> Result<SharedConnection, PoolError> {
        Ok(match self.get().await? {
            PooledConnection::Single(c) => SharedConnection::Single((*c).clone()),
            PooledConnection::Cluster(c) => SharedConnection::Cluster((*c).clone()),
        })
    }
}

/// Both connection enums delegate every call to the connection inside.
macro_rules! delegate_connection_like {
    ($name:ident) => {
        impl ConnectionLike for $name {
            fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
                match self {
                    Self::Single(c) => c.req_packed_command(cmd),
                    Self::Cluster(c) => c.req_packed_command(cmd),
                }
            }

            fn req_packed_commands<'a>(
                &'a mut self,
                cmd: &'a Pipeline,
                offset: usize,
                count: usize,
            ) -> RedisFuture<'a, Vec<Value>> {
                match self {
                    Self::Single(c) => c.req_packed_commands(cmd, offset, count),
                    Self::Cluster(c) => c.req_packed_commands(cmd, offset, count),
                }
            }

            fn get_db(&self) -> i64 {
                match self {
                    Self::Single(c) => c.get_db(),
                    Self::Cluster(c) => c.get_db(),
                }
            }
        }
    };
}

/// An actor's Redis connection: taken from the pool once and shared by
/// all of the actor's concurrent commands; dropped after an error so the
/// next use takes a new one.
#[derive(Clone, Default)]
pub struct ConnectionSlot(Arc<Mutex<Option<SharedConnection>>>);

impl ConnectionSlot {
    pub async fn get(&self, pool: &RedisPool) -> Result<SharedConnection, PoolError> {
        let cached = self.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(conn) = cached {
            return Ok(conn);
        }
        let conn = pool.shared().await?;
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(conn.clone());
        Ok(conn)
    }

    pub fn reset(&self) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take();
    }
}

delegate_connection_like!(SharedConnection);
delegate_connection_like!(PooledConnection);
