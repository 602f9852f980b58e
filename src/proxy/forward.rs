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
use std::net::IpAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use actix_http::body::{BodyStream, SizedStream};
use actix_web::dev::{Payload, ServiceResponse};
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::http::Method;
use actix_web::{web, Error, HttpMessage, HttpRequest, HttpResponse};
use slog::{debug, warn};

use super::balancer::{HealthChange, Outcome};
use super::body::{build_response, InFlightOwned, LimitedBody};
use super::clients::{UpstreamClients, WorkerClients};
use super::failure::UpstreamFailure;
use super::headers::{for_each_upstream_header, forwarded_for};
use super::upstream_path::{retry_path, upstream_path_and_query};
use super::websocket::{self, HandshakeHeaders, Tunnel};
use crate::auth::browser::cookie_of;
use crate::auth::identity::Identity;
use crate::context::{
    request_id_of, BodyFraming, ClientInfo, RequestFacts, RequestId, StreamedBytesIn, TraceParent,
    UpstreamUsed, TRACEPARENT, X_FORWARDED_FOR, X_FORWARDED_HOST, X_FORWARDED_PROTO, X_REQUEST_ID,
};
use crate::error::GatewayError;
use crate::settings::HashKey;
use crate::state::{Gateway, Pinned};

fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

/// The proxy stage's call (`middleware::proxy`): forwards the matched
/// request upstream and answers with the upstream's response, or with the
/// JSON error of what went wrong.
pub async fn forward(req: HttpRequest, payload: Payload) -> Result<ServiceResponse, Error> {
    let state = (
        Pinned::of(&req),
        req.app_data::<web::Data<WorkerClients>>().cloned(),
    );
    let res = match state {
        (Some(gw), Some(clients)) => exchange(req.clone(), payload, gw, clients).await,
        // Both are wired in by `server.rs` before any request arrives.
        _ => GatewayError::Internal.to_response(&request_id_of(&req)),
    };
    Ok(ServiceResponse::new(req, res))
}

