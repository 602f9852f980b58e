//! Last stage: a request with a matched route goes to `proxy::forward`
//! (`server.rs`: `Divert::new(proxied, forward)`, the innermost layer);
//! anything else (the gateway's own `/oauth2/*` endpoints) goes on to the
//! App's router.
//!
//! A layer rather than the App's default service: actix-web boxes a
//! default service's future and again its handler's, and looks the path
//! up in the App's router first (`crate::stage::Divert`).

use actix_web::dev::ServiceRequest;
use actix_web::{HttpMessage, HttpRequest, HttpResponse};

use crate::context::{request_id_of, RequestFacts};
use crate::error::GatewayError;

/// The request has a route (recorded by the route stage): it is proxied.
pub fn proxied(req: &ServiceRequest) -> bool {
    RequestFacts::of(&req.extensions()).matched.is_some()
}

/// The App's default service. The route stage answers every request
/// without a route itself except the gateway's own endpoints, which the
/// App serves: reaching here is a wiring bug, answered like one.
pub async fn unrouted(req: HttpRequest) -> HttpResponse {
    GatewayError::Internal.to_response(&request_id_of(&req))
}

#[cfg(test)]
mod tests {
    use actix_web::dev::{Payload, Service as _, ServiceResponse};
    use actix_web::{test, web, App, FromRequest};

    use super::*;
    use crate::context::MatchedRoute;
    use crate::stage::Divert;

    /// Stands in for `forward`: answers with the body it was sent, so the
    /// test sees that the payload reached it.
    async fn echo(req: HttpRequest, payload: Payload) -> Result<ServiceResponse, actix_web::Error> {
        let body = web::Payload::from_request(&req, &mut { payload })
            .await
            .expect("payload")
            .to_bytes()
            .await
            .expect("body");
        Ok(ServiceResponse::new(
            req,
            HttpResponse::Accepted().body(body),
        ))
    }

    /// A request with a matched route goes to the proxy with its body;
    /// one without (the `/oauth2/*` endpoints) reaches the App's router.
    #[actix_rt::test]
    async fn matched_requests_are_proxied_and_the_rest_routed() {
        let app = test::init_service(
            App::new()
                .wrap(Divert::new(proxied, echo))
                .wrap_fn(|req, next| {
                    if req.path().starts_with("/routed") {
                        RequestFacts::record(&req, |facts| {
                            facts.matched = Some(MatchedRoute {
                                index: 0,
                                normalized: None,
                                authenticates: false,
                                rate_limited: false,
                            })
                        });
                    }
                    next.call(req)
                })
                .route("/oauth2/login", web::get().to(HttpResponse::Ok))
                .default_service(web::to(unrouted)),
        )
        .await;

        let req = test::TestRequest::post()
            .uri("/routed/x")
            .set_payload("sent upstream")
            .to_request();
        let res = test::call_service(&app, req).await;
        assert_eq!(res.status(), 202);
        assert_eq!(test::read_body(res).await, "sent upstream");

        let req = test::TestRequest::get().uri("/oauth2/login").to_request();
        assert_eq!(test::call_service(&app, req).await.status(), 200);

        let req = test::TestRequest::get().uri("/elsewhere").to_request();
        assert_eq!(test::call_service(&app, req).await.status(), 500);
    }
}
