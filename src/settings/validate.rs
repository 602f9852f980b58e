//! Raw settings to validated ones: the server, admin, logging, Redis,
//! upstream and rate-limit sections (routes and auth in
//! `validate_routes`). Every problem is reported, not just the first; a
//! file, a certificate or a CA bundle named in the settings is read now, so
//! `gateway check` finds what startup would trip on.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use actix_web::http::header::HeaderName;

use super::checker::Checker;
use super::features::{CircuitBreaker, HashKey, RetryBudget};
use super::problem::Problem;
use super::raw::{
    RawCircuitBreaker, RawLogging, RawRateLimit, RawRedis, RawServer, RawSettings, RawTracing,
    RawUpstream,
};
use super::types::{
    Balance, HealthCheck, LogFormat, LoggingSettings, OnStoreError, RateLimitKey, RateLimitPolicy,
    RateLimitScope, RedisSettings, ServerSettings, Settings, TlsSettings, TracingSettings,
    UpstreamSettings,
};
use super::validate_features::parse_net;
use super::validate_routes::{validate_auth, validate_routes};

pub fn validate(
    raw: &RawSettings,
    locate: &dyn Fn(&str) -> String,
) -> Result<Settings, Vec<Problem>> {
    let mut c = Checker::new(locate);
    let server = validate_server(&mut c, &raw.server);
    let admin_listen = c.socket_addr("admin.listen", &raw.admin.listen);
    if let (Some(s), Some(a)) = (&server, admin_listen) {
        let overlap = s.listen.port() == a.port()
            && (s.listen.ip() == a.ip()
                || s.listen.ip().is_unspecified()
                || a.ip().is_unspecified());
        if overlap {
            c.key("admin.listen", "must not share server.listen's port");
        }
    }
    let logging = validate_logging(&mut c, &raw.logging);
    let redis = validate_redis(&mut c, &raw.redis);
    let upstreams = validate_upstreams(&mut c, &raw.upstreams);
    let rate_limits = validate_rate_limits(&mut c, &raw.rate_limits, redis.is_some());
    let routes = validate_routes(&mut c, raw, &upstreams, &rate_limits);
    let auth = validate_auth(&mut c, &raw.auth, &routes, &rate_limits);
    let tracing = validate_tracing(&mut c, &raw.tracing);

    match (server, admin_listen, logging) {
        (Some(server), Some(admin_listen), Some(logging)) if c.problems.is_empty() => {
            Ok(Settings {
                server,
                admin_listen,
                logging,
                redis,
                upstreams,
                rate_limits,
                auth,
                routes,
                tracing,
            })
        }
        _ => Err(c.problems),
    }
}

fn validate_server(c: &mut Checker, s: &RawServer) -> Option<ServerSettings> {
    let listen = c.socket_addr("server.listen", &s.listen);
    c.positive("server.backlog", u64::from(s.backlog));
    c.positive("server.max_connections", s.max_connections as u64);
    c.positive(
        "server.client_request_timeout_ms",
        s.client_request_timeout_ms,
    );
    c.positive("server.max_body_bytes", s.max_body_bytes);
    c.positive("server.max_uri_bytes", s.max_uri_bytes);
    c.positive("server.max_header_bytes", s.max_header_bytes);
    let mut trusted_proxies = Vec::new();
    for (i, entry) in s.trusted_proxies.iter().enumerate() {
        match parse_net(entry) {
            Some(net) => trusted_proxies.push(net),
            None => c.fail(
                "server.trusted_proxies",
                &format!("server.trusted_proxies[{i}]"),
                format!("{entry:?} is not a CIDR (10.0.0.0/8) or an IP address"),
            ),
        }
    }
    let tls = match &s.tls {
        None => None,
        Some(t) => {
            for (key, file) in [
                ("server.tls.cert_file", &t.cert_file),
                ("server.tls.key_file", &t.key_file),
            ] {
                if file.is_empty() {
                    c.key(key, "required when server.tls is set");
                } else if !Path::new(file).is_file() {
                    c.key(key, format!("{file:?} does not exist or is not a file"));
                }
            }
            let tls = TlsSettings {
                cert_file: t.cert_file.clone().into(),
                key_file: t.key_file.clone().into(),
            };
            if tls.cert_file.is_file() && tls.key_file.is_file() {
                if let Err(e) = crate::tls::certified_key(&tls.cert_file, &tls.key_file) {
                    c.key("server.tls", e.to_string());
                }
            }
            Some(tls)
        }
    };
    let workers = if s.workers == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        s.workers
    };
    Some(ServerSettings {
        listen: listen?,
        workers,
        backlog: s.backlog,
        max_connections: s.max_connections,
        keep_alive: Duration::from_secs(s.keep_alive_secs),
        client_request_timeout: Duration::from_millis(s.client_request_timeout_ms),
        shutdown_timeout: Duration::from_secs(s.shutdown_timeout_secs),
        drain_delay: Duration::from_secs(s.drain_delay_secs),
        watch_settings_files: s.watch_settings_files,
        max_body_bytes: s.max_body_bytes,
        max_uri_bytes: usize::try_from(s.max_uri_bytes).unwrap_or(usize::MAX),
        max_header_bytes: usize::try_from(s.max_header_bytes).unwrap_or(usize::MAX),
        trusted_proxies,
        tls,
    })
}

