//! Bodies crossing the proxy: the client's request body held to its byte
//! limit, the upstream's response body carrying the target's in-flight
//! count until its last byte, and the client response built around it.
//! Used by `forward.rs` only.

use std::cell::Cell;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use actix_http::body::{BodyStream, SizedStream};
use actix_web::dev::Payload;
use actix_web::error::PayloadError;
use actix_web::http::header::{self, HeaderMap};
use actix_web::http::{Method, StatusCode};
use actix_web::{HttpRequest, HttpResponse};
use bytes::Bytes;
use futures_util::Stream;

use super::headers::retain_end_to_end;
use crate::context::header_text;
use crate::state::Pinned;

pin_project_lite::pin_project! {
    /// Passes the client's body through, failing once it passes `limit`
    /// bytes (for bodies without Content-Length, which is checked up front).
    pub struct LimitedBody {
        #[pin]
        pub inner: Payload,
        // Shared with the access log (`context::StreamedBytesIn`).
        pub seen: Rc<Cell<u64>>,
        pub limit: u64,
        pub exceeded: Rc<Cell<bool>>,
    }
}

impl Stream for LimitedBody {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.project();
        match this.inner.poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                let seen = this.seen.get() + chunk.len() as u64;
                this.seen.set(seen);
                if seen > *this.limit {
                    this.exceeded.set(true);
                    return Poll::Ready(Some(Err(PayloadError::Overflow)));
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            other => other,
        }
    }
}

pin_project_lite::pin_project! {
    /// The upstream's response body, holding the target's in-flight count
    /// until the last byte has gone to the client (or the client left).
    struct ResponseBody<S> {
        #[pin]
        inner: S,
        in_flight: Option<InFlightOwned>,
    }
}

impl<S> Stream for ResponseBody<S>
where
    S: Stream<Item = Result<Bytes, PayloadError>>,
{
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.project();
        let polled = this.inner.poll_next(cx);
        if let Poll::Ready(None) = polled {
            this.in_flight.take();
        }
        polled
    }
}

/// Counts a request against its target until dropped. It owns a handle to
/// the gateway because it travels with the response body, which outlives
/// the handler.
#[must_use = "the target counts the request as in flight until this is dropped"]
pub struct InFlightOwned {
    gw: Pinned,
    upstream: usize,
    target: usize,
}

impl InFlightOwned {
    pub fn begin(gw: &Pinned, upstream: usize, target: usize) -> Self {
        gw.upstreams[upstream].begin(target);
        Self {
            gw: gw.clone(),
            upstream,
            target,
        }
    }
}

impl Drop for InFlightOwned {
    fn drop(&mut self) {
        self.gw.upstreams[self.upstream].end(self.target);
    }
}

pub fn build_response<S>(
    req: &HttpRequest,
    resp: awc::ClientResponse<S>,
    in_flight: InFlightOwned,
) -> HttpResponse
where
    S: Stream<Item = Result<Bytes, PayloadError>> + Unpin + 'static,
{
    let status = resp.status();
    let length = resp
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(header_text)
        .and_then(|v| v.parse::<u64>().ok());
    // The upstream's header map becomes the response's, less what may not
    // cross: moved, not copied header by header.
    let mut headers = HeaderMap::new();
    let resp = resp.map_body(|head, payload| {
        headers = std::mem::take(&mut head.headers);
        payload
    });
    retain_end_to_end(&mut headers);
    let mut res = response_of(req, status, length, resp, in_flight);
    // What the builder set (a bodiless response's Content-Length) goes
    // over the upstream's headers.
    let set_here = std::mem::replace(res.headers_mut(), headers);
    for (name, value) in set_here {
        res.headers_mut().insert(name, value);
    }
    res
}

/// The client response around the upstream's body, with only the headers
/// its body's shape needs.
fn response_of<S>(
    req: &HttpRequest,
    status: StatusCode,
    length: Option<u64>,
    resp: awc::ClientResponse<S>,
    in_flight: InFlightOwned,
) -> HttpResponse
where
    S: Stream<Item = Result<Bytes, PayloadError>> + Unpin + 'static,
{
    let mut builder = HttpResponse::build(status);
    let bodiless = req.method() == Method::HEAD
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    if bodiless {
        return match length {
            // An empty unsized body with chunking off is the one shape in which
            // actix-http keeps the upstream's Content-Length (HEAD, 304).
            Some(len) => {
                builder
                    .no_chunking(len)
                    .body(BodyStream::new(futures_util::stream::empty::<
                        Result<Bytes, PayloadError>,
                    >()))
            }
            None => builder.finish(),
        };
    }
    let body = ResponseBody {
        inner: resp,
        in_flight: Some(in_flight),
    };
    match length {
        Some(len) => builder.body(SizedStream::new(len, body)),
        None => builder.body(BodyStream::new(body)),
    }
}
