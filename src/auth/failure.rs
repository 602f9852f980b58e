//! Why the auth stage refused a request, typed: each reason has its metrics
//! label and its client-facing error, and a refusal knows how to answer
//! (a login redirect for browsers, `WWW-Authenticate` for bearer clients,
//! else the contract's JSON error). A leaf of `auth`.

use actix_web::http::header::{self, HeaderValue};
use actix_web::HttpResponse;

use super::bearer::BearerError;
use super::browser::login_redirect;
use crate::error::GatewayError;

/// Why no identity could be established, or why it may not pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// A session route without the session cookie.
    NoSession,
    /// The cookie names no live session.
    UnknownSession,
    /// A bearer route without `Authorization: Bearer`.
    NoToken,
    InvalidToken,
    ExpiredToken,
    /// Neither a JWKS nor an introspection endpoint is known.
    NoVerifier,
    /// The provider could not be asked (introspection, or a refresh after
    /// the access token expired).
    ProviderError,
    /// The session store could not answer.
    StoreUnavailable,
    /// The provider refused the refresh token: the session is over.
    RefreshFailed,
    /// Another request's refresh did not finish in time.
    RefreshPending,
    /// Authenticated, but a required scope or role is missing.
    RequirementUnmet,
}

impl AuthFailure {
    /// `gateway_auth_outcomes_total{reason}`.
    pub fn reason(self) -> &'static str {
        match self {
            Self::NoSession => "no_session",
            Self::UnknownSession => "unknown_session",
            Self::NoToken => "no_token",
            Self::InvalidToken => "invalid_token",
            Self::ExpiredToken => "expired_token",
            Self::NoVerifier => "no_verifier",
            Self::ProviderError => "provider_error",
            Self::StoreUnavailable => "store_unavailable",
            Self::RefreshFailed => "refresh_failed",
            Self::RefreshPending => "refresh_pending",
            Self::RequirementUnmet => "requirement_unmet",
        }
    }

    /// `gateway_auth_outcomes_total{result}`.
    pub fn result(self) -> &'static str {
        match self {
            Self::RequirementUnmet => "forbidden",
            _ => "unauthenticated",
        }
    }

    /// Who is at fault: the gateway's dependencies (503), the caller's
    /// rights (403) or the caller's credentials (401).
    pub fn gateway_error(self) -> GatewayError {
        match self {
            Self::StoreUnavailable | Self::ProviderError => GatewayError::Unavailable,
            Self::RequirementUnmet => GatewayError::Forbidden,
            _ => GatewayError::Unauthenticated,
        }
    }
}

impl From<BearerError> for AuthFailure {
    fn from(e: BearerError) -> Self {
        match e {
            BearerError::Invalid => Self::InvalidToken,
            BearerError::Expired => Self::ExpiredToken,
            BearerError::NoVerifier => Self::NoVerifier,
            BearerError::Provider => Self::ProviderError,
        }
    }
}

/// How a refused request is answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// A browser on a session route without credentials: log in, then come
    /// back to this path and query.
    Login { path_and_query: String },
    /// The JSON error; `challenge` adds `WWW-Authenticate` (a bearer token
    /// was sent, or the route takes only bearer tokens).
    Error {
        failure: AuthFailure,
        challenge: bool,
    },
}

impl Refusal {
    pub fn into_response(self, request_id: &str) -> HttpResponse {
        match self {
            Self::Login { path_and_query } => login_redirect(&path_and_query),
            Self::Error { failure, challenge } => {
                let mut res = failure.gateway_error().to_response(request_id);
                if challenge {
                    res.headers_mut().insert(
                        header::WWW_AUTHENTICATE,
                        HeaderValue::from_static("Bearer error=\"invalid_token\""),
                    );
                }
                res
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_map_to_who_is_at_fault() {
        assert_eq!(AuthFailure::StoreUnavailable.gateway_error().status(), 503);
        assert_eq!(AuthFailure::ProviderError.gateway_error().status(), 503);
        assert_eq!(AuthFailure::RequirementUnmet.gateway_error().status(), 403);
        assert_eq!(AuthFailure::RequirementUnmet.result(), "forbidden");
        for f in [
            AuthFailure::NoSession,
            AuthFailure::UnknownSession,
            AuthFailure::NoToken,
            AuthFailure::InvalidToken,
            AuthFailure::ExpiredToken,
            AuthFailure::NoVerifier,
            AuthFailure::RefreshFailed,
            AuthFailure::RefreshPending,
        ] {
            assert_eq!(f.gateway_error().status(), 401, "{f:?}");
            assert_eq!(f.result(), "unauthenticated");
        }
        assert_eq!(
            AuthFailure::from(BearerError::Expired).reason(),
            "expired_token"
        );
    }

    #[test]
    fn a_bearer_refusal_carries_the_challenge() {
        let res = Refusal::Error {
            failure: AuthFailure::InvalidToken,
            challenge: true,
        }
        .into_response("r1");
        assert_eq!(res.status(), 401);
        assert_eq!(
            res.headers().get(header::WWW_AUTHENTICATE).unwrap(),
            "Bearer error=\"invalid_token\""
        );
        let quiet = Refusal::Error {
            failure: AuthFailure::NoSession,
            challenge: false,
        }
        .into_response("r1");
        assert!(quiet.headers().get(header::WWW_AUTHENTICATE).is_none());
    }
}