fn validate_logging(c: &mut Checker, l: &RawLogging) -> Option<LoggingSettings> {
    let level = match l.level.to_ascii_lowercase().as_str() {
        "trace" => Some(slog::Level::Trace),
        "debug" => Some(slog::Level::Debug),
        "info" => Some(slog::Level::Info),
        "warning" | "warn" => Some(slog::Level::Warning),
        "error" => Some(slog::Level::Error),
        _ => {
            c.key(
                "logging.level",
                format!(
                    "{:?} is not one of trace, debug, info, warning, error",
                    l.level
                ),
            );
            None
        }
    };
    let format = match l.format.as_str() {
        "json" => Some(LogFormat::Json),
        "text" => Some(LogFormat::Text),
        other => {
            c.key(
                "logging.format",
                format!("{other:?} is not one of json, text"),
            );
            None
        }
    };
    Some(LoggingSettings {
        level: level?,
        format: format?,
        access_log: l.access_log,
    })
}

/// Checked even while disabled, so a mistake shows before it is switched on.
fn validate_tracing(c: &mut Checker, t: &RawTracing) -> Option<TracingSettings> {
    let endpoint = c.url(
        "tracing.otlp_endpoint",
        &t.otlp_endpoint,
        &["http", "https"],
    );
    if t.service_name.trim().is_empty() {
        c.key("tracing.service_name", "must not be empty");
    }
    if !(0.0..=1.0).contains(&t.sample_ratio) {
        c.key(
            "tracing.sample_ratio",
            format!("{} is not between 0 and 1", t.sample_ratio),
        );
    }
    c.positive("tracing.export_timeout_ms", t.export_timeout_ms);
    if !t.enabled {
        return None;
    }
    Some(TracingSettings {
        otlp_endpoint: endpoint?,
        service_name: t.service_name.trim().to_owned(),
        sample_ratio: t.sample_ratio,
        export_timeout: Duration::from_millis(t.export_timeout_ms),
    })
}

fn validate_redis(c: &mut Checker, r: &RawRedis) -> Option<RedisSettings> {
    c.positive("redis.pool_size", r.pool_size as u64);
    c.positive("redis.command_timeout_ms", r.command_timeout_ms);
    let url = r.url.as_deref().filter(|u| !u.trim().is_empty())?;
    let urls: Vec<String> = url.split(',').map(|u| u.trim().to_owned()).collect();
    if urls.len() > 1 && !r.cluster {
        c.key(
            "redis.url",
            "several comma-separated URLs need redis.cluster: true",
        );
    }
    for u in &urls {
        // rediss://: TLS, verified against the system's CA store
        // (SSL_CERT_FILE / SSL_CERT_DIR name a private CA).
        c.url("redis.url", u, &["redis", "rediss"]);
        if u.starts_with("rediss://") && u.ends_with("#insecure") {
            c.key(
                "redis.url",
                "#insecure (TLS without certificate checks) is not supported: \
                 trust the server's CA with SSL_CERT_FILE instead",
            );
        }
    }
    Some(RedisSettings {
        urls,
        cluster: r.cluster,
        pool_size: r.pool_size,
        command_timeout: Duration::from_millis(r.command_timeout_ms),
    })
}

