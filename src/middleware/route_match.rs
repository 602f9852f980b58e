//! Third stage: decides which route (if any) a request belongs to.
//! First it holds the request head to `server.max_uri_bytes` (414) and
//! `server.max_header_bytes` (431).
//!
//! Resolves the client IP per `trusted_proxies` (`ClientInfo`), then asks
//! the route table to normalise the path and find the route
//! (`RouteTable::match_request`; `/public/../admin` is matched as
//! `/admin`). Answers 400 (unsafe path), 404 (no route) or 405 (route
//! exists, method not allowed) itself; on a match it records
//! `MatchedRoute` for the later stages. The gateway's own `/oauth2/*`
//! endpoints pass without a route. A CORS preflight is matched by the
//! method it asks about, so a `cors` route need not allow OPTIONS.

use std::net::{IpAddr, Ipv4Addr};

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{header, Method};
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage};

use crate::context::{reject, ClientInfo};
use crate::error::GatewayError;
use crate::route_features::preflight_method;
use crate::settings::ServerSettings;
use crate::state::Pinned;

/// `server.max_uri_bytes` and `server.max_header_bytes`, checked before
/// anything reads the request (actix-http's own buffer limit, 128 KiB for
/// the whole head, stays behind them).
fn head_within_limits(req: &ServiceRequest, server: &ServerSettings) -> Result<(), GatewayError> {
    let target = req.uri().path_and_query().map_or(0, |pq| pq.as_str().len());
    if target > server.max_uri_bytes {
        return Err(GatewayError::UriTooLong {
            limit: server.max_uri_bytes,
        });
    }
    let headers: usize = req
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if headers > server.max_header_bytes {
        return Err(GatewayError::HeadersTooLarge {
            limit: server.max_header_bytes,
        });
    }
    Ok(())
}

pub async fn route_match(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    let Some(gw) = Pinned::of(&req) else {
        return Ok(reject(req, GatewayError::Internal));
    };
    if let Err(err) = head_within_limits(&req, &gw.settings.server) {
        return Ok(reject(req, err));
    }
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
    let mut found = gw.routes.match_request(host, req.method(), req.path());
    // A CORS preflight is about the method it names: a route with `cors`
    // answers it even when it does not allow OPTIONS itself.
    if let Some(asked) =
        preflight_method(req.method(), req.headers()).and_then(|m| Method::from_bytes(m).ok())
    {
        let for_asked = gw.routes.match_request(host, &asked, req.path());
        if let Ok(m) = &for_asked {
            if gw
                .routes
                .get(m.index)
                .features
                .as_ref()
                .is_some_and(|f| f.cors.is_some())
            {
                found = for_asked;
            }
        }
    }
    match found {
        Ok(matched) => {
            req.extensions_mut().insert(matched);
            Ok(next.call(req).await?.map_into_left_body())
        }
        Err(err) => Ok(reject(req, err)),
    }
}
