//! Refreshing a session's tokens close to expiry, exactly once: one
//! request per replica refreshes (the store's single flight) and one
//! replica per cluster (the store's Redis lock, its lease kept alive while
//! the provider answers); every other request waits, bounded, for the
//! result instead of asking the provider again.
//!
//! Reached from the auth stage (`Auth::identify`) only when a session's
//! access token is due; the refresh-token grant itself goes through the
//! `oauth2` client over awc.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::{select, Either};
use oauth2::{RefreshToken, TokenResponse as _};

use super::failure::AuthFailure;
use super::http;
use super::identity::Identity;
use super::provider::Provider;
use super::session::model::{unix_now, Session};
use super::session::SessionStore;

/// Refresh an access token this long before it expires, or within the
/// last half of its lifetime when that is shorter: a token that lives less
/// than the window would otherwise be due the moment it is issued, and
/// every request would refresh it again.
const REFRESH_AHEAD_SECS: u64 = 30;
/// How long a request waits for another request's (or replica's) refresh.
const REFRESH_WAIT: Duration = Duration::from_secs(5);
const REFRESH_POLL: Duration = Duration::from_millis(100);

/// Why a refresh did not produce fresh tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshError {
    /// The provider refused the refresh token: the session is over.
    Refused,
    /// The provider could not be asked: try again later.
    Unreachable,
}

/// The session's access token is about to expire and can be renewed.
/// Without a refresh token there is nothing to renew: the session lives
/// its `ttl_secs` (the gateway itself never presents the access token).
pub fn is_due(session: &Session) -> bool {
    is_due_at(session, unix_now())
}

fn is_due_at(session: &Session, now: u64) -> bool {
    let (issued, expires) = (session.access_issued_at, session.access_expires_at);
    let lifetime = expires.saturating_sub(issued);
    let ahead = if issued == 0 {
        REFRESH_AHEAD_SECS
    } else {
        REFRESH_AHEAD_SECS.min(lifetime / 2)
    };
    session.refresh_token.is_some() && expires != 0 && now + ahead >= expires
}

/// Where a waiting request looks for the refreshed session.
#[derive(Clone, Copy)]
enum Watch {
    /// This replica's cache (another request of this replica refreshes).
    Cache,
    /// The store itself (another replica refreshes).
    Store,
}

/// The identity of a session whose tokens are due (see [`is_due`]),
/// refreshed once; `true` when this request did the refresh.
pub async fn refresh_session(
    sessions: &SessionStore,
    provider: &Provider,
    session_id: &str,
    session: &Session,
) -> Result<(Arc<Identity>, bool), AuthFailure> {
    if let Some(flight) = sessions.begin_refresh(session_id) {
        let result = refresh_once(sessions, provider, session_id, session).await;
        drop(flight);
        return result;
    }
    if unix_now() < session.access_expires_at {
        return Ok((session.identity(), false));
    }
    // Another request of this replica is refreshing a token already
    // expired: wait for its result rather than failing this one.
    wait_for_refresh(sessions, session_id, session, Watch::Cache)
        .await
        .map(|id| (id, false))
}

/// Waits (bounded) until the stored session carries newer tokens than
/// `stale`.
async fn wait_for_refresh(
    sessions: &SessionStore,
    session_id: &str,
    stale: &Session,
    watch: Watch,
) -> Result<Arc<Identity>, AuthFailure> {
    let deadline = Instant::now() + REFRESH_WAIT;
    while Instant::now() < deadline {
        actix_rt::time::sleep(REFRESH_POLL).await;
        let current = match watch {
            Watch::Store => sessions.lookup_uncached(session_id).await,
            Watch::Cache => sessions.lookup(session_id).await,
        };
        match current {
            Ok(Some(s)) if s.access_expires_at > stale.access_expires_at => {
                return Ok(s.identity());
            }
            Ok(None) => return Err(AuthFailure::RefreshFailed),
            _ => {}
        }
    }
    if unix_now() < stale.access_expires_at {
        Ok(stale.identity())
    } else {
        Err(AuthFailure::RefreshPending)
    }
}

