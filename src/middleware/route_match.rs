//! Second stage (called by the access-log stage, not a layer of its own):
//! decides which route (if any) a request belongs to.
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
//! method it asks about, so a `cors` route need not allow OPTIONS. Routes
//! with IP rules, CORS, response headers or compression go on through
//! `route_features` (boxed, so other routes' futures do not grow).

use std::net::{IpAddr, Ipv4Addr};

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{header, Method};
use actix_web::Error;

use crate::context::{header_text, reject, ClientInfo, RequestFacts};
use crate::error::GatewayError;
use crate::middleware::route_features::{shape_exchange, ShapedBody};
use crate::route_features::preflight_method;
use crate::settings::ServerSettings;
use crate::stage::{Next, NextService};
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

pub async fn route_match<S: NextService>(
    req: ServiceRequest,
    next: Next<S>,
) -> Result<ServiceResponse<EitherBody<ShapedBody<S::Body>>>, Error> {
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
    RequestFacts::record(&req, |facts| facts.client = Some(client));

    // The gateway's own login endpoints are served by the App, not proxied.
    if gw.serves_oauth2(req.path()) {
        return Ok(unshaped(next.call(req).await?));
    }
    let host = if gw.routes.matches_hosts() {
        req.headers()
            .get(header::HOST)
            .and_then(header_text)
            .or_else(|| req.uri().host())
    } else {
        None
    };
    // A CORS preflight is about the method it names: a route with `cors`
    // answers it even when it does not allow OPTIONS itself.
    let preflight = preflight_method(req.method(), req.headers())
        .and_then(|m| Method::from_bytes(m).ok())
        .and_then(|asked| gw.routes.match_cors_preflight(host, &asked, req.path()));
    let found = match preflight {
        Some(matched) => Ok(matched),
        None => gw.routes.match_request(host, req.method(), req.path()),
    };
    match found {
        Ok(matched) => {
            let shaped = gw.routes.get(matched.index).features.as_ref();
            let shaped = shaped.is_some_and(|f| f.shapes_exchange());
            RequestFacts::record(&req, |facts| facts.matched = Some(matched));
            if shaped {
                // Boxed: only routes with these features pay for the stage.
                let res = Box::pin(shape_exchange(req, next)).await?;
                return Ok(res.map_into_left_body());
            }
            Ok(unshaped(next.call(req).await?))
        }
        Err(err) => Ok(reject(req, err)),
    }
}

/// A response of a route without shaping features, in the stage's body
/// type (the three wrappers in one move of the response, not three).
fn unshaped<B: MessageBody + 'static>(
    res: ServiceResponse<B>,
) -> ServiceResponse<EitherBody<ShapedBody<B>>> {
    res.map_body(|_, body| EitherBody::left(EitherBody::left(EitherBody::left(body))))
}
