//! Observability: the JSON logger, Prometheus metrics, what is recorded of
//! every request, and the admin listener's health endpoints.
//!
//! The logger is built first at startup (so configuration and startup events
//! are logged); metrics are fed by the access-log stage (`access_log.rs`),
//! the proxy and the features; the admin listener serves both, separate
//! from the proxy port. `metrics` and `logging` sit below everything;
//! `access_log` and `health` read the shared state. `probe` is the client
//! side of health: `gateway health` asking a running gateway. `tracing`
//! (request spans), `trace_context` (W3C headers) and `otlp` (the
//! exporter over awc) are used only while `tracing.enabled` is on.

pub mod access_log;
mod exchange;
pub mod health;
pub(crate) mod json_line;
pub mod logged_body;
pub mod logging;
pub mod metrics;
pub mod otlp;
pub mod probe;
mod trace_context;
pub mod tracing;
