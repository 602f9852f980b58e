//! A middleware stage that only the requests needing it pass through: [`SkipUnless`]
//! wraps a middleware (auth, rate limit) and, per request, either calls it
//! or goes straight to the next service.
//!
//! actix-web's `Condition` decides once, when the worker starts; a reload
//! can add auth or rate limits to a route at any time, so the decision has
//! to be per request. Skipping costs one check and no allocation, so a
//! route without auth or limits does not pay for those stages; a request
//! that passes through the stage pays one box for its future, which keeps
//! the large auth and rate-limit futures out of every request's.

use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use actix_web::body::EitherBody;
use actix_web::dev::{forward_ready, Service, ServiceRequest, ServiceResponse, Transform};
use futures_util::future::LocalBoxFuture;

use crate::stage::Either;

/// Whether a request needs the wrapped stage (read from what earlier
/// stages put in its extensions).
pub type Applies = fn(&ServiceRequest) -> bool;

pub struct SkipUnless<T> {
    applies: Applies,
    stage: T,
}

impl<T> SkipUnless<T> {
    pub fn new(applies: Applies, stage: T) -> Self {
        Self { applies, stage }
    }
}

/// The next service, shared by the wrapped stage and the skipping path.
pub struct Shared<S>(Rc<S>);

impl<S: Service<ServiceRequest>> Service<ServiceRequest> for Shared<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&self, req: ServiceRequest) -> Self::Future {
        self.0.call(req)
    }
}

impl<S, T, BS, BT> Transform<S, ServiceRequest> for SkipUnless<T>
where
    S: Service<ServiceRequest, Response = ServiceResponse<BS>, Error = actix_web::Error> + 'static,
    T: Transform<
        Shared<S>,
        ServiceRequest,
        Response = ServiceResponse<BT>,
        Error = actix_web::Error,
    >,
    T::Future: 'static,
    T::InitError: 'static,
    T::Transform: 'static,
{
    type Response = ServiceResponse<EitherBody<BT, BS>>;
    type Error = actix_web::Error;
    type Transform = SkipUnlessService<T::Transform, S>;
    type InitError = T::InitError;
    type Future = LocalBoxFuture<'static, Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        let next = Rc::new(service);
        let stage = self.stage.new_transform(Shared(next.clone()));
        let applies = self.applies;
        Box::pin(async move {
            Ok(SkipUnlessService {
                applies,
                stage: stage.await?,
                next,
            })
        })
    }
}

pub struct SkipUnlessService<T, S> {
    applies: Applies,
    stage: T,
    next: Rc<S>,
}

impl<T, S, BT, BS> Service<ServiceRequest> for SkipUnlessService<T, S>
where
    T: Service<ServiceRequest, Response = ServiceResponse<BT>, Error = actix_web::Error>,
    S: Service<ServiceRequest, Response = ServiceResponse<BS>, Error = actix_web::Error>,
{
    type Response = ServiceResponse<EitherBody<BT, BS>>;
    type Error = actix_web::Error;
    /// The stage's future boxed: large (auth, rate limits), and only the
    /// requests it applies to pay for it.
    type Future = Either<Pin<Box<T::Future>>, S::Future>;

    forward_ready!(stage);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        if (self.applies)(&req) {
            Either::Left {
                fut: Box::pin(self.stage.call(req)),
            }
        } else {
            Either::Right {
                fut: self.next.call(req),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use actix_web::body::MessageBody;
    use actix_web::middleware::{from_fn, Next};
    use actix_web::{test, web, App, HttpResponse};

    use super::*;

    async fn teapot(
        req: ServiceRequest,
        _: Next<impl MessageBody>,
    ) -> Result<ServiceResponse, actix_web::Error> {
        Ok(req.into_response(HttpResponse::ImATeapot()))
    }

    /// Only requests that need the stage see it; the others reach the
    /// next service untouched.
    #[actix_rt::test]
    async fn the_stage_runs_only_where_it_applies() {
        let app = test::init_service(
            App::new()
                .wrap(SkipUnless::new(
                    |req| req.path().starts_with("/guarded"),
                    from_fn(teapot),
                ))
                .default_service(web::to(HttpResponse::Ok)),
        )
        .await;
        let status = |path: &'static str| {
            let app = &app;
            async move {
                let req = test::TestRequest::get().uri(path).to_request();
                test::call_service(app, req).await.status().as_u16()
            }
        };
        assert_eq!(status("/guarded/x").await, 418);
        assert_eq!(status("/open").await, 200);
    }
}
