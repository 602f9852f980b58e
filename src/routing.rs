//! Route table: compiled once at startup, consulted once per request.
//!
//! Sits right after the access-log middleware: the route-match middleware
//! normalises the request path ([`normalize_path`]) and looks it up here; auth,
//! rate limiting and the proxy then work from the matched route.
//!
//! Routes live in a trie keyed by path segment, so a lookup costs one hash
//! probe per segment of the request path, whatever the number of routes.
//! The deepest node holding a route whose host and methods fit wins: that is
//! "longest prefix on path-segment boundaries".

use std::borrow::Cow;
use std::collections::HashMap;

use actix_web::http::Method;

use crate::settings::RouteSettings;

#[derive(Default)]
struct Node {
    children: HashMap<Box<str>, Node>,
    /// Routes whose prefix ends here; host-specific ones first.
    routes: Vec<usize>,
}

/// The outcome of a lookup.
#[derive(Debug, PartialEq, Eq)]
pub enum RouteMatch {
    Found(usize),
    /// Path and host match routes, but none allows the method.
    MethodNotAllowed(String),
    NotFound,
}

pub struct RouteTable {
    root: Node,
    routes: Vec<RouteSettings>,
}

impl RouteTable {
    pub fn new(routes: Vec<RouteSettings>) -> Self {
        let mut root = Node::default();
        for (idx, route) in routes.iter().enumerate() {
            let mut node = &mut root;
            for segment in segments(&route.path_prefix) {
                node = node.children.entry(segment.into()).or_default();
            }
            node.routes.push(idx);
        }
        fn sort(node: &mut Node, routes: &[RouteSettings]) {
            node.routes.sort_by_key(|&i| routes[i].host.is_none());
            for child in node.children.values_mut() {
                sort(child, routes);
            }
        }
        sort(&mut root, &routes);
        Self { root, routes }
    }

    pub fn routes(&self) -> &[RouteSettings] {
        &self.routes
    }

    pub fn get(&self, idx: usize) -> &RouteSettings {
        &self.routes[idx]
    }

    /// `path` must already be normalised; `host` is the Host header (any case,
    /// port allowed).
    pub fn find(&self, host: Option<&str>, method: &Method, path: &str) -> RouteMatch {
        let host = host.map(crate::settings::strip_port);
        let mut found = None;
        let mut allowed: Option<&[usize]> = None;
        let mut node = &self.root;
        self.visit(node, host, method, &mut found, &mut allowed);
        for segment in segments(path) {
            match node.children.get(segment) {
                Some(child) => node = child,
                None => break,
            }
            self.visit(node, host, method, &mut found, &mut allowed);
        }
        match (found, allowed) {
            (Some(idx), _) => RouteMatch::Found(idx),
            (None, Some(candidates)) => {
                let mut methods: Vec<&str> = candidates
                    .iter()
                    .filter(|&&i| self.host_fits(i, host))
                    .flat_map(|&i| self.routes[i].methods.iter().map(Method::as_str))
                    .collect();
                methods.sort_unstable();
                methods.dedup();
                RouteMatch::MethodNotAllowed(methods.join(", "))
            }
            (None, None) => RouteMatch::NotFound,
        }
    }

    fn host_fits(&self, idx: usize, host: Option<&str>) -> bool {
        match (&self.routes[idx].host, host) {
            (None, _) => true,
            (Some(want), Some(have)) => want.eq_ignore_ascii_case(have),
            (Some(_), None) => false,
        }
    }

    fn visit<'a>(
        &self,
        node: &'a Node,
        host: Option<&str>,
        method: &Method,
        found: &mut Option<usize>,
        allowed: &mut Option<&'a [usize]>,
    ) {
        let mut host_matched = false;
        for &idx in &node.routes {
            if !self.host_fits(idx, host) {
                continue;
            }
            host_matched = true;
            let methods = &self.routes[idx].methods;
            if methods.is_empty() || methods.contains(method) {
                *found = Some(idx);
                *allowed = None;
                return;
            }
        }
        if host_matched {
            *allowed = Some(&node.routes);
        }
    }
}