fn validate_upstreams(
    c: &mut Checker,
    upstreams: &BTreeMap<String, RawUpstream>,
) -> Vec<UpstreamSettings> {
    let mut out = Vec::with_capacity(upstreams.len());
    for (name, u) in upstreams {
        let base = format!("upstreams.{name}");
        if u.targets.is_empty() {
            c.key(&format!("{base}.targets"), "needs at least one target URL");
        }
        let mut targets = Vec::with_capacity(u.targets.len());
        for (i, t) in u.targets.iter().enumerate() {
            let shown = format!("{base}.targets[{i}]");
            match url::Url::parse(t) {
                Ok(parsed)
                    if matches!(parsed.scheme(), "http" | "https")
                        && parsed.host_str().is_some()
                        && (parsed.path() == "/" || parsed.path().is_empty())
                        && parsed.query().is_none()
                        && parsed.fragment().is_none()
                        && parsed.username().is_empty()
                        && parsed.password().is_none() =>
                {
                    targets.push(t.trim_end_matches('/').to_owned());
                }
                Ok(_) => c.fail(
                    &format!("{base}.targets"),
                    &shown,
                    format!(
                        "{t:?} must be http(s)://host[:port] without credentials, path, query or fragment"
                    ),
                ),
                Err(e) => c.fail(
                    &format!("{base}.targets"),
                    &shown,
                    format!("{t:?} is not a valid URL: {e}"),
                ),
            }
        }
        let balance = match u.balance.as_str() {
            "round_robin" => Balance::RoundRobin,
            "least_requests" => Balance::LeastRequests,
            "random" => Balance::Random,
            "consistent_hash" => Balance::ConsistentHash,
            other => {
                c.key(
                    &format!("{base}.balance"),
                    format!("{other:?} is not one of round_robin, least_requests, random, consistent_hash"),
                );
                Balance::RoundRobin
            }
        };
        let hash_key = hash_key(c, &base, balance, u.hash_key.as_deref());
        if u.retry_budget.percent > 100 {
            c.key(
                &format!("{base}.retry_budget.percent"),
                "must be between 0 and 100",
            );
        }
        if u.max_ejected_percent > 100 {
            c.key(
                &format!("{base}.max_ejected_percent"),
                "must be between 0 and 100",
            );
        }
        c.positive(&format!("{base}.connect_timeout_ms"), u.connect_timeout_ms);
        c.positive(&format!("{base}.request_timeout_ms"), u.request_timeout_ms);
        c.positive(&format!("{base}.max_fails"), u64::from(u.max_fails));
        let tls_ca_file = c.ca_file(&format!("{base}.tls_ca_file"), &u.tls_ca_file);
        if u.http2 {
            if let Some(plain) = targets.iter().find(|t| t.starts_with("http://")) {
                c.key(
                    &format!("{base}.http2"),
                    format!(
                        "needs https:// targets: HTTP/2 is agreed in the TLS handshake \
                         (ALPN), and {plain} is plain http"
                    ),
                );
            }
        }
        let health_check = u.health_check.as_ref().map(|h| {
            let at = |key: &str| format!("{base}.health_check.{key}");
            if !h.path.starts_with('/') {
                c.key(
                    &at("path"),
                    format!("{:?} must be a path starting with '/'", h.path),
                );
            }
            c.positive(&at("interval_ms"), h.interval_ms);
            c.positive(&at("timeout_ms"), h.timeout_ms);
            c.positive(&at("healthy_threshold"), u64::from(h.healthy_threshold));
            c.positive(&at("unhealthy_threshold"), u64::from(h.unhealthy_threshold));
            if let Some(bad) = h
                .expected_statuses
                .iter()
                .find(|s| !(100..=599).contains(*s))
            {
                c.key(
                    &at("expected_statuses"),
                    format!("{bad} is not an HTTP status"),
                );
            }
            HealthCheck {
                path: h.path.clone(),
                interval: Duration::from_millis(h.interval_ms),
                timeout: Duration::from_millis(h.timeout_ms),
                healthy_threshold: h.healthy_threshold,
                unhealthy_threshold: h.unhealthy_threshold,
                expected_statuses: h.expected_statuses.clone(),
            }
        });
        out.push(UpstreamSettings {
            name: name.clone(),
            targets,
            balance,
            connect_timeout: Duration::from_millis(u.connect_timeout_ms),
            request_timeout: Duration::from_millis(u.request_timeout_ms),
            retries: u.retries,
            max_fails: u.max_fails,
            fail_timeout: Duration::from_secs(u.fail_timeout_secs),
            pool_max_connections: u.pool_max_connections,
            pool_keep_alive: Duration::from_secs(u.pool_keep_alive_secs),
            tls_ca_file,
            http2: u.http2,
            health_check,
            hash_key,
            circuit_breaker: u
                .circuit_breaker
                .as_ref()
                .map(|b| circuit_breaker(c, &base, b)),
            retry_budget: RetryBudget {
                percent: u.retry_budget.percent,
                min_concurrency: u.retry_budget.min_concurrency,
            },
            max_ejected_percent: u.max_ejected_percent,
        });
    }
    out
}

