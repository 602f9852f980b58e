//! Why an exchange with an upstream failed, typed: the metrics `kind`, what
//! it means for the target's passive health and for a retry, and the
//! client-facing error. Plain requests and WebSocket upgrades share it.

use actix_web::http::StatusCode;
use awc::error::{SendRequestError, WsClientError};

use crate::error::GatewayError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamFailure {
    /// No connection could be opened (refused, unreachable, connect timeout).
    Connect,
    /// Connected, but no answer within `request_timeout_ms`.
    Timeout,
    /// The exchange broke after connecting (reset, a pooled connection the
    /// upstream had closed), or no valid answer came back.
    Broken,
    /// The client's request body failed while being streamed (the client
    /// went away mid-upload): not the target's fault.
    ClientBody,
    /// The client's body passed `max_body_bytes` while being streamed.
    BodyLimit { limit: u64 },
    /// The upstream answered a WebSocket handshake with this 4xx/5xx: a
    /// decision, not a failure of the target.
    UpgradeRefused(StatusCode),
}

impl UpstreamFailure {
    /// A failed request: connect failures, timeouts and broken exchanges;
    /// `body_exceeded` wins (the gateway cut the body, not the upstream).
    pub fn of_request(err: &SendRequestError, body_exceeded: Option<u64>) -> Self {
        if let Some(limit) = body_exceeded {
            return Self::BodyLimit { limit };
        }
        match err {
            SendRequestError::Connect(_) => Self::Connect,
            SendRequestError::Timeout => Self::Timeout,
            SendRequestError::Body(_) => Self::ClientBody,
            _ => Self::Broken,
        }
    }

    /// A failed WebSocket handshake.
    pub fn of_upgrade(err: &WsClientError) -> Self {
        match err {
            WsClientError::SendRequest(e) => Self::of_request(e, None),
            WsClientError::InvalidResponseStatus(status)
                if status.is_client_error() || status.is_server_error() =>
            {
                Self::UpgradeRefused(*status)
            }
            _ => Self::Broken,
        }
    }

    /// The target is at fault: no connection, no answer in time, or an
    /// exchange it broke. Passive health counts it (`max_fails`).
    pub fn counts_against_target(self) -> bool {
        matches!(self, Self::Connect | Self::Timeout | Self::Broken)
    }

    /// An idempotent request without a body may go to another target: the
    /// upstream cannot have acted on it twice in a way that matters (NGINX's
    /// `proxy_next_upstream error`). A timeout is not retried: the request
    /// has used its time, and a slow target may still be working on it.
    pub fn may_retry(self) -> bool {
        matches!(self, Self::Connect | Self::Broken)
    }

    /// `gateway_upstream_errors_total{kind}`; `None` when the target is not
    /// at fault (a refused upgrade is the upstream's answer).
    pub fn kind(self) -> Option<&'static str> {
        match self {
            Self::Connect => Some("connect"),
            Self::Timeout => Some("timeout"),
            Self::Broken | Self::ClientBody => Some("send"),
            Self::BodyLimit { .. } => Some("body_limit"),
            Self::UpgradeRefused(_) => None,
        }
    }

    pub fn gateway_error(self) -> GatewayError {
        match self {
            Self::Connect => GatewayError::UpstreamConnect,
            Self::Timeout => GatewayError::UpstreamTimeout,
            Self::Broken | Self::ClientBody => GatewayError::UpstreamBroken,
            Self::BodyLimit { limit } => GatewayError::BodyTooLarge { limit },
            Self::UpgradeRefused(status) => GatewayError::UpgradeRefused(status),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_answer_for_their_own_failures_and_a_cut_body_wins() {
        let connect = SendRequestError::Connect(awc::error::ConnectError::Timeout);
        let failure = UpstreamFailure::of_request(&connect, None);
        assert!(failure.counts_against_target() && failure.may_retry());
        assert_eq!(
            UpstreamFailure::of_request(&connect, Some(10)),
            UpstreamFailure::BodyLimit { limit: 10 }
        );
        let timeout = UpstreamFailure::of_request(&SendRequestError::Timeout, None);
        assert!(timeout.counts_against_target() && !timeout.may_retry());
        let reset = SendRequestError::Send(std::io::ErrorKind::ConnectionReset.into());
        let broken = UpstreamFailure::of_request(&reset, None);
        assert!(broken.counts_against_target() && broken.may_retry());
        assert_eq!(broken.gateway_error().status(), 502);
        let client_gone = SendRequestError::Body(Box::new(std::io::Error::other("gone")));
        let aborted = UpstreamFailure::of_request(&client_gone, None);
        assert!(!aborted.counts_against_target() && !aborted.may_retry());
        assert_eq!(timeout.kind(), Some("timeout"));
        assert_eq!(timeout.gateway_error().status(), 504);
        let refused = UpstreamFailure::of_upgrade(&WsClientError::InvalidResponseStatus(
            StatusCode::FORBIDDEN,
        ));
        assert_eq!(refused.kind(), None);
        assert_eq!(refused.gateway_error().status(), 403);
    }
}
