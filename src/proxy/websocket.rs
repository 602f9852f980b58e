//! WebSocket upgrades, proxied as a byte tunnel.
//!
//! Reached from the proxy handler when a matched request asks to upgrade to
//! `websocket`. The gateway performs the upgrade handshake with the upstream
//! (awc), answers the client's handshake itself (101 with the
//! `Sec-WebSocket-Accept` for the client's key and the upstream's chosen
//! protocol and extensions), then copies bytes both ways without decoding
//! frames, so extensions such as permessage-deflate pass through untouched.
//! The tunnel lives until either side closes.

use actix_http::ws::hash_key;
use actix_web::dev::Payload;
use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::{HttpRequest, HttpResponse};
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;

use super::failure::UpstreamFailure;
use super::headers::{for_each_end_to_end, for_each_upstream_header};
use crate::settings::HeaderRules;

/// Headers of the handshake that belong to one hop's key exchange.
const HANDSHAKE_HEADERS: [HeaderName; 3] = [
    header::SEC_WEBSOCKET_KEY,
    header::SEC_WEBSOCKET_VERSION,
    header::SEC_WEBSOCKET_ACCEPT,
];

/// True for `GET` with `Upgrade: websocket` and `Connection: upgrade`
/// (whether the handshake is complete is [`has_key`]'s question).
pub fn is_upgrade(req: &HttpRequest) -> bool {
    let has_token = |name: HeaderName, token: &str| {
        req.headers()
            .get_all(name)
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    req.method() == Method::GET
        && has_token(header::UPGRADE, "websocket")
        && has_token(header::CONNECTION, "upgrade")
}

/// The client sent the `Sec-WebSocket-Key` a handshake needs; without it
/// the upgrade is the client's mistake (400), never sent upstream.
pub fn has_key(req: &HttpRequest) -> bool {
    req.headers().contains_key(header::SEC_WEBSOCKET_KEY)
}

/// What the proxy handler has already decided for this request.
pub struct Tunnel<'a> {
    pub client: &'a awc::Client,
    /// `ws://` or `wss://` URL of the chosen target, with path and query.
    pub url: String,
    pub added: HandshakeHeaders<'a>,
    pub skip: &'a [HeaderName],
    /// The gateway's own cookies, never passed upstream.
    pub gateway_cookies: &'a [String],
}

/// What the gateway adds to the client's handshake headers.
pub struct HandshakeHeaders<'a> {
    /// X-Forwarded-*, X-Request-Id, Host and the identity headers.
    pub extra: Vec<(HeaderName, HeaderValue)>,
    /// The route's `request_headers` rules, applied last as on plain requests.
    pub rules: Option<&'a HeaderRules>,
}

/// Opens the upstream WebSocket and returns the client's 101 response whose
/// body streams upstream bytes; client bytes are pumped upstream by a task.
/// `guard` is held until the upstream side of the tunnel closes.
pub async fn open<G: 'static>(
    req: &HttpRequest,
    payload: Payload,
    tunnel: Tunnel<'_>,
    guard: G,
) -> Result<HttpResponse, UpstreamFailure> {
    // The proxy checked it before choosing a target (see `is_upgrade`).
    let client_key = req
        .headers()
        .get(header::SEC_WEBSOCKET_KEY)
        .ok_or(UpstreamFailure::Broken)?;
    let accept = hash_key(client_key.as_bytes());

    let mut ws = tunnel.client.ws(tunnel.url.as_str());
    let mut skip: Vec<HeaderName> = tunnel.skip.to_vec();
    skip.extend(HANDSHAKE_HEADERS);
    let mut forwarded = HeaderMap::new();
    for_each_upstream_header(
        req.headers(),
        &skip,
        tunnel.gateway_cookies,
        |name, value| forwarded.append(name.clone(), value.clone()),
    );
    for (name, value) in tunnel.added.extra {
        forwarded.append(name, value);
    }
    if let Some(rules) = tunnel.added.rules {
        rules.apply(&mut forwarded);
    }
    for (name, value) in forwarded.iter() {
        ws = ws.header(name.clone(), value.clone());
    }
    let (upstream_head, framed) = ws
        .connect()
        .await
        .map_err(|e| UpstreamFailure::of_upgrade(&e))?;

    let mut res = HttpResponse::build(StatusCode::SWITCHING_PROTOCOLS);
    for_each_end_to_end(
        upstream_head.headers(),
        &HANDSHAKE_HEADERS,
        |name, value| {
            res.append_header((name.clone(), value.clone()));
        },
    );
    res.upgrade("websocket");
    res.insert_header((
        header::SEC_WEBSOCKET_ACCEPT,
        HeaderValue::from_bytes(&accept).map_err(|_| UpstreamFailure::Broken)?,
    ));

    let parts = framed.into_parts();
    let early = parts.read_buf.freeze();
    let (read_half, mut write_half) = tokio::io::split(parts.io);

    // Client -> upstream: raw bytes after the handshake, until the client
    // closes; then the upstream's write side is shut so it sees the end.
    actix_rt::spawn(async move {
        let mut payload = payload;
        while let Some(Ok(chunk)) = payload.next().await {
            if write_half.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = write_half.shutdown().await;
    });

    // Upstream -> client: whatever awc had already read, then the socket.
    let upstream_bytes =
        futures_util::stream::iter((!early.is_empty()).then(|| Ok::<Bytes, std::io::Error>(early)))
            .chain(tokio_util::io::ReaderStream::new(read_half))
            .map(move |chunk| {
                let _held = &guard;
                chunk
            });
    Ok(res.streaming(upstream_bytes))
}
