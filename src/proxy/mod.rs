//! The last stage of the pipeline: forwarding a matched, admitted request to
//! an upstream target over awc and streaming the answer back.
//!
//! ```text
//! forward.rs    the handler: upstream request, retries, timeouts, body limits, streaming
//!   clients.rs  one awc client per upstream, per worker
//!   balancer.rs target choice (round robin, least requests, random, consistent hash), passive health, retry budget
//!   body.rs     request body limit, response body with its in-flight count
//!   circuit.rs  one target's circuit: closed, open, half-open (passive health)
//!   headers.rs  what crosses in each direction (hop-by-hop, X-Forwarded-*, X-Auth-*)
//!   upstream_path.rs the path and query sent upstream, in a per-thread arena
//!   websocket.rs upgrades, tunnelled byte for byte      failure.rs  UpstreamFailure
//! ```

pub mod balancer;
mod body;
pub mod circuit;
pub mod clients;
pub mod failure;
pub mod forward;
pub mod headers;
pub mod health_check;
mod upstream_path;
pub mod websocket;
