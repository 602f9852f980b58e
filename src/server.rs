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
use slog::{error, info, warn, Logger};

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
    // 0. Signals first: a SIGHUP during startup must not end the process.
    let signals = Signals::register()?;

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
        let mut signals = signals;
        let signal = signals.stop_requested(&drain.log).await;
        shut_down(&drain, signal, proxy_handle, &server_settings).await;
        admin_handle.stop(true).await;
    });

    let (proxy_result, admin_result) = futures_util::future::join(proxy, admin).await;
    if let Err(e) = &proxy_result {
        error!(log, "proxy listener failed"; "error" => %e);
    }
    proxy_result.and(admin_result)
}

/// The shutdown sequence: readiness 503 and `Connection: close` on every
/// response at once; the listener stays open for `drain_delay_secs` (so a
/// load balancer stops sending before connections are refused); then it
/// closes, in-flight requests finish (up to `shutdown_timeout_secs`), and
/// what is still running then is cut and counted.
async fn shut_down(
    gw: &Gateway,
    signal: &'static str,
    proxy: actix_web::dev::ServerHandle,
    server: &crate::settings::ServerSettings,
) {
    gw.start_draining();
    info!(gw.log, "shutdown signal received; draining";
        "signal" => signal, "drain_delay_secs" => server.drain_delay.as_secs(),
        "timeout_secs" => server.shutdown_timeout.as_secs());
    if !server.drain_delay.is_zero() {
        actix_rt::time::sleep(server.drain_delay).await;
        info!(gw.log, "drain delay over: closing the proxy listener";
            "in_flight" => gw.metrics.in_flight.get());
    }
    // The requests still in flight just before the timeout are those it cuts.
    let in_flight = gw.metrics.in_flight.clone();
    let deadline = server
        .shutdown_timeout
        .saturating_sub(Duration::from_millis(100));
    let at_deadline = actix_rt::spawn(async move {
        actix_rt::time::sleep(deadline).await;
        in_flight.get()
    });
    let started = std::time::Instant::now();
    proxy.stop(true).await;
    if started.elapsed() >= server.shutdown_timeout {
        let cut = at_deadline.await.unwrap_or(0);
        warn!(gw.log, "shutdown timeout reached: requests still in flight were cut";
            "cut" => cut, "timeout_secs" => server.shutdown_timeout.as_secs());
    } else {
        at_deadline.abort();
        info!(gw.log, "proxy listener drained");
    }
}

/// The signals the gateway handles, registered as the first thing it does:
/// SIGTERM and SIGINT drain and stop it; SIGHUP, which operators and
/// Kubernetes tooling send to reload, must not end it (the default action
/// would): it is logged and otherwise ignored until live reload exists.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn register() -> io::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    /// Waits for SIGTERM or SIGINT (and names it).
    async fn stop_requested(&mut self, log: &Logger) -> &'static str {
        loop {
            tokio::select! {
                _ = self.term.recv() => return "SIGTERM",
                _ = self.int.recv() => return "SIGINT",
                _ = self.hup.recv() => warn!(log,
                    "SIGHUP received: reloading settings is not supported yet; \
                     running on, with the settings the gateway started with"),
            }
        }
    }
}
