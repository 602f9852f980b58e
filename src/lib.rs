//! An API gateway on actix-web: one binary that proxies, logs, authenticates,
//! authorises and rate-limits.
//!
//! Request pipeline (see `middleware` for the exact order):
//!
//! ```text
//! client -> listener -> access_log (request id, metrics, log line) -> route_match
//!        -> [route_features] -> [auth] -> [rate limit] -> proxy::forward (awc, streamed) -> upstream
//! ```
//!
//! Layers point one way (a file imports only from files below it):
//!
//! ```text
//! main.rs -> server.rs -> reload/* (SIGHUP, file watch: a new generation)
//!         -> middleware/*, proxy/forward.rs, auth/oauth.rs, telemetry/{health,access_log,otlp}.rs
//!         -> state.rs (Live: the current Gateway generation; Pinned per request)
//!         -> features: routing.rs, route_features/*, proxy/{balancer,headers,clients,websocket}.rs, auth/*, ratelimit/*
//!         -> leaves: settings/*, context.rs, skip_unless.rs, stage.rs, error.rs, path.rs, tls.rs, redis/{pool,breaker}.rs,
//!                    telemetry/{metrics,logging,probe,trace_context}.rs (tracing.rs: request spans)
//! ```
//!
//! Startup (`main.rs`): CLI -> `settings::load` -> `logging::build` ->
//! [`run`]. Tests boot the real binary; `run` is public so an embedding
//! program can run the gateway in its own actix system. Modules are
//! crate-private except `settings`; [`tools`] lends the examples,
//! benchmarks, fuzz targets and property tests the few internals they
//! drive directly.

pub(crate) mod auth;
pub(crate) mod context;
pub(crate) mod error;
pub(crate) mod middleware;
pub(crate) mod path;
pub(crate) mod proxy;
pub(crate) mod ratelimit;
pub(crate) mod redis;
pub(crate) mod reload;
pub(crate) mod route_features;
pub(crate) mod routing;
pub(crate) mod server;
pub mod settings;
pub(crate) mod skip_unless;
pub(crate) mod stage;
pub(crate) mod state;
pub(crate) mod telemetry;
pub(crate) mod tls;

pub use server::{run, Logging};
/// The JSON logger, started by the binary before the server.
pub use telemetry::logging;
/// The client of `gateway health` (the admin listener's readiness, asked
/// from outside the server).
pub use telemetry::probe;

/// Internals that `examples/` (benchmarks and their helpers), the fuzz
/// targets (`fuzz/`) and the property tests drive directly. Not a stable
/// interface.
pub mod tools {
    pub use crate::auth::crypto::random_token;
    pub use crate::auth::identity::Identity;
    pub use crate::auth::session::model::{unix_now, Session, SessionStoreError};
    pub use crate::auth::session::SessionStore;
    pub use crate::ratelimit::key::KeyMaterial;
    pub use crate::ratelimit::local::Policy;
    pub use crate::redis::pool::{PoolError, RedisPool};
    pub use crate::routing::RouteTable;

    // For fuzz targets (`fuzz/`) and property tests (`tests/path_properties.rs`):
    // the parsers and checks that read what clients send.
    pub use crate::auth::browser::{cookie_value, safe_redirect};
    pub use crate::context::{forwarded_hops, ClientInfo, X_FORWARDED_FOR};
    pub use crate::error::GatewayError;
    pub use crate::path::{is_normal, normalize_path};
    pub use crate::proxy::headers::without_cookies;

    // For the micro-benchmarks (`benches/hot_paths.rs`): the forward path's
    // header work and the access log's line encoder.
    pub use crate::context::IpText;
    pub use crate::proxy::headers::{for_each_upstream_header, forwarded_for, request_skip_list};
    pub use crate::telemetry::json_line::AccessLine;
}
