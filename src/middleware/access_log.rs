//! First stage: gives every request its id and records it, whatever
//! answers it. It wraps everything after it, so gateway-made errors are
//! recorded like proxied responses.
//!
//! The id is the client's `X-Request-Id` when sane, else a new one
//! (`RequestFacts::begin`, which also notes the body's framing); it goes
//! upstream, into the access log and every gateway-made error body, and
//! back to the client. The record
//! (`telemetry::logged_body::Recording`) counts the request in flight,
//! opens its span (tracing on), and at the response head counts it and
//! writes its line; a streamed body's line and span end with the body. The
//! request is pinned to the current settings generation (`state::Pinned`);
//! during the drain delay, responses get `Connection: close`.
//!
//! It calls the route stage (`route_match`) directly rather than through
//! a layer of its own, and assigns the id itself: a layer costs a call
//! and the moves of its future per request (`crate::stage`).

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::{web, Error, HttpMessage};

use crate::context::{RequestFacts, X_REQUEST_ID};
use crate::middleware::route_match::route_match;
use crate::stage::{Next, NextService};
use crate::state::{Live, Pinned};
use crate::telemetry::access_log::{InFlight, WorkerTelemetry};
use crate::telemetry::logged_body::{LoggedBody, Recording};

pub async fn access_log(
    req: ServiceRequest,
    next: Next<impl NextService>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let (id, body) = RequestFacts::begin(&req);
    // Without them nothing can be recorded; nothing is refused either.
    let (Some(live), Some(worker)) = (
        req.app_data::<web::Data<Live>>(),
        req.app_data::<web::Data<WorkerTelemetry>>().cloned(),
    ) else {
        let mut res = route_match(req, next).await?;
        res.headers_mut().insert(X_REQUEST_ID, id);
        return Ok(res.map_body(|_, body| LoggedBody::logged(body)));
    };
    // The request runs on this generation to the end, whatever reloads.
    let gw = live.current();
    req.extensions_mut().insert(Pinned(gw.clone()));
    let recording = Recording::start(&req, worker, gw, body.declared());
    let in_flight = InFlight::enter(&recording.gateway().metrics.in_flight);
    let result = route_match(req, next).await;
    drop(in_flight);
    let mut res = recording.finish(result)?;
    res.headers_mut().insert(X_REQUEST_ID, id);
    Ok(res)
}
