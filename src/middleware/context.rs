//! Per-request facts that one pipeline stage learns and later stages (and
//! the access log) read, carried in the request's extensions.

use std::net::IpAddr;

use actix_web::http::header::HeaderValue;
use actix_web::HttpMessage;

/// The request id, already validated as a header value.
#[derive(Clone)]
pub struct RequestId(pub HeaderValue);

impl RequestId {
    pub fn as_str(&self) -> &str {
        // Only visible ASCII is ever stored (see request_id.rs).
        self.0.to_str().unwrap_or("-")
    }
}

/// Who sent the request, after `trusted_proxies` rules.
#[derive(Clone, Copy)]
pub struct ClientInfo {
    pub ip: IpAddr,
    pub peer: IpAddr,
    pub peer_trusted: bool,
}

/// The route that matched and the normalised path it matched on.
#[derive(Clone)]
pub struct MatchedRoute {
    pub index: usize,
    pub path: String,
}

/// The upstream target the proxy used (last attempt).
#[derive(Clone, Copy)]
pub struct UpstreamUsed {
    pub upstream: usize,
    pub target: usize,
}

/// Reads the request id set by the first stage ("-" if somehow absent).
pub fn request_id_of(req: &impl HttpMessage) -> String {
    req.extensions()
        .get::<RequestId>()
        .map_or_else(|| "-".to_owned(), |id| id.as_str().to_owned())
}