async fn exchange(
    req: HttpRequest,
    payload: Payload,
    gw: Pinned,
    worker_clients: web::Data<WorkerClients>,
) -> HttpResponse {
    let (request_id, matched, client, body) = {
        let ext = req.extensions();
        let facts = RequestFacts::of(&ext);
        let matched = facts
            .matched
            .as_ref()
            .map(|m| Ok((m.index, upstream_path_and_query(&req, &gw, m)?)));
        (facts.request_id.clone(), matched, facts.client, facts.body)
    };
    let request_id = request_id.unwrap_or_else(|| RequestId(HeaderValue::from_static("-")));
    let fail = |err: GatewayError| err.to_response(request_id.as_str());
    let (Some(matched), Some(client)) = (matched, client) else {
        // The route stage always runs first; reaching here without it is a bug.
        return fail(GatewayError::Internal);
    };
    let (route_index, path_and_query) = match matched {
        Ok(found) => found,
        Err(err) => return fail(err),
    };

    let clients = worker_clients.for_generation(gw.clients_generation, &gw.settings.upstreams);
    let route = gw.routes.get(route_index);
    let features = route.features.as_deref();
    let upstream_idx = match features.and_then(|f| f.split.as_ref()) {
        Some(split) => split.pick(fastrand::u32(..split.total)),
        None => route.upstream,
    };
    let upstream = &gw.upstreams[upstream_idx];
    let limit = features
        .and_then(|f| f.max_body_bytes)
        .unwrap_or(gw.settings.server.max_body_bytes);
    let timeout = features
        .and_then(|f| f.timeout)
        .unwrap_or(upstream.settings.request_timeout);

    // Read by the access-log stage; from the head again only without it.
    let body_kind = body.unwrap_or_else(|| BodyFraming::of(req.head()));
    match body_kind {
        BodyFraming::Unparseable => {
            return fail(GatewayError::BadRequest("unparseable Content-Length"))
        }
        BodyFraming::Sized(len) if len > limit => {
            return fail(GatewayError::BodyTooLarge { limit })
        }
        _ => {}
    }

    let incoming = req.headers();
    let identity = req.extensions().get::<Arc<Identity>>().cloned();
    let identity_headers = identity
        .as_deref()
        .map_or(&[][..], Identity::upstream_headers);

    if websocket::is_upgrade(&req) {
        let mut extra = Vec::with_capacity(5 + identity_headers.len());
        for_each_gateway_header(
            &req,
            &client,
            &request_id,
            route.preserve_host,
            |name, value| extra.push((name, value)),
        );
        extra.extend(identity_headers.iter().cloned());
        // Boxed: rare, and large enough to bloat every request's future.
        return Box::pin(upgrade(
            &req,
            payload,
            &gw,
            &clients,
            upstream_idx,
            &path_and_query,
            HandshakeHeaders {
                extra,
                rules: features.and_then(|f| f.request_headers.as_ref()),
            },
        ))
        .await
        .unwrap_or_else(fail);
    }

    // The first attempt's URI takes the path; a retry (rare) builds it
    // again, so the usual request never clones it.
    let mut first_path = Some(path_and_query);
    let retryable = is_idempotent(req.method()) && body_kind == BodyFraming::None;
    let max_attempts = if retryable {
        1 + upstream.settings.retries as usize
    } else {
        1
    };
    let mut payload = Some(payload);
    let mut tried: Vec<usize> = Vec::new();
    // Set by a chunked body that passes the limit (allocated only for one).
    let mut exceeded: Option<Rc<Cell<bool>>> = None;
    let hash = upstream
        .settings
        .hash_key
        .as_ref()
        .and_then(|key| hash_of(key, &req, client.ip, identity.as_deref()));
    let retry_on = features.map_or(&[][..], |f| f.retry_on.as_slice());
    // Held while a retry is in flight (the upstream's retry budget).
    let mut retry_held: Option<RetryPlace> = None;
    let mut status_retried = false;

    loop {
        // With every target tried, a retry may go back to one still marked
        // healthy (a single-target upstream, or a stale pooled connection).
        let pick = upstream
            .pick_keyed(&tried, hash)
            .or_else(|| (!tried.is_empty()).then(|| upstream.pick(&[])).flatten());
        let Some(target_idx) = pick else {
            return fail(if tried.is_empty() {
                GatewayError::NoHealthyUpstream
            } else {
                GatewayError::UpstreamConnect
            });
        };
        let target = &upstream.targets[target_idx];
        let path = match first_path.take() {
            Some(path) => path,
            None => match retry_path(&req, &gw) {
                Ok(path) => path,
                Err(err) => return fail(err),
            },
        };
        // Target URLs are validated settings: only the path can be at fault.
        let Some(uri) = target.uri_for(path) else {
            return fail(GatewayError::BadPath);
        };
        let mut up = clients
            .for_requests(upstream_idx)
            .request(req.method().clone(), uri)
            .no_decompress();
        if features.is_some_and(|f| f.timeout.is_some()) {
            up = up.timeout(timeout);
        }
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
            // Built for each attempt: the values move into the request.
            for_each_gateway_header(
                &req,
                &client,
                &request_id,
                route.preserve_host,
                |name, value| h.append(name, value),
            );
            for (name, value) in identity_headers {
                h.append(name.clone(), value.clone());
            }
            if let Some(rules) = features.and_then(|f| f.request_headers.as_ref()) {
                rules.apply(h);
            }
        }

        let in_flight = InFlightOwned::begin(&gw, upstream_idx, target_idx);
        let sent_at = Instant::now();
        let result = match body_kind {
            BodyFraming::None => up.send_body(actix_http::body::None::new()).await,
            // Refused before the loop.
            BodyFraming::Unparseable => return fail(GatewayError::Internal),
            BodyFraming::Sized(len) => match payload.take() {
                Some(p) => up.send_body(SizedStream::new(len, p)).await,
                None => return fail(GatewayError::Internal),
            },
            BodyFraming::Streamed => match payload.take() {
                Some(p) => {
                    let seen = StreamedBytesIn::default();
                    req.extensions_mut().insert(seen.clone());
                    let body = LimitedBody {
                        inner: p,
                        seen: seen.0,
                        limit,
                        exceeded: exceeded.get_or_insert_with(Rc::default).clone(),
                    };
                    up.send_body(BodyStream::new(body)).await
                }
                None => return fail(GatewayError::Internal),
            },
        };
        let head_after = sent_at.elapsed();
        let used = UpstreamUsed {
            upstream: upstream_idx,
            target: target_idx,
            head_after,
        };
        RequestFacts::record(&req, |facts| facts.upstream = Some(used));
        let labels = [upstream.settings.name.as_str(), target.url.as_str()];

        if let Ok(resp) = &result {
            let status = resp.status().as_u16();
            gw.upstream_histograms[upstream_idx][target_idx].observe(head_after.as_secs_f64());
            let change = upstream.record(target_idx, Outcome::of_status(status));
            note_health(&gw, upstream_idx, target_idx, change, "5xx");
            // A `retry_on` status: retried once, within the retry budget.
            if retryable && !status_retried && retry_on.contains(&status) {
                if let Some(place) = RetryPlace::take(&gw, upstream_idx) {
                    drop(result);
                    drop(in_flight);
                    count_retry(&gw, upstream_idx, "status");
                    retry_held.replace(place);
                    status_retried = true;
                    tried.push(target_idx);
                    continue;
                }
            }
        }
        match result {
            Ok(resp) => {
                // request_timeout_ms covers the body too: awc re-arms the
                // timer it used for the head (no new allocation) for the
                // same deadline, known without reading the clock again.
                let resp = match sent_at.checked_add(timeout) {
                    Some(deadline) => resp.timeout_at(deadline),
                    // Beyond any clock: no deadline at all.
                    None => resp,
                };
                // The count now travels with the response body.
                return build_response(&req, resp, in_flight);
            }
            Err(err) => {
                drop(in_flight);
                let body_exceeded = exceeded.as_ref().is_some_and(|e| e.get()).then_some(limit);
                let failure = UpstreamFailure::of_request(&err, body_exceeded);
                debug!(gw.log, "upstream exchange failed";
                    "upstream" => labels[0], "target" => labels[1],
                    "kind" => failure.kind(), "error" => %err,
                    "request_id" => request_id.as_str());
                report_failure(&gw, upstream_idx, target_idx, failure);
                if failure.may_retry() {
                    tried.push(target_idx);
                    if tried.len() < max_attempts {
                        if let Some(place) = RetryPlace::take(&gw, upstream_idx) {
                            count_retry(&gw, upstream_idx, failure.kind().unwrap_or("other"));
                            retry_held.replace(place);
                            continue;
                        }
                    }
                }
                return fail(failure.gateway_error());
            }
        }
    }
}

