//! One exchange's record from the request head to the response body's end.
//! The access-log stage (`middleware/access_log.rs`) starts a [`Recording`]
//! before the request goes on and finishes it with the response head: the
//! metrics are counted then, and the line is written then for a body of
//! known size. A streamed response's size is unknown at the head: its body
//! becomes a [`LoggedBody`] carrying a [`PendingLine`] that counts the bytes
//! handed to the connection and records them when it is dropped (after the
//! last chunk, or when the client goes away).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use actix_web::body::{BodySize, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::{ConnectionType, Method, StatusCode, Uri};
use actix_web::{web, Error, HttpMessage, HttpRequest};
use bytes::Bytes;
use pin_project_lite::pin_project;

use super::access_log::{Exchange, WorkerTelemetry};
use super::exchange::body_bytes_in;
use super::tracing::RequestTrace;
use crate::state::Gateway;

/// What the line needs of the request head, noted before the request goes
/// on (the stages after it take the request).
pub struct Recording {
    worker: web::Data<WorkerTelemetry>,
    gw: Arc<Gateway>,
    start: Instant,
    method: Method,
    /// A `Uri` clone shares its bytes: cheaper than copying the path.
    uri: Uri,
    bytes_in: Option<u64>,
    user_agent: Option<HeaderValue>,
    trace: RequestTrace,
}

impl Recording {
    /// Starts the clock and (tracing on) the request's span. `bytes_in`:
    /// the body's size as the head declares it (`None`: streamed).
    pub fn start(
        req: &ServiceRequest,
        worker: web::Data<WorkerTelemetry>,
        gw: Arc<Gateway>,
        bytes_in: Option<u64>,
    ) -> Self {
        Self {
            start: Instant::now(),
            method: req.method().clone(),
            uri: req.uri().clone(),
            bytes_in,
            user_agent: req.headers().get(header::USER_AGENT).cloned(),
            trace: worker.start_trace(req),
            worker,
            gw,
        }
    }

    /// The generation the request is pinned to.
    pub fn gateway(&self) -> &Gateway {
        &self.gw
    }

    /// Counts the exchange and writes its line now, or (streamed body) when
    /// the body ends. During the drain delay the response closes its
    /// connection, so clients reconnect (to another replica) instead of
    /// sending more on a connection about to close.
    pub fn finish<B>(
        self,
        mut result: Result<ServiceResponse<B>, Error>,
    ) -> Result<ServiceResponse<LoggedBody<B>>, Error>
    where
        B: MessageBody,
    {
        let elapsed = self.start.elapsed();
        if self.gw.closes_connections() {
            if let Ok(res) = &mut result {
                let head = res.response_mut().head_mut();
                head.set_connection_type(ConnectionType::Close);
            }
        }
        let (status, bytes_out) = match &result {
            Ok(res) => (
                res.status(),
                match res.response().body().size() {
                    BodySize::Sized(n) => Some(n),
                    BodySize::None => Some(0),
                    BodySize::Stream => None,
                },
            ),
            Err(err) => (err.as_response_error().status_code(), None),
        };
        let Self {
            worker,
            gw,
            method,
            uri,
            bytes_in,
            user_agent,
            trace,
            ..
        } = self;
        // The span of a streamed body, whose line waits for the body's end.
        let pending_trace = {
            // Borrowed while the line is written: nothing is copied out.
            let ext = result.as_ref().ok().map(|res| res.request().extensions());
            let exchange = Exchange {
                method: &method,
                uri: &uri,
                status,
                elapsed,
                bytes_in: body_bytes_in(bytes_in, ext.as_deref()),
                bytes_out,
                user_agent: user_agent.as_ref().map(|ua| ua.as_bytes()),
                ext: ext.as_deref(),
            };
            worker.count(&gw, &exchange);
            if bytes_out.is_none() && ext.is_some() {
                Some(trace)
            } else {
                worker.finish(&gw, &exchange, trace);
                None
            }
        };
        let Some(trace) = pending_trace else {
            return result.map(|res| res.map_body(|_, body| LoggedBody::logged(body)));
        };
        result.map(|res| {
            let request = res.request().clone();
            res.map_body(|_, body| {
                let line = PendingLine {
                    worker,
                    gw,
                    request,
                    method,
                    uri,
                    status,
                    elapsed,
                    bytes_in,
                    user_agent,
                    trace: Some(trace),
                    bytes_out: 0,
                };
                LoggedBody::counted(body, line)
            })
        })
    }
}

/// Everything of a streamed exchange's record but the bytes still to be sent.
pub struct PendingLine {
    pub worker: web::Data<WorkerTelemetry>,
    pub gw: Arc<Gateway>,
    /// Holds the extensions (route, upstream, user) until the line is written.
    pub request: HttpRequest,
    pub method: Method,
    pub uri: Uri,
    pub status: StatusCode,
    pub elapsed: Duration,
    pub bytes_in: Option<u64>,
    pub user_agent: Option<HeaderValue>,
    /// Ended with the line (taken in `drop`).
    pub trace: Option<RequestTrace>,
    pub bytes_out: u64,
}

impl Drop for PendingLine {
    fn drop(&mut self) {
        let ext = self.request.extensions();
        let exchange = Exchange {
            method: &self.method,
            uri: &self.uri,
            status: self.status,
            elapsed: self.elapsed,
            bytes_in: body_bytes_in(self.bytes_in, Some(&ext)),
            bytes_out: Some(self.bytes_out),
            user_agent: self.user_agent.as_ref().map(HeaderValue::as_bytes),
            ext: Some(&ext),
        };
        let trace = self.trace.take().unwrap_or(RequestTrace::OFF);
        self.worker.streamed(&self.gw, &exchange, trace);
    }
}

pin_project! {
    /// A response body, counted when its line waits for its end.
    pub struct LoggedBody<B> {
        #[pin]
        inner: B,
        pending: Option<Box<PendingLine>>,
    }
}

impl<B> LoggedBody<B> {
    /// A body whose line is already written.
    pub fn logged(inner: B) -> Self {
        Self {
            inner,
            pending: None,
        }
    }

    /// A streamed body: `line` is written when the body is dropped.
    pub fn counted(inner: B, line: PendingLine) -> Self {
        Self {
            inner,
            pending: Some(Box::new(line)),
        }
    }
}

impl<B: MessageBody> MessageBody for LoggedBody<B> {
    type Error = B::Error;

    fn size(&self) -> BodySize {
        self.inner.size()
    }

    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        let this = self.project();
        let next = this.inner.poll_next(cx);
        if let (Poll::Ready(Some(Ok(chunk))), Some(line)) = (&next, this.pending.as_mut()) {
            line.bytes_out += chunk.len() as u64;
        }
        next
    }

    fn try_into_bytes(self) -> Result<Bytes, Self> {
        if self.pending.is_some() {
            return Err(self);
        }
        let Self { inner, pending } = self;
        inner
            .try_into_bytes()
            .map_err(|inner| Self { inner, pending })
    }
}
