//! Serde-facing settings: the exact shape of the files operators write.
//!
//! Sits at the very start of the pipeline, before anything runs: figment
//! layers deserialize into these structs (unknown keys rejected), and
//! `validate` turns them into the trusted types the gateway uses (`types`).
//! Nothing outside `settings` sees them.
//! Every field documents its default; the defaults are named constants so the
//! docs, the code and the tests agree.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use super::raw_features::*;

pub const DEFAULT_LISTEN: &str = "0.0.0.0:8080";
pub const DEFAULT_ADMIN_LISTEN: &str = "0.0.0.0:9090";
pub const DEFAULT_BACKLOG: u32 = 2048;
pub const DEFAULT_MAX_CONNECTIONS: usize = 25_000;
pub const DEFAULT_KEEP_ALIVE_SECS: u64 = 15;
pub const DEFAULT_CLIENT_REQUEST_TIMEOUT_MS: u64 = 5_000;
pub const DEFAULT_SHUTDOWN_TIMEOUT_SECS: u64 = 30;
pub const DEFAULT_MAX_BODY_BYTES: u64 = 10 * 1024 * 1024;
pub const DEFAULT_REDIS_POOL_SIZE: usize = 16;
pub const DEFAULT_REDIS_COMMAND_TIMEOUT_MS: u64 = 100;
pub const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 1_000;
pub const DEFAULT_REQUEST_TIMEOUT_MS: u64 = 30_000;
pub const DEFAULT_RETRIES: u32 = 1;
pub const DEFAULT_MAX_FAILS: u32 = 3;
pub const DEFAULT_FAIL_TIMEOUT_SECS: u64 = 10;
pub const DEFAULT_UPSTREAM_POOL_LIMIT: usize = 1024;
pub const DEFAULT_MAX_EJECTED_PERCENT: u32 = 50;
/// Below the 5 s idle timeout of common upstream servers (Node.js, uvicorn,
/// actix-web), so a pooled connection is not reused just as the upstream closes it.
pub const DEFAULT_UPSTREAM_KEEP_ALIVE_SECS: u64 = 4;
pub const DEFAULT_SESSION_TTL_SECS: u64 = 28_800;
pub const DEFAULT_SESSION_CACHE_TTL_SECS: u64 = 10;
pub const DEFAULT_OTLP_ENDPOINT: &str = "http://127.0.0.1:4318/v1/traces";
pub const DEFAULT_TRACE_EXPORT_TIMEOUT_MS: u64 = 5_000;

/// The whole settings document.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RawSettings {
    pub server: RawServer,
    pub admin: RawAdmin,
    pub logging: RawLogging,
    pub redis: RawRedis,
    pub upstreams: BTreeMap<String, RawUpstream>,
    pub rate_limits: BTreeMap<String, RawRateLimit>,
    pub auth: RawAuth,
    pub routes: Vec<RawRoute>,
    pub tracing: RawTracing,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RawServer {
    /// Proxy listener address. Default `0.0.0.0:8080`.
    pub listen: String,
    /// actix-web worker threads; 0 = one per CPU core. Default 0.
    pub workers: usize,
    /// Listen backlog (pending connections). Default 2048.
    pub backlog: u32,
    /// Concurrent connections per worker. Default 25000.
    pub max_connections: usize,
    /// Idle keep-alive of client connections, seconds (0 disables). Default 15.
    pub keep_alive_secs: u64,
    /// Time allowed to receive a request head, ms. Default 5000.
    pub client_request_timeout_ms: u64,
    /// Graceful drain on SIGTERM/SIGINT, seconds. Default 30.
    pub shutdown_timeout_secs: u64,
    /// After SIGTERM/SIGINT, how long the gateway keeps accepting (readiness
    /// 503, every response `Connection: close`) before it closes the
    /// listener, seconds; 0 closes it at once (added key). Default 0.
    pub drain_delay_secs: u64,
    /// Reload when a settings file changes on disk (added key); SIGHUP
    /// reloads either way. Default true.
    pub watch_settings_files: bool,
    /// Larger request bodies get 413. Default 10 MiB.
    pub max_body_bytes: u64,
    /// Longer request targets (path and query) get 414 (added key). Default 8 KiB.
    pub max_uri_bytes: u64,
    /// Larger request header blocks (names, values) get 431 (added key).
    /// Default 32 KiB.
    pub max_header_bytes: u64,
    /// CIDRs (or addresses) whose X-Forwarded-* headers are believed.
    pub trusted_proxies: Vec<String>,
    /// Optional TLS for the proxy listener.
    pub tls: Option<RawTls>,
}

