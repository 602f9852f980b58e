//! Per-route exchange shaping: the work of the `route_features` stage,
//! between route matching and auth, for routes that set IP rules, `cors`,
//! `response_headers` or `compress` (others skip the stage).
//!
//! [`admit`] runs before auth and rate limiting: a client address outside
//! the route's IP rules gets 403 `ip_denied`, a CORS preflight is answered
//! 204 by the gateway. [`finish`] shapes whatever comes back, the
//! upstream's answer or a later stage's JSON error alike: CORS headers,
//! `response_headers`, then streaming compression.

mod compress;
mod cors;

use std::net::IpAddr;

use actix_http::encoding::Encoder;
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::ServiceResponse;
use actix_web::http::header::{ContentEncoding, HeaderMap, HeaderValue, ORIGIN};
use actix_web::http::Method;
use actix_web::{HttpMessage, HttpResponse};

use crate::error::GatewayError;
use crate::settings::RouteFeatures;

pub use cors::preflight_method;

/// What [`finish`] needs to remember of the request.
pub struct ResponsePlan {
    origin: Option<HeaderValue>,
    encoding: Option<ContentEncoding>,
}

/// Why the stage answers the request itself.
pub enum Refusal {
    /// Outside the route's `allow_ips` / inside its `deny_ips`.
    IpDenied,
    /// A CORS preflight, answered here (boxed: rare and large).
    Preflight(Box<HttpResponse>),
}

/// Decides, before auth, whether the request goes on.
pub fn admit(
    features: &RouteFeatures,
    req: &impl HttpMessage,
    method: &Method,
    client_ip: IpAddr,
) -> Result<ResponsePlan, Refusal> {
    let headers = req.headers();
    if let Some(rules) = &features.ip_rules {
        if !rules.permits(client_ip) {
            return Err(Refusal::IpDenied);
        }
    }
    let origin = headers.get(ORIGIN).cloned();
    if let (Some(cors), Some(origin)) = (&features.cors, &origin) {
        if let Some(requested) = preflight_method(method, headers) {
            let answer = cors::preflight_answer(cors, origin, requested);
            return Err(Refusal::Preflight(Box::new(answer)));
        }
    }
    let encoding = features
        .compress
        .then(|| compress::negotiate(req, method))
        .flatten();
    Ok(ResponsePlan { origin, encoding })
}

/// The JSON error (or preflight answer) for a refusal, shaped like any
/// other response of the route.
pub fn refusal_response(
    features: &RouteFeatures,
    refusal: Refusal,
    origin: Option<&HeaderValue>,
    request_id: &str,
) -> HttpResponse {
    let mut res = match refusal {
        Refusal::IpDenied => GatewayError::IpDenied.to_response(request_id),
        Refusal::Preflight(res) => *res,
    };
    shape_head(features, origin, res.headers_mut());
    res
}

/// CORS headers for an allowed origin, then the route's header rules.
fn shape_head(features: &RouteFeatures, origin: Option<&HeaderValue>, headers: &mut HeaderMap) {
    if let (Some(cors), Some(origin)) = (&features.cors, origin) {
        cors::decorate(cors, origin, headers);
    }
    if let Some(rules) = &features.response_headers {
        rules.apply(headers);
    }
}

/// Shapes a response on its way back to the client.
pub fn finish<B: MessageBody + 'static>(
    features: &RouteFeatures,
    plan: ResponsePlan,
    mut res: ServiceResponse<B>,
) -> ServiceResponse<EitherBody<B, Encoder<B>>> {
    shape_head(features, plan.origin.as_ref(), res.headers_mut());
    match plan.encoding {
        Some(encoding)
            if compress::eligible(res.response().head(), &res.response().body().size()) =>
        {
            res.map_body(|head, body| EitherBody::right(Encoder::response(encoding, head, body)))
        }
        _ => res.map_into_left_body(),
    }
}
