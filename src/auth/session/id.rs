//! Session ids: their shape (256 random bits in URL-safe base64), and the
//! one way from an id to the digest a session is cached, stored and locked
//! under, remembered per worker thread. The cookie's id itself is never
//! stored anywhere else. A leaf of the session store.

use std::cell::RefCell;

use crate::auth::crypto::IdDigest;

/// A session id's length: 256 random bits in URL-safe base64
/// (`crypto::random_token`). A cookie of any other shape names no session.
const SESSION_ID_LEN: usize = 43;
const DIGEST_MEMO_CAPACITY: usize = 4096;

thread_local! {
    /// Session ids this worker thread has seen, with their digests. A
    /// digest is a pure function of the id, so the memo is never stale; it
    /// spares a SHA-256 on every request with a cached session (without
    /// SHA CPU instructions, 3,640 of the 8,264 instructions a session
    /// route added per request). Cleared when full, so a flood of made-up
    /// ids costs what it did without the memo. Hashed with foldhash
    /// (randomly seeded) rather than SipHash, which cost 350 instructions
    /// per request for the 43 bytes: the ids are the client's, but the
    /// memo's bound caps what colliding ones could cost (at most 4,096
    /// entries to probe, then it is cleared).
    static DIGEST_MEMO: RefCell<foldhash::HashMap<[u8; SESSION_ID_LEN], IdDigest>> =
        RefCell::new(foldhash::HashMap::default());
}

/// True when `value` has the shape of a session id; anything else names no
/// session and never reaches the caches or the store.
pub fn is_session_id(value: &str) -> bool {
    // Without an early exit, so that it is vectorised: it runs on every
    // request to a session route.
    value.len() == SESSION_ID_LEN
        && value.bytes().fold(true, |ok, b| {
            ok & (b.is_ascii_alphanumeric() | (b == b'-') | (b == b'_'))
        })
}

/// The digest a session is cached, stored and locked under: the one way
/// from a session id to its key, remembered per worker thread.
pub fn id_digest(session_id: &str) -> IdDigest {
    let Ok(id) = <[u8; SESSION_ID_LEN]>::try_from(session_id.as_bytes()) else {
        return IdDigest::of(session_id);
    };
    DIGEST_MEMO.with(|memo| {
        let Ok(mut memo) = memo.try_borrow_mut() else {
            return IdDigest::of(session_id);
        };
        if let Some(digest) = memo.get(&id) {
            return *digest;
        }
        if memo.len() >= DIGEST_MEMO_CAPACITY {
            memo.clear();
        }
        let digest = IdDigest::of(session_id);
        memo.insert(id, digest);
        digest
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::crypto::random_token;

    #[test]
    fn only_the_shape_of_a_minted_id_is_a_session_id() {
        let id = random_token();
        assert!(is_session_id(&id));
        for bad in [
            "",
            "unknown-session-id",
            &id[..42],
            &format!("{id}A"),
            &format!("{}+", &id[..42]),
            &format!("{}=", &id[..42]),
        ] {
            assert!(!is_session_id(bad), "{bad}");
        }
    }

    #[test]
    fn id_digest_is_the_ids_digest_remembered_or_not() {
        let id = random_token();
        let expected = IdDigest::of(&id);
        // First computed, then remembered: the same either way.
        assert_eq!(id_digest(&id), expected);
        assert_eq!(id_digest(&id), expected);
        assert_eq!(id_digest("short"), IdDigest::of("short"));
    }

    #[test]
    fn id_digest_memo_stays_bounded() {
        for _ in 0..DIGEST_MEMO_CAPACITY + 10 {
            let id = random_token();
            assert_eq!(id_digest(&id), IdDigest::of(&id));
        }
        assert!(DIGEST_MEMO.with(|m| m.borrow().len()) <= DIGEST_MEMO_CAPACITY);
    }
}
