//! Per-request facts: what one pipeline stage learns and later stages (and
//! the access log) read, carried in the request's extensions as one
//! [`RequestFacts`]; the client's
//! address as the gateway determines it; the one way a stage answers a
//! request itself ([`reject`]).
//!
//! A leaf below every stage: the middleware, the auth and rate-limit
//! features and the proxy all read these types, and this file imports only
//! [`crate::error`].

use std::io::Write;
use std::net::IpAddr;

use actix_web::body::EitherBody;
use actix_web::dev::{Extensions, Payload, RequestHead, ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use actix_web::http::{Method, Version};
use actix_web::{HttpMessage, HttpResponse};
use ipnet::IpNet;

use crate::error::GatewayError;

pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// The request id, already validated as a header value.
#[derive(Clone)]
pub struct RequestId(pub HeaderValue);

/// Longest client-sent `X-Request-Id` kept, in bytes.
const REQUEST_ID_MAX: usize = 128;

impl RequestId {
    pub fn as_str(&self) -> &str {
        // Only visible ASCII is ever stored (`is_sane`).
        header_text(&self.0).unwrap_or("-")
    }

    /// The request's id: the client's `X-Request-Id` when sane, else a
    /// new UUID v4.
    fn choose(headers: &HeaderMap) -> HeaderValue {
        match headers.get(X_REQUEST_ID) {
            Some(v) if Self::is_sane(v.as_bytes()) => v.clone(),
            _ => Self::mint(),
        }
    }

    /// Sane: 1..=128 characters from a conservative set, so an id can go
    /// into logs and headers unescaped and cannot smuggle anything.
    pub fn is_sane(value: &[u8]) -> bool {
        !value.is_empty()
            && value.len() <= REQUEST_ID_MAX
            && value.iter().all(|b| {
                b.is_ascii_alphanumeric()
                    || matches!(b, b'-' | b'_' | b'.' | b':' | b'/' | b'+' | b'=')
            })
    }

    fn mint() -> HeaderValue {
        let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
        uuid::Uuid::new_v4().hyphenated().encode_lower(&mut buf);
        // One allocation that every clone (facts, upstream request,
        // response) shares by reference count: a copied `Bytes` would take
        // a second one when first cloned.
        HeaderValue::from_maybe_shared(bytes::Bytes::from_owner(buf))
            .unwrap_or_else(|_| HeaderValue::from_static("invalid"))
    }
}

/// A header value as text: what `HeaderValue::to_str` answers, for a
/// fraction of its cost on the request path (it tests one byte at a time;
/// this takes words). A `HeaderValue` never holds control characters but
/// tab, so its ASCII values are exactly the visible ones `to_str` accepts.
pub fn header_text(value: &HeaderValue) -> Option<&str> {
    let bytes = value.as_bytes();
    if bytes.is_ascii() {
        std::str::from_utf8(bytes).ok()
    } else {
        None
    }
}

/// How the request's body is framed, read once from its head: the proxy
/// streams by it, the access line counts by it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyFraming {
    None,
    Sized(u64),
    /// Chunked, or an HTTP/2 body without `Content-Length`: its size is
    /// known only once read.
    Streamed,
    /// A `Content-Length` that is not a number (the proxy refuses it).
    Unparseable,
}

impl BodyFraming {
    pub fn of(head: &RequestHead) -> Self {
        let headers = &head.headers;
        if let Some(len) = headers.get(header::CONTENT_LENGTH) {
            return match header_text(len).and_then(|v| v.trim().parse::<u64>().ok()) {
                Some(0) => Self::None,
                Some(len) => Self::Sized(len),
                None => Self::Unparseable,
            };
        }
        if headers.contains_key(header::TRANSFER_ENCODING) {
            return Self::Streamed;
        }
        // HTTP/2 frames a body without Content-Length or Transfer-Encoding;
        // only methods that never carry one are taken as empty.
        if head.version == Version::HTTP_2 && !matches!(head.method, Method::GET | Method::HEAD) {
            return Self::Streamed;
        }
        Self::None
    }

    /// The body's size as its head declares it (`None`: streamed, counted
    /// as the proxy reads it).
    pub fn declared(self) -> Option<u64> {
        match self {
            Self::None => Some(0),
            Self::Sized(len) => Some(len),
            Self::Streamed | Self::Unparseable => None,
        }
    }
}

/// Who sent the request, after `trusted_proxies` rules.
#[derive(Clone, Copy)]
pub struct ClientInfo {
    pub ip: IpAddr,
    /// `ip` as text, formatted once for `X-Forwarded-For` and the access
    /// line.
    pub ip_text: IpText,
    pub peer: IpAddr,
    pub peer_trusted: bool,
}

