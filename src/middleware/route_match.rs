//! Third stage: decides which route (if any) a request belongs to.
//!
//! Resolves the client IP per `trusted_proxies` (`ClientInfo`), then asks
//! the route table to normalise the path and find the route
//! (`RouteTable::match_request`; `/public/../admin` is matched as
//! `/admin`). Answers 400 (unsafe path), 404 (no route) or 405 (route
//! exists, method not allowed) itself; on a match it records
//! `MatchedRoute` for the later stages. The gateway's own `/oauth2/*`
//! endpoints pass without a route.

use std::net::{IpAddr, Ipv4Addr};

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage};

use crate::context::{reject, ClientInfo};
use crate::error::GatewayError;
use crate::state::Pinned;

pub async fn route_match(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    let Some(gw) = Pinned::of(&req) else {
        return Ok(reject(req, GatewayError::Internal));
    };
    let peer = req
        .peer_addr()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| a.ip());
    let client = ClientInfo::resolve(peer, req.headers(), &gw.settings.server.trusted_proxies);
    req.extensions_mut().insert(client);

    // The gateway's own login endpoints are served by the App, not proxied.
    if gw.serves_oauth2(req.path()) {
        return Ok(next.call(req).await?.map_into_left_body());
    }
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().host());
    match gw.routes.match_request(host, req.method(), req.path()) {
        Ok(matched) => {
            req.extensions_mut().insert(matched);
            Ok(next.call(req).await?.map_into_left_body())
        }
        Err(err) => Ok(reject(req, err)),
    }
}
