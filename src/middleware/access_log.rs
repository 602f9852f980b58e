//! Second stage: measures and records every request, whatever answers it
//! (`telemetry::access_log` does the counting and writes the line).
//! It wraps everything after it, so gateway-made errors are counted and
//! logged like proxied responses; a streamed body's line is written when
//! the body ends (`telemetry::logged_body`). It pins the request to the current
//! settings generation (`state::Pinned`) for every later stage. During the drain delay it marks every
//! response `Connection: close`.

use std::time::Instant;

use actix_web::body::{BodySize, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{header, ConnectionType};
use actix_web::middleware::Next;
use actix_web::{web, Error, HttpMessage};

use crate::state::{Live, Pinned};
use crate::telemetry::access_log::{Exchange, InFlight, WorkerTelemetry};
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
    let deferred = bytes_out.is_none() && result.is_ok();
    {
        // The extensions stay borrowed while the line is written: nothing
        // is copied out of them.
        let ext = result.as_ref().ok().map(|res| res.request().extensions());
        let exchange = Exchange {
            method: &method,
            uri: &uri,
            status,
            elapsed,
            bytes_in,
            bytes_out,
            user_agent: user_agent.as_ref().map(|ua| ua.as_bytes()),
            ext: ext.as_deref(),
        };
        worker.count(&gw, &exchange);
        if !deferred {
            worker.log(&gw, &exchange);
        }
    }
    if !deferred {
        return result.map(|res| res.map_body(|_, body| LoggedBody::logged(body)));
    }
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
                    bytes_out: 0,
                },
            )
        })
    })
}