/// The headers the gateway sets on every upstream request of an exchange,
/// each handed to `add`: `X-Forwarded-For`, `-Proto` and `-Host`,
/// `X-Request-Id`, with tracing on `traceparent` (the gateway's span is
/// the upstream's parent; the client's is in the skip list then), and with
/// `preserve_host` the client's `Host`.
fn for_each_gateway_header(
    req: &HttpRequest,
    client: &ClientInfo,
    request_id: &RequestId,
    preserve_host: bool,
    mut add: impl FnMut(HeaderName, HeaderValue),
) {
    let incoming = req.headers();
    if let Some(v) = forwarded_for(client, incoming) {
        add(X_FORWARDED_FOR, v);
    }
    // A peer's own forwarding headers are read only when it is trusted:
    // the usual request skips the lookups.
    let believed = |name| {
        client
            .peer_trusted
            .then(|| incoming.get(name).cloned())
            .flatten()
    };
    let proto = match believed(X_FORWARDED_PROTO) {
        Some(v) => v,
        None if req.app_config().secure() => HeaderValue::from_static("https"),
        None => HeaderValue::from_static("http"),
    };
    add(X_FORWARDED_PROTO, proto);
    let host = incoming.get(header::HOST).cloned().or_else(|| {
        req.uri()
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    });
    let forwarded_host = believed(X_FORWARDED_HOST).or_else(|| host.clone());
    if let Some(fh) = forwarded_host {
        add(X_FORWARDED_HOST, fh);
    }
    add(X_REQUEST_ID, request_id.0.clone());
    if let Some(parent) = req.extensions().get::<TraceParent>() {
        add(TRACEPARENT, parent.0.clone());
    }
    if preserve_host {
        if let Some(host) = host {
            add(header::HOST, host);
        }
    }
}

