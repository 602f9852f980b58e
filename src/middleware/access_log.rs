//! Second stage: measures and records every request, whatever answers it.
//!
//! Keeps the in-flight gauge, the per-route request counter and latency
//! histogram, and writes one JSON access-log line per request. It reads what
//! later stages put in the request extensions (route, upstream, client IP,
//! user); it never logs header values, query strings or bodies, so tokens in
//! Authorization, Cookie or URLs cannot leak into logs.

use std::sync::Arc;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, Error, HttpMessage};
use slog::{info, Logger};

use super::context::{ClientInfo, IpText, MatchedRoute, RequestId, UpstreamUsed};
use crate::auth::Identity;
use crate::state::Gateway;
use crate::telemetry::metrics::{method_label, RequestCounterCache};

/// Decrements the in-flight gauge however the request ends (even if the
/// client goes away and the future is dropped).
struct InFlightGuard<'a>(&'a prometheus::IntGauge);

impl Drop for InFlightGuard<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// What each worker keeps for this stage (built in the server factory):
/// its own access-log drain and request-counter cache.
pub struct WorkerTelemetry {
    pub access_log: Option<Logger>,
    pub requests: RequestCounterCache,
}

impl WorkerTelemetry {
    pub fn new(access_log: Option<Logger>) -> Self {
        Self {
            access_log,
            requests: RequestCounterCache::default(),
        }
    }
}

pub async fn access_log(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let (Some(gw), Some(worker)) = (
        req.app_data::<web::Data<Gateway>>().cloned(),
        req.app_data::<web::Data<WorkerTelemetry>>().cloned(),
    ) else {
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
    // The extensions stay borrowed while the line is written: nothing is
    // copied out of them.
    let borrowed = result.as_ref().ok().map(|res| res.request().extensions());
    record(
        &gw,
        &worker,
        borrowed.as_deref(),
        &method,
        &uri,
        status,
        elapsed,
    );
    drop(borrowed);
    result
}

fn record(
    gw: &Gateway,
    worker: &WorkerTelemetry,
    ext: Option<&actix_http::Extensions>,
    method: &actix_web::http::Method,
    uri: &actix_web::http::Uri,
    status: actix_web::http::StatusCode,
    elapsed: std::time::Duration,
) {
    let route_idx = ext.and_then(|e| e.get::<MatchedRoute>()).map(|m| m.index);
    let route_name = route_idx.map(|i| gw.routes.get(i).name.as_str());
    let histogram = route_idx.map_or(&gw.no_route_histogram, |i| &gw.route_histograms[i]);
    histogram.observe(elapsed.as_secs_f64());
    worker.requests.inc(
        &gw.metrics.requests,
        route_idx.zip(route_name),
        method_label(method),
        status,
    );

    if let Some(log) = &worker.access_log {
        let (upstream, target) = match ext.and_then(|e| e.get::<UpstreamUsed>()) {
            Some(u) => {
                let up = &gw.upstreams[u.upstream];
                (
                    Some(up.settings.name.as_str()),
                    Some(up.targets[u.target].url.as_str()),
                )
            }
            None => (None, None),
        };
        let client_ip = ext
            .and_then(|e| e.get::<ClientInfo>())
            .map(|c| IpText::new(c.ip));
        info!(log, "request";
            "request_id" => ext.and_then(|e| e.get::<RequestId>()).map_or("-", |id| id.as_str()),
            "method" => method.as_str(),
            "path" => uri.path(),
            "status" => status.as_u16(),
            "duration_ms" => (elapsed.as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0,
            "route" => route_name,
            "upstream" => upstream,
            "target" => target,
            "client_ip" => client_ip.as_ref().map(IpText::as_str),
            "user" => ext.and_then(|e| e.get::<Arc<Identity>>()).map(|u| u.subject.as_str()),
        );
    }
}