/// `circuit_breaker` of an upstream.
fn circuit_breaker(c: &mut Checker, base: &str, b: &RawCircuitBreaker) -> CircuitBreaker {
    let at = |key: &str| format!("{base}.circuit_breaker.{key}");
    if !(0.0..=1.0).contains(&b.error_ratio) {
        c.key(
            &at("error_ratio"),
            format!("{} must be between 0 (off) and 1", b.error_ratio),
        );
    }
    c.positive(&at("min_requests"), u64::from(b.min_requests));
    c.positive(&at("window_secs"), b.window_secs);
    c.positive(&at("half_open_successes"), u64::from(b.half_open_successes));
    if b.consecutive_5xx == 0 && b.error_ratio == 0.0 {
        c.key(
            &format!("{base}.circuit_breaker"),
            "sets neither consecutive_5xx nor error_ratio: it would never open",
        );
    }
    CircuitBreaker {
        consecutive_5xx: b.consecutive_5xx,
        error_ratio: b.error_ratio,
        min_requests: b.min_requests,
        window: Duration::from_secs(b.window_secs),
        half_open_successes: b.half_open_successes,
    }
}

/// `hash_key` of an upstream: only with `consistent_hash` (default `ip`).
fn hash_key(c: &mut Checker, base: &str, balance: Balance, raw: Option<&str>) -> Option<HashKey> {
    if balance != Balance::ConsistentHash {
        if raw.is_some() {
            c.key(
                &format!("{base}.hash_key"),
                "only used with balance: consistent_hash",
            );
        }
        return None;
    }
    let key = match raw.unwrap_or("ip") {
        "ip" => HashKey::Ip,
        "user" => HashKey::User,
        other => {
            let named = |prefix: &str| other.strip_prefix(prefix).filter(|n| !n.is_empty());
            if let Some(name) = named("header:") {
                match HeaderName::try_from(name) {
                    Ok(name) => HashKey::Header(name),
                    Err(_) => {
                        c.key(
                            &format!("{base}.hash_key"),
                            format!("{name:?} is not a header name"),
                        );
                        HashKey::Ip
                    }
                }
            } else if let Some(name) = named("cookie:") {
                HashKey::Cookie(name.to_owned())
            } else {
                c.key(
                    &format!("{base}.hash_key"),
                    format!("{other:?} is not one of ip, user, header:<Name>, cookie:<Name>"),
                );
                HashKey::Ip
            }
        }
    };
    Some(key)
}

fn validate_rate_limits(
    c: &mut Checker,
    policies: &BTreeMap<String, RawRateLimit>,
    has_redis: bool,
) -> Vec<RateLimitPolicy> {
    let mut out = Vec::with_capacity(policies.len());
    for (name, p) in policies {
        let base = format!("rate_limits.{name}");
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        {
            c.key(&base, "policy names use letters, digits, '_', '-' and '.'");
        }
        c.positive(&format!("{base}.requests"), p.requests);
        if p.requests.saturating_add(p.burst) > u64::from(u32::MAX) {
            c.key(
                &format!("{base}.burst"),
                "requests + burst must fit in 32 bits",
            );
        }
        c.positive(&format!("{base}.period_secs"), p.period_secs);
        let key = match p.key.as_str() {
            "ip" => RateLimitKey::Ip,
            "user" => RateLimitKey::User,
            "route" => RateLimitKey::Route,
            "global" => RateLimitKey::Global,
            other => match other.strip_prefix("header:") {
                Some(h) if actix_web::http::header::HeaderName::try_from(h).is_ok() => {
                    RateLimitKey::Header(h.to_ascii_lowercase())
                }
                _ => {
                    c.key(
                        &format!("{base}.key"),
                        format!("{other:?} is not one of ip, user, route, global, header:<Name>"),
                    );
                    RateLimitKey::Ip
                }
            },
        };
        let scope = match p.scope.as_str() {
            "local" => RateLimitScope::Local,
            "cluster" => {
                if !has_redis {
                    c.key(&format!("{base}.scope"), "cluster scope needs redis.url");
                }
                RateLimitScope::Cluster
            }
            other => {
                c.key(
                    &format!("{base}.scope"),
                    format!("{other:?} is not one of local, cluster"),
                );
                RateLimitScope::Local
            }
        };
        let on_store_error = match p.on_store_error.as_str() {
            "local" => OnStoreError::Local,
            "allow" => OnStoreError::Allow,
            "deny" => OnStoreError::Deny,
            other => {
                c.key(
                    &format!("{base}.on_store_error"),
                    format!("{other:?} is not one of local, allow, deny"),
                );
                OnStoreError::Local
            }
        };
        out.push(RateLimitPolicy {
            name: name.clone(),
            requests: p.requests,
            period: Duration::from_secs(p.period_secs),
            burst: p.burst,
            key,
            scope,
            on_store_error,
        });
    }
    out
}
