//! Admin listener endpoints: liveness, readiness, detailed health; `/metrics`
//! itself is served by the actix-web-prom middleware wrapped around this app
//! (see `server.rs`).
//!
//! Readiness is what load balancers and Kubernetes act on: 503 until the
//! proxy listener is up, and again from the first moment of draining.

use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::state::{Gateway, Live};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/health/live", web::get().to(live))
        .route("/health/ready", web::get().to(ready))
        .route("/health", web::get().to(detail));
}

async fn live() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "alive"}))
}

fn status_word(gw: &Gateway) -> &'static str {
    if gw.is_draining() {
        "draining"
    } else if gw.is_ready() {
        "ready"
    } else {
        "starting"
    }
}

async fn ready(live: web::Data<Live>) -> HttpResponse {
    let gw = live.current();
    let body = json!({"status": status_word(&gw)});
    if gw.is_ready() {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

async fn detail(live: web::Data<Live>) -> HttpResponse {
    let gw = live.current();
    let upstreams: serde_json::Map<String, serde_json::Value> = gw
        .upstreams
        .iter()
        .map(|u| {
            let targets: Vec<_> = u
                .targets
                .iter()
                .map(|t| {
                    json!({
                        "url": t.url,
                        "healthy": t.is_available(),
                        "consecutive_failures": t.consecutive_failures(),
                        "circuit": t.circuit_state(),
                        "health_check": u.settings.health_check.as_ref().map(|_| {
                            if t.is_failing_checks() { "failing" } else { "passing" }
                        }),
                        "in_flight": t.in_flight(),
                    })
                })
                .collect();
            let healthy = u.targets.iter().filter(|t| t.is_available()).count();
            (
                u.settings.name.clone(),
                json!({"healthy_targets": healthy, "targets": targets}),
            )
        })
        .collect();
    let sessions = gw.auth.as_ref().and_then(|a| a.sessions.breaker());
    let rate_limits = gw.rate_limits.breaker();
    let degraded = rate_limits.is_open()
        || sessions.is_some_and(|h| h.is_open())
        || gw
            .upstreams
            .iter()
            .any(|u| !u.targets.iter().any(|t| t.is_available()));
    let body = json!({
        "status": status_word(&gw),
        "degraded": degraded,
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_secs": gw.lifecycle.started.elapsed().as_secs(),
        "routes": gw.routes.routes().len(),
        "workers": gw.settings.server.workers,
        "state_store": if gw.settings.redis.is_some() { "redis" } else { "memory" },
        "redis": gw.settings.redis.as_ref().map(|_| rate_limits.health_json()),
        "session_store": sessions.map(|h| h.health_json()),
        "upstreams": upstreams,
    });
    if gw.is_ready() {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}
