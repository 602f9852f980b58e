//! The identity provider as the gateway knows it after startup: endpoints
//! (explicit settings, completed by OpenID discovery), the `oauth2` client
//! for the code and refresh-token grants (over awc, `http.rs`), and the
//! provider settings the login flow and token checks read.

use oauth2::basic::{
    BasicErrorResponse, BasicRevocationErrorResponse, BasicTokenIntrospectionResponse,
    BasicTokenType,
};
use oauth2::{
    AuthUrl, ClientId, ClientSecret, EndpointNotSet, EndpointSet, ExtraTokenFields, RedirectUrl,
    StandardRevocableToken, StandardTokenResponse, TokenUrl,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::http;
use crate::settings::{LogoutSettings, ProviderEndpoints, ProviderSettings};

/// The ID token, which `oauth2`'s basic token response leaves out.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IdTokenField {
    pub id_token: Option<String>,
}

impl ExtraTokenFields for IdTokenField {}

pub type TokenResponse = StandardTokenResponse<IdTokenField, BasicTokenType>;

pub type OAuthClient = oauth2::Client<
    BasicErrorResponse,
    TokenResponse,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
>;

/// The settings' endpoints, completed from
/// `<issuer>/.well-known/openid-configuration` (explicit settings win).
pub async fn resolve_endpoints(p: &ProviderSettings) -> Result<ProviderEndpoints, String> {
    let mut e = p.endpoints.clone();
    if let Some(issuer) = &e.issuer {
        let url = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let doc = http::get_json(&url, None)
            .await
            .map_err(|err| format!("OpenID discovery at {url} failed: {err}"))?;
        let field = |name: &str| doc.get(name).and_then(Value::as_str).map(str::to_owned);
        // OpenID Discovery 4.3: a document naming another issuer must not
        // be used (its tokens would all fail the `iss` check anyway).
        if let Some(announced) = field("issuer") {
            if announced.trim_end_matches('/') != issuer.trim_end_matches('/') {
                return Err(format!(
                    "OpenID discovery at {url}: the document is for issuer {announced}, \
                     not auth.provider.issuer {issuer}"
                ));
            }
        }
        e.authorization = e.authorization.or_else(|| field("authorization_endpoint"));
        e.token = e.token.or_else(|| field("token_endpoint"));
        e.introspection = e.introspection.or_else(|| field("introspection_endpoint"));
        e.revocation = e.revocation.or_else(|| field("revocation_endpoint"));
        e.userinfo = e.userinfo.or_else(|| field("userinfo_endpoint"));
        e.jwks = e.jwks.or_else(|| field("jwks_uri"));
        e.end_session = e.end_session.or_else(|| field("end_session_endpoint"));
    }
    Ok(e)
}

/// The provider: its settings, its endpoints and the `oauth2` client (when
/// an authorization and a token endpoint are known).
pub struct Provider {
    pub settings: ProviderSettings,
    /// Whether (and where back to) logout also ends the provider's session.
    pub logout: LogoutSettings,
    /// After discovery.
    pub endpoints: ProviderEndpoints,
    pub oauth: Option<OAuthClient>,
}

impl Provider {
    /// Trusts the provider's CA, runs discovery and builds the client.
    pub async fn connect(
        settings: &ProviderSettings,
        logout: &LogoutSettings,
    ) -> Result<Self, String> {
        http::trust(settings.tls_ca_file.as_deref())
            .map_err(|e| format!("auth.provider.tls_ca_file: {e}"))?;
        let endpoints = resolve_endpoints(settings).await?;
        if logout.provider && endpoints.end_session.is_none() {
            return Err(
                "auth.logout.provider is true but the provider announces no \
                 end_session_endpoint: set auth.provider.end_session_url"
                    .to_owned(),
            );
        }
        let oauth = match (&endpoints.authorization, &endpoints.token) {
            (Some(authorization), Some(token)) => Some(
                oauth2::Client::new(ClientId::new(settings.client_id.clone()))
                    .set_client_secret(ClientSecret::new(settings.client_secret.clone()))
                    .set_auth_uri(AuthUrl::new(authorization.clone()).map_err(|e| e.to_string())?)
                    .set_token_uri(TokenUrl::new(token.clone()).map_err(|e| e.to_string())?)
                    .set_redirect_uri(
                        RedirectUrl::new(settings.redirect_url.clone())
                            .map_err(|e| e.to_string())?,
                    ),
            ),
            _ => None,
        };
        Ok(Self {
            settings: settings.clone(),
            logout: logout.clone(),
            endpoints,
            oauth,
        })
    }

    /// The provider's end-session URL (OpenID RP-initiated logout) when
    /// `auth.logout.provider` is on: the browser goes there so the user's
    /// session at the provider ends too, not only the gateway's. Without an
    /// ID token (expired session) it still goes, with no `id_token_hint`.
    pub fn logout_url(&self, id_token: Option<&str>) -> Option<String> {
        if !self.logout.provider {
            return None;
        }
        let mut url = url::Url::parse(self.endpoints.end_session.as_deref()?).ok()?;
        {
            let mut query = url.query_pairs_mut();
            query.append_pair("client_id", &self.settings.client_id);
            if let Some(hint) = id_token {
                query.append_pair("id_token_hint", hint);
            }
            if let Some(back) = &self.logout.post_logout_redirect_url {
                query.append_pair("post_logout_redirect_uri", back);
            }
        }
        Some(url.into())
    }

    /// POSTs a form to `url` with the client's credentials (introspection,
    /// revocation).
    pub async fn post_form(
        &self,
        url: &str,
        form: &[(&str, &str)],
    ) -> Result<Value, http::ProviderError> {
        http::post_form(
            url,
            &self.settings.client_id,
            &self.settings.client_secret,
            form,
        )
        .await
    }
}
