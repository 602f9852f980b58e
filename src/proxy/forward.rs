//! The proxy handler: the end of the pipeline for every matched request.
//!
//! Builds the upstream request (path with `strip_prefix` applied, query
//! untouched, end-to-end headers plus `X-Forwarded-*` and `X-Request-Id`),
//! picks a target, sends it with the worker's pooled awc client and streams
//! both bodies: nothing is buffered beyond awc's own chunks, so memory stays
//! flat whatever the body size. Failures of the target (no connection, no
//! answer in time, a broken exchange) feed passive health; idempotent
//! requests without a body are retried on another target after a connect
//! failure or a broken exchange (`UpstreamFailure`).

use std::cell::Cell;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use actix_http::body::{BodyStream, SizedStream};
use actix_web::error::PayloadError;
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};
use bytes::Bytes;
use futures_util::Stream;
use slog::{debug, warn};

use super::balancer::HealthChange;
use super::clients::{UpstreamClients, WorkerClients};
use super::failure::UpstreamFailure;
use super::headers::{for_each_end_to_end, for_each_upstream_header, forwarded_for};
use super::websocket::{self, Tunnel};
use crate::auth::identity::Identity;
use crate::context::{
    ClientInfo, MatchedRoute, RequestId, UpstreamUsed, X_FORWARDED_FOR, X_FORWARDED_HOST,
    X_FORWARDED_PROTO, X_REQUEST_ID,
};
use crate::error::GatewayError;
use crate::path::strip_segment_prefix;
use crate::state::{Gateway, Pinned};

/// How the request body reaches the upstream.
enum RequestBody {
    Empty,
    Sized(u64),
    Chunked,
}

fn request_body_kind(req: &HttpRequest) -> Result<RequestBody, GatewayError> {
    if let Some(len) = req.headers().get(header::CONTENT_LENGTH) {
        let len = len
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .ok_or(GatewayError::BadRequest("unparseable Content-Length"))?;
        return Ok(if len == 0 {
            RequestBody::Empty
        } else {
            RequestBody::Sized(len)
        });
    }
    if req.headers().contains_key(header::TRANSFER_ENCODING) {
        return Ok(RequestBody::Chunked);
    }
    // HTTP/2 frames a body without Content-Length or Transfer-Encoding; only
    // methods that never carry one are taken as empty.
    if req.version() == actix_web::http::Version::HTTP_2
        && !matches!(*req.method(), Method::GET | Method::HEAD)
    {
        return Ok(RequestBody::Chunked);
    }
    Ok(RequestBody::Empty)
}

fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

pin_project_lite::pin_project! {
    /// Passes the client's body through, failing once it passes `limit`
    /// bytes (for bodies without Content-Length, which is checked up front).
    struct LimitedBody {
        #[pin]
        inner: web::Payload,
        seen: u64,
        limit: u64,
        exceeded: Rc<Cell<bool>>,
    }
}

impl Stream for LimitedBody {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.project();
        match this.inner.poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                *this.seen += chunk.len() as u64;
                if *this.seen > *this.limit {
                    this.exceeded.set(true);
                    return Poll::Ready(Some(Err(PayloadError::Overflow)));
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            other => other,
        }
    }
}

pin_project_lite::pin_project! {
    /// The upstream's response body, holding the target's in-flight count
    /// until the last byte has gone to the client (or the client left).
    struct ResponseBody<S> {
        #[pin]
        inner: S,
        in_flight: Option<InFlightOwned>,
    }
}

impl<S> Stream for ResponseBody<S>
where
    S: Stream<Item = Result<Bytes, PayloadError>>,
{
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.project();
        let polled = this.inner.poll_next(cx);
        if let Poll::Ready(None) = polled {
            this.in_flight.take();
        }
        polled
    }
}

/// Counts a request against its target until dropped. It owns a handle to
/// the gateway because it travels with the response body, which outlives
/// the handler.
#[must_use = "the target counts the request as in flight until this is dropped"]
struct InFlightOwned {
    gw: Pinned,
    upstream: usize,
    target: usize,
}

