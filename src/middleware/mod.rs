//! The request pipeline, as actix-web middleware.
//!
//! Order for every proxied request (outermost first; actix runs the
//! last-registered `wrap` first, so `server.rs` registers them in reverse):
//!
//! ```text
//!  request_id  -> keeps a sane X-Request-Id or mints one; echoes it back
//!  access_log  -> in-flight gauge, latency + request metrics, one JSON line
//!  route_match -> normalises the path, finds the route, resolves client IP
//!  auth        -> session / bearer identity, route requirements
//!  rate_limit  -> local (governor) and cluster (Redis via actor) policies
//!  proxy       -> `proxy::forward`, streamed to the upstream
//! ```
//!
//! Stages share what they learn through request extensions (the types in
//! `context`), never through globals.

pub mod access_log;
pub mod auth;
pub mod context;
pub mod rate_limit;
pub mod request_id;
pub mod route_match;
