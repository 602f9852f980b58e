//! Startup and shutdown: builds the shared state, the proxy `HttpServer`
//! (per-worker awc clients, middleware order) and the admin listener,
//! starts the reload task (SIGHUP, settings file changes; `reload/`), then
//! waits for SIGTERM/SIGINT to drain.
//!
//! Middleware registration is in reverse of execution order (actix runs the
//! last-registered `wrap` first); see `middleware/mod.rs` for the pipeline.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::KeepAlive;
use actix_web::{web, App, HttpServer};
use actix_web_prom::PrometheusMetricsBuilder;
use prometheus::Registry;
use slog::{error, info, warn, Logger};

use crate::auth::Auth;
use crate::middleware::proxy::{proxied, unrouted};
use crate::middleware::{access_log::access_log, auth, rate_limit};
use crate::proxy::clients::WorkerClients;
use crate::proxy::forward::forward;
use crate::ratelimit::RateLimiting;
use crate::redis::pool::RedisPool;
use crate::reload::Reloader;
use crate::settings::{Settings, Sources};
use crate::skip_unless::SkipUnless;
use crate::stage::{Divert, Stage};
use crate::state::{Gateway, Live, Parts};
use crate::telemetry::access_log::WorkerTelemetry;
use crate::telemetry::logging::{AccessLogSink, LevelHandle};
use crate::telemetry::otlp::SpanPipeline;
use crate::telemetry::{health, metrics::Metrics};
use crate::tls::ServerCertificate;

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

/// How the process logs: the logger, each worker's access-log drain, and
/// the level a reload may change.
pub struct Logging {
    pub log: Logger,
    pub access: AccessLogSink,
    pub level: LevelHandle,
}