impl InFlightOwned {
    fn begin(gw: &Pinned, upstream: usize, target: usize) -> Self {
        gw.upstreams[upstream].begin(target);
        Self {
            gw: gw.clone(),
            upstream,
            target,
        }
    }
}

impl Drop for InFlightOwned {
    fn drop(&mut self) {
        self.gw.upstreams[self.upstream].end(self.target);
    }
}

/// Default service: forwards the matched request upstream.
pub async fn forward(
    req: HttpRequest,
    payload: web::Payload,
    gw: Pinned,
    worker_clients: web::Data<WorkerClients>,
) -> HttpResponse {
    let (request_id, matched, client) = {
        let ext = req.extensions();
        let request_id = ext.get::<RequestId>().cloned();
        // The upstream path is built while the extensions are borrowed, so
        // the matched path is never copied.
        let matched = ext.get::<MatchedRoute>().map(|m| {
            let route = gw.routes.get(m.index);
            let matched_path = m.path(req.path());
            let path = match &route.strip_prefix {
                Some(prefix) => strip_segment_prefix(matched_path, prefix),
                None => std::borrow::Cow::Borrowed(matched_path),
            };
            let mut path_and_query = String::with_capacity(path.len() + 64);
            path_and_query.push_str(&path);
            if let Some(q) = req.uri().query() {
                path_and_query.push('?');
                path_and_query.push_str(q);
            }
            (m.index, path_and_query)
        });
        (request_id, matched, ext.get::<ClientInfo>().copied())
    };
    let request_id = request_id.unwrap_or_else(|| RequestId(HeaderValue::from_static("-")));
    let (Some((route_index, path_and_query)), Some(client)) = (matched, client) else {
        // The route stage always runs first; reaching here without it is a bug.
        return GatewayError::Internal.to_response(request_id.as_str());
    };
    let fail = |err: GatewayError| err.to_response(request_id.as_str());

    let clients = worker_clients.for_generation(gw.clients_generation, &gw.settings.upstreams);
    let route = gw.routes.get(route_index);
    let upstream_idx = route.upstream;
    let upstream = &gw.upstreams[upstream_idx];
    let limit = gw.settings.server.max_body_bytes;

    let body_kind = match request_body_kind(&req) {
        Ok(kind) => kind,
        Err(err) => return fail(err),
    };
    if let RequestBody::Sized(len) = body_kind {
        if len > limit {
            return fail(GatewayError::BodyTooLarge { limit });
        }
    }

    let incoming = req.headers();
    let xff = forwarded_for(client.peer, incoming, client.peer_trusted);
    let proto = match incoming.get(X_FORWARDED_PROTO) {
        Some(v) if client.peer_trusted => v.clone(),
        _ if req.app_config().secure() => HeaderValue::from_static("https"),
        _ => HeaderValue::from_static("http"),
    };
    let host = incoming.get(header::HOST).cloned().or_else(|| {
        req.uri()
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    });
    let forwarded_host = match incoming.get(X_FORWARDED_HOST) {
        Some(v) if client.peer_trusted => Some(v.clone()),
        _ => host.clone(),
    };

    // Headers the gateway sets on every upstream request of this exchange.
    let mut extra: Vec<(HeaderName, HeaderValue)> = Vec::with_capacity(5);
    if let Ok(v) = HeaderValue::from_str(&xff) {
        extra.push((X_FORWARDED_FOR, v));
    }
    extra.push((X_FORWARDED_PROTO, proto));
    if let Some(fh) = forwarded_host {
        extra.push((X_FORWARDED_HOST, fh));
    }
    extra.push((X_REQUEST_ID, request_id.0.clone()));
    if route.preserve_host {
        if let Some(host) = host {
            extra.push((header::HOST, host));
        }
    }
    let identity = req.extensions().get::<Arc<Identity>>().cloned();
    let identity_headers = identity
        .as_deref()
        .map_or(&[][..], Identity::upstream_headers);

    if websocket::is_upgrade(&req) {
        extra.extend(identity_headers.iter().cloned());
        // Boxed: rare, and large enough to bloat every request's future.
        return Box::pin(upgrade(
            &req,
            payload,
            &gw,
            &clients,
            upstream_idx,
            &path_and_query,
            extra,
        ))
        .await
        .unwrap_or_else(fail);
    }

    let retryable = is_idempotent(req.method()) && matches!(body_kind, RequestBody::Empty);
    let max_attempts = if retryable {
        1 + upstream.settings.retries as usize
    } else {
        1
    };
    let mut payload = Some(payload);
    let mut tried: Vec<usize> = Vec::new();
    let exceeded = Rc::new(Cell::new(false));

    loop {
        // With every target tried, a retry may go back to one still marked
        // healthy (a single-target upstream, or a stale pooled connection).
        let pick = upstream
            .pick(&tried)
            .or_else(|| (!tried.is_empty()).then(|| upstream.pick(&[])).flatten());
        let Some(target_idx) = pick else {
            return fail(if tried.is_empty() {
                GatewayError::NoHealthyUpstream
            } else {
                GatewayError::UpstreamConnect
            });
        };
        let target = &upstream.targets[target_idx];
        let mut url = String::with_capacity(target.url.len() + path_and_query.len());
        url.push_str(&target.url);
        url.push_str(&path_and_query);
        let mut up = clients
            .for_requests(upstream_idx)
            .request(req.method().clone(), url)
            .no_decompress();
        {
            let h = up.headers_mut();
            for_each_upstream_header(
                incoming,
                &gw.request_skip,
                &gw.gateway_cookies,
                |name, value| h.append(name.clone(), value.clone()),
            );
            // Every header added here is in the skip list (never copied
            // from the client), so appending cannot duplicate one.
            if !route.preserve_host {
                if let Some(host) = &target.host_header {
                    h.append(header::HOST, host.clone());
                }
            }
            for (name, value) in extra.iter().chain(identity_headers) {
                h.append(name.clone(), value.clone());
            }
        }

        let in_flight = InFlightOwned::begin(&gw, upstream_idx, target_idx);
        let sent_at = Instant::now();
        let result = match body_kind {
            RequestBody::Empty => up.send_body(actix_http::body::None::new()).await,
            RequestBody::Sized(len) => match payload.take() {
                Some(p) => up.send_body(SizedStream::new(len, p)).await,
                None => return fail(GatewayError::Internal),
            },
            RequestBody::Chunked => match payload.take() {
                Some(p) => {
                    let body = LimitedBody {
                        inner: p,
                        seen: 0,
                        limit,
                        exceeded: exceeded.clone(),
                    };
                    up.send_body(BodyStream::new(body)).await
                }
                None => return fail(GatewayError::Internal),
            },
        };
        req.extensions_mut().insert(UpstreamUsed {
            upstream: upstream_idx,
            target: target_idx,
        });
        let labels = [upstream.settings.name.as_str(), target.url.as_str()];

        match result {
            Ok(resp) => {
                gw.upstream_histograms[upstream_idx][target_idx]
                    .observe(sent_at.elapsed().as_secs_f64());
                if upstream.record_success(target_idx) == HealthChange::Recovered {
                    gw.metrics.target_healthy.with_label_values(&labels).set(1);
                    warn!(gw.log, "upstream target recovered";
                        "upstream" => labels[0], "target" => labels[1]);
                }
                // request_timeout_ms covers the body too: awc re-arms the
                // timer it used for the head (no new allocation).
                let remaining = (sent_at + upstream.settings.request_timeout)
                    .saturating_duration_since(Instant::now());
                let resp = resp.timeout(remaining);
                // The count now travels with the response body.
                return build_response(&req, resp, in_flight);
            }
            Err(err) => {
                drop(in_flight);
                let body_exceeded = exceeded.get().then_some(limit);
                let failure = UpstreamFailure::of_request(&err, body_exceeded);
                debug!(gw.log, "upstream exchange failed";
                    "upstream" => labels[0], "target" => labels[1],
                    "kind" => failure.kind(), "error" => %err,
                    "request_id" => request_id.as_str());
                report_failure(&gw, upstream_idx, target_idx, failure);
                if failure.may_retry() {
                    tried.push(target_idx);
                    if tried.len() < max_attempts {
                        continue;
                    }
                }
                return fail(failure.gateway_error());
            }
        }
    }
}