impl Default for RawServer {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN.to_owned(),
            workers: 0,
            backlog: DEFAULT_BACKLOG,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            keep_alive_secs: DEFAULT_KEEP_ALIVE_SECS,
            client_request_timeout_ms: DEFAULT_CLIENT_REQUEST_TIMEOUT_MS,
            shutdown_timeout_secs: DEFAULT_SHUTDOWN_TIMEOUT_SECS,
            drain_delay_secs: 0,
            watch_settings_files: true,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_uri_bytes: 8 * 1024,
            max_header_bytes: 32 * 1024,
            trusted_proxies: Vec::new(),
            tls: None,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RawTls {
    pub cert_file: String,
    pub key_file: String,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RawAdmin {
    /// Admin listener (metrics and health). Default `0.0.0.0:9090`.
    pub listen: String,
}

impl Default for RawAdmin {
    fn default() -> Self {
        Self {
            listen: DEFAULT_ADMIN_LISTEN.to_owned(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RawLogging {
    /// trace | debug | info | warning | error. Default info.
    pub level: String,
    /// json | text. Default json.
    pub format: String,
    /// One line per request (added key). Default true.
    pub access_log: bool,
}

impl Default for RawLogging {
    fn default() -> Self {
        Self {
            level: "info".to_owned(),
            format: "json".to_owned(),
            access_log: true,
        }
    }
}

/// Request spans over OTLP (added section; restart-only).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RawTracing {
    /// A span per request, exported over OTLP/HTTP. Default false.
    pub enabled: bool,
    /// OTLP/HTTP (protobuf) traces URL. Default http://127.0.0.1:4318/v1/traces.
    pub otlp_endpoint: String,
    /// The `service.name` resource attribute. Default gateway.
    pub service_name: String,
    /// Share of new traces recorded, 0..1; a caller's sampled flag in
    /// `traceparent` is followed. Default 1.0.
    pub sample_ratio: f64,
    /// Longest wait for one export request. Default 5000.
    pub export_timeout_ms: u64,
}

impl Default for RawTracing {
    fn default() -> Self {
        Self {
            enabled: false,
            otlp_endpoint: DEFAULT_OTLP_ENDPOINT.to_owned(),
            service_name: "gateway".to_owned(),
            sample_ratio: 1.0,
            export_timeout_ms: DEFAULT_TRACE_EXPORT_TIMEOUT_MS,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RawRedis {
    /// None = embedded in-memory state.
    pub url: Option<String>,
    pub cluster: bool,
    pub pool_size: usize,
    pub command_timeout_ms: u64,
}

impl Default for RawRedis {
    fn default() -> Self {
        Self {
            url: None,
            cluster: false,
            pool_size: DEFAULT_REDIS_POOL_SIZE,
            command_timeout_ms: DEFAULT_REDIS_COMMAND_TIMEOUT_MS,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RawUpstream {
    pub targets: Vec<String>,
    /// round_robin | least_requests | random | consistent_hash.
    pub balance: String,
    /// With consistent_hash: ip | user | header:<Name> | cookie:<Name> (added to the spec's keys: default ip).
    pub hash_key: Option<String>,
    /// Retries (connect, broken exchange, `retry_on`) held to a share of
    /// the requests in flight (added key).
    pub retry_budget: RawRetryBudget,
    /// More reasons to take a target out, and half-open probes to bring it
    /// back (added key); absent = `max_fails` failures in a row only.
    pub circuit_breaker: Option<RawCircuitBreaker>,
    /// Most targets (percent, rounded down, at least one kept) that passive
    /// health and the circuit breaker may take out at once (added key).
    pub max_ejected_percent: u32,
    pub connect_timeout_ms: u64,
    pub request_timeout_ms: u64,
    pub retries: u32,
    /// Consecutive failures (connect, timeout, broken exchange) before a
    /// target is skipped (added key).
    pub max_fails: u32,
    /// How long a failed target is skipped, seconds (added key).
    pub fail_timeout_secs: u64,
    /// Upstream connections per worker for this upstream; 0 = unlimited (added key).
    pub pool_max_connections: usize,
    /// Idle pooled upstream connections are closed after this, seconds (added key).
    pub pool_keep_alive_secs: u64,
    /// PEM CA bundle trusted for `https://` targets instead of Mozilla's
    /// roots (added key).
    pub tls_ca_file: Option<String>,
    /// Offer HTTP/2 to `https://` targets (TLS ALPN `h2`, then
    /// `http/1.1`); the target chooses (added key).
    pub http2: bool,
    /// Active health checks of every target (added key); absent = passive
    /// health only.
    pub health_check: Option<RawHealthCheck>,
}

/// `upstreams.<name>.health_check`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RawHealthCheck {
    /// Requested with GET on every target, e.g. `/healthz`.
    pub path: String,
    pub interval_ms: u64,
    pub timeout_ms: u64,
    /// Consecutive passing checks that bring a failed target back.
    pub healthy_threshold: u32,
    /// Consecutive failing checks that take a target out.
    pub unhealthy_threshold: u32,
    /// Statuses that pass; empty = any 2xx.
    pub expected_statuses: Vec<u16>,
}

impl Default for RawHealthCheck {
    fn default() -> Self {
        Self {
            path: String::new(),
            interval_ms: 5000,
            timeout_ms: 1000,
            healthy_threshold: 2,
            unhealthy_threshold: 3,
            expected_statuses: Vec::new(),
        }
    }
}

impl Default for RawUpstream {
    fn default() -> Self {
        Self {
            targets: Vec::new(),
            balance: "round_robin".to_owned(),
            connect_timeout_ms: DEFAULT_CONNECT_TIMEOUT_MS,
            request_timeout_ms: DEFAULT_REQUEST_TIMEOUT_MS,
            retries: DEFAULT_RETRIES,
            max_fails: DEFAULT_MAX_FAILS,
            fail_timeout_secs: DEFAULT_FAIL_TIMEOUT_SECS,
            pool_max_connections: DEFAULT_UPSTREAM_POOL_LIMIT,
            pool_keep_alive_secs: DEFAULT_UPSTREAM_KEEP_ALIVE_SECS,
            tls_ca_file: None,
            http2: false,
            health_check: None,
            hash_key: None,
            retry_budget: RawRetryBudget::default(),
            circuit_breaker: None,
            max_ejected_percent: DEFAULT_MAX_EJECTED_PERCENT,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RawRateLimit {
    pub requests: u64,
    pub period_secs: u64,
    pub burst: u64,
    /// ip | user | route | global | header:<Name>.
    pub key: String,
    /// local | cluster.
    pub scope: String,
    /// local | allow | deny.
    pub on_store_error: String,
}

impl Default for RawRateLimit {
    fn default() -> Self {
        Self {
            requests: 100,
            period_secs: 1,
            burst: 100,
            key: "ip".to_owned(),
            scope: "local".to_owned(),
            on_store_error: "local".to_owned(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RawAuth {
    pub provider: RawProvider,
    pub roles_claim: String,
    pub allowed_redirect_hosts: Vec<String>,
    pub session: RawSession,
    pub logout: RawLogout,
    /// Policies applied to the gateway's own `/oauth2/*` endpoints.
    pub rate_limit: Vec<String>,
}

impl Default for RawAuth {
    fn default() -> Self {
        Self {
            provider: RawProvider::default(),
            roles_claim: "roles".to_owned(),
            allowed_redirect_hosts: Vec::new(),
            session: RawSession::default(),
            logout: RawLogout::default(),
            rate_limit: Vec::new(),
        }
    }
}

#[derive(Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RawProvider {
    pub issuer: Option<String>,
    pub authorization_url: Option<String>,
    pub token_url: Option<String>,
    pub introspection_url: Option<String>,
    pub revocation_url: Option<String>,
    pub userinfo_url: Option<String>,
    pub jwks_url: Option<String>,
    /// OpenID RP-initiated logout endpoint (discovery's `end_session_endpoint`).
    pub end_session_url: Option<String>,
    /// PEM CA bundle trusted for an `https://` provider instead of Mozilla's roots.
    pub tls_ca_file: Option<String>,
    pub client_id: String,
    pub client_secret: String,
    pub audiences: Vec<String>,
    pub scopes: Vec<String>,
    pub redirect_url: String,
}

impl Default for RawProvider {
    fn default() -> Self {
        Self {
            issuer: None,
            authorization_url: None,
            token_url: None,
            introspection_url: None,
            revocation_url: None,
            userinfo_url: None,
            jwks_url: None,
            end_session_url: None,
            tls_ca_file: None,
            client_id: String::new(),
            client_secret: String::new(),
            audiences: Vec::new(),
            scopes: vec!["openid".into(), "profile".into(), "email".into()],
            redirect_url: "http://localhost:8080/oauth2/callback".to_owned(),
        }
    }
}

// Secrets must never reach a log, not even through `{:?}` of the settings.
impl std::fmt::Debug for RawProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawProvider")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// What `/oauth2/logout` does beyond ending the gateway's session.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RawLogout {
    /// Also end the user's session at the provider (OpenID RP-initiated
    /// logout): browsers are sent to its end-session endpoint.
    pub provider: bool,
    /// Where the provider sends the browser afterwards; must be registered
    /// at the provider. None: the provider shows its own page.
    pub post_logout_redirect_url: Option<String>,
}

#[derive(Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RawSession {
    pub cookie_name: String,
    pub cookie_secure: bool,
    pub secret: String,
    pub ttl_secs: u64,
    pub cache_ttl_secs: u64,
}

impl Default for RawSession {
    fn default() -> Self {
        Self {
            cookie_name: "gateway_session".to_owned(),
            cookie_secure: true,
            secret: String::new(),
            ttl_secs: DEFAULT_SESSION_TTL_SECS,
            cache_ttl_secs: DEFAULT_SESSION_CACHE_TTL_SECS,
        }
    }
}

impl std::fmt::Debug for RawSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawSession")
            .field("cookie_name", &self.cookie_name)
            .field("cookie_secure", &self.cookie_secure)
            .field("secret", &"<redacted>")
            .field("ttl_secs", &self.ttl_secs)
            .field("cache_ttl_secs", &self.cache_ttl_secs)
            .finish()
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RawRoute {
    pub name: String,
    pub path_prefix: String,
    /// Empty = any method.
    pub methods: Vec<String>,
    pub host: Option<String>,
    pub upstream: String,
    pub strip_prefix: Option<String>,
    /// none | session | bearer | session_or_bearer.
    pub auth: String,
    pub require: RawRequire,
    pub rate_limit: Vec<String>,
    /// Send the client's Host header upstream instead of the target's (added key).
    pub preserve_host: bool,
    // Optional per-route features (absent = off), see raw_features.rs.
    /// Overrides the upstream's request_timeout_ms.
    pub timeout_ms: Option<u64>,
    /// Overrides server.max_body_bytes.
    pub max_body_bytes: Option<u64>,
    pub rewrite: Option<RawRewrite>,
    pub request_headers: Option<RawHeaderRules>,
    pub response_headers: Option<RawHeaderRules>,
    pub cors: Option<RawCors>,
    /// CIDRs (or addresses); non-empty = only these client IPs.
    pub allow_ips: Vec<String>,
    /// CIDRs (or addresses) answered 403; deny wins over allow.
    pub deny_ips: Vec<String>,
    /// gzip / br responses for clients that accept them.
    pub compress: bool,
    /// Statuses on which idempotent requests are retried once on another target.
    pub retry_on: Vec<u16>,
    /// Weighted split instead of `upstream` (canary).
    pub upstreams: Vec<RawWeightedUpstream>,
}

impl Default for RawRoute {
    fn default() -> Self {
        Self {
            name: String::new(),
            path_prefix: String::new(),
            methods: Vec::new(),
            host: None,
            upstream: String::new(),
            strip_prefix: None,
            auth: "none".to_owned(),
            require: RawRequire::default(),
            rate_limit: Vec::new(),
            preserve_host: false,
            timeout_ms: None,
            max_body_bytes: None,
            rewrite: None,
            request_headers: None,
            response_headers: None,
            cors: None,
            allow_ips: Vec::new(),
            deny_ips: Vec::new(),
            compress: false,
            retry_on: Vec::new(),
            upstreams: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RawRequire {
    pub scopes: Vec<String>,
    pub roles: Vec<String>,
}
