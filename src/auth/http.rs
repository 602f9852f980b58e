//! The gateway's only HTTP client stack talking to the identity provider:
//! awc, one client per thread (awc clients are `!Send`), used for OpenID
//! discovery, JWKS, token exchange (through the `oauth2` crate, whose
//! default HTTP stacks are disabled), userinfo, introspection and revocation.

use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde_json::Value;

/// Provider calls never wait longer than this.
pub const PROVIDER_TIMEOUT: Duration = Duration::from_secs(10);
/// Larger provider answers are refused (JWKS and discovery are small).
const MAX_PROVIDER_BODY: usize = 1024 * 1024;

/// The TLS trust for `https://` provider URLs, fixed once at startup by
/// [`trust`] before the first provider call (each thread's client is built
/// lazily afterwards).
static PROVIDER_TLS: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();

/// Trusts only `ca_file` (a private CA) for provider calls, or Mozilla's
/// roots without one. Later calls keep the first setting.
pub fn trust(ca_file: Option<&Path>) -> std::io::Result<()> {
    let tls = crate::tls::client_config(ca_file)?;
    let _ = PROVIDER_TLS.set(tls);
    Ok(())
}

thread_local! {
    static CLIENT: awc::Client = {
        let mut connector = awc::Connector::new();
        let tls = match PROVIDER_TLS.get() {
            Some(tls) => Ok(tls.clone()),
            None => crate::tls::client_config(None),
        };
        if let Ok(tls) = tls {
            connector = connector.rustls_0_23(tls);
        }
        awc::Client::builder()
            .connector(connector)
            .timeout(PROVIDER_TIMEOUT)
            .disable_redirects()
            .finish()
    };
}

fn client() -> awc::Client {
    CLIENT.with(Clone::clone)
}

#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error("provider request failed: {0}")]
    Send(String),
    #[error("provider answered {status}: {body}")]
    Status { status: u16, body: String },
    #[error("provider answer unreadable: {0}")]
    Body(String),
}

/// Adapter for `oauth2`'s async client interface.
pub async fn oauth_http(req: oauth2::HttpRequest) -> Result<oauth2::HttpResponse, ProviderError> {
    let (parts, body) = req.into_parts();
    let method = awc::http::Method::from_bytes(parts.method.as_str().as_bytes())
        .map_err(|e| ProviderError::Send(e.to_string()))?;
    let mut request = client().request(method, parts.uri.to_string());
    for (name, value) in &parts.headers {
        request = request.append_header((name.as_str(), value.as_bytes()));
    }
    let mut response = request
        .send_body(body)
        .await
        .map_err(|e| ProviderError::Send(e.to_string()))?;
    let bytes = response
        .body()
        .limit(MAX_PROVIDER_BODY)
        .await
        .map_err(|e| ProviderError::Body(e.to_string()))?;
    let mut builder = http::Response::builder().status(response.status().as_u16());
    for (name, value) in response.headers() {
        builder = builder.header(name.as_str(), value.as_bytes());
    }
    builder
        .body(bytes.to_vec())
        .map_err(|e| ProviderError::Body(e.to_string()))
}

async fn read_json(
    mut response: awc::ClientResponse<
        impl futures_util::Stream<Item = Result<bytes::Bytes, awc::error::PayloadError>> + Unpin,
    >,
) -> Result<Value, ProviderError> {
    let status = response.status().as_u16();
    let bytes = response
        .body()
        .limit(MAX_PROVIDER_BODY)
        .await
        .map_err(|e| ProviderError::Body(e.to_string()))?;
    if !(200..300).contains(&status) {
        return Err(ProviderError::Status {
            status,
            body: String::from_utf8_lossy(&bytes).chars().take(200).collect(),
        });
    }
    serde_json::from_slice(&bytes).map_err(|e| ProviderError::Body(e.to_string()))
}

/// GET a JSON document, optionally with a bearer token (userinfo).
pub async fn get_json(url: &str, bearer: Option<&str>) -> Result<Value, ProviderError> {
    let mut request = client()
        .get(url)
        .insert_header(("accept", "application/json"));
    if let Some(token) = bearer {
        request = request.bearer_auth(token);
    }
    let response = request
        .send()
        .await
        .map_err(|e| ProviderError::Send(e.to_string()))?;
    read_json(response).await
}

/// POST a form with the client's credentials (introspection, revocation).
pub async fn post_form(
    url: &str,
    client_id: &str,
    client_secret: &str,
    form: &[(&str, &str)],
) -> Result<Value, ProviderError> {
    let response = client()
        .post(url)
        .basic_auth(client_id, client_secret)
        .insert_header(("accept", "application/json"))
        .send_form(&form)
        .await
        .map_err(|e| ProviderError::Send(e.to_string()))?;
    let status = response.status().as_u16();
    // RFC 7009: revocation answers 200 with an empty body.
    if status == 200
        && response
            .headers()
            .get("content-length")
            .is_some_and(|v| v == "0")
    {
        return Ok(Value::Null);
    }
    read_json(response).await
}
