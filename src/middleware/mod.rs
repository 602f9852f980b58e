//! The request pipeline, as actix-web middleware.
//!
//! Order for every proxied request (outermost first; actix runs the
//! last-registered `wrap` first, so `server.rs` registers them in reverse):
//!
//! ```text
//!  access_log  -> X-Request-Id (kept when sane, else minted; echoed back),
//!                 in-flight gauge, latency + request metrics, one JSON line
//!  route_match -> normalises the path, finds the route, resolves client IP
//!                 (called by access_log directly: one layer less)
//!    + route_features -> IP rules (403), CORS preflights (204); shapes responses [2]
//!  auth        -> session / bearer identity, route requirements      [1]
//!  rate_limit  -> local (governor) and cluster (Redis via actor) policies  [1]
//!  proxy       -> `proxy::forward` for a matched route, streamed to the
//!                 upstream (the App's router only for `/oauth2/*`)
//! ```
//!
//! [1] Only for requests that need them (`crate::skip_unless::SkipUnless`, wired in `server.rs`): a route
//! without auth or rate limits skips the stage without cost.
//! [2] Inside route_match, for routes with IP rules, CORS, response headers
//! or compression only (a boxed future: other routes' futures stay small).
//!
//! Each stage is an `async fn(ServiceRequest, Next<S>)` made middleware by
//! `crate::stage::Stage`, which hands it the next service by type (no
//! boxed future per layer, unlike actix-web's `from_fn`); `SkipUnless`
//! boxes auth's and rate limiting's futures for the requests they apply
//! to, and the proxy's layer (`stage::Divert`) boxes `forward`'s, so that
//! the futures the stages above hold and move stay small.
//!
//! Stages share what they learn through request extensions (the types in
//! `crate::context`), never through globals. Each file is an adapter: it
//! reads what it needs from the request and makes one call into its
//! feature (`telemetry::access_log`, `routing`, `auth`, `ratelimit`). The
//! security stages (route_match, auth, rate_limit) fail closed: without the
//! shared state they answer 500, never let a request through.

pub mod access_log;
pub mod auth;
pub mod proxy;
pub mod rate_limit;
pub mod route_features;
pub mod route_match;

#[cfg(test)]
mod tests {
    use actix_web::{test, web, App, HttpResponse};

    use super::{auth::authenticate, rate_limit::rate_limit, route_match::route_match};
    use crate::stage::Stage;

    /// A security stage whose shared state is missing (a wiring mistake)
    /// refuses every request instead of letting it through unchecked.
    #[actix_rt::test]
    async fn security_stages_fail_closed_without_the_shared_state() {
        macro_rules! status_behind {
            ($stage:expr) => {{
                let app = test::init_service(
                    App::new()
                        .wrap(Stage($stage))
                        .default_service(web::to(HttpResponse::Ok)),
                )
                .await;
                let req = test::TestRequest::get().uri("/anything").to_request();
                test::call_service(&app, req).await.status()
            }};
        }
        assert_eq!(status_behind!(route_match), 500, "route_match");
        assert_eq!(status_behind!(authenticate), 500, "auth");
        assert_eq!(status_behind!(rate_limit), 500, "rate_limit");
    }
}
