//! Part of the route stage, only for routes that set IP rules, `cors`,
//! `response_headers` or `compress` (`route_match` calls it, boxed; other
//! routes never enter it): runs before auth so a denied address or a CORS
//! preflight never reaches auth, rate limits or the upstream, and shapes
//! every response of the route on its way out, gateway errors included.
//! The work is `crate::route_features`.

use actix_http::encoding::Encoder;
use actix_web::body::EitherBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::ORIGIN;
use actix_web::{Error, HttpMessage};

use crate::context::{reject, request_id_of, respond, RequestFacts};
use crate::error::GatewayError;
use crate::route_features::{admit, finish, refusal_response, Refusal};
use crate::stage::{Next, NextService};
use crate::state::Pinned;

/// The body of a shaped exchange: the inner response as it came, or
/// compressed; or the stage's own answer (403, preflight).
pub type ShapedBody<B> = EitherBody<EitherBody<B, Encoder<B>>>;

pub async fn shape_exchange<S: NextService>(
    req: ServiceRequest,
    next: Next<S>,
) -> Result<ServiceResponse<ShapedBody<S::Body>>, Error> {
    let found = {
        let ext = req.extensions();
        let facts = RequestFacts::of(&ext);
        match (ext.get::<Pinned>(), &facts.matched, facts.client) {
            (Some(gw), Some(m), Some(client)) => Some((gw.clone(), m.index, client.ip)),
            _ => None,
        }
    };
    let Some((gw, index, client_ip)) = found else {
        return Ok(reject(req, GatewayError::Internal));
    };
    let route = gw.routes.get(index);
    let Some(features) = route.features.as_deref() else {
        return Ok(next
            .call(req)
            .await?
            .map_into_left_body()
            .map_into_left_body());
    };
    match admit(features, &req, req.method(), client_ip) {
        Ok(plan) => {
            let res = next.call(req).await?;
            Ok(finish(features, plan, res).map_into_left_body())
        }
        Err(refusal) => {
            if let Refusal::IpDenied = refusal {
                gw.metrics
                    .route_ip_denied
                    .with_label_values(&[route.name.as_str()])
                    .inc();
            }
            let origin = req.headers().get(ORIGIN).cloned();
            let res = refusal_response(features, refusal, origin.as_ref(), &request_id_of(&req));
            Ok(respond(req, res))
        }
    }
}
