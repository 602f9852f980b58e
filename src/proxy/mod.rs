//! The last stage of the pipeline: forwarding a matched, admitted request to
//! an upstream target over awc and streaming the answer back.
//!
//! - `balancer`: picks a target (round robin, least requests, random) and
//!   keeps passive health (targets that fail to connect are skipped a while);
//! - `headers`: what crosses the gateway in each direction (hop-by-hop
//!   removal, `X-Forwarded-*`, identity headers stripped);
//! - `forward`: the handler itself, with retries, timeouts and body limits;
//! - `websocket`: upgrades, tunnelled byte for byte after both handshakes.

pub mod balancer;
pub mod forward;
pub mod headers;
pub mod websocket;

pub use forward::{forward, UpstreamClients};
