//! Third stage: decides which route (if any) a request belongs to.
//!
//! Normalises the path (so `/public/../admin` is matched as `/admin`, see
//! `routing::normalize_path`), looks it up in the compiled route table, and
//! resolves the client IP per `trusted_proxies`. Answers 400 (unsafe path),
//! 404 (no route) or 405 (route exists, method not allowed) itself; on a
//! match it records `MatchedRoute` and `ClientInfo` for the later stages.

use std::net::{IpAddr, Ipv4Addr};

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::{web, Error, HttpMessage};

use super::context::{request_id_of, ClientInfo, MatchedRoute};
use crate::error::GatewayError;
use crate::proxy::headers::{client_ip, is_trusted};
use crate::routing::{is_normal, normalize_path, RouteMatch};
use crate::state::Gateway;

pub async fn route_match(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    let Some(gw) = req.app_data::<web::Data<Gateway>>().cloned() else {
        return Ok(next.call(req).await?.map_into_left_body());
    };
    let trusted = &gw.settings.server.trusted_proxies;
    let peer = req
        .peer_addr()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| a.ip());
    let peer_trusted = !trusted.is_empty() && is_trusted(peer, trusted);
    let ip = client_ip(peer, req.headers(), trusted);
    req.extensions_mut().insert(ClientInfo {
        ip,
        peer,
        peer_trusted,
    });

    let raw = req.path();
    // The gateway's own login endpoints are served by the App, not proxied.
    if gw.serves_oauth2(raw) {
        return Ok(next.call(req).await?.map_into_left_body());
    }
    let normalized = if is_normal(raw) {
        None
    } else {
        match normalize_path(raw) {
            Some(path) => Some(path),
            None => return Ok(reject(req, GatewayError::BadPath)),
        }
    };
    let path = normalized.as_deref().unwrap_or(raw);
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().host());
    match gw.routes.find(host, req.method(), path) {
        RouteMatch::Found(index) => {
            req.extensions_mut()
                .insert(MatchedRoute { index, normalized });
            Ok(next.call(req).await?.map_into_left_body())
        }
        RouteMatch::MethodNotAllowed(allow) => {
            Ok(reject(req, GatewayError::MethodNotAllowed { allow }))
        }
        RouteMatch::NotFound => Ok(reject(req, GatewayError::NoRoute)),
    }
}

fn reject<B>(req: ServiceRequest, err: GatewayError) -> ServiceResponse<EitherBody<B>> {
    let id = request_id_of(&req);
    req.into_response(err.to_response(&id))
        .map_into_right_body()
}