impl ClientInfo {
    /// The client behind `peer`: the peer itself, unless it is one of the
    /// `trusted` proxies (then its `X-Forwarded-For` is believed).
    pub fn resolve(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> Self {
        let peer_trusted = !trusted.is_empty() && is_trusted(peer, trusted);
        let ip = if peer_trusted {
            client_behind(peer, headers, trusted)
        } else {
            peer
        };
        Self {
            ip,
            ip_text: IpText::new(ip),
            peer,
            peer_trusted,
        }
    }
}

/// The route that matched and the normalised path it matched on.
#[derive(Clone)]
pub struct MatchedRoute {
    pub index: usize,
    /// `None` when the request's path was already normal (the common case:
    /// no copy is made).
    pub normalized: Option<String>,
    /// The route authenticates (the auth stage runs).
    pub authenticates: bool,
    /// The route has rate-limit policies (the rate-limit stage runs).
    pub rate_limited: bool,
}

impl MatchedRoute {
    /// The path the route matched: what goes upstream.
    pub fn path<'a>(&'a self, request_path: &'a str) -> &'a str {
        self.normalized.as_deref().unwrap_or(request_path)
    }
}

/// The `traceparent` the proxy sends upstream: the request's span as the
/// parent (set only with tracing on).
#[derive(Clone)]
pub struct TraceParent(pub HeaderValue);

/// Bytes of a chunked request body the proxy has read so far (its size is
/// not known at the head); the access log reads it when it writes the line.
#[derive(Clone, Default)]
pub struct StreamedBytesIn(pub std::rc::Rc<std::cell::Cell<u64>>);

/// The upstream target the proxy used (last attempt).
#[derive(Clone, Copy)]
pub struct UpstreamUsed {
    pub upstream: usize,
    pub target: usize,
    /// From sending the request to the upstream's response head (or failure).
    pub head_after: std::time::Duration,
}

/// What the stages learn about one request, held in one extension: the
/// access-log stage records the id, the route stage the client and the
/// route, the proxy the upstream it used; later stages and the access log
/// read them. One entry rather than one per fact, because a request's
/// extensions start empty every time and each entry is boxed (five
/// entries also regrew the map once per request).
#[derive(Default)]
pub struct RequestFacts {
    pub request_id: Option<RequestId>,
    pub body: Option<BodyFraming>,
    pub client: Option<ClientInfo>,
    pub matched: Option<MatchedRoute>,
    pub upstream: Option<UpstreamUsed>,
}

static NO_FACTS: RequestFacts = RequestFacts {
    request_id: None,
    body: None,
    client: None,
    matched: None,
    upstream: None,
};

impl RequestFacts {
    /// What the head says, recorded first (by the access-log stage): the
    /// request's id, for the upstream, the access log, error bodies and
    /// the response; and its body's framing.
    pub fn begin(req: &ServiceRequest) -> (HeaderValue, BodyFraming) {
        let id = RequestId::choose(req.headers());
        // actix-http attaches no payload to a request without a body: then
        // its head need not be read for the framing.
        let body = match req.parts().1 {
            Payload::None => BodyFraming::None,
            _ => BodyFraming::of(req.head()),
        };
        Self::record(req, |facts| {
            facts.request_id = Some(RequestId(id.clone()));
            facts.body = Some(body);
        });
        (id, body)
    }

    /// The request's facts (all unknown when no stage recorded any).
    pub fn of(ext: &Extensions) -> &RequestFacts {
        ext.get::<RequestFacts>().unwrap_or(&NO_FACTS)
    }

    /// The matched route's index (`None`: no route, e.g. `/oauth2/*`).
    pub fn route_index(&self) -> Option<usize> {
        self.matched.as_ref().map(|m| m.index)
    }

    /// Records what a stage learned (`update` fills its fields).
    pub fn record(req: &impl HttpMessage, update: impl FnOnce(&mut RequestFacts)) {
        let mut ext = req.extensions_mut();
        match ext.get_mut::<RequestFacts>() {
            Some(facts) => update(facts),
            None => {
                let mut facts = RequestFacts::default();
                update(&mut facts);
                ext.insert(facts);
            }
        }
    }
}

/// Reads the request id set by the access-log stage ("-" if somehow absent).
pub fn request_id_of(req: &impl HttpMessage) -> String {
    RequestFacts::of(&req.extensions())
        .request_id
        .as_ref()
        .map_or_else(|| "-".to_owned(), |id| id.as_str().to_owned())
}

/// Answers `req` with the JSON error of `err` (the contract's error body,
/// with the request's id) instead of calling the next stage.
pub fn reject<B>(req: ServiceRequest, err: GatewayError) -> ServiceResponse<EitherBody<B>> {
    let res = err.to_response(&request_id_of(&req));
    respond(req, res)
}

/// Answers `req` with `res` (a redirect, or an error already rendered)
/// instead of calling the next stage.
pub fn respond<B>(req: ServiceRequest, res: HttpResponse) -> ServiceResponse<EitherBody<B>> {
    req.into_response(res).map_into_right_body()
}

pub fn is_trusted(ip: IpAddr, trusted: &[IpNet]) -> bool {
    trusted.iter().any(|net| net.contains(&ip))
}

/// Every `X-Forwarded-For` hop, across all header lines, in order.
pub fn forwarded_hops(headers: &HeaderMap) -> Vec<&str> {
    headers
        .get_all(X_FORWARDED_FOR)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|line| line.split(','))
        .map(str::trim)
        .filter(|hop| !hop.is_empty())
        .collect()
}

