//! First stage: every request gets an id, kept from the client when sane.
//!
//! The id goes upstream (set by the proxy from the extension), into the
//! access log and every gateway-made error body, and back to the client.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::HeaderValue;
use actix_web::middleware::Next;
use actix_web::Error;

use crate::context::{RequestFacts, RequestId, X_REQUEST_ID};

const MAX_LEN: usize = 128;

/// Sane: 1..=128 characters from a conservative set, so an id can go into
/// logs and headers unescaped and cannot smuggle anything.
pub fn is_sane(value: &[u8]) -> bool {
    !value.is_empty()
        && value.len() <= MAX_LEN
        && value.iter().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':' | b'/' | b'+' | b'=')
        })
}

fn mint() -> HeaderValue {
    let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
    let s = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut buf);
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

pub async fn request_id(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let id = match req.headers().get(X_REQUEST_ID) {
        Some(v) if is_sane(v.as_bytes()) => v.clone(),
        _ => mint(),
    };
    RequestFacts::record(&req, |facts| facts.request_id = Some(RequestId(id.clone())));
    let mut res = next.call(req).await?;
    res.headers_mut().insert(X_REQUEST_ID, id);
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanity_rules() {
        assert!(is_sane(b"abc-123_DEF.4:5"));
        assert!(!is_sane(b""));
        assert!(!is_sane(b"has space"));
        assert!(!is_sane(b"quote\""));
        assert!(!is_sane(&[b'a'; 129]));
        assert!(is_sane(mint().as_bytes()));
    }
}
