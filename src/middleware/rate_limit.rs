//! Rate-limit stage: every policy of the matched route (or, for the
//! gateway's own `/oauth2/*` endpoints, of `auth.rate_limit`) must admit
//! the request; the first refusal answers 429 with `Retry-After`.
//!
//! Runs after route matching (it needs the route and the client IP) and
//! after auth (for `user` keys), right before the proxy. Local policies are
//! decided in the worker; cluster policies ask Redis through the
//! RateLimiter actor and, when Redis cannot answer, follow the policy's
//! `on_store_error` (local fallback, allow, or deny with 503). Responses of
//! limited routes carry `RateLimit-Limit/Remaining/Reset` of the tightest
//! policy.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{web, Error, HttpMessage};

use std::sync::Arc;

use super::context::{request_id_of, ClientInfo, MatchedRoute};
use crate::auth::Identity;
use crate::error::GatewayError;
use crate::ratelimit::store::WorkerCluster;
use crate::ratelimit::{ceil_secs, key_material, Decision};
use crate::settings::{OnStoreError, RateLimitScope};
use crate::state::Gateway;

pub const RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
pub const RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
pub const RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");

/// What `key: route` counts for the /oauth2/* endpoints: one budget for
/// the four of them, apart from every route's (route keys are indices).
const OAUTH2_ROUTE_KEY: usize = usize::MAX;

fn set_headers(headers: &mut HeaderMap, d: &Decision) {
    headers.insert(RATELIMIT_LIMIT, HeaderValue::from(d.limit));
    headers.insert(RATELIMIT_REMAINING, HeaderValue::from(d.remaining));
    headers.insert(RATELIMIT_RESET, HeaderValue::from(ceil_secs(d.reset_after)));
}

pub async fn rate_limit(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    let Some(gw) = req.app_data::<web::Data<Gateway>>().cloned() else {
        return Ok(next.call(req).await?.map_into_left_body());
    };
    let (route_idx, client_ip, user) = {
        let ext = req.extensions();
        (
            ext.get::<MatchedRoute>().map(|m| m.index),
            ext.get::<ClientInfo>().map(|c| c.ip),
            ext.get::<Arc<Identity>>().cloned(),
        )
    };
    let Some(client_ip) = client_ip else {
        return Ok(next.call(req).await?.map_into_left_body());
    };
    // A proxied route's policies, or `auth.rate_limit` for the gateway's
    // own /oauth2/* endpoints (which match no route).
    let (policies, route_key) = match route_idx {
        Some(idx) => (gw.routes.get(idx).rate_limits.as_slice(), idx),
        None if gw.serves_oauth2(req.path()) => {
            (gw.settings.auth_rate_limits.as_slice(), OAUTH2_ROUTE_KEY)
        }
        None => return Ok(next.call(req).await?.map_into_left_body()),
    };
    if policies.is_empty() {
        return Ok(next.call(req).await?.map_into_left_body());
    }
    let worker_cluster = req.app_data::<web::Data<WorkerCluster>>().cloned();
    let cluster = worker_cluster.as_ref().and_then(|w| w.0.as_ref());

    let mut tightest: Option<Decision> = None;
    for &policy_idx in policies {
        let policy = &gw.rate_limits.policies[policy_idx];
        let material = key_material(
            &policy.settings.key,
            client_ip,
            user.as_deref().map(|u| u.subject.as_str()),
            route_key,
            req.headers(),
        );
        let local_key = gw.rate_limits.local_key(&material);
        let (decision, outcome) = match (policy.settings.scope, cluster) {
            (RateLimitScope::Cluster, Some(store)) => {
                let key = format!(
                    "gw:rl:{}:{{{}}}",
                    policy.settings.name,
                    material.stable_digest()
                );
                match store.decide(key, policy.interval, policy.capacity).await {
                    Ok(d) => (Some(d), if d.allowed { "allowed" } else { "limited" }),
                    Err(_) => match policy.settings.on_store_error {
                        OnStoreError::Local => {
                            let d = policy.check_local(local_key);
                            (
                                Some(d),
                                if d.allowed {
                                    "fallback_allowed"
                                } else {
                                    "fallback_limited"
                                },
                            )
                        }
                        OnStoreError::Allow => (None, "store_error_allowed"),
                        OnStoreError::Deny => {
                            gw.metrics
                                .ratelimit_decisions
                                .with_label_values(&[&policy.settings.name, "store_error_denied"])
                                .inc();
                            let id = request_id_of(&req);
                            let res = GatewayError::Unavailable.to_response(&id);
                            return Ok(req.into_response(res).map_into_right_body());
                        }
                    },
                }
            }
            _ => {
                let d = policy.check_local(local_key);
                (Some(d), if d.allowed { "allowed" } else { "limited" })
            }
        };
        match outcome {
            "allowed" => gw.ratelimit_counters[policy_idx][0].inc(),
            "limited" => gw.ratelimit_counters[policy_idx][1].inc(),
            _ => gw
                .metrics
                .ratelimit_decisions
                .with_label_values(&[&policy.settings.name, outcome])
                .inc(),
        }
        let Some(d) = decision else { continue };
        if !d.allowed {
            let id = request_id_of(&req);
            let mut res = GatewayError::RateLimited {
                retry_after_secs: ceil_secs(d.retry_after).max(1),
            }
            .to_response(&id);
            set_headers(res.headers_mut(), &d);
            return Ok(req.into_response(res).map_into_right_body());
        }
        if tightest.is_none_or(|t| d.remaining < t.remaining) {
            tightest = Some(d);
        }
    }

    let mut res = next.call(req).await?;
    if let Some(d) = tightest {
        set_headers(res.headers_mut(), &d);
    }
    Ok(res.map_into_left_body())
}
