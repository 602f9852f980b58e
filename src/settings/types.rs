//! The validated settings: what the rest of the gateway trusts.
//!
//! Built once by `validate` from the raw serde structs (`raw`) and never
//! serialised: durations are [`Duration`]s, references between sections
//! are indices, optional text that was left empty is `None`. A leaf under
//! every feature.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use actix_web::http::Method;
use ipnet::IpNet;

#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub server: ServerSettings,
    pub admin_listen: SocketAddr,
    pub logging: LoggingSettings,
    pub redis: Option<RedisSettings>,
    /// Sorted by name; routes refer to them by index.
    pub upstreams: Vec<UpstreamSettings>,
    /// Sorted by name; routes refer to them by index.
    pub rate_limits: Vec<RateLimitPolicy>,
    pub auth: AuthSettings,
    pub routes: Vec<RouteSettings>,
    /// `None` while `tracing.enabled` is false.
    pub tracing: Option<TracingSettings>,
}

impl Settings {
    /// Some route authenticates: the auth stage, the `/oauth2/*` endpoints
    /// and the provider are needed.
    pub fn uses_auth(&self) -> bool {
        self.routes.iter().any(|r| r.auth != AuthMode::None)
    }

    /// Some route, or `auth.rate_limit`, names a policy: the rate-limit
    /// stage is needed.
    pub fn uses_rate_limits(&self) -> bool {
        self.routes.iter().any(|r| !r.rate_limits.is_empty()) || !self.auth.rate_limits.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ServerSettings {
    pub listen: SocketAddr,
    /// Resolved: never 0.
    pub workers: usize,
    pub backlog: u32,
    pub max_connections: usize,
    pub keep_alive: Duration,
    pub client_request_timeout: Duration,
    pub shutdown_timeout: Duration,
    /// Readiness 503 and `Connection: close` before the listener closes.
    pub drain_delay: Duration,
    /// Reload when a settings file changes on disk.
    pub watch_settings_files: bool,
    pub max_body_bytes: u64,
    /// Request targets longer than this get 414.
    pub max_uri_bytes: usize,
    /// Header blocks larger than this (names and values) get 431.
    pub max_header_bytes: usize,
    pub trusted_proxies: Vec<IpNet>,
    pub tls: Option<TlsSettings>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TlsSettings {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LoggingSettings {
    pub level: slog::Level,
    pub format: LogFormat,
    pub access_log: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TracingSettings {
    pub otlp_endpoint: url::Url,
    pub service_name: String,
    /// 0.0..=1.0.
    pub sample_ratio: f64,
    pub export_timeout: Duration,
}

#[derive(Debug, Clone, PartialEq)]
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
    /// Rendezvous hashing on the upstream's `hash_key`.
    ConsistentHash,
}

#[derive(Debug, Clone, PartialEq)]
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
    pub health_check: Option<HealthCheck>,
    /// What `Balance::ConsistentHash` hashes (`None` for other balances).
    pub hash_key: Option<super::features::HashKey>,
    pub circuit_breaker: Option<super::features::CircuitBreaker>,
    pub retry_budget: super::features::RetryBudget,
    /// Most targets (percent) passive health may take out at once; at least one.
    pub max_ejected_percent: u32,
}

/// Active health checks: GET `path` on every target every `interval`.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthCheck {
    pub path: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
    /// Empty = any 2xx.
    pub expected_statuses: Vec<u16>,
}

impl HealthCheck {
    pub fn passes(&self, status: u16) -> bool {
        if self.expected_statuses.is_empty() {
            (200..300).contains(&status)
        } else {
            self.expected_statuses.contains(&status)
        }
    }
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

#[derive(Debug, Clone, PartialEq)]
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

#[derive(Debug, Clone, PartialEq)]
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
    /// The optional features; `None` for a route that sets none of them.
    pub features: Option<Box<super::features::RouteFeatures>>,
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
            features: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct AuthSettings {
    pub provider: ProviderSettings,
    /// The claim that lists a user's roles.
    pub roles_claim: String,
    /// Hosts an absolute `rd` may name after login or logout.
    pub allowed_redirect_hosts: Vec<String>,
    pub session: SessionSettings,
    pub logout: LogoutSettings,
    /// `auth.rate_limit` resolved: policies of the `/oauth2/*` endpoints.
    pub rate_limits: Vec<usize>,
}

/// The identity provider's endpoints (`auth.provider.issuer` and the
/// `*_url` keys); `None` when not set. At startup OpenID discovery fills in
/// what the settings leave out.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProviderEndpoints {
    pub issuer: Option<String>,
    pub authorization: Option<String>,
    pub token: Option<String>,
    pub introspection: Option<String>,
    pub revocation: Option<String>,
    pub userinfo: Option<String>,
    pub jwks: Option<String>,
    pub end_session: Option<String>,
}

/// The identity provider.
#[derive(Clone, PartialEq)]
pub struct ProviderSettings {
    pub endpoints: ProviderEndpoints,
    /// PEM CA bundle trusted instead of Mozilla's roots.
    pub tls_ca_file: Option<PathBuf>,
    pub client_id: String,
    pub client_secret: String,
    /// Accepted `aud` of bearer tokens: `audiences`, or the client id.
    pub audiences: Vec<String>,
    pub scopes: Vec<String>,
    pub redirect_url: String,
}

// Secrets must never reach a log, not even through `{:?}` of the settings.
impl std::fmt::Debug for ProviderSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderSettings")
            .field("endpoints", &self.endpoints)
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .finish_non_exhaustive()
    }
}

#[derive(Clone, PartialEq)]
pub struct SessionSettings {
    pub cookie_name: String,
    pub cookie_secure: bool,
    /// Seals sessions at rest; at least 32 bytes when a route uses auth.
    pub secret: String,
    pub ttl: Duration,
    /// How long a replica trusts its cached copy (Redis mode), and the
    /// lifetime of cached introspection answers.
    pub cache_ttl: Duration,
}

impl std::fmt::Debug for SessionSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionSettings")
            .field("cookie_name", &self.cookie_name)
            .field("cookie_secure", &self.cookie_secure)
            .field("secret", &"<redacted>")
            .field("ttl", &self.ttl)
            .field("cache_ttl", &self.cache_ttl)
            .finish()
    }
}

/// What `/oauth2/logout` does beyond ending the gateway's session.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogoutSettings {
    /// Also end the user's session at the provider (RP-initiated logout).
    pub provider: bool,
    pub post_logout_redirect_url: Option<String>,
}
