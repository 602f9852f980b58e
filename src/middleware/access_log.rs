//! Second stage: measures and records every request, whatever answers it
//! (`telemetry::access_log` counts, writes the line, ends the span). It
//! wraps everything after it, so gateway-made errors are recorded like
//! proxied responses, and opens the request's span (tracing on) before
//! them. A streamed body's line and span end with it (`telemetry::logged_body`).
//! It pins the request to the current settings generation
//! (`state::Pinned`); during the drain delay, responses get `Connection: close`.

use std::time::Instant;

use actix_web::body::{BodySize, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{header, ConnectionType};
use actix_web::middleware::Next;
use actix_web::{web, Error, HttpMessage};

use crate::state::{Live, Pinned};
use crate::telemetry::access_log::{body_bytes_in, Exchange, InFlight, WorkerTelemetry};
use crate::telemetry::logged_body::{LoggedBody, PendingLine};

pub async fn access_log(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    // Without them nothing can be recorded; nothing is refused either.
    let (Some(live), Some(worker)) = (
        req.app_data::<web::Data<Live>>(),
        req.app_data::<web::Data<WorkerTelemetry>>().cloned(),
    ) else {
        let res = next.call(req).await?;
        return Ok(res.map_body(|_, body| LoggedBody::logged(body)));
    };
    // The request runs on this generation to the end, whatever reloads.
    let gw = live.current();
    req.extensions_mut().insert(Pinned(gw.clone()));
    let start = Instant::now();
    let in_flight = InFlight::enter(&gw.metrics.in_flight);
    let method = req.method().clone();
    // A Uri clone shares its bytes: cheaper than copying the path.
    let uri = req.uri().clone();
    let headers = req.headers();
    let bytes_in = match headers.get(header::CONTENT_LENGTH) {
        Some(len) => len.to_str().ok().and_then(|l| l.parse().ok()),
        None if headers.contains_key(header::TRANSFER_ENCODING) => None,
        None => Some(0),
    };
    let user_agent = headers.get(header::USER_AGENT).cloned();
    let trace = worker.start_trace(&req);

    let mut result = next.call(req).await;
    let elapsed = start.elapsed();
    drop(in_flight);
    if gw.closes_connections() {
        // Clients reconnect (to another replica) instead of sending more on
        // a connection the gateway is about to close.
        if let Ok(res) = &mut result {
            res.response_mut()
                .head_mut()
                .set_connection_type(ConnectionType::Close);
        }
    }
    let (status, bytes_out) = match &result {
        Ok(res) => (
            res.status(),
            match res.response().body().size() {
                BodySize::Sized(n) => Some(n),
                BodySize::None => Some(0),
                BodySize::Stream => None,
            },
        ),
        Err(err) => (err.as_response_error().status_code(), None),
    };
    // A streamed body's line waits for its end, to know how much was sent.
    let pending_trace = {
        // Borrowed while the line is written: nothing is copied out.
        let ext = result.as_ref().ok().map(|res| res.request().extensions());
        let exchange = Exchange {
            method: &method,
            uri: &uri,
            status,
            elapsed,
            bytes_in: body_bytes_in(bytes_in, ext.as_deref()),
            bytes_out,
            user_agent: user_agent.as_ref().map(|ua| ua.as_bytes()),
            ext: ext.as_deref(),
        };
        worker.count(&gw, &exchange);
        if bytes_out.is_none() && ext.is_some() {
            Some(trace)
        } else {
            worker.finish(&gw, &exchange, trace);
            None
        }
    };
    let Some(trace) = pending_trace else {
        return result.map(|res| res.map_body(|_, body| LoggedBody::logged(body)));
    };
    result.map(|res| {
        let request = res.request().clone();
        res.map_body(|_, body| {
            LoggedBody::counted(
                body,
                PendingLine {
                    worker,
                    gw,
                    request,
                    method,
                    uri,
                    status,
                    elapsed,
                    bytes_in,
                    user_agent,
                    trace: Some(trace),
                    bytes_out: 0,
                },
            )
        })
    })
}
