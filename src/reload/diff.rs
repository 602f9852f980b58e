//! What changed between the running settings and a reloaded set: the
//! sections (for the log line), and the keys a running process cannot take
//! on, which keep their running values until a restart.
//!
//! A leaf over the settings types.

use crate::settings::Settings;

/// The top-level sections that differ, e.g. `["routes", "upstreams"]`.
pub fn changed_sections(running: &Settings, next: &Settings) -> Vec<&'static str> {
    let mut changed = Vec::new();
    let mut check = |name, differs: bool| {
        if differs {
            changed.push(name);
        }
    };
    check("server", running.server != next.server);
    check("admin", running.admin_listen != next.admin_listen);
    check("logging", running.logging != next.logging);
    check("redis", running.redis != next.redis);
    check("upstreams", running.upstreams != next.upstreams);
    check("rate_limits", running.rate_limits != next.rate_limits);
    check("auth", running.auth != next.auth);
    check("routes", running.routes != next.routes);
    check("tracing", running.tracing != next.tracing);
    changed
}

/// Puts the running value back into `next` for every key that only takes
/// effect at startup (listeners, worker and connection setup, the log
/// format, Redis, tracing), and names those that differed.
pub fn keep_restart_only_keys(running: &Settings, next: &mut Settings) -> Vec<&'static str> {
    fn keep<T: PartialEq + Clone>(
        changed: &mut Vec<&'static str>,
        key: &'static str,
        running: &T,
        next: &mut T,
    ) {
        if running != next {
            changed.push(key);
            *next = running.clone();
        }
    }
    let mut changed = Vec::new();
    let (r, n) = (&running.server, &mut next.server);
    keep(&mut changed, "server.listen", &r.listen, &mut n.listen);
    keep(&mut changed, "server.workers", &r.workers, &mut n.workers);
    keep(&mut changed, "server.backlog", &r.backlog, &mut n.backlog);
    keep(
        &mut changed,
        "server.max_connections",
        &r.max_connections,
        &mut n.max_connections,
    );
    keep(
        &mut changed,
        "server.keep_alive_secs",
        &r.keep_alive,
        &mut n.keep_alive,
    );
    keep(
        &mut changed,
        "server.client_request_timeout_ms",
        &r.client_request_timeout,
        &mut n.client_request_timeout,
    );
    keep(
        &mut changed,
        "server.shutdown_timeout_secs",
        &r.shutdown_timeout,
        &mut n.shutdown_timeout,
    );
    // The certificate and key files may change (that is a rotation); the
    // listener cannot switch between plain HTTP and TLS.
    if r.tls.is_some() != n.tls.is_some() {
        changed.push("server.tls");
        n.tls = r.tls.clone();
    }
    keep(
        &mut changed,
        "admin.listen",
        &running.admin_listen,
        &mut next.admin_listen,
    );
    keep(
        &mut changed,
        "logging.format",
        &running.logging.format,
        &mut next.logging.format,
    );
    match (&running.redis, &mut next.redis) {
        (Some(r), Some(n)) => {
            keep(&mut changed, "redis.url", &r.urls, &mut n.urls);
            keep(&mut changed, "redis.cluster", &r.cluster, &mut n.cluster);
            keep(
                &mut changed,
                "redis.pool_size",
                &r.pool_size,
                &mut n.pool_size,
            );
            keep(
                &mut changed,
                "redis.command_timeout_ms",
                &r.command_timeout,
                &mut n.command_timeout,
            );
        }
        (r, n) => keep(&mut changed, "redis.url", r, n),
    }
    // The exporter and its thread are built once, at startup.
    keep(&mut changed, "tracing", &running.tracing, &mut next.tracing);
    changed
}