/// Runs the gateway until a shutdown signal has been handled and every
/// in-flight request has finished (or `shutdown_timeout_secs` passed).
/// `sources` are read again on every reload.
pub async fn run(settings: Settings, sources: Sources, logging: Logging) -> io::Result<()> {
    let Logging { log, access, level } = logging;
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

    // 1b. Request spans (tracing.enabled): the exporter thread and provider.
    let (spans, tracer) = match &settings.tracing {
        Some(tracing) => {
            let (pipeline, tracer) = SpanPipeline::start(tracing, &metrics, &log).map_err(other)?;
            (Some(pipeline), Some(tracer))
        }
        None => (None, None),
    };

    // 2. Rate limiting: local limiters, the upkeep actor (own thread) and,
    //    with Redis, what each worker's RateLimiter actor starts from.
    let rate_limits = RateLimiting::start(&settings, &metrics, &log).map_err(other)?;

    // 3. Auth: provider discovery, JWKS, session store (Redis when set).
    let session_pool = match &settings.redis {
        Some(redis) => Some(RedisPool::new(redis).map_err(other)?),
        None => None,
    };
    if let Some(pool) = &session_pool {
        pool.close_idle_periodically();
    }
    let auth = Auth::build(&settings, session_pool.clone(), &metrics, &log, None)
        .await
        .map_err(other)?;

    // 4. Shared state, read by every worker, replaced whole by a reload.
    let server_settings = settings.server.clone();
    let admin_listen = settings.admin_listen;
    let gateway = Gateway::new(
        settings,
        Parts {
            metrics: metrics.clone(),
            rate_limits,
            auth,
            log: log.clone(),
            lifecycle: Arc::default(),
        },
    );
    let (routes, upstreams) = (gateway.routes.routes().len(), gateway.upstreams.len());
    let live = web::Data::new(Live::new(gateway));

    // 5. The proxy listener.
    let state = live.clone();
    let connection_metrics = metrics.clone();
    let proxy = HttpServer::new(move || {
        // Per worker, on the worker's thread: its awc clients, access-log
        // drain and (with Redis) RateLimiter actor.
        let telemetry = WorkerTelemetry::new(access.worker_writer(), tracer.clone());
        let limits = state.current().rate_limits.for_this_worker();
        App::new()
            .app_data(state.clone())
            .app_data(web::Data::new(WorkerClients::default()))
            .app_data(web::Data::new(telemetry))
            .app_data(web::Data::new(limits))
            .configure(crate::auth::oauth::configure)
            .wrap(Divert::new(proxied, forward))
            .wrap(SkipUnless::new(
                rate_limit::needed,
                Stage(rate_limit::rate_limit),
            ))
            .wrap(SkipUnless::new(auth::needed, Stage(auth::authenticate)))
            .wrap(Stage(access_log))
            .default_service(web::to(unrouted))
    })
    .on_connect(move |_, data| {
        data.insert(connection_metrics.connection_opened());
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
    // As NGINX's `tcp_nodelay on`: a response that leaves in more than one
    // write (a large body, a stream) must not wait for the client's delayed
    // ACK (40 ms) before its next part.
    .tcp_nodelay(true)
    .shutdown_timeout(server_settings.shutdown_timeout.as_secs())
    .disable_signals();
    let certificate = match &server_settings.tls {
        Some(tls) => Some(ServerCertificate::load(&tls.cert_file, &tls.key_file)?),
        None => None,
    };
    let proxy = match &certificate {
        Some(certificate) => {
            let config = crate::tls::server_config(certificate.clone())?;
            proxy.bind_rustls_0_23(server_settings.listen, config)
        }
        None => proxy.bind(server_settings.listen),
    }
    .map_err(|e| bind_error("server.listen", server_settings.listen, e))?
    .run();

    // 6. The admin listener: metrics and health, never proxied traffic.
    let state = live.clone();
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
    let first = live.current();
    for upstream in &first.upstreams {
        crate::proxy::health_check::start(upstream, &log);
    }
    first.set_ready();
    metrics.config_generation.set(1);
    metrics.config_last_reload_successful.set(1);
    metrics
        .config_last_reload_success
        .set(crate::reload::unix_now());
    info!(log, "gateway listening";
        "listen" => %server_settings.listen, "admin" => %admin_listen,
        "workers" => server_settings.workers, "tls" => server_settings.tls.is_some(),
        "routes" => routes, "upstreams" => upstreams);

    // 8. Reloads: on SIGHUP and, unless turned off, when a settings file
    //    or the listener's certificate or key changes.
    let mut files = sources.files();
    if let Some(tls) = &server_settings.tls {
        files.extend([tls.cert_file.clone(), tls.key_file.clone()]);
    }
    let watch = first.settings.server.watch_settings_files && !files.is_empty();
    drop(first);
    let (events_tx, events) = tokio::sync::mpsc::unbounded_channel();
    let watcher = if watch {
        match crate::reload::watch::watch_directories_of(&files, events_tx) {
            Ok(watcher) => Some(watcher),
            Err(e) => {
                warn!(log, "cannot watch the settings files; reload with SIGHUP";
                    "error" => %e);
                None
            }
        }
    } else {
        None
    };
    let reloader = Reloader {
        sources,
        live: live.clone(),
        level,
        certificate,
        session_pool,
        log: log.clone(),
    };
    let events = watcher.is_some().then_some(events);
    actix_rt::spawn(reloader.run(signals.hup, events, files));

    // 9. Background upkeep and the shutdown sequence.
    let upkeep = live.clone();
    actix_rt::spawn(async move {
        let mut tick = actix_rt::time::interval(HEALTH_GAUGE_REFRESH);
        loop {
            tick.tick().await;
            upkeep.current().refresh_health_gauges();
        }
    });
    let proxy_handle = proxy.handle();
    let admin_handle = admin.handle();
    let drain = live.clone();
    let mut stops = signals.stops;
    actix_rt::spawn(async move {
        let signal = stops.requested().await;
        shut_down(&drain.current(), signal, proxy_handle).await;
        admin_handle.stop(true).await;
    });

    let (proxy_result, admin_result) = futures_util::future::join(proxy, admin).await;
    drop(watcher);
    if let Some(spans) = spans {
        spans.shut_down(&log);
    }
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
async fn shut_down(gw: &Gateway, signal: &'static str, proxy: actix_web::dev::ServerHandle) {
    let server = &gw.settings.server;
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
/// Kubernetes tooling send to reload, goes to the reload task (and must
/// never end the process, as its default action would).
struct Signals {
    stops: StopSignals,
    hup: tokio::signal::unix::Signal,
}

struct StopSignals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn register() -> io::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Self {
            stops: StopSignals {
                term: signal(SignalKind::terminate())?,
                int: signal(SignalKind::interrupt())?,
            },
            hup: signal(SignalKind::hangup())?,
        })
    }
}

impl StopSignals {
    /// Waits for SIGTERM or SIGINT (and names it).
    async fn requested(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}
