//! Observability: the JSON logger, Prometheus metrics and the admin listener's
//! health endpoints.
//!
//! The logger is built first at startup (so configuration and startup events
//! are logged); metrics are fed by the access-log middleware and the proxy;
//! the admin listener serves both, separate from the proxy port.

pub mod health;
pub mod logging;
pub mod metrics;
