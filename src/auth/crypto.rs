//! Secrets at rest and random identifiers for the auth stage.
//!
//! Sessions stored in Redis are sealed with ChaCha20-Poly1305 under a key
//! derived (HKDF-SHA256) from `auth.session.secret`, bound to the hashed
//! session id; Redis only ever sees the SHA-256 of a session id, never the
//! id that the cookie carries.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use sha2::{Digest, Sha256};

const NONCE_LEN: usize = 12;

/// 256 random bits, URL-safe base64 (43 characters).
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    // The OS RNG failing is not recoverable; no id is better than a weak one.
    getrandom::fill(&mut bytes).expect("operating system random number generator");
    URL_SAFE_NO_PAD.encode(bytes)
}

/// SHA-256 of a secret identifier (session id, login state, bearer token):
/// caches, stores and messages hold it in place of the secret (only the
/// worker threads' id-to-digest memo in `session.rs` keeps session ids). Kept as
/// bytes (the per-request cache lookup needs no text); written as lowercase
/// hex where it becomes text (Redis keys, pub/sub, the AEAD binding).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct IdDigest([u8; 32]);

/// A cache keyed by digests. They are SHA-256 outputs, which no client can
/// aim at one hash bucket, so they are hashed with foldhash (randomly
/// seeded) instead of moka's SipHash: SipHash of the 32 bytes was a third
/// of a cached session lookup.
pub type DigestCache<V> = moka::sync::Cache<IdDigest, V, foldhash::fast::RandomState>;

/// A [`DigestCache`] of at most `capacity` entries, each kept for `ttl`.
pub fn digest_cache<V: Clone + Send + Sync + 'static>(
    capacity: u64,
    ttl: std::time::Duration,
) -> DigestCache<V> {
    moka::sync::Cache::builder()
        .max_capacity(capacity)
        .time_to_live(ttl)
        .build_with_hasher(foldhash::fast::RandomState::default())
}

impl IdDigest {
    pub fn of(value: &str) -> Self {
        Self(Sha256::digest(value.as_bytes()).into())
    }

    /// Reads the hex form back (pub/sub invalidations).
    pub fn parse(text: &str) -> Option<Self> {
        // Only the form `Display` writes (lower case), as replicas publish it.
        if text.bytes().any(|b| b.is_ascii_uppercase()) {
            return None;
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(text, &mut out).ok()?;
        Some(Self(out))
    }
}

impl std::fmt::Display for IdDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut text = [0u8; 64];
        hex::encode_to_slice(self.0, &mut text).map_err(|_| std::fmt::Error)?;
        f.write_str(std::str::from_utf8(&text).map_err(|_| std::fmt::Error)?)
    }
}

/// Hex SHA-256 of a value, as text (login-state records).
pub fn digest(value: &str) -> String {
    IdDigest::of(value).to_string()
}

pub struct SessionCrypto {
    cipher: ChaCha20Poly1305,
}

impl SessionCrypto {
    pub fn new(secret: &str) -> Self {
        let hk = hkdf::Hkdf::<Sha256>::new(Some(b"gateway-session"), secret.as_bytes());
        let mut key = [0u8; 32];
        // 32 bytes is always a valid HKDF-SHA256 output length.
        hk.expand(b"session-encryption-v1", &mut key)
            .expect("32-byte HKDF output");
        Self {
            cipher: ChaCha20Poly1305::new(Key::from_slice(&key)),
        }
    }

    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).expect("operating system random number generator");
        let mut out = nonce.to_vec();
        // Encryption with a valid key and nonce cannot fail.
        let sealed = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .expect("ChaCha20-Poly1305 encryption");
        out.extend_from_slice(&sealed);
        out
    }

    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < NONCE_LEN {
            return None;
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        self.cipher
            .decrypt(Nonce::from_slice(nonce), Payload { msg: body, aad })
            .ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_data_opens_only_with_the_same_key_and_aad() {
        let c = SessionCrypto::new("0123456789abcdef0123456789abcdef");
        let sealed = c.seal(b"id-hash", b"tokens");
        assert_eq!(c.open(b"id-hash", &sealed).as_deref(), Some(&b"tokens"[..]));
        assert_eq!(c.open(b"other", &sealed), None);
        let other = SessionCrypto::new("another secret of at least 32 bytes!!");
        assert_eq!(other.open(b"id-hash", &sealed), None);
        assert!(!sealed.windows(6).any(|w| w == b"tokens"));
    }

    #[test]
    fn tokens_are_random_and_url_safe() {
        let a = random_token();
        assert_eq!(a.len(), 43);
        assert_ne!(a, random_token());
        assert!(a
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(digest("abc"), abc);
        assert_eq!(IdDigest::parse(abc), Some(IdDigest::of("abc")));
        assert_eq!(IdDigest::parse(&abc.to_uppercase()), None);
        assert_eq!(IdDigest::parse(&abc[1..]), None);
    }
}