fn segments(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter(|s| !s.is_empty())
}

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
/// or carrying an encoded NUL, backslash or control character.
pub fn normalize_path(raw: &str) -> Option<String> {
    if !raw.starts_with('/') {
        return None;
    }
    let bytes = raw.as_bytes();
    let mut decoded: Vec<u8> = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
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

/// Cheap check that lets the common, already-clean path skip allocation.
pub fn is_normal(raw: &str) -> bool {
    raw.starts_with('/')
        && !raw.contains("//")
        && !raw.contains("/./")
        && !raw.contains("/../")
        && !raw.ends_with("/.")
        && !raw.ends_with("/..")
        && !raw
            .bytes()
            .any(|b| b == b'%' || b == b'\\' || b < 0x20 || b == 0x7f)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(name: &str, prefix: &str, methods: &[&str], host: Option<&str>) -> RouteSettings {
        RouteSettings {
            methods: methods
                .iter()
                .map(|m| Method::from_bytes(m.as_bytes()).unwrap())
                .collect(),
            host: host.map(str::to_owned),
            ..RouteSettings::prefix_only(name, prefix)
        }
    }

    fn name(t: &RouteTable, host: Option<&str>, method: Method, path: &str) -> String {
        match t.find(host, &method, path) {
            RouteMatch::Found(i) => t.get(i).name.clone(),
            RouteMatch::MethodNotAllowed(allow) => format!("405 {allow}"),
            RouteMatch::NotFound => "404".into(),
        }
    }

    #[test]
    fn longest_segment_prefix_wins() {
        let t = RouteTable::new(vec![
            route("root", "/", &[], None),
            route("api", "/api", &[], None),
            route("users", "/api/users", &[], None),
        ]);
        assert_eq!(name(&t, None, Method::GET, "/api/users/7"), "users");
        assert_eq!(name(&t, None, Method::GET, "/api/users"), "users");
        assert_eq!(name(&t, None, Method::GET, "/api/usersX"), "api");
        assert_eq!(name(&t, None, Method::GET, "/apix"), "root");
        assert_eq!(name(&t, None, Method::GET, "/"), "root");
    }

    #[test]
    fn host_and_methods_narrow_the_match() {
        let t = RouteTable::new(vec![
            route("any", "/a", &[], None),
            route("hosted", "/a", &[], Some("api.example.com")),
            route("get_only", "/b", &["GET", "HEAD"], None),
            route("fallback", "/", &["POST"], None),
        ]);
        assert_eq!(
            name(&t, Some("API.example.com:8080"), Method::GET, "/a/x"),
            "hosted"
        );
        assert_eq!(name(&t, Some("other"), Method::GET, "/a/x"), "any");
        assert_eq!(name(&t, None, Method::GET, "/b"), "get_only");
        // A shorter prefix that allows the method wins over a longer one that does not.
        assert_eq!(name(&t, None, Method::POST, "/b"), "fallback");
        assert_eq!(name(&t, None, Method::DELETE, "/b"), "405 GET, HEAD");
        assert_eq!(name(&t, None, Method::DELETE, "/zzz"), "405 POST");
    }

    #[test]
    fn empty_table_finds_nothing() {
        let t = RouteTable::new(vec![]);
        assert_eq!(name(&t, None, Method::GET, "/"), "404");
    }

    #[test]
    fn lookup_with_ten_thousand_routes() {
        let routes: Vec<_> = (0..10_000)
            .map(|i| route(&format!("r{i}"), &format!("/svc{i}/v1"), &[], None))
            .collect();
        let t = RouteTable::new(routes);
        assert_eq!(name(&t, None, Method::GET, "/svc9999/v1/items"), "r9999");
        assert_eq!(name(&t, None, Method::GET, "/svc9999/v2"), "404");
    }

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
    fn clean_paths_are_recognised() {
        assert!(is_normal("/api/users/7"));
        assert!(!is_normal("/api//users"));
        assert!(!is_normal("/api/%2e%2e/x"));
        assert!(!is_normal("/api/.."));
    }

    #[test]
    fn prefixes_respect_segments() {
        assert!(has_segment_prefix("/api/users", "/api"));
        assert!(!has_segment_prefix("/apix", "/api"));
        assert_eq!(strip_segment_prefix("/api/users", "/api"), "/users");
        assert_eq!(strip_segment_prefix("/api", "/api"), "/");
        assert_eq!(strip_segment_prefix("/other", "/api"), "/other");
    }
}