/// Proxies a WebSocket upgrade to one target (no retries: the client's
/// handshake is answered only once the upstream's has succeeded).
async fn upgrade(
    req: &HttpRequest,
    payload: web::Payload,
    gw: &Pinned,
    clients: &UpstreamClients,
    upstream_idx: usize,
    path_and_query: &str,
    extra: Vec<(HeaderName, HeaderValue)>,
) -> Result<HttpResponse, GatewayError> {
    if !websocket::has_key(req) {
        return Err(GatewayError::BadRequest(
            "WebSocket upgrade without Sec-WebSocket-Key",
        ));
    }
    let upstream = &gw.upstreams[upstream_idx];
    let target_idx = upstream.pick(&[]).ok_or(GatewayError::NoHealthyUpstream)?;
    let target = &upstream.targets[target_idx];
    req.extensions_mut().insert(UpstreamUsed {
        upstream: upstream_idx,
        target: target_idx,
    });
    let in_flight = InFlightOwned::begin(gw, upstream_idx, target_idx);
    let tunnel = Tunnel {
        client: clients.for_tunnels(upstream_idx),
        url: format!("{}{}", target.url, path_and_query),
        extra,
        skip: &gw.request_skip,
        gateway_cookies: &gw.gateway_cookies,
    };
    match websocket::open(req, payload, tunnel, in_flight).await {
        Ok(res) => {
            upstream.record_success(target_idx);
            Ok(res)
        }
        Err(failure) => {
            report_failure(gw, upstream_idx, target_idx, failure);
            Err(failure.gateway_error())
        }
    }
}