/// The client behind `peer`, a trusted proxy: `X-Forwarded-For` is read
/// right to left and the first address that is not itself a trusted proxy
/// is the client.
fn client_behind(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let mut client = peer;
    for hop in forwarded_hops(headers).into_iter().rev() {
        match hop.parse::<IpAddr>() {
            Ok(ip) => {
                client = ip;
                if !is_trusted(ip, trusted) {
                    break;
                }
            }
            // A hop we cannot parse ends what we can believe.
            Err(_) => break,
        }
    }
    client
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

    /// The text's bytes: where bytes do (the access line, a header value),
    /// without `as_str`'s UTF-8 check.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..usize::from(self.len)]
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII digits, dots, hex letters and colons were written.
        std::str::from_utf8(self.as_bytes()).unwrap_or("-")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_framing_is_read_from_the_head() {
        use actix_web::test::TestRequest;
        let framing = |req: TestRequest| BodyFraming::of(req.to_srv_request().head());
        let post = || TestRequest::post().uri("/");
        assert_eq!(framing(post()), BodyFraming::None);
        let sized = post().insert_header((header::CONTENT_LENGTH, " 42 "));
        assert_eq!(framing(sized), BodyFraming::Sized(42));
        let empty = post().insert_header((header::CONTENT_LENGTH, "0"));
        assert_eq!(framing(empty), BodyFraming::None);
        let bad = post().insert_header((header::CONTENT_LENGTH, "4x"));
        assert_eq!(framing(bad), BodyFraming::Unparseable);
        let chunked = post().insert_header((header::TRANSFER_ENCODING, "chunked"));
        assert_eq!(framing(chunked), BodyFraming::Streamed);
        assert_eq!(BodyFraming::Streamed.declared(), None);
        // HTTP/2 frames a body without either header, except for GET/HEAD.
        let h2 = |req: TestRequest| framing(req.version(Version::HTTP_2));
        assert_eq!(h2(post()), BodyFraming::Streamed);
        assert_eq!(h2(TestRequest::get().uri("/")), BodyFraming::None);
    }

    #[test]
    fn header_text_agrees_with_to_str_for_every_byte() {
        for byte in 0..=u8::MAX {
            let Ok(value) = HeaderValue::from_bytes(&[b'a', byte, b'z']) else {
                continue;
            };
            assert_eq!(header_text(&value), value.to_str().ok(), "byte {byte:#04x}");
        }
        let long = HeaderValue::from_static("0123456789abcdef0123456789abcdef-longer-than-a-word");
        assert_eq!(header_text(&long), Some(long.to_str().unwrap()));
    }

    #[test]
    fn request_id_sanity_rules() {
        assert!(RequestId::is_sane(b"abc-123_DEF.4:5"));
        assert!(!RequestId::is_sane(b""));
        assert!(!RequestId::is_sane(b"has space"));
        assert!(!RequestId::is_sane(b"quote\""));
        assert!(!RequestId::is_sane(&[b'a'; 129]));
        assert!(RequestId::is_sane(RequestId::mint().as_bytes()));
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    fn xff(lines: &[&'static str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for l in lines {
            h.append(X_FORWARDED_FOR, HeaderValue::from_static(l));
        }
        h
    }

    #[test]
    fn untrusted_peer_is_the_client_whatever_it_claims() {
        let peer: IpAddr = "9.9.9.9".parse().unwrap();
        let info = ClientInfo::resolve(peer, &xff(&["1.2.3.4"]), &nets(&["10.0.0.0/8"]));
        assert_eq!(info.ip, peer);
        assert!(!info.peer_trusted);
    }

    #[test]
    fn trusted_chain_is_walked_from_the_right_across_lines() {
        let trusted = nets(&["10.0.0.0/8"]);
        let peer: IpAddr = "10.0.0.1".parse().unwrap();
        let info = ClientInfo::resolve(peer, &xff(&["6.6.6.6, 1.2.3.4", "10.0.0.7"]), &trusted);
        assert_eq!(info.ip, "1.2.3.4".parse::<IpAddr>().unwrap());
        assert!(info.peer_trusted);
        assert_eq!(
            ClientInfo::resolve(peer, &xff(&["not-an-ip"]), &trusted).ip,
            peer
        );
    }

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
