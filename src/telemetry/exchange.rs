//! One finished exchange as the access-log stage saw it ([`Exchange`]),
//! and what the later stages learned about it ([`Facts`]: route, upstream,
//! client, user), read once from the request extensions for both the
//! access-log line (`access_log.rs`) and the request span (`tracing.rs`).
//! A leaf under both.

use std::sync::Arc;
use std::time::Duration;

use actix_http::Extensions;
use actix_web::http::{Method, StatusCode, Uri};

use crate::auth::identity::Identity;
use crate::context::{IpText, RequestFacts, StreamedBytesIn};
use crate::state::Gateway;

/// Milliseconds with microsecond precision.
pub fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0
}

/// One finished exchange, as the access-log stage saw it.
pub struct Exchange<'a> {
    pub method: &'a Method,
    pub uri: &'a Uri,
    pub status: StatusCode,
    pub elapsed: Duration,
    /// The request's Content-Length (`None` for a streamed body).
    pub bytes_in: Option<u64>,
    /// The response body's size: known at the head, or counted as a
    /// streamed body is sent (`None` when the request failed).
    pub bytes_out: Option<u64>,
    pub user_agent: Option<&'a [u8]>,
    /// What the later stages learned (none when the request failed as an
    /// actix error).
    pub ext: Option<&'a Extensions>,
}

/// What the later stages learned about an exchange, as the log line and
/// the request span record it.
pub struct Facts<'a> {
    pub request_id: &'a str,
    pub route: Option<&'a str>,
    pub upstream: Option<&'a str>,
    pub target: Option<&'a str>,
    /// From sending the request upstream to its response head.
    pub upstream_duration: Option<Duration>,
    pub client_ip: Option<&'a IpText>,
    pub user: Option<&'a str>,
}

impl<'a> Exchange<'a> {
    pub fn facts(&self, gw: &'a Gateway) -> Facts<'a> {
        let ext = self.ext;
        let facts = ext.map(RequestFacts::of);
        let (upstream, target, upstream_duration) = match facts.and_then(|f| f.upstream) {
            Some(u) => {
                let up = &gw.upstreams[u.upstream];
                (
                    Some(up.settings.name.as_str()),
                    Some(up.targets[u.target].url.as_str()),
                    Some(u.head_after),
                )
            }
            None => (None, None, None),
        };
        Facts {
            request_id: facts
                .and_then(|f| f.request_id.as_ref())
                .map_or("-", |id| id.as_str()),
            route: facts
                .and_then(|f| f.matched.as_ref())
                .map(|m| gw.routes.get(m.index).name.as_str()),
            upstream,
            target,
            upstream_duration,
            client_ip: facts.and_then(|f| f.client.as_ref()).map(|c| &c.ip_text),
            user: ext
                .and_then(|e| e.get::<Arc<Identity>>())
                .map(|u| u.subject.as_str()),
        }
    }
}

/// A request body's size: its Content-Length (`declared`), or for a chunked
/// body what the proxy has read of it by now (`None` if it read nothing:
/// the request was answered before the proxy).
pub fn body_bytes_in(declared: Option<u64>, ext: Option<&Extensions>) -> Option<u64> {
    declared.or_else(|| ext?.get::<StreamedBytesIn>().map(|n| n.0.get()))
}