/// What a failed exchange with a target means for it, for plain requests
/// and upgrades alike: counted by kind, and held against the target's
/// passive health when it is at fault. A refused upgrade is an answer: it
/// counts as a success.
fn report_failure(gw: &Gateway, upstream_idx: usize, target_idx: usize, failure: UpstreamFailure) {
    let upstream = &gw.upstreams[upstream_idx];
    let labels = [
        upstream.settings.name.as_str(),
        upstream.targets[target_idx].url.as_str(),
    ];
    let Some(kind) = failure.kind() else {
        upstream.record_success(target_idx);
        return;
    };
    gw.metrics
        .upstream_errors
        .with_label_values(&[labels[0], labels[1], kind])
        .inc();
    if failure.counts_against_target()
        && upstream.record_failure(target_idx) == HealthChange::MarkedDown
    {
        gw.metrics.target_healthy.with_label_values(&labels).set(0);
        warn!(gw.log, "upstream target marked down";
            "upstream" => labels[0], "target" => labels[1], "kind" => kind,
            "cooldown_secs" => upstream.settings.fail_timeout.as_secs());
    }
}

fn build_response<S>(
    req: &HttpRequest,
    resp: awc::ClientResponse<S>,
    in_flight: InFlightOwned,
) -> HttpResponse
where
    S: Stream<Item = Result<Bytes, PayloadError>> + Unpin + 'static,
{
    let status = resp.status();
    let mut builder = HttpResponse::build(status);
    for_each_end_to_end(resp.headers(), &[], |name, value| {
        builder.append_header((name.clone(), value.clone()));
    });
    let length = resp
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let bodiless = req.method() == Method::HEAD
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    if bodiless {
        return match length {
            // An empty unsized body with chunking off is the one shape in which
            // actix-http keeps the upstream's Content-Length (HEAD, 304).
            Some(len) => {
                builder
                    .no_chunking(len)
                    .body(BodyStream::new(futures_util::stream::empty::<
                        Result<Bytes, PayloadError>,
                    >()))
            }
            None => builder.finish(),
        };
    }
    let body = ResponseBody {
        inner: resp,
        in_flight: Some(in_flight),
    };
    match length {
        Some(len) => builder.body(SizedStream::new(len, body)),
        None => builder.body(BodyStream::new(body)),
    }
}
