//! `compress`: which responses are worth compressing, and in which coding
//! the client wants them. The compressing itself is actix-http's streaming
//! `Encoder` (gzip via flate2, brotli via the brotli crate), chunk by
//! chunk: the body is never held whole.

use actix_web::body::BodySize;
use actix_web::dev::ResponseHead;
use actix_web::http::header::{
    AcceptEncoding, ContentEncoding, Encoding, Header, ACCEPT_ENCODING, CONTENT_ENCODING,
    CONTENT_RANGE, CONTENT_TYPE,
};
use actix_web::http::Method;
use actix_web::HttpMessage;

/// Below this a compressed body saves less than the headers it adds.
const MIN_BYTES: u64 = 1024;

/// The coding to use: br before gzip at equal preference, `None` for
/// identity (or nothing acceptable, or a HEAD request).
pub fn negotiate(req: &impl HttpMessage, method: &Method) -> Option<ContentEncoding> {
    if method == Method::HEAD || !req.headers().contains_key(ACCEPT_ENCODING) {
        return None;
    }
    let accept = AcceptEncoding::parse(req).ok()?;
    let supported = [
        Encoding::Known(ContentEncoding::Brotli),
        Encoding::Known(ContentEncoding::Gzip),
        Encoding::identity(),
    ];
    match accept.negotiate(supported.iter())? {
        Encoding::Known(ContentEncoding::Brotli) => Some(ContentEncoding::Brotli),
        Encoding::Known(ContentEncoding::Gzip) => Some(ContentEncoding::Gzip),
        _ => None,
    }
}

/// Text-like types compress well; images, video, archives do not.
fn compressible(content_type: &[u8]) -> bool {
    let essence = content_type
        .split(|&b| b == b';')
        .next()
        .unwrap_or_default()
        .trim_ascii()
        .to_ascii_lowercase();
    essence.starts_with(b"text/")
        || essence.ends_with(b"+json")
        || essence.ends_with(b"+xml")
        || [
            &b"application/json"[..],
            b"application/javascript",
            b"application/xml",
            b"application/x-ndjson",
            b"image/svg+xml",
            b"application/wasm",
        ]
        .contains(&essence.as_slice())
}

/// Successful, whole, not yet encoded, of a compressible type and (when
/// its size is known) at least [`MIN_BYTES`].
pub fn eligible(head: &ResponseHead, size: &BodySize) -> bool {
    let headers = head.headers();
    let big_enough = match size {
        BodySize::Sized(n) => *n >= MIN_BYTES,
        BodySize::Stream => true,
        BodySize::None => false,
    };
    head.status.is_success()
        && head.status.as_u16() != 206
        && big_enough
        && !headers.contains_key(CONTENT_ENCODING)
        && !headers.contains_key(CONTENT_RANGE)
        && headers
            .get(CONTENT_TYPE)
            .is_some_and(|t| compressible(t.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn accept(method: Method, v: Option<&'static str>) -> Option<ContentEncoding> {
        let mut req = TestRequest::default();
        if let Some(v) = v {
            req = req.insert_header((ACCEPT_ENCODING, v));
        }
        negotiate(&req.to_http_request(), &method)
    }

    #[test]
    fn negotiation_prefers_br_and_honours_q_values() {
        assert_eq!(
            accept(Method::GET, Some("gzip, deflate, br")),
            Some(ContentEncoding::Brotli)
        );
        assert_eq!(
            accept(Method::GET, Some("gzip")),
            Some(ContentEncoding::Gzip)
        );
        assert_eq!(
            accept(Method::GET, Some("br;q=0.1, gzip;q=0.9")),
            Some(ContentEncoding::Gzip)
        );
        assert_eq!(accept(Method::GET, Some("identity")), None);
        assert_eq!(accept(Method::GET, Some("gzip;q=0")), None);
        assert_eq!(accept(Method::GET, None), None);
        assert_eq!(accept(Method::HEAD, Some("gzip")), None);
    }

    #[test]
    fn only_compressible_types_count() {
        assert!(compressible(b"application/json; charset=utf-8"));
        assert!(compressible(b"Text/HTML"));
        assert!(compressible(b"application/problem+json"));
        assert!(!compressible(b"image/png"));
        assert!(!compressible(b"application/octet-stream"));
    }
}
