//! Settings: figment layers -> raw serde structs -> `validate()` -> [`Settings`].
//!
//! The first step of startup (see `lib.rs`): nothing else runs until the
//! layered configuration (defaults, `--config` files, `GATEWAY_*__*`
//! environment, `--set` overrides) has been read and every problem in it
//! reported, each naming the file (or variable) and key it came from. The
//! rest of the gateway only ever sees the validated types of this module.

mod raw;

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use actix_web::http::Method;
use figment::providers::{Env, Format, Json, Serialized, Toml, Yaml};
use figment::value::Value;
use figment::{Figment, Provider};
use ipnet::IpNet;
use serde::de::DeserializeOwned;

use crate::routing::normalize_path;
pub use raw::*;

/// The file read when no `--config` is given, if it exists.
pub const DEFAULT_CONFIG_FILE: &str = "settings/default.yaml";
/// Environment variables with this prefix override settings (`__` nests).
pub const ENV_PREFIX: &str = "GATEWAY_";

/// One thing wrong with the configuration, located as precisely as figment
/// can tell: the file (or environment variable / command line) and the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub source: String,
    pub key: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.source, self.key, self.message)
    }
}

/// Every problem found; the gateway refuses to start while there is one.
#[derive(Debug, Clone)]
pub struct Problems(pub Vec<Problem>);

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in &self.0 {
            writeln!(f, "{p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problems {}

/// Where settings come from, as given on the command line.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    pub config_files: Vec<PathBuf>,
    /// `dotted.key=value` overrides, applied last.
    pub overrides: Vec<String>,
    /// Read `GATEWAY_*` variables (tests turn this off for isolation).
    pub use_env: bool,
}

// ---------------------------------------------------------------------------
// Validated types
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct Settings {
    pub server: ServerSettings,
    pub admin_listen: SocketAddr,
    pub logging: LoggingSettings,
    pub redis: Option<RedisSettings>,
    /// Sorted by name; routes refer to them by index.
    pub upstreams: Vec<UpstreamSettings>,
    /// Sorted by name; routes refer to them by index.
    pub rate_limits: Vec<RateLimitPolicy>,
    pub auth: RawAuth,
    /// `auth.rate_limit` resolved: policies of the `/oauth2/*` endpoints.
    pub auth_rate_limits: Vec<usize>,
    pub routes: Vec<RouteSettings>,
}

#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub listen: SocketAddr,
    /// Resolved: never 0.
    pub workers: usize,
    pub backlog: u32,
    pub max_connections: usize,
    pub keep_alive: Duration,
    pub client_request_timeout: Duration,
    pub shutdown_timeout: Duration,
    pub max_body_bytes: u64,
    pub trusted_proxies: Vec<IpNet>,
    pub tls: Option<TlsSettings>,
}

