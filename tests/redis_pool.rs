//! The Redis pool against a real redis-server: connections opened for a
//! burst (or while Redis stalled) do not stay open forever once idle.

mod common;

use std::time::Duration;

use common::*;
use gateway::settings::RedisSettings;
use gateway::tools::RedisPool;

fn connected_clients(redis: &RedisServer) -> usize {
    redis
        .cli(&["INFO", "clients"])
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("connected_clients:"))
                .and_then(|n| n.trim().parse().ok())
        })
        .expect("redis INFO clients")
}

#[actix_rt::test]
async fn idle_connections_left_by_a_burst_are_closed() {
    let redis = RedisServer::start();
    let pool = RedisPool::new(&RedisSettings {
        urls: vec![redis.url()],
        cluster: false,
        pool_size: 8,
        command_timeout: Duration::from_secs(2),
    })
    .expect("pool");
    let before = connected_clients(&redis);
    {
        // Five concurrent users: five connections.
        let mut held = Vec::new();
        for _ in 0..5 {
            held.push(pool.get().await.expect("connection"));
        }
    }
    assert_eq!(
        connected_clients(&redis),
        before + 5,
        "the burst's connections"
    );
    assert_eq!(
        pool.close_idle(Duration::from_secs(60)),
        0,
        "recently used: kept"
    );
    assert_eq!(pool.close_idle(Duration::ZERO), 5);
    let closed = eventually(Duration::from_secs(5), || {
        let n = connected_clients(&redis);
        async move { n == before }
    })
    .await;
    assert!(
        closed,
        "Redis still sees {} clients",
        connected_clients(&redis)
    );
    // The pool still works: it opens what it needs again.
    let mut conn = pool.get().await.expect("connection after pruning");
    let pong: String = redis::cmd("PING")
        .query_async(&mut conn)
        .await
        .expect("PING");
    assert_eq!(pong, "PONG");
}
