//! The validators' notebook: every problem found while raw settings are
//! turned into validated ones, each located by the file (or variable) and
//! key it came from, plus the checks several sections share (URLs, socket
//! addresses, CA files, positive numbers).

use std::net::SocketAddr;
use std::path::PathBuf;

use super::problem::Problem;

/// Collects problems while raw settings are turned into validated ones.
pub struct Checker<'a> {
    locate: &'a dyn Fn(&str) -> String,
    pub problems: Vec<Problem>,
}

impl<'a> Checker<'a> {
    /// `locate` names where a (figment) key's value came from.
    pub fn new(locate: &'a dyn Fn(&str) -> String) -> Self {
        Self {
            locate,
            problems: Vec::new(),
        }
    }

    /// `figment_key` finds the source; `shown_key` is what the operator reads.
    pub fn fail(&mut self, figment_key: &str, shown_key: &str, message: impl Into<String>) {
        self.problems.push(Problem {
            source: (self.locate)(figment_key),
            key: shown_key.to_owned(),
            message: message.into(),
        });
    }

    pub fn key(&mut self, key: &str, message: impl Into<String>) {
        self.fail(key, key, message);
    }

    /// A PEM CA bundle that must load (checked now, so a bad file stops
    /// `gateway check` and startup, not the first TLS handshake).
    pub fn ca_file(&mut self, key: &str, value: &Option<String>) -> Option<PathBuf> {
        let path = value
            .as_deref()
            .filter(|f| !f.is_empty())
            .map(PathBuf::from)?;
        if let Err(e) = crate::tls::client_config(Some(&path)) {
            self.key(key, format!("{}: {e}", path.display()));
        }
        Some(path)
    }

    pub fn socket_addr(&mut self, key: &str, value: &str) -> Option<SocketAddr> {
        match value.parse() {
            Ok(addr) => Some(addr),
            Err(_) => {
                self.key(
                    key,
                    format!("{value:?} is not a socket address like 0.0.0.0:8080"),
                );
                None
            }
        }
    }

    pub fn positive(&mut self, key: &str, value: u64) {
        if value == 0 {
            self.key(key, "must be greater than 0");
        }
    }

    pub fn url(&mut self, key: &str, value: &str, schemes: &[&str]) -> Option<url::Url> {
        match url::Url::parse(value) {
            Ok(u) if schemes.contains(&u.scheme()) && u.host_str().is_some() => Some(u),
            Ok(_) => {
                self.key(
                    key,
                    format!(
                        "{value:?} must be an absolute URL with a host and scheme {}",
                        schemes.join(" or ")
                    ),
                );
                None
            }
            Err(e) => {
                self.key(key, format!("{value:?} is not a valid URL: {e}"));
                None
            }
        }
    }
}
