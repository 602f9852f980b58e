//! What "the same client" means for a policy (its `key`: ip, user, route,
//! global or a header), and the names its state goes by: a per-process
//! hash for local limiters, a stable, bounded Redis key for cluster ones
//! (the same on every replica, whatever the client sent). A leaf of
//! `ratelimit`.

use std::net::IpAddr;

use actix_web::http::header::HeaderMap;

use crate::settings::RateLimitKey;

/// What identifies "the same client" for a policy, before hashing.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum KeyMaterial<'a> {
    Ip(IpAddr),
    User(&'a str),
    Route(usize),
    Global,
    Header(&'a [u8]),
}

impl KeyMaterial<'_> {
    /// A stable representation for Redis keys, identical on every replica
    /// and bounded in length whatever the client sent: 32 hex digits.
    pub fn stable_digest(&self) -> String {
        let mut out = String::with_capacity(32);
        self.push_stable_digest(&mut out);
        out
    }

    /// Appends [`Self::stable_digest`] to `out`. Written without `fmt`:
    /// it runs for every cluster decision, and formatting the digest and
    /// the key cost about 1,800 instructions per request.
    fn push_stable_digest(&self, out: &mut String) {
        let mut bytes = Vec::with_capacity(64);
        match self {
            Self::Ip(ip) => {
                bytes.push(b'i');
                // The text form, as replicas of earlier versions hash it.
                match ip {
                    IpAddr::V4(v4) => {
                        let mut digits = itoa::Buffer::new();
                        for (i, octet) in v4.octets().into_iter().enumerate() {
                            if i > 0 {
                                bytes.push(b'.');
                            }
                            bytes.extend_from_slice(digits.format(octet).as_bytes());
                        }
                    }
                    IpAddr::V6(v6) => bytes.extend_from_slice(v6.to_string().as_bytes()),
                }
            }
            Self::User(u) => {
                bytes.push(b'u');
                bytes.extend_from_slice(u.as_bytes());
            }
            Self::Route(r) => {
                bytes.push(b'r');
                bytes.extend_from_slice(itoa::Buffer::new().format(*r).as_bytes());
            }
            Self::Global => bytes.push(b'g'),
            Self::Header(h) => {
                bytes.push(b'h');
                bytes.extend_from_slice(h);
            }
        }
        let mut text = [0u8; 32];
        // Both sizes are fixed (16 bytes, 32 digits): it cannot fail.
        if hex::encode_to_slice(xxhash_rust::xxh3::xxh3_128(&bytes).to_be_bytes(), &mut text)
            .is_ok()
        {
            out.push_str(std::str::from_utf8(&text).unwrap_or_default());
        }
    }
}

/// Picks the key material of a policy from what the request carries.
/// `user` falls back to the client IP for anonymous requests, and
/// `header:<Name>` when the header is missing.
pub fn key_material<'a>(
    key: &RateLimitKey,
    client_ip: IpAddr,
    user: Option<&'a str>,
    route: usize,
    headers: &'a HeaderMap,
) -> KeyMaterial<'a> {
    match key {
        RateLimitKey::Ip => KeyMaterial::Ip(client_ip),
        RateLimitKey::User => user.map_or(KeyMaterial::Ip(client_ip), KeyMaterial::User),
        RateLimitKey::Route => KeyMaterial::Route(route),
        RateLimitKey::Global => KeyMaterial::Global,
        RateLimitKey::Header(name) => headers
            .get(name.as_str())
            .map_or(KeyMaterial::Ip(client_ip), |v| {
                KeyMaterial::Header(v.as_bytes())
            }),
    }
}

/// The Redis key of a cluster policy's state for `material`. The digest is
/// the hash tag (`{...}`), so a Redis Cluster keeps one client's key of
/// every policy on one slot.
pub fn cluster_key(policy: &str, material: &KeyMaterial<'_>) -> String {
    const PREFIX: &str = "gw:rl:";
    let mut key = String::with_capacity(PREFIX.len() + policy.len() + 2 + 32 + 1);
    key.push_str(PREFIX);
    key.push_str(policy);
    key.push_str(":{");
    material.push_stable_digest(&mut key);
    key.push('}');
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_stable_and_bounded() {
        let long = vec![b'x'; 10_000];
        let a = KeyMaterial::Header(&long).stable_digest();
        assert_eq!(a.len(), 32);
        assert_eq!(a, KeyMaterial::Header(&long).stable_digest());
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        assert_ne!(
            KeyMaterial::Ip(ip).stable_digest(),
            KeyMaterial::Header(b"10.0.0.1").stable_digest()
        );
        // The same keys as every earlier version, so that replicas of two
        // versions share their counters during a rolling upgrade.
        let same_as_before = |material: KeyMaterial<'_>, hashed: &[u8]| {
            let before = format!("{:032x}", xxhash_rust::xxh3::xxh3_128(hashed));
            assert_eq!(material.stable_digest(), before);
        };
        same_as_before(KeyMaterial::Ip(ip), b"i10.0.0.1");
        let v4: IpAddr = "192.168.200.7".parse().unwrap();
        same_as_before(KeyMaterial::Ip(v4), b"i192.168.200.7");
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        same_as_before(KeyMaterial::Ip(v6), b"i2001:db8::1");
        same_as_before(KeyMaterial::Route(42), b"r42");
        same_as_before(KeyMaterial::User("alice"), b"ualice");
        same_as_before(KeyMaterial::Global, b"g");
        same_as_before(KeyMaterial::Header(b"k1"), b"hk1");
    }

    #[test]
    fn key_material_follows_the_policy_key_and_falls_back_to_ip() {
        use actix_web::http::header::{HeaderName, HeaderValue};
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(
            HeaderName::from_static("x-api-key"),
            HeaderValue::from_static("k1"),
        );
        let header_key = RateLimitKey::Header("x-api-key".into());
        assert_eq!(
            key_material(&header_key, ip, None, 3, &headers),
            KeyMaterial::Header(b"k1")
        );
        let other = RateLimitKey::Header("x-tenant".into());
        assert_eq!(
            key_material(&other, ip, None, 3, &headers),
            KeyMaterial::Ip(ip)
        );
        assert_eq!(
            key_material(&RateLimitKey::User, ip, Some("alice"), 3, &headers),
            KeyMaterial::User("alice")
        );
        assert_eq!(
            key_material(&RateLimitKey::User, ip, None, 3, &headers),
            KeyMaterial::Ip(ip)
        );
        assert_eq!(
            key_material(&RateLimitKey::Route, ip, None, 3, &headers),
            KeyMaterial::Route(3)
        );
        assert_eq!(
            key_material(&RateLimitKey::Global, ip, None, 3, &headers),
            KeyMaterial::Global
        );
    }

    #[test]
    fn cluster_keys_name_the_policy_and_tag_the_digest() {
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let key = cluster_key("login", &KeyMaterial::Ip(ip));
        let digest = KeyMaterial::Ip(ip).stable_digest();
        assert_eq!(key, format!("gw:rl:login:{{{digest}}}"));
    }
}
