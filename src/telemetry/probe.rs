//! `gateway health`: asks a running gateway's admin listener for
//! `/health/ready` (or `/health/live`) over plain HTTP with awc, the
//! project's one HTTP client stack, and says in one line what it found. The
//! binary turns the outcome into its exit status: 0 when the answer is 200,
//! 1 for anything else (Docker's HEALTHCHECK reserves 2). A leaf: nothing of
//! the crate is used.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use awc::error::{ConnectError, SendRequestError};

/// Which admin endpoint to ask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `/health/ready`: 200 once the proxy listener serves, 503 while
    /// starting and from the first moment of draining.
    Ready,
    /// `/health/live`: 200 while the process answers at all.
    Live,
}

impl Endpoint {
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::Ready => "/health/ready",
            Endpoint::Live => "/health/live",
        }
    }
}

/// The admin answer the body of which is read, at most.
const BODY_LIMIT: usize = 4096;

/// Where to reach a listener bound to `listen`: an unspecified address
/// (`0.0.0.0`, `::`) means every interface, and this host's loopback is one.
pub fn reachable(listen: SocketAddr) -> SocketAddr {
    match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), listen.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), listen.port())
        }
        _ => listen,
    }
}

/// The URL to ask for `endpoint` at the admin listener `addr`.
pub fn url_for_addr(addr: SocketAddr, endpoint: Endpoint) -> String {
    format!("http://{}{}", reachable(addr), endpoint.path())
}

/// The URL to ask, from `--url`: the admin listener's base URL
/// (`http://host:port`), to which the endpoint's path is added; a URL with
/// a path of its own is asked as it is.
pub fn url_for_base(base: &str, endpoint: Endpoint) -> Result<String, String> {
    let mut url = url::Url::parse(base).map_err(|e| format!("--url {base:?}: {e}"))?;
    if url.scheme() != "http" {
        return Err(format!(
            "--url {base:?}: only http:// (the admin listener has no TLS)"
        ));
    }
    if url.host().is_none() {
        return Err(format!("--url {base:?}: no host"));
    }
    if url.path().is_empty() || url.path() == "/" {
        url.set_path(endpoint.path());
    }
    Ok(url.into())
}

/// Asks `url` once, within `timeout` in all (connecting, the answer's head
/// and body). `Ok`: the answer was 200, with a short description; `Err`:
/// why not, in one line.
pub async fn probe(url: &str, timeout: Duration) -> Result<String, String> {
    let client = awc::Client::builder()
        .connector(awc::Connector::new().timeout(timeout))
        .timeout(timeout)
        .disable_redirects()
        .finish();
    let work = async {
        let mut res = client
            .get(url)
            .insert_header(("user-agent", "gateway-health"))
            .send()
            .await
            .map_err(|e| describe_send_error(&e, timeout))?;
        let status = res.status();
        // The admin endpoints answer {"status": "ready" | "starting" | ...}.
        let word = match res.body().limit(BODY_LIMIT).await {
            Ok(body) => serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("status").and_then(|s| s.as_str()).map(str::to_owned)),
            Err(_) => None,
        };
        let described = match word {
            Some(word) => format!("{status} ({word})"),
            None => status.to_string(),
        };
        if status == awc::http::StatusCode::OK {
            Ok(described)
        } else {
            Err(described)
        }
    };
    match actix_rt::time::timeout(timeout, work).await {
        Ok(outcome) => outcome,
        Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
    }
}

fn describe_send_error(e: &SendRequestError, timeout: Duration) -> String {
    match e {
        SendRequestError::Timeout | SendRequestError::Connect(ConnectError::Timeout) => {
            format!("no answer within {} ms", timeout.as_millis())
        }
        SendRequestError::Connect(ConnectError::Io(io))
            if io.kind() == std::io::ErrorKind::ConnectionRefused =>
        {
            "connection refused: nothing listens there (is the gateway running, \
             and is this its admin.listen?)"
                .to_owned()
        }
        SendRequestError::Connect(e) => format!("cannot connect: {e}"),
        other => format!("request failed: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unspecified_addresses_become_loopback() {
        let v4: SocketAddr = "0.0.0.0:9090".parse().unwrap();
        assert_eq!(reachable(v4).to_string(), "127.0.0.1:9090");
        let v6: SocketAddr = "[::]:9090".parse().unwrap();
        assert_eq!(reachable(v6).to_string(), "[::1]:9090");
        let set: SocketAddr = "10.1.2.3:9091".parse().unwrap();
        assert_eq!(reachable(set), set);
        assert_eq!(
            url_for_addr(v6, Endpoint::Live),
            "http://[::1]:9090/health/live"
        );
    }

    #[test]
    fn base_urls_get_the_endpoint_path() {
        assert_eq!(
            url_for_base("http://127.0.0.1:9090", Endpoint::Ready).unwrap(),
            "http://127.0.0.1:9090/health/ready"
        );
        assert_eq!(
            url_for_base("http://gw:9090/", Endpoint::Live).unwrap(),
            "http://gw:9090/health/live"
        );
        assert_eq!(
            url_for_base("http://gw:9090/custom", Endpoint::Live).unwrap(),
            "http://gw:9090/custom"
        );
        assert!(url_for_base("https://gw:9090", Endpoint::Ready)
            .unwrap_err()
            .contains("only http://"));
        assert!(url_for_base("gw:9090", Endpoint::Ready).is_err());
        assert!(url_for_base("not a url", Endpoint::Ready).is_err());
    }
}
