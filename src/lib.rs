//! An API gateway on actix-web: one binary that proxies, logs, authenticates,
//! authorises and rate-limits.
//!
//! Request pipeline (see `middleware` for the exact order):
//!
//! ```text
//! client -> listener -> request_id -> access_log + metrics -> route_match
//!        -> [auth] -> [rate limit] -> proxy::forward (awc, streamed) -> upstream
//! ```
//!
//! Startup (`main.rs`): CLI -> `settings::load` -> `telemetry::logging` ->
//! `server::run`. Tests boot the real binary; `server::run` is public so an
//! embedding program can run the gateway in its own actix system.

pub mod actors;
pub mod auth;
pub mod error;
pub mod middleware;
pub mod proxy;
pub mod ratelimit;
pub mod redis_pool;
pub mod routing;
pub mod server;
pub mod settings;
pub mod state;
pub mod telemetry;
pub mod tls;

pub use server::run;
