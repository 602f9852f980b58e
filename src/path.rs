//! Request paths and hosts as the gateway compares them: normalisation (so
//! that what a route matches is exactly what the upstream acts on), prefixes
//! on path-segment boundaries, and the host without its port.
//!
//! A leaf: settings validation normalises route prefixes with it, the route
//! table and the route-match stage normalise request paths, the proxy strips
//! prefixes. It imports nothing from the gateway.

use std::borrow::Cow;

/// True when `prefix` is `path` or a whole-segment prefix of it.
pub fn has_segment_prefix(path: &str, prefix: &str) -> bool {
    if prefix == "/" {
        return true;
    }
    let prefix = prefix.trim_end_matches('/');
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// Removes a whole-segment `prefix` from `path`; the result starts with '/'.
pub fn strip_segment_prefix<'a>(path: &'a str, prefix: &str) -> Cow<'a, str> {
    if !has_segment_prefix(path, prefix) || prefix == "/" {
        return Cow::Borrowed(path);
    }
    let rest = &path[prefix.trim_end_matches('/').len()..];
    if rest.is_empty() {
        Cow::Borrowed("/")
    } else {
        Cow::Borrowed(rest)
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Normalises a request path so that what the gateway matches is exactly
/// what the upstream will act on:
/// - percent-encoded unreserved characters and '/' are decoded (so `%2e%2e`
///   is `..` and `%2f` a separator; `%61dmin` is `admin`);
/// - empty and `.` segments are dropped, `..` removes the previous segment
///   (never above the root);
/// - a trailing slash is kept, other percent-encodings are kept as sent.
///
/// Returns `None` for paths that cannot be made safe: not starting with '/',
/// carrying an encoded NUL, backslash or control character, or a `%` not
/// followed by two hex digits.
pub fn normalize_path(raw: &str) -> Option<String> {
    if !raw.starts_with('/') {
        return None;
    }
    let bytes = raw.as_bytes();
    let mut decoded: Vec<u8> = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            // A '%' that does not start an escape is refused: kept as sent,
            // `%%32%65` would leave `%2e` here (its tail decoded), and an
            // upstream that decodes once would read `.`, or `..` twice over.
            let h = bytes.get(i + 1).copied().and_then(hex)?;
            let l = bytes.get(i + 2).copied().and_then(hex)?;
            let c = h * 16 + l;
            if c < 0x20 || c == 0x7f || c == b'\\' {
                return None;
            }
            if is_unreserved(c) || c == b'/' {
                decoded.push(c);
            } else {
                decoded.extend_from_slice(&[b'%', bytes[i + 1], bytes[i + 2]]);
            }
            i += 3;
            continue;
        }
        if b < 0x20 || b == 0x7f || b == b'\\' {
            return None;
        }
        decoded.push(b);
        i += 1;
    }
    // Only ASCII bytes were decoded, so the result stays valid UTF-8.
    let decoded = String::from_utf8(decoded).ok()?;
    let mut out: Vec<&str> = Vec::new();
    for seg in decoded.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    let trailing = decoded.len() > 1
        && (decoded.ends_with('/') || decoded.ends_with("/.") || decoded.ends_with("/.."));
    let mut path = String::with_capacity(decoded.len());
    for seg in &out {
        path.push('/');
        path.push_str(seg);
    }
    if path.is_empty() || (trailing && !out.is_empty()) {
        path.push('/');
    }
    Some(path)
}

/// Cheap check that lets the common, already-clean path skip allocation:
/// it starts with `/`, has no `%`, `\\` or control byte, and no empty
/// (`//`), `.` or `..` segment; a trailing `/` is fine. One pass over the
/// bytes, since every request asks.
pub fn is_normal(raw: &str) -> bool {
    let bytes = raw.as_bytes();
    if bytes.first() != Some(&b'/') {
        return false;
    }
    let dot_segment = |segment: &[u8]| matches!(segment, b"." | b"..");
    let mut segment_start = 1;
    for (i, &b) in bytes.iter().enumerate().skip(1) {
        match b {
            b'/' => {
                let segment = &bytes[segment_start..i];
                if segment.is_empty() || dot_segment(segment) {
                    return false;
                }
                segment_start = i + 1;
            }
            b'%' | b'\\' | 0..0x20 | 0x7f => return false,
            _ => {}
        }
    }
    !dot_segment(&bytes[segment_start..])
}

/// `example.com:8080` -> `example.com`; IPv6 literals keep their brackets.
pub fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |end| &host[..=end]);
    }
    match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation_defeats_traversal() {
        let cases = [
            ("/public/../admin", "/admin"),
            ("/public/%2e%2e/admin", "/admin"),
            ("/public/%2E%2E%2Fadmin", "/admin"),
            ("/public/.%2e/admin", "/admin"),
            ("//admin//x", "/admin/x"),
            ("/./a/./b/", "/a/b/"),
            ("/../../etc/passwd", "/etc/passwd"),
            ("/%61dmin", "/admin"),
            ("/a/b/..", "/a/"),
            ("/", "/"),
            ("/..", "/"),
            ("/x%20y/%3F", "/x%20y/%3F"),
        ];
        for (raw, want) in cases {
            assert_eq!(normalize_path(raw).as_deref(), Some(want), "{raw}");
        }
        assert_eq!(normalize_path("/a%00b"), None);
        assert_eq!(normalize_path("/a%5c..%5cb"), None);
        assert_eq!(normalize_path("relative"), None);
    }

    #[test]
    fn a_percent_that_starts_no_escape_is_refused() {
        // Kept literally, `%%32%65` decoded to `%2e`: `..` one decode later.
        for raw in [
            "/a/%%32%65%%32%65/admin",
            "/a/%%32%66admin",
            "/a%",
            "/a%2",
            "/a%g1",
            "/a%1g",
            "/100%",
            "/%%",
        ] {
            assert_eq!(normalize_path(raw), None, "{raw}");
        }
        assert_eq!(normalize_path("/a%25b").as_deref(), Some("/a%25b"));
        assert_eq!(normalize_path("/a%2E").as_deref(), Some("/a."));
    }

    #[test]
    fn clean_paths_are_recognised() {
        assert!(is_normal("/api/users/7"));
        assert!(!is_normal("/api//users"));
        assert!(!is_normal("/api/%2e%2e/x"));
        assert!(!is_normal("/api/.."));
        assert!(is_normal("/") && is_normal("/api/") && is_normal("/a.b/..c/.d"));
        for unclean in [
            "", "api", "//", "/.", "/a/./b", "/a/../b", "/a/.", "/a\\b", "/a\tb",
        ] {
            assert!(!is_normal(unclean), "{unclean:?}");
        }
    }

    #[test]
    fn prefixes_respect_segments() {
        assert!(has_segment_prefix("/api/users", "/api"));
        assert!(!has_segment_prefix("/apix", "/api"));
        assert_eq!(strip_segment_prefix("/api/users", "/api"), "/users");
        assert_eq!(strip_segment_prefix("/api", "/api"), "/");
        assert_eq!(strip_segment_prefix("/other", "/api"), "/other");
    }

    #[test]
    fn strip_port_keeps_ipv6_brackets() {
        assert_eq!(strip_port("example.com:8080"), "example.com");
        assert_eq!(strip_port("example.com"), "example.com");
        assert_eq!(strip_port("[::1]:8080"), "[::1]");
    }
}
