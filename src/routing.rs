//! Route table: compiled once at startup, consulted once per request.
//!
//! Sits right after the access-log middleware: the route-match stage hands
//! it the request's host, method and raw path ([`RouteTable::match_request`]),
//! which it normalises (`path::normalize_path`) and looks up; auth, rate
//! limiting and the proxy then work from the [`MatchedRoute`].
//!
//! Routes live in a trie keyed by path segment, so a lookup costs one hash
//! probe per segment of the request path, whatever the number of routes.
//! The deepest node holding a route whose host and methods fit wins: that is
//! "longest prefix on path-segment boundaries".

use actix_web::http::Method;

use crate::context::MatchedRoute;
use crate::error::GatewayError;
use crate::path::{is_normal, normalize_path, strip_port};
use crate::settings::{AuthMode, RouteSettings};

#[derive(Default)]
struct Node {
    /// Keyed by configured segments. Lookups hash client input, but only
    /// inserts (from the settings) could crowd a bucket, so the faster
    /// non-DoS-resistant hasher is safe here.
    children: foldhash::HashMap<Box<str>, Node>,
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
    /// Some route names a `host`: only then does a lookup need the
    /// request's Host.
    hosted: bool,
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
        let hosted = routes.iter().any(|r| r.host.is_some());
        Self {
            root,
            routes,
            hosted,
        }
    }

    /// Whether any route names a `host` (else the request's Host header
    /// cannot change a match and need not be read).
    pub fn matches_hosts(&self) -> bool {
        self.hosted
    }

    pub fn routes(&self) -> &[RouteSettings] {
        &self.routes
    }

    pub fn get(&self, idx: usize) -> &RouteSettings {
        &self.routes[idx]
    }

    /// The route of a request: its raw path normalised (400 when it cannot
    /// be made safe), then looked up (404 no route, 405 method not allowed).
    pub fn match_request(
        &self,
        host: Option<&str>,
        method: &Method,
        raw_path: &str,
    ) -> Result<MatchedRoute, GatewayError> {
        let normalized = if is_normal(raw_path) {
            None
        } else {
            Some(normalize_path(raw_path).ok_or(GatewayError::BadPath)?)
        };
        let path = normalized.as_deref().unwrap_or(raw_path);
        match self.find(host, method, path) {
            RouteMatch::Found(index) => {
                let route = &self.routes[index];
                Ok(MatchedRoute {
                    index,
                    normalized,
                    authenticates: route.auth != AuthMode::None,
                    rate_limited: !route.rate_limits.is_empty(),
                })
            }
            RouteMatch::MethodNotAllowed(allow) => Err(GatewayError::MethodNotAllowed { allow }),
            RouteMatch::NotFound => Err(GatewayError::NoRoute),
        }
    }

    /// The route a CORS preflight asking for `asked` belongs to: only a
    /// route with `cors` (whatever its methods) answers preflights itself.
    pub fn match_cors_preflight(
        &self,
        host: Option<&str>,
        asked: &Method,
        raw_path: &str,
    ) -> Option<MatchedRoute> {
        let matched = self.match_request(host, asked, raw_path).ok()?;
        let route = self.get(matched.index);
        route
            .features
            .as_ref()
            .is_some_and(|f| f.cors.is_some())
            .then_some(matched)
    }

    /// `path` must already be normalised; `host` is the Host header (any case,
    /// port allowed).
    pub fn find(&self, host: Option<&str>, method: &Method, path: &str) -> RouteMatch {
        let host = host.map(strip_port);
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
    fn requests_are_matched_on_their_normalised_path() {
        let t = RouteTable::new(vec![route("admin", "/admin", &["GET"], None)]);
        let m = t
            .match_request(None, &Method::GET, "/public/%2e%2e/admin/x")
            .unwrap();
        assert_eq!(m.index, 0);
        assert_eq!(m.path("/public/%2e%2e/admin/x"), "/admin/x");
        let clean = t.match_request(None, &Method::GET, "/admin").unwrap();
        assert!(clean.normalized.is_none(), "a normal path is not copied");
        let refused = |path: &str, method: Method| t.match_request(None, &method, path).err();
        assert_eq!(refused("/a%00b", Method::GET), Some(GatewayError::BadPath));
        assert_eq!(refused("/other", Method::GET), Some(GatewayError::NoRoute));
        assert_eq!(
            refused("/admin", Method::POST),
            Some(GatewayError::MethodNotAllowed {
                allow: "GET".into()
            })
        );
    }
}