/// This replica's one refresh of the session: under the cluster lock, or
/// waiting for the replica that holds it.
async fn refresh_once(
    sessions: &SessionStore,
    provider: &Provider,
    session_id: &str,
    session: &Session,
) -> Result<(Arc<Identity>, bool), AuthFailure> {
    let lease = sessions
        .lock_refresh(session_id)
        .await
        .map_err(|_| AuthFailure::StoreUnavailable)?;
    let Some(lease) = lease else {
        // Another replica refreshes: wait for its result.
        return wait_for_refresh(sessions, session_id, session, Watch::Store)
            .await
            .map(|id| (id, false));
    };
    // Another replica may have finished just before we took the lock.
    if let Ok(Some(latest)) = sessions.lookup_uncached(session_id).await {
        if latest.access_expires_at > session.access_expires_at {
            lease.release().await;
            return Ok((latest.identity(), false));
        }
    }
    let exchanged = {
        let exchange = std::pin::pin!(exchange_refresh_token(provider, session));
        let keep_alive = std::pin::pin!(lease.keep_alive());
        match select(exchange, keep_alive).await {
            Either::Left((result, _)) => result,
            Either::Right(((), _)) => Err(RefreshError::Unreachable),
        }
    };
    let outcome = match exchanged {
        Ok(fresh) => {
            let identity = fresh.identity();
            match sessions.save(session_id, fresh).await {
                Ok(()) => Ok((identity, true)),
                Err(_) => Err(AuthFailure::StoreUnavailable),
            }
        }
        // A refresh the provider refuses ends the session.
        Err(RefreshError::Refused) => {
            let _ = sessions.delete(session_id).await;
            Err(AuthFailure::RefreshFailed)
        }
        // Provider unreachable: keep the session while its token lives.
        Err(RefreshError::Unreachable) if unix_now() < session.access_expires_at => {
            Ok((session.identity(), false))
        }
        Err(RefreshError::Unreachable) => Err(AuthFailure::ProviderError),
    };
    lease.release().await;
    outcome
}

/// Swaps a session's tokens for fresh ones with its refresh token.
pub async fn exchange_refresh_token(
    provider: &Provider,
    session: &Session,
) -> Result<Session, RefreshError> {
    let (Some(oauth), Some(refresh_token)) =
        (provider.oauth.as_ref(), session.refresh_token.as_ref())
    else {
        return Err(RefreshError::Refused);
    };
    let token = oauth
        .exchange_refresh_token(&RefreshToken::new(refresh_token.clone()))
        .request_async(&http::oauth_http)
        .await
        .map_err(|e| match e {
            oauth2::RequestTokenError::ServerResponse(_) => RefreshError::Refused,
            _ => RefreshError::Unreachable,
        })?;
    let now = unix_now();
    let mut fresh = session.clone();
    fresh.access_token = token.access_token().secret().clone();
    if let Some(rt) = token.refresh_token() {
        fresh.refresh_token = Some(rt.secret().clone());
    }
    fresh.access_expires_at = token.expires_in().map_or(0, |d| now + d.as_secs());
    fresh.access_issued_at = now;
    // Kept only when the provider's logout will take it as a hint.
    if provider.logout.provider {
        if let Some(id_token) = &token.extra_fields().id_token {
            fresh.id_token = Some(id_token.clone());
        }
    }
    Ok(fresh)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::identity::Identity;

    fn session(issued: u64, expires: u64) -> Session {
        let identity = Identity::new("u".into(), None, Vec::new(), Vec::new());
        let mut s = Session::new(
            identity,
            "a".into(),
            Some("r".into()),
            expires,
            issued,
            10_000,
        );
        s.access_issued_at = issued;
        s
    }

    #[test]
    fn a_token_is_due_in_the_last_30_s_or_the_last_half_of_a_shorter_life() {
        // An hour-long token: due 30 s before it expires.
        let long = session(1_000, 4_600);
        assert!(!is_due_at(&long, 4_569));
        assert!(is_due_at(&long, 4_570));
        // A 4 s token: due after 2 s, not the moment it is issued.
        let short = session(1_000, 1_004);
        assert!(!is_due_at(&short, 1_001));
        assert!(is_due_at(&short, 1_002));
        // Unknown issue time (older sessions): the 30 s window.
        let old = session(0, 1_004);
        assert!(is_due_at(&old, 980));
        // Nothing to refresh with, or no expiry known: never due.
        let mut no_refresh = session(1_000, 1_004);
        no_refresh.refresh_token = None;
        assert!(!is_due_at(&no_refresh, 1_003));
        assert!(!is_due_at(&session(1_000, 0), 5_000));
    }
}
