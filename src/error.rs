//! Gateway-made errors and their one mapping to status code and JSON body.
//!
//! Any stage of the pipeline (route match, auth, rate limit, proxy) that
//! answers on its own behalf builds a [`GatewayError`] and renders it with
//! [`GatewayError::to_response`]; upstream responses pass through untouched.
//! Errors are classified by who is at fault: the client (4xx), the upstream
//! (502/503/504) or the gateway itself (500).

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use serde::Serialize;

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum GatewayError {
    #[error("no route matches this request")]
    NoRoute,
    #[error("method not allowed on this route")]
    MethodNotAllowed { allow: String },
    #[error("the request path is not acceptable")]
    BadPath,
    #[error("malformed request: {0}")]
    BadRequest(&'static str),
    #[error("authentication required")]
    Unauthenticated,
    #[error("access denied")]
    Forbidden,
    #[error("the client address may not use this route")]
    IpDenied,
    #[error("request body exceeds the limit of {limit} bytes")]
    BodyTooLarge { limit: u64 },
    #[error("request target exceeds the limit of {limit} bytes")]
    UriTooLong { limit: usize },
    #[error("request headers exceed the limit of {limit} bytes")]
    HeadersTooLarge { limit: usize },
    #[error("rate limit exceeded")]
    RateLimited { retry_after_secs: u64 },
    #[error("upstream connection failed")]
    UpstreamConnect,
    #[error("upstream exchange failed")]
    UpstreamBroken,
    /// The upstream answered a WebSocket handshake with this 4xx/5xx
    /// instead of 101: the client gets the same status.
    #[error("the upstream refused the WebSocket upgrade with {0}")]
    UpgradeRefused(StatusCode),
    #[error("upstream has no healthy target")]
    NoHealthyUpstream,
    #[error("service unavailable")]
    Unavailable,
    #[error("upstream did not answer in time")]
    UpstreamTimeout,
    #[error("internal gateway error")]
    Internal,
}

#[derive(Serialize)]
struct Body<'a> {
    error: Detail<'a>,
}

#[derive(Serialize)]
struct Detail<'a> {
    status: u16,
    code: &'static str,
    message: String,
    request_id: &'a str,
}

impl GatewayError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::NoRoute => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::BadPath | Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthenticated => StatusCode::UNAUTHORIZED,
            Self::Forbidden | Self::IpDenied => StatusCode::FORBIDDEN,
            Self::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UriTooLong { .. } => StatusCode::URI_TOO_LONG,
            Self::HeadersTooLarge { .. } => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::UpstreamConnect | Self::UpstreamBroken => StatusCode::BAD_GATEWAY,
            Self::NoHealthyUpstream | Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            Self::UpgradeRefused(status) => *status,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Stable machine-readable code, part of the wire contract.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NoRoute => "not_found",
            Self::MethodNotAllowed { .. } => "method_not_allowed",
            Self::BadPath | Self::BadRequest(_) => "bad_request",
            Self::Unauthenticated => "unauthenticated",
            Self::Forbidden => "forbidden",
            Self::IpDenied => "ip_denied",
            Self::BodyTooLarge { .. } => "payload_too_large",
            Self::UriTooLong { .. } => "uri_too_long",
            Self::HeadersTooLarge { .. } => "headers_too_large",
            Self::RateLimited { .. } => "rate_limited",
            Self::UpstreamConnect => "upstream_unreachable",
            Self::UpstreamBroken => "bad_gateway",
            Self::NoHealthyUpstream => "no_healthy_upstream",
            Self::Unavailable => "unavailable",
            Self::UpstreamTimeout => "upstream_timeout",
            Self::UpgradeRefused(_) => "upgrade_refused",
            Self::Internal => "internal_error",
        }
    }

    pub fn to_response(&self, request_id: &str) -> HttpResponse {
        let body = Body {
            error: Detail {
                status: self.status().as_u16(),
                code: self.code(),
                message: self.to_string(),
                request_id,
            },
        };
        let mut res = HttpResponse::build(self.status());
        match self {
            Self::MethodNotAllowed { allow } => {
                if let Ok(v) = HeaderValue::from_str(allow) {
                    res.insert_header((header::ALLOW, v));
                }
            }
            Self::RateLimited { retry_after_secs } => {
                res.insert_header((header::RETRY_AFTER, *retry_after_secs));
            }
            _ => {}
        }
        res.insert_header((header::CACHE_CONTROL, "no-store"));
        res.json(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::body::to_bytes;

    async fn render(err: GatewayError) -> (StatusCode, Vec<(String, String)>, serde_json::Value) {
        let res = err.to_response("req-1");
        let status = res.status();
        let headers = res
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_owned()))
            .collect();
        let body = to_bytes(res.into_body()).await.unwrap();
        (status, headers, serde_json::from_slice(&body).unwrap())
    }

    #[actix_rt::test]
    async fn rate_limited_body_and_headers() {
        let (status, headers, body) = render(GatewayError::RateLimited {
            retry_after_secs: 3,
        })
        .await;
        assert_eq!(status, 429);
        assert!(headers.contains(&("retry-after".into(), "3".into())));
        assert!(headers.contains(&("content-type".into(), "application/json".into())));
        assert_eq!(
            body,
            serde_json::json!({"error": {"status": 429, "code": "rate_limited",
                "message": "rate limit exceeded", "request_id": "req-1"}})
        );
    }

    #[actix_rt::test]
    async fn every_error_renders_its_status() {
        let cases = [
            (GatewayError::NoRoute, 404, "not_found"),
            (
                GatewayError::MethodNotAllowed {
                    allow: "GET, HEAD".into(),
                },
                405,
                "method_not_allowed",
            ),
            (GatewayError::BadPath, 400, "bad_request"),
            (GatewayError::BadRequest("x"), 400, "bad_request"),
            (GatewayError::Unauthenticated, 401, "unauthenticated"),
            (GatewayError::Forbidden, 403, "forbidden"),
            (
                GatewayError::BodyTooLarge { limit: 10 },
                413,
                "payload_too_large",
            ),
            (GatewayError::UriTooLong { limit: 1 }, 414, "uri_too_long"),
            (
                GatewayError::HeadersTooLarge { limit: 1 },
                431,
                "headers_too_large",
            ),
            (GatewayError::UpstreamConnect, 502, "upstream_unreachable"),
            (GatewayError::UpstreamBroken, 502, "bad_gateway"),
            (GatewayError::NoHealthyUpstream, 503, "no_healthy_upstream"),
            (GatewayError::Unavailable, 503, "unavailable"),
            (GatewayError::UpstreamTimeout, 504, "upstream_timeout"),
            (GatewayError::Internal, 500, "internal_error"),
            (
                GatewayError::UpgradeRefused(StatusCode::FORBIDDEN),
                403,
                "upgrade_refused",
            ),
        ];
        for (err, status, code) in cases {
            let (s, headers, body) = render(err.clone()).await;
            assert_eq!(s.as_u16(), status, "{err:?}");
            assert_eq!(body["error"]["status"], status);
            assert_eq!(body["error"]["code"], code);
            assert_eq!(body["error"]["request_id"], "req-1");
            if status == 405 {
                assert!(headers.contains(&("allow".into(), "GET, HEAD".into())));
            }
        }
    }
}
