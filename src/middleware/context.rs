//! Per-request facts that one pipeline stage learns and later stages (and
//! the access log) read, carried in the request's extensions.

use std::io::Write;
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
    /// `None` when the request's path was already normal (the common case:
    /// no copy is made).
    pub normalized: Option<String>,
}

impl MatchedRoute {
    /// The path the route matched: what goes upstream.
    pub fn path<'a>(&'a self, request_path: &'a str) -> &'a str {
        self.normalized.as_deref().unwrap_or(request_path)
    }
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

/// An IP address as text, formatted without allocating (IPv4 without the
/// `fmt` machinery): the access log and `X-Forwarded-For` need one per
/// request.
#[derive(Clone, Copy)]
pub struct IpText {
    buf: [u8; 46],
    len: u8,
}

impl IpText {
    pub fn new(ip: IpAddr) -> Self {
        let mut text = Self {
            buf: [0; 46],
            len: 0,
        };
        match ip {
            IpAddr::V4(v4) => {
                let mut at = 0;
                for (i, octet) in v4.octets().into_iter().enumerate() {
                    if i > 0 {
                        text.buf[at] = b'.';
                        at += 1;
                    }
                    if octet >= 100 {
                        text.buf[at] = b'0' + octet / 100;
                        at += 1;
                    }
                    if octet >= 10 {
                        text.buf[at] = b'0' + octet / 10 % 10;
                        at += 1;
                    }
                    text.buf[at] = b'0' + octet % 10;
                    at += 1;
                }
                text.len = at as u8;
            }
            IpAddr::V6(v6) => {
                let mut out = &mut text.buf[..];
                // 45 characters at most (IPv4-mapped form): always fits.
                let _ = write!(out, "{v6}");
                let left = out.len();
                text.len = (46 - left) as u8;
            }
        }
        text
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII digits, dots, hex letters and colons were written.
        std::str::from_utf8(&self.buf[..usize::from(self.len)]).unwrap_or("-")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_text_matches_display() {
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "10.200.3.45",
            "255.255.255.255",
            "::1",
            "2001:db8::8a2e:370:7334",
            "::ffff:192.168.100.200",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(IpText::new(ip).as_str(), ip.to_string());
        }
    }
}
