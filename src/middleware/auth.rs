//! Auth stage: who is calling, and may they use the matched route
//! (`Auth::identify`: session cookie or bearer token, then `require`).
//!
//! Runs after route matching, before rate limiting (so `user` rate-limit
//! keys see the subject). Refusals: 302 to `/oauth2/login` for browsers on
//! session routes, 401, 403, or 503 when the session store or provider
//! cannot answer. On success the `Arc<Identity>` goes into the request
//! extensions: the access log, the rate limiter (`user` keys) and the
//! proxy (`X-Auth-*`) read it from there. Fails closed: without the shared
//! state, a request for an authenticated route gets 500.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::{Error, HttpMessage};

use crate::context::{reject, request_id_of, respond, RequestFacts};
use crate::error::GatewayError;
use crate::settings::AuthMode;
use crate::stage::{Next, NextService};
use crate::state::Pinned;

/// The request's route authenticates (or the state is missing: the stage
/// then refuses it). Requests without a route, the gateway's own `/oauth2`
/// endpoints, need no identity.
pub fn needed(req: &ServiceRequest) -> bool {
    let ext = req.extensions();
    match &RequestFacts::of(&ext).matched {
        Some(matched) => matched.authenticates,
        None => ext.get::<Pinned>().is_none(),
    }
}

pub async fn authenticate(
    req: ServiceRequest,
    next: Next<impl NextService>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    let Some(gw) = Pinned::of(&req) else {
        return Ok(reject(req, GatewayError::Internal));
    };
    // No route: the gateway's own /oauth2 endpoints, which need no identity.
    let route_index = RequestFacts::of(&req.extensions()).route_index();
    let Some(route_index) = route_index else {
        return Ok(next.call(req).await?.map_into_left_body());
    };
    let route = gw.routes.get(route_index);
    if route.auth == AuthMode::None {
        return Ok(next.call(req).await?.map_into_left_body());
    }
    let Some(auth) = gw.auth.as_ref() else {
        return Ok(reject(req, GatewayError::Internal));
    };
    match auth.identify(req.request(), route_index, route).await {
        Ok(identity) => {
            req.extensions_mut().insert(identity);
            Ok(next.call(req).await?.map_into_left_body())
        }
        Err(refusal) => {
            let res = refusal.into_response(&request_id_of(&req));
            Ok(respond(req, res))
        }
    }
}
