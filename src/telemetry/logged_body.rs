//! The access-log line and byte count of a streamed response, whose size is
//! unknown at the head, are recorded when its body ends. The access-log
//! stage (`middleware/access_log.rs`) wraps every response body in a
//! [`LoggedBody`]; for a streamed one it carries a [`PendingLine`] that
//! counts the bytes handed to the connection and records them when it is
//! dropped: after the last chunk, or when the client goes away. Bodies of
//! known size are recorded at the head and only pass through.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::body::{BodySize, MessageBody};
use actix_web::http::header::HeaderValue;
use actix_web::http::{Method, StatusCode, Uri};
use actix_web::{web, HttpMessage, HttpRequest};
use bytes::Bytes;
use pin_project_lite::pin_project;

use super::access_log::{Exchange, WorkerTelemetry};
use super::exchange::body_bytes_in;
use super::tracing::RequestTrace;
use crate::state::Gateway;

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
