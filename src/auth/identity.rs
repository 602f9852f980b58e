//! Who made a request, as the auth stage established it: read from a
//! session, a JWT's claims or an introspection answer, checked against a
//! route's `require`, carried in the request extensions as
//! `Arc<Identity>` (access log `user`, rate-limit key `user`) and sent to
//! upstreams as `X-Auth-*` headers. A leaf of `auth`.

use std::sync::OnceLock;

use actix_web::http::header::{HeaderName, HeaderValue};
use serde_json::Value;

use crate::settings::RouteSettings;

/// Who made the request, as far as the gateway could establish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub subject: String,
    pub email: Option<String>,
    pub roles: Vec<String>,
    pub scopes: Vec<String>,
    /// `X-Auth-*` for upstreams, built once per identity (a cached session
    /// serves many requests).
    upstream_headers: OnceLock<Vec<(HeaderName, HeaderValue)>>,
}

impl Identity {
    pub fn new(
        subject: String,
        email: Option<String>,
        roles: Vec<String>,
        scopes: Vec<String>,
    ) -> Self {
        Self {
            subject,
            email,
            roles,
            scopes,
            upstream_headers: OnceLock::new(),
        }
    }

    /// `X-Auth-Subject`, `X-Auth-Email`, `X-Auth-Roles` (comma-separated)
    /// and `X-Auth-Scopes` (space-separated); a value that is not a valid
    /// header value is left out.
    pub fn upstream_headers(&self) -> &[(HeaderName, HeaderValue)] {
        self.upstream_headers.get_or_init(|| {
            let mut out = Vec::with_capacity(4);
            let mut push = |name: &'static str, value: &str| {
                if let Ok(v) = HeaderValue::from_str(value) {
                    out.push((HeaderName::from_static(name), v));
                }
            };
            push("x-auth-subject", &self.subject);
            if let Some(email) = &self.email {
                push("x-auth-email", email);
            }
            push("x-auth-roles", &self.roles.join(","));
            push("x-auth-scopes", &self.scopes.join(" "));
            out
        })
    }

    /// Reads subject, email, roles (`roles_claim`, a list or a space- or
    /// comma-separated string) and scopes (`scope` string or `scp` list).
    pub fn from_claims(claims: &Value, roles_claim: &str) -> Option<Self> {
        // Client-credentials tokens have no user: the client is the subject.
        let subject = claims
            .get("sub")
            .or_else(|| claims.get("client_id"))?
            .as_str()?
            .to_owned();
        let list = |v: Option<&Value>| -> Vec<String> {
            match v {
                Some(Value::Array(items)) => items
                    .iter()
                    .filter_map(|i| i.as_str().map(str::to_owned))
                    .collect(),
                Some(Value::String(s)) => s
                    .split([' ', ','])
                    .filter(|p| !p.is_empty())
                    .map(str::to_owned)
                    .collect(),
                _ => Vec::new(),
            }
        };
        let mut scopes = list(claims.get("scope"));
        if scopes.is_empty() {
            scopes = list(claims.get("scp"));
        }
        Some(Self::new(
            subject,
            claims
                .get("email")
                .and_then(Value::as_str)
                .map(str::to_owned),
            list(claims.get(roles_claim)),
            scopes,
        ))
    }

    /// All of the route's requirements hold.
    pub fn satisfies(&self, route: &RouteSettings) -> bool {
        // Lists are a handful of entries: a scan beats building a set.
        let has_all = |have: &[String], want: &[String]| want.iter().all(|w| have.contains(w));
        has_all(&self.scopes, &route.require_scopes) && has_all(&self.roles, &route.require_roles)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn identity_reads_lists_and_strings() {
        let id = Identity::from_claims(
            &json!({"sub": "u1", "email": "u1@x", "groups": "a b,c", "scope": "read write"}),
            "groups",
        )
        .unwrap();
        assert_eq!(id.roles, vec!["a", "b", "c"]);
        assert_eq!(id.scopes, vec!["read", "write"]);
        let id = Identity::from_claims(
            &json!({"sub": "u2", "roles": ["admin"], "scp": ["x"]}),
            "roles",
        )
        .unwrap();
        assert_eq!(id.roles, vec!["admin"]);
        assert_eq!(id.scopes, vec!["x"]);
        assert!(Identity::from_claims(&json!({"email": "no-sub"}), "roles").is_none());
        let client = Identity::from_claims(&json!({"client_id": "svc", "scope": "a"}), "roles");
        assert_eq!(client.unwrap().subject, "svc");
    }
}
