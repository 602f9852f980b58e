//! How the pipeline's stages (`crate::middleware`) become actix-web
//! middleware: [`Stage`] wraps an `async fn(ServiceRequest, Next<S>)`,
//! like actix-web's `from_fn`, but hands it the next service by its own
//! type; [`Divert`] answers the requests a predicate picks with an
//! `async fn(HttpRequest, Payload)` (the proxy) and passes the rest on.
//!
//! `from_fn`'s `Next` holds the next service behind a `dyn Service` and
//! boxes its future: one allocation per request and layer, and a call
//! through a pointer. Here the stage's future holds the next one's by
//! value. An App's default service costs two boxed futures and a lookup
//! in the App's router before it is reached; a `Divert` layer, one box.

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{ready, Context, Poll};

use actix_web::body::{BoxBody, EitherBody, MessageBody};
use actix_web::dev::{forward_ready, Payload, Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::{Error, HttpRequest};
use futures_util::future::{ok, Ready};
use pin_project_lite::pin_project;

/// What comes after a stage: a service answering a request with a
/// response (of any body type) or an error.
pub trait NextService:
    Service<ServiceRequest, Response = ServiceResponse<Self::Body>, Error = Error>
{
    type Body: MessageBody + 'static;
}

impl<S, B> NextService for S
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
    B: MessageBody + 'static,
{
    type Body = B;
}

/// The service after a stage, for the stage to call once.
pub struct Next<S>(Rc<S>);

impl<S: NextService> Next<S> {
    pub fn call(self, req: ServiceRequest) -> S::Future {
        self.0.call(req)
    }
}

/// A stage function as middleware: `App::wrap(Stage(access_log))`.
pub struct Stage<F>(pub F);

impl<S, F, Fut, B2> Transform<S, ServiceRequest> for Stage<F>
where
    S: NextService,
    F: Fn(ServiceRequest, Next<S>) -> Fut + Clone,
    Fut: Future<Output = Result<ServiceResponse<B2>, Error>>,
    B2: MessageBody,
{
    type Response = ServiceResponse<B2>;
    type Error = Error;
    type Transform = StageService<F, S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, ()>>;

    fn new_transform(&self, next: S) -> Self::Future {
        ok(StageService {
            stage: self.0.clone(),
            next: Rc::new(next),
        })
    }
}

pub struct StageService<F, S> {
    stage: F,
    next: Rc<S>,
}

impl<S, F, Fut, B2> Service<ServiceRequest> for StageService<F, S>
where
    S: NextService,
    F: Fn(ServiceRequest, Next<S>) -> Fut,
    Fut: Future<Output = Result<ServiceResponse<B2>, Error>>,
    B2: MessageBody,
{
    type Response = ServiceResponse<B2>;
    type Error = Error;
    type Future = Fut;

    forward_ready!(next);

    fn call(&self, req: ServiceRequest) -> Fut {
        (self.stage)(req, Next(self.next.clone()))
    }
}

/// Answers the requests `picks` selects with `handler` (its future boxed:
/// large, and held by every layer above otherwise); the others go on to
/// the next service. `App::wrap(Divert::new(proxied, forward))`.
/// The handler answers like a service, with a response or an error.
pub struct Divert<H> {
    picks: fn(&ServiceRequest) -> bool,
    handler: H,
}

impl<H> Divert<H> {
    pub fn new(picks: fn(&ServiceRequest) -> bool, handler: H) -> Self {
        Self { picks, handler }
    }
}

impl<S, H, Fut> Transform<S, ServiceRequest> for Divert<H>
where
    S: NextService,
    H: Fn(HttpRequest, Payload) -> Fut + Clone,
    Fut: Future<Output = Result<ServiceResponse, Error>>,
{
    type Response = ServiceResponse<EitherBody<BoxBody, S::Body>>;
    type Error = Error;
    type Transform = DivertService<H, S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, ()>>;

    fn new_transform(&self, next: S) -> Self::Future {
        ok(DivertService {
            picks: self.picks,
            handler: self.handler.clone(),
            next,
        })
    }
}

pub struct DivertService<H, S> {
    picks: fn(&ServiceRequest) -> bool,
    handler: H,
    next: S,
}

impl<S, H, Fut> Service<ServiceRequest> for DivertService<H, S>
where
    S: NextService,
    H: Fn(HttpRequest, Payload) -> Fut,
    Fut: Future<Output = Result<ServiceResponse, Error>>,
{
    type Response = ServiceResponse<EitherBody<BoxBody, S::Body>>;
    type Error = Error;
    type Future = Either<Pin<Box<Fut>>, S::Future>;

    forward_ready!(next);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        if (self.picks)(&req) {
            let (req, payload) = req.into_parts();
            Either::Left {
                fut: Box::pin((self.handler)(req, payload)),
            }
        } else {
            Either::Right {
                fut: self.next.call(req),
            }
        }
    }
}

pin_project! {
    /// The future of a layer that calls one of two services, its response
    /// body the matching side of an `EitherBody`.
    #[project = EitherProj]
    pub enum Either<L, R> {
        Left { #[pin] fut: L },
        Right { #[pin] fut: R },
    }
}

impl<L, R, BL, BR> Future for Either<L, R>
where
    L: Future<Output = Result<ServiceResponse<BL>, Error>>,
    R: Future<Output = Result<ServiceResponse<BR>, Error>>,
{
    type Output = Result<ServiceResponse<EitherBody<BL, BR>>, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Poll::Ready(Ok(match self.project() {
            EitherProj::Left { fut } => ready!(fut.poll(cx))?.map_into_left_body(),
            EitherProj::Right { fut } => ready!(fut.poll(cx))?.map_into_right_body(),
        }))
    }
}