#[derive(Debug, Clone)]
pub struct TlsSettings {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

#[derive(Debug, Clone)]
pub struct LoggingSettings {
    pub level: slog::Level,
    pub format: LogFormat,
    pub access_log: bool,
}

#[derive(Debug, Clone)]
pub struct RedisSettings {
    /// One URL, or several seeds of a cluster.
    pub urls: Vec<String>,
    pub cluster: bool,
    pub pool_size: usize,
    pub command_timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Balance {
    RoundRobin,
    LeastRequests,
    Random,
}

#[derive(Debug, Clone)]
pub struct UpstreamSettings {
    pub name: String,
    /// `scheme://host:port` without a trailing slash.
    pub targets: Vec<String>,
    pub balance: Balance,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub retries: u32,
    pub max_fails: u32,
    pub fail_timeout: Duration,
    pub pool_max_connections: usize,
    pub pool_keep_alive: Duration,
    pub tls_ca_file: Option<PathBuf>,
    /// HTTP/2 offered to the (all `https://`) targets.
    pub http2: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RateLimitKey {
    Ip,
    User,
    Route,
    Global,
    Header(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateLimitScope {
    Local,
    Cluster,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnStoreError {
    Local,
    Allow,
    Deny,
}

#[derive(Debug, Clone)]
pub struct RateLimitPolicy {
    pub name: String,
    pub requests: u64,
    pub period: Duration,
    pub burst: u64,
    pub key: RateLimitKey,
    pub scope: RateLimitScope,
    pub on_store_error: OnStoreError,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    None,
    Session,
    Bearer,
    SessionOrBearer,
}

#[derive(Debug, Clone)]
pub struct RouteSettings {
    pub name: String,
    /// Normalised, no trailing slash ("/" for the root).
    pub path_prefix: String,
    /// Empty = any method.
    pub methods: Vec<Method>,
    /// Lower-case host without port.
    pub host: Option<String>,
    pub upstream: usize,
    pub strip_prefix: Option<String>,
    pub auth: AuthMode,
    pub require_scopes: Vec<String>,
    pub require_roles: Vec<String>,
    pub rate_limits: Vec<usize>,
    pub preserve_host: bool,
}

impl RouteSettings {
    /// A route on `path_prefix` to upstream 0 with nothing else set: the
    /// starting point for route tables built in code (tests, benchmarks).
    pub fn prefix_only(name: &str, path_prefix: &str) -> Self {
        Self {
            name: name.to_owned(),
            path_prefix: path_prefix.to_owned(),
            methods: Vec::new(),
            host: None,
            upstream: 0,
            strip_prefix: None,
            auth: AuthMode::None,
            require_scopes: Vec::new(),
            require_roles: Vec::new(),
            rate_limits: Vec::new(),
            preserve_host: false,
        }
    }
}

// ---------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------

/// Reads every layer and validates the result; all problems at once.
pub fn load(sources: &Sources) -> Result<Settings, Problems> {
    let mut problems = Vec::new();
    let figment = layered_figment(sources, &mut problems);
    let raw = extract_sections(&figment, &mut problems);
    if !problems.is_empty() {
        return Err(Problems(problems));
    }
    let locate = |key: &str| source_of(&figment, key);
    validate(&raw, &locate).map_err(Problems)
}

fn layered_figment(sources: &Sources, problems: &mut Vec<Problem>) -> Figment {
    let mut figment = Figment::new();
    let files: Vec<PathBuf> = if sources.config_files.is_empty() {
        let default = PathBuf::from(DEFAULT_CONFIG_FILE);
        if default.is_file() {
            vec![default]
        } else {
            Vec::new()
        }
    } else {
        sources.config_files.clone()
    };
    for file in files {
        let shown = file.display().to_string();
        if !file.is_file() {
            problems.push(Problem {
                source: shown,
                key: "-".into(),
                message: "settings file not found or not a regular file".into(),
            });
            continue;
        }
        let ext = file
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        // Each file is parsed on its own first, so a syntax error names it.
        let parsed = match ext.as_deref() {
            Some("yaml" | "yml") => Figment::from(Yaml::file_exact(&file)),
            Some("toml") => Figment::from(Toml::file_exact(&file)),
            Some("json") => Figment::from(Json::file_exact(&file)),
            _ => {
                problems.push(Problem {
                    source: shown,
                    key: "-".into(),
                    message:
                        "unsupported settings file extension (use .yaml, .yml, .toml or .json)"
                            .into(),
                });
                continue;
            }
        };
        if let Err(err) = parsed.data() {
            for e in err {
                problems.push(Problem {
                    source: shown.clone(),
                    key: "-".into(),
                    message: e.kind.to_string(),
                });
            }
            continue;
        }
        figment = figment.merge(parsed);
    }
    if sources.use_env {
        figment = figment.merge(Env::prefixed(ENV_PREFIX).split("__"));
    }
    for item in &sources.overrides {
        match item.split_once('=') {
            Some((key, value)) if !key.trim().is_empty() => {
                let value: Value = value.parse().unwrap_or_else(|never| match never {});
                figment = figment.merge(Serialized::default(key.trim(), value));
            }
            _ => problems.push(Problem {
                source: "--set".into(),
                key: item.clone(),
                message: "expected dotted.key=value".into(),
            }),
        }
    }
    figment
}

/// Extracts section by section so that one bad section does not hide the
/// problems of the others (serde stops at the first error inside one).
fn extract_sections(figment: &Figment, problems: &mut Vec<Problem>) -> RawSettings {
    let mut raw = RawSettings::default();
    let top = match figment.data() {
        Ok(mut data) => data.remove(&figment::Profile::Default).unwrap_or_default(),
        Err(err) => {
            push_figment_errors(err, "", problems);
            return raw;
        }
    };
    for key in top.keys() {
        if !SECTIONS.contains(&key.as_str()) {
            problems.push(Problem {
                source: source_of(figment, key),
                key: key.clone(),
                message: format!("unknown key; expected one of: {}", SECTIONS.join(", ")),
            });
        }
    }
    fn section<T: DeserializeOwned>(
        figment: &Figment,
        key: &str,
        slot: &mut T,
        problems: &mut Vec<Problem>,
    ) {
        if !figment.contains(key) {
            return;
        }
        match figment.extract_inner::<T>(key) {
            Ok(value) => *slot = value,
            Err(err) => push_figment_errors(err, key, problems),
        }
    }
    section(figment, "server", &mut raw.server, problems);
    section(figment, "admin", &mut raw.admin, problems);
    section(figment, "logging", &mut raw.logging, problems);
    section(figment, "redis", &mut raw.redis, problems);
    section(figment, "upstreams", &mut raw.upstreams, problems);
    section(figment, "rate_limits", &mut raw.rate_limits, problems);
    section(figment, "auth", &mut raw.auth, problems);
    section(figment, "routes", &mut raw.routes, problems);
    raw
}

/// `section` is the key the failed extraction started from: figment appends
/// it after the inner path, so it is moved back to the front here.
fn push_figment_errors(err: figment::Error, section: &str, problems: &mut Vec<Problem>) {
    for e in err {
        let mut path = e.path.clone();
        if !section.is_empty() && path.last().map(String::as_str) == Some(section) {
            path.pop();
            path.insert(0, section.to_owned());
        }
        let source = e
            .metadata
            .as_ref()
            .map_or_else(|| "settings".into(), |m| describe_source(m, &path));
        let key = if path.is_empty() {
            "-".to_owned()
        } else {
            path.join(".")
        };
        problems.push(Problem {
            source,
            key,
            message: e.kind.to_string(),
        });
    }
}

/// A file path, `--set`, or the environment variable that sets `path`.
fn describe_source(meta: &figment::Metadata, path: &[String]) -> String {
    match &meta.source {
        Some(figment::Source::File(file)) => file.display().to_string(),
        Some(figment::Source::Code(_)) => "--set".into(),
        _ if meta.name.contains("environment") => {
            format!("{ENV_PREFIX}{}", path.join("__").to_ascii_uppercase())
        }
        _ => meta.name.to_string(),
    }
}

/// Names where a key's value came from, e.g. `settings/prod.yaml`,
/// `GATEWAY_SERVER__WORKERS` or `--set`.
fn source_of(figment: &Figment, key: &str) -> String {
    let mut probe = key.to_owned();
    loop {
        if let Some(meta) = figment.find_metadata(&probe) {
            let path: Vec<String> = probe.split('.').map(str::to_owned).collect();
            return describe_source(meta, &path);
        }
        match probe.rsplit_once('.') {
            Some((parent, _)) => probe = parent.to_owned(),
            None => return "defaults".into(),
        }
    }
}

// ---------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------

struct Checker<'a> {
    locate: &'a dyn Fn(&str) -> String,
    problems: Vec<Problem>,
}

impl Checker<'_> {
    /// `figment_key` finds the source; `shown_key` is what the operator reads.
    fn fail(&mut self, figment_key: &str, shown_key: &str, message: impl Into<String>) {
        self.problems.push(Problem {
            source: (self.locate)(figment_key),
            key: shown_key.to_owned(),
            message: message.into(),
        });
    }

    fn key(&mut self, key: &str, message: impl Into<String>) {
        self.fail(key, key, message);
    }

    /// A PEM CA bundle that must load (checked now, so a bad file stops
    /// `gateway check` and startup, not the first TLS handshake).
    fn ca_file(&mut self, key: &str, value: &Option<String>) -> Option<PathBuf> {
        let path = value
            .as_deref()
            .filter(|f| !f.is_empty())
            .map(PathBuf::from)?;
        if let Err(e) = crate::tls::client_config(Some(&path)) {
            self.key(key, format!("{}: {e}", path.display()));
        }
        Some(path)
    }

    fn socket_addr(&mut self, key: &str, value: &str) -> Option<SocketAddr> {
        match value.parse() {
            Ok(addr) => Some(addr),
            Err(_) => {
                self.key(
                    key,
                    format!("{value:?} is not a socket address like 0.0.0.0:8080"),
                );
                None
            }
        }
    }

    fn positive(&mut self, key: &str, value: u64) {
        if value == 0 {
            self.key(key, "must be greater than 0");
        }
    }

    fn url(&mut self, key: &str, value: &str, schemes: &[&str]) -> Option<url::Url> {
        match url::Url::parse(value) {
            Ok(u) if schemes.contains(&u.scheme()) && u.host_str().is_some() => Some(u),
            Ok(_) => {
                self.key(
                    key,
                    format!(
                        "{value:?} must be an absolute URL with a host and scheme {}",
                        schemes.join(" or ")
                    ),
                );
                None
            }
            Err(e) => {
                self.key(key, format!("{value:?} is not a valid URL: {e}"));
                None
            }
        }
    }
}

/// Turns raw settings into trusted ones, or lists every problem.
pub fn validate(
    raw: &RawSettings,
    locate: &dyn Fn(&str) -> String,
) -> Result<Settings, Vec<Problem>> {
    let mut c = Checker {
        locate,
        problems: Vec::new(),
    };
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
    validate_auth(&mut c, &raw.auth, &routes);
    let auth_rate_limits = resolve_policies(
        &mut c,
        ("auth.rate_limit", "auth.rate_limit"),
        &raw.auth.rate_limit,
        &rate_limits,
    );

    match (server, admin_listen, logging) {
        (Some(server), Some(admin_listen), Some(logging)) if c.problems.is_empty() => {
            Ok(Settings {
                server,
                admin_listen,
                logging,
                redis,
                upstreams,
                rate_limits,
                auth: raw.auth.clone(),
                auth_rate_limits,
                routes,
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
    let mut trusted_proxies = Vec::new();
    for (i, entry) in s.trusted_proxies.iter().enumerate() {
        let parsed = entry
            .parse::<IpNet>()
            .or_else(|_| entry.parse::<std::net::IpAddr>().map(IpNet::from));
        match parsed {
            Ok(net) => trusted_proxies.push(net),
            Err(_) => c.fail(
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
                if let Err(e) = crate::tls::server_config(&tls) {
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
        max_body_bytes: s.max_body_bytes,
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
            other => {
                c.key(
                    &format!("{base}.balance"),
                    format!("{other:?} is not one of round_robin, least_requests, random"),
                );
                Balance::RoundRobin
            }
        };
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
        });
    }
    out
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

fn validate_routes(
    c: &mut Checker,
    raw: &RawSettings,
    upstreams: &[UpstreamSettings],
    rate_limits: &[RateLimitPolicy],
) -> Vec<RouteSettings> {
    let mut names = HashSet::new();
    let mut seen_matchers = HashSet::new();
    let mut out = Vec::with_capacity(raw.routes.len());
    for (i, r) in raw.routes.iter().enumerate() {
        let base = format!("routes[{i}]");
        let fail = |c: &mut Checker, field: &str, msg: String| {
            c.fail("routes", &format!("{base}.{field}"), msg);
        };
        if r.name.trim().is_empty() {
            fail(c, "name", "is required".into());
        } else if !names.insert(r.name.clone()) {
            fail(c, "name", format!("{:?} is used by another route", r.name));
        }
        let path_prefix = if !r.path_prefix.starts_with('/') {
            fail(
                c,
                "path_prefix",
                format!("{:?} must start with '/'", r.path_prefix),
            );
            "/".to_owned()
        } else {
            match normalize_path(&r.path_prefix) {
                // "/api/" and "/api" match the same requests.
                Some(p) if p.len() > 1 => p.trim_end_matches('/').to_owned(),
                Some(p) => p,
                None => {
                    fail(
                        c,
                        "path_prefix",
                        format!("{:?} is not a valid path", r.path_prefix),
                    );
                    "/".to_owned()
                }
            }
        };
        let mut methods = Vec::with_capacity(r.methods.len());
        for m in &r.methods {
            match Method::from_bytes(m.to_ascii_uppercase().as_bytes()) {
                Ok(method) => methods.push(method),
                Err(_) => fail(c, "methods", format!("{m:?} is not an HTTP method")),
            }
        }
        let host = r
            .host
            .as_deref()
            .filter(|h| !h.is_empty())
            .map(|h| strip_port(h).to_ascii_lowercase());
        let matcher_key = (path_prefix.clone(), host.clone(), {
            let mut m: Vec<String> = methods.iter().map(|m| m.to_string()).collect();
            m.sort();
            m
        });
        if !seen_matchers.insert(matcher_key) {
            fail(
                c,
                "path_prefix",
                "another route has the same path_prefix, host and methods".into(),
            );
        }
        let upstream = match upstreams.iter().position(|u| u.name == r.upstream) {
            Some(idx) => {
                if r.preserve_host && upstreams[idx].http2 {
                    fail(
                        c,
                        "preserve_host",
                        format!(
                            "upstream {:?} has http2: true, and over HTTP/2 the upstream \
                             sees the target's authority, not the client's Host: turn one off",
                            r.upstream
                        ),
                    );
                }
                idx
            }
            None => {
                fail(
                    c,
                    "upstream",
                    format!("upstream {:?} is not defined in upstreams", r.upstream),
                );
                0
            }
        };
        let strip_prefix = match r.strip_prefix.as_deref().filter(|s| !s.is_empty()) {
            None => None,
            Some(s) => match normalize_path(s) {
                Some(norm) if norm == "/" => None,
                Some(norm) if crate::routing::has_segment_prefix(&path_prefix, &norm) => Some(norm),
                _ => {
                    fail(
                        c,
                        "strip_prefix",
                        format!(
                            "{s:?} must be a path-segment prefix of path_prefix {path_prefix:?}"
                        ),
                    );
                    None
                }
            },
        };
        let auth = match r.auth.as_str() {
            "none" => AuthMode::None,
            "session" => AuthMode::Session,
            "bearer" => AuthMode::Bearer,
            "session_or_bearer" => AuthMode::SessionOrBearer,
            other => {
                fail(
                    c,
                    "auth",
                    format!("{other:?} is not one of none, session, bearer, session_or_bearer"),
                );
                AuthMode::None
            }
        };
        if auth == AuthMode::None && (!r.require.scopes.is_empty() || !r.require.roles.is_empty()) {
            fail(
                c,
                "require",
                "requirements need an authenticated route (auth is none)".into(),
            );
        }
        let policies = resolve_policies(
            c,
            ("routes", &format!("{base}.rate_limit")),
            &r.rate_limit,
            rate_limits,
        );
        out.push(RouteSettings {
            name: r.name.clone(),
            path_prefix,
            methods,
            host,
            upstream,
            strip_prefix,
            auth,
            require_scopes: r.require.scopes.clone(),
            require_roles: r.require.roles.clone(),
            rate_limits: policies,
            preserve_host: r.preserve_host,
        });
    }
    out
}

fn validate_auth(c: &mut Checker, auth: &RawAuth, routes: &[RouteSettings]) {
    let p = &auth.provider;
    let endpoints = [
        ("auth.provider.issuer", &p.issuer),
        ("auth.provider.authorization_url", &p.authorization_url),
        ("auth.provider.token_url", &p.token_url),
        ("auth.provider.introspection_url", &p.introspection_url),
        ("auth.provider.revocation_url", &p.revocation_url),
        ("auth.provider.userinfo_url", &p.userinfo_url),
        ("auth.provider.jwks_url", &p.jwks_url),
        ("auth.provider.end_session_url", &p.end_session_url),
        (
            "auth.logout.post_logout_redirect_url",
            &auth.logout.post_logout_redirect_url,
        ),
    ];
    for (key, value) in endpoints {
        if let Some(v) = value.as_deref().filter(|v| !v.is_empty()) {
            c.url(key, v, &["http", "https"]);
        }
    }
    c.ca_file("auth.provider.tls_ca_file", &p.tls_ca_file);
    c.url(
        "auth.provider.redirect_url",
        &p.redirect_url,
        &["http", "https"],
    );
    c.positive("auth.session.ttl_secs", auth.session.ttl_secs);
    if auth.session.cookie_name.is_empty()
        || !auth
            .session
            .cookie_name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        c.key(
            "auth.session.cookie_name",
            "must be non-empty letters, digits, '_' or '-'",
        );
    }
    let set = |v: &Option<String>| v.as_deref().is_some_and(|v| !v.is_empty());
    let uses = |modes: &[AuthMode]| routes.iter().any(|r| modes.contains(&r.auth));
    if uses(&[
        AuthMode::Session,
        AuthMode::Bearer,
        AuthMode::SessionOrBearer,
    ]) {
        if p.client_id.is_empty() {
            c.key("auth.provider.client_id", "required when a route uses auth");
        }
        if auth.session.secret.len() < 32 {
            c.key(
                "auth.session.secret",
                "must be at least 32 bytes when a route uses auth (set GATEWAY_AUTH__SESSION__SECRET)",
            );
        }
    }
    if uses(&[AuthMode::Session, AuthMode::SessionOrBearer])
        && !set(&p.issuer)
        && !(set(&p.authorization_url) && set(&p.token_url))
    {
        c.key(
            "auth.provider",
            "session routes need issuer, or authorization_url and token_url",
        );
    }
    if auth.logout.provider && !set(&p.issuer) && !set(&p.end_session_url) {
        c.key(
            "auth.logout.provider",
            "needs issuer (discovery's end_session_endpoint) or auth.provider.end_session_url",
        );
    }
    if uses(&[AuthMode::Bearer, AuthMode::SessionOrBearer])
        && !set(&p.issuer)
        && !set(&p.introspection_url)
        && !set(&p.jwks_url)
    {
        c.key(
            "auth.provider",
            "bearer routes need issuer, introspection_url or jwks_url",
        );
    }
}

/// Policy names (a route's or `auth.rate_limit`) to indices into `rate_limits`.
fn resolve_policies(
    c: &mut Checker,
    (figment_key, key): (&str, &str),
    names: &[String],
    rate_limits: &[RateLimitPolicy],
) -> Vec<usize> {
    let mut policies = Vec::with_capacity(names.len());
    for p in names {
        match rate_limits.iter().position(|x| &x.name == p) {
            Some(idx) => policies.push(idx),
            None => c.fail(
                figment_key,
                key,
                format!("policy {p:?} is not defined in rate_limits"),
            ),
        }
    }
    policies
}

/// `example.com:8080` -> `example.com`; IPv6 literals keep their brackets.
pub fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |end| &host[..=end]);
    }
    match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

#[cfg(test)]
mod tests;
