//! Startup and shutdown: builds the shared state, the proxy `HttpServer`
//! (per-worker awc clients, middleware order) and the admin listener, then
//! waits for SIGTERM/SIGINT to drain.
//!
//! Middleware registration is in reverse of execution order (actix runs the
//! last-registered `wrap` first); see `middleware/mod.rs` for the pipeline.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::KeepAlive;
use actix_web::middleware::{from_fn, Condition};
use actix_web::{web, App, HttpServer};
use actix_web_prom::PrometheusMetricsBuilder;
use prometheus::Registry;
use slog::{error, info, Logger};

use crate::auth::Auth;
use crate::middleware::{
    access_log::access_log, auth::authenticate, rate_limit::rate_limit, request_id::request_id,
    route_match::route_match,
};
use crate::proxy::clients::UpstreamClients;
use crate::proxy::forward::forward;
use crate::ratelimit::RateLimiting;
use crate::redis::pool::RedisPool;
use crate::settings::Settings;
use crate::state::Gateway;
use crate::telemetry::access_log::WorkerTelemetry;
use crate::telemetry::logging::AccessLogSink;
use crate::telemetry::{health, metrics::Metrics};

const HEALTH_GAUGE_REFRESH: Duration = Duration::from_secs(1);

fn other(err: impl std::fmt::Display) -> io::Error {
    io::Error::other(err.to_string())
}

/// A listener that could not bind, named by its setting and address:
/// `server.listen 0.0.0.0:8080: address in use`.
fn bind_error(key: &str, addr: std::net::SocketAddr, err: io::Error) -> io::Error {
    let reason = match err.kind() {
        io::ErrorKind::AddrInUse => "address in use (another process listens there)".to_owned(),
        io::ErrorKind::AddrNotAvailable => "address not available on this host".to_owned(),
        io::ErrorKind::PermissionDenied => {
            "permission denied (ports below 1024 need privileges)".to_owned()
        }
        _ => err.to_string(),
    };
    io::Error::new(err.kind(), format!("{key} {addr}: {reason}"))
}

/// Runs the gateway until a shutdown signal has been handled and every
/// in-flight request has finished (or `shutdown_timeout_secs` passed).
pub async fn run(settings: Settings, log: Logger, access_sink: AccessLogSink) -> io::Result<()> {
    // 1. Metrics: one registry for our metrics, actix-web-prom's and process metrics.
    let registry = Registry::new();
    let metrics = Arc::new(Metrics::new(registry.clone()).map_err(other)?);
    let prometheus = PrometheusMetricsBuilder::new(crate::telemetry::metrics::NAMESPACE)
        .registry(registry)
        .endpoint("/metrics")
        .build()
        .map_err(other)?;

    // 2. Rate limiting: local limiters, the upkeep actor (own thread) and,
    //    with Redis, what each worker's RateLimiter actor starts from.
    let rate_limits = RateLimiting::start(&settings, &metrics, &log).map_err(other)?;
    let any_rate_limits = settings.uses_rate_limits();

    // 3. Auth: provider discovery, JWKS, session store (Redis when set).
    let session_pool = match &settings.redis {
        Some(redis) => Some(RedisPool::new(redis).map_err(other)?),
        None => None,
    };
    let auth = Auth::build(&settings, session_pool, &metrics, &log)
        .await
        .map_err(other)?;
    let any_auth = auth.is_some();

    // 4. Shared state, read by every worker.
    let server_settings = settings.server.clone();
    let admin_listen = settings.admin_listen;
    let gateway = web::Data::new(Gateway::new(
        settings,
        metrics,
        rate_limits,
        auth,
        log.clone(),
    ));

    // 5. The proxy listener.
    let state = gateway.clone();
    let proxy = HttpServer::new(move || {
        // Per worker, on the worker's thread: its awc clients, access-log
        // drain and (with Redis) RateLimiter actor.
        let clients = UpstreamClients::new(&state.settings.upstreams);
        let telemetry = WorkerTelemetry::new(access_sink.worker_logger());
        let limits = state.rate_limits.for_this_worker();
        App::new()
            .app_data(state.clone())
            .app_data(web::Data::new(clients))
            .app_data(web::Data::new(telemetry))
            .app_data(web::Data::new(limits))
            .configure(|cfg| {
                if any_auth {
                    crate::auth::oauth::configure(cfg);
                }
            })
            .wrap(Condition::new(any_rate_limits, from_fn(rate_limit)))
            .wrap(Condition::new(any_auth, from_fn(authenticate)))
            .wrap(from_fn(route_match))
            .wrap(from_fn(access_log))
            .wrap(from_fn(request_id))
            .default_service(web::to(forward))
    })
    .workers(server_settings.workers)
    .backlog(server_settings.backlog)
    .max_connections(server_settings.max_connections)
    .keep_alive(if server_settings.keep_alive.is_zero() {
        KeepAlive::Disabled
    } else {
        KeepAlive::Timeout(server_settings.keep_alive)
    })
    .client_request_timeout(server_settings.client_request_timeout)
    .shutdown_timeout(server_settings.shutdown_timeout.as_secs())
    .disable_signals();
    let proxy = match &server_settings.tls {
        Some(tls) => {
            let config = crate::tls::server_config(&tls.cert_file, &tls.key_file)?;
            proxy.bind_rustls_0_23(server_settings.listen, config)
        }
        None => proxy.bind(server_settings.listen),
    }
    .map_err(|e| bind_error("server.listen", server_settings.listen, e))?
    .run();

    // 6. The admin listener: metrics and health, never proxied traffic.
    let state = gateway.clone();
    let admin = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .wrap(prometheus.clone())
            .configure(health::configure)
    })
    .workers(1)
    .shutdown_timeout(1)
    .disable_signals()
    .bind(admin_listen)
    .map_err(|e| bind_error("admin.listen", admin_listen, e))?
    .run();

    // 7. Ready: both listeners are bound.
    gateway.set_ready();
    info!(log, "gateway listening";
        "listen" => %server_settings.listen, "admin" => %admin_listen,
        "workers" => server_settings.workers, "tls" => server_settings.tls.is_some(),
        "routes" => gateway.routes.routes().len(), "upstreams" => gateway.upstreams.len());

    // 8. Background upkeep and the shutdown sequence.
    let upkeep = gateway.clone();
    actix_rt::spawn(async move {
        let mut tick = actix_rt::time::interval(HEALTH_GAUGE_REFRESH);
        loop {
            tick.tick().await;
            upkeep.refresh_health_gauges();
        }
    });
    let proxy_handle = proxy.handle();
    let admin_handle = admin.handle();
    let drain = gateway.clone();
    actix_rt::spawn(async move {
        let signal = wait_for_signal().await;
        drain.start_draining();
        info!(drain.log, "shutdown signal received; draining";
            "signal" => signal, "timeout_secs" => server_settings.shutdown_timeout.as_secs());
        proxy_handle.stop(true).await;
        info!(drain.log, "proxy listener drained");
        admin_handle.stop(true).await;
    });

    let (proxy_result, admin_result) = futures_util::future::join(proxy, admin).await;
    if let Err(e) = &proxy_result {
        error!(log, "proxy listener failed"; "error" => %e);
    }
    proxy_result.and(admin_result)
}

async fn wait_for_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers the process can still be killed; never drain.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}
