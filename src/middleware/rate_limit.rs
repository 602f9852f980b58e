//! Rate-limit stage: every policy of the matched route (or, for the
//! gateway's own `/oauth2/*` endpoints, of `auth.rate_limit`) must admit
//! the request (`RateLimiting::decide`); a refusal answers 429 with
//! `Retry-After`, a cluster policy that cannot be decided with
//! `on_store_error: deny` 503. Responses of limited routes carry
//! `RateLimit-Limit/Remaining/Reset` of the tightest policy.
//!
//! Runs after route matching (it needs the route and the client IP) and
//! after auth (for `user` keys), right before the proxy. Fails closed:
//! without the shared state or the worker's limiter, 500.

use std::sync::Arc;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::{web, Error, HttpMessage};

use crate::auth::identity::Identity;
use crate::context::{reject, RequestFacts};
use crate::error::GatewayError;
use crate::ratelimit::{Requester, Verdict, WorkerLimits};
use crate::stage::{Next, NextService};
use crate::state::Pinned;

/// Some policy applies to the request (or the state is missing: the
/// stage then refuses it).
pub fn needed(req: &ServiceRequest) -> bool {
    let ext = req.extensions();
    if let Some(matched) = &RequestFacts::of(&ext).matched {
        return matched.rate_limited;
    }
    let Some(gw) = ext.get::<Pinned>() else {
        return true;
    };
    gw.rate_limit_policies(None, req.path())
        .is_some_and(|(policies, _)| !policies.is_empty())
}

pub async fn rate_limit(
    req: ServiceRequest,
    next: Next<impl NextService>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    let (Some(gw), Some(worker)) = (
        Pinned::of(&req),
        req.app_data::<web::Data<WorkerLimits>>().cloned(),
    ) else {
        return Ok(reject(req, GatewayError::Internal));
    };
    let (route, client, user) = {
        let ext = req.extensions();
        let facts = RequestFacts::of(&ext);
        (
            facts.route_index(),
            facts.client,
            ext.get::<Arc<Identity>>().cloned(),
        )
    };
    let Some((policies, route_key)) = gw.rate_limit_policies(route, req.path()) else {
        return Ok(next.call(req).await?.map_into_left_body());
    };
    if policies.is_empty() {
        return Ok(next.call(req).await?.map_into_left_body());
    }
    let Some(client) = client else {
        return Ok(reject(req, GatewayError::Internal));
    };
    let who = Requester {
        ip: client.ip,
        user: user.as_deref().map(|u| u.subject.as_str()),
        route_key,
        headers: req.headers(),
    };
    match gw.rate_limits.decide(&worker, policies, &who).await {
        Verdict::Admit(tightest) => {
            let mut res = next.call(req).await?;
            if let Some(d) = tightest {
                d.write_headers(res.headers_mut());
            }
            Ok(res.map_into_left_body())
        }
        Verdict::Limit(d) => {
            let retry_after_secs = d.retry_after_secs();
            let mut res = reject(req, GatewayError::RateLimited { retry_after_secs });
            d.write_headers(res.headers_mut());
            Ok(res)
        }
        Verdict::Unavailable => Ok(reject(req, GatewayError::Unavailable)),
    }
}