/// The `consistent_hash` key of a request; `None` (round robin) when the
/// request lacks it (no user, no such header or cookie).
fn hash_of(
    key: &HashKey,
    req: &HttpRequest,
    client_ip: IpAddr,
    identity: Option<&Identity>,
) -> Option<u64> {
    use xxhash_rust::xxh3::xxh3_64;
    Some(match key {
        HashKey::Ip => match client_ip {
            IpAddr::V4(v4) => xxh3_64(&v4.octets()),
            IpAddr::V6(v6) => xxh3_64(&v6.octets()),
        },
        HashKey::User => xxh3_64(identity?.subject.as_bytes()),
        HashKey::Header(name) => xxh3_64(req.headers().get(name)?.as_bytes()),
        HashKey::Cookie(name) => xxh3_64(cookie_of(req, name)?.as_bytes()),
    })
}

/// A place in the upstream's retry budget, given back when dropped.
struct RetryPlace {
    gw: Pinned,
    upstream: usize,
}

impl RetryPlace {
    fn take(gw: &Pinned, upstream: usize) -> Option<Self> {
        gw.upstreams[upstream].begin_retry().then(|| Self {
            gw: gw.clone(),
            upstream,
        })
    }
}

impl Drop for RetryPlace {
    fn drop(&mut self) {
        self.gw.upstreams[self.upstream].end_retry();
    }
}

fn count_retry(gw: &Gateway, upstream: usize, reason: &str) {
    gw.metrics
        .upstream_retries
        .with_label_values(&[gw.upstreams[upstream].settings.name.as_str(), reason])
        .inc();
}

/// Proxies a WebSocket upgrade to one target (no retries: the client's
/// handshake is answered only once the upstream's has succeeded).
async fn upgrade(
    req: &HttpRequest,
    payload: Payload,
    gw: &Pinned,
    clients: &UpstreamClients,
    upstream_idx: usize,
    path_and_query: &[u8],
    added: HandshakeHeaders<'_>,
) -> Result<HttpResponse, GatewayError> {
    if !websocket::has_key(req) {
        return Err(GatewayError::BadRequest(
            "WebSocket upgrade without Sec-WebSocket-Key",
        ));
    }
    let upstream = &gw.upstreams[upstream_idx];
    let target_idx = upstream.pick(&[]).ok_or(GatewayError::NoHealthyUpstream)?;
    let target = &upstream.targets[target_idx];
    let used = UpstreamUsed {
        upstream: upstream_idx,
        target: target_idx,
        head_after: std::time::Duration::ZERO,
    };
    RequestFacts::record(req, |facts| facts.upstream = Some(used));
    let in_flight = InFlightOwned::begin(gw, upstream_idx, target_idx);
    let tunnel = Tunnel {
        client: clients.for_tunnels(upstream_idx),
        // Written from text, so the bytes are UTF-8 (nothing is lost).
        url: format!("{}{}", target.url, String::from_utf8_lossy(path_and_query)),
        added,
        skip: &gw.request_skip,
        gateway_cookies: &gw.gateway_cookies,
    };
    match websocket::open(req, payload, tunnel, in_flight).await {
        Ok(res) => {
            let change = upstream.record_success(target_idx);
            note_health(gw, upstream_idx, target_idx, change, "answer");
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
        let change = upstream.record_success(target_idx);
        note_health(gw, upstream_idx, target_idx, change, "answer");
        return;
    };
    gw.metrics
        .upstream_errors
        .with_label_values(&[labels[0], labels[1], kind])
        .inc();
    if failure.counts_against_target() {
        let change = upstream.record(target_idx, Outcome::Failed);
        note_health(gw, upstream_idx, target_idx, change, kind);
    }
}

/// Logs and exports a target's circuit opening (`kind`: what opened it)
/// or closing.
fn note_health(
    gw: &Gateway,
    upstream_idx: usize,
    target_idx: usize,
    change: HealthChange,
    kind: &str,
) {
    if change == HealthChange::None {
        return;
    }
    let upstream = &gw.upstreams[upstream_idx];
    let labels = [
        upstream.settings.name.as_str(),
        upstream.targets[target_idx].url.as_str(),
    ];
    if change == HealthChange::MarkedDown {
        gw.metrics.target_healthy.with_label_values(&labels).set(0);
        warn!(gw.log, "upstream target marked down";
            "upstream" => labels[0], "target" => labels[1], "kind" => kind,
            "cooldown_secs" => upstream.settings.fail_timeout.as_secs());
    } else {
        gw.metrics.target_healthy.with_label_values(&labels).set(1);
        warn!(gw.log, "upstream target recovered";
            "upstream" => labels[0], "target" => labels[1]);
    }
}
