//! Second stage: measures and records every request, whatever answers it.
//!
//! Keeps the in-flight gauge, the per-route request counter and latency
//! histogram, and writes one JSON access-log line per request. It reads what
//! later stages put in the request extensions (route, upstream, client IP,
//! user); it never logs header values, query strings or bodies, so tokens in
//! Authorization, Cookie or URLs cannot leak into logs.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, Error, HttpMessage};
use slog::info;

use super::context::{ClientInfo, MatchedRoute, RequestId, UpstreamUsed};
use crate::state::Gateway;
use crate::telemetry::metrics::{method_label, NO_ROUTE};

/// Decrements the in-flight gauge however the request ends (even if the
/// client goes away and the future is dropped).
struct InFlightGuard<'a>(&'a prometheus::IntGauge);

impl Drop for InFlightGuard<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Identity of the caller, set by the auth stage when it knows one.
#[derive(Clone)]
pub struct AuthenticatedUser(pub String);

pub async fn access_log(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let Some(gw) = req.app_data::<web::Data<Gateway>>().cloned() else {
        return next.call(req).await;
    };
    let start = Instant::now();
    gw.metrics.in_flight.inc();
    let _in_flight = InFlightGuard(&gw.metrics.in_flight);
    let method = req.method().clone();
    // A Uri clone shares its bytes: cheaper than copying the path.
    let uri = req.uri().clone();

    let result = next.call(req).await;
    let elapsed = start.elapsed();
    let status = match &result {
        Ok(res) => res.status(),
        Err(err) => err.as_response_error().status_code(),
    };

    let (route_idx, request_id, client_ip, upstream, user) = match &result {
        Ok(res) => {
            let ext = res.request().extensions();
            (
                ext.get::<MatchedRoute>().map(|m| m.index),
                ext.get::<RequestId>().map(|id| id.as_str().to_owned()),
                ext.get::<ClientInfo>().map(|c| c.ip),
                ext.get::<UpstreamUsed>().copied(),
                ext.get::<AuthenticatedUser>().map(|u| u.0.clone()),
            )
        }
        Err(_) => (None, None, None, None, None),
    };
    let route_name = route_idx.map_or(NO_ROUTE, |i| gw.routes.get(i).name.as_str());
    let histogram = route_idx.map_or(&gw.no_route_histogram, |i| &gw.route_histograms[i]);
    histogram.observe(elapsed.as_secs_f64());
    let status_str = status.as_str();
    gw.metrics
        .requests
        .with_label_values(&[route_name, method_label(&method), status_str])
        .inc();

    if gw.settings.logging.access_log {
        let (upstream_name, target) = match upstream {
            Some(u) => {
                let up = &gw.upstreams[u.upstream];
                (up.settings.name.as_str(), up.targets[u.target].url.as_str())
            }
            None => ("", ""),
        };
        info!(gw.log, "request";
            "request_id" => request_id.as_deref().unwrap_or("-"),
            "method" => method.as_str(),
            "path" => uri.path(),
            "status" => status.as_u16(),
            "duration_ms" => (elapsed.as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0,
            "route" => route_idx.map(|_| route_name),
            "upstream" => (!upstream_name.is_empty()).then_some(upstream_name),
            "target" => (!target.is_empty()).then_some(target),
            "client_ip" => client_ip.map(|ip| ip.to_string()),
            "user" => user,
        );
    }
    result
}
