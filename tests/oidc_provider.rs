//! Self-test of the test OpenID Connect provider (`tests/oidc/provider.mjs`,
//! a real `oidc-provider`) and of the browser helper in `common/oidc.rs`,
//! without the gateway: what later gateway tests rely on.
//!
//! Needs `node` and `npm ci --prefix tests/oidc`.

#[path = "common/oidc.rs"]
mod oidc;

use oidc::*;

const REDIRECT_URI: &str = "http://127.0.0.1:9/cb";

fn provider() -> OidcProvider {
    OidcProvider::start(&[REDIRECT_URI.to_string()])
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[actix_rt::test]
async fn code_flow_client_credentials_and_introspection() {
    let op = provider();

    // --- Authorization code with PKCE S256, driven like a browser ---------
    let auth_url = op.authorization_url(
        REDIRECT_URI,
        "openid email roles offline_access",
        "state-123",
        "nonce-456",
        &[],
    );
    let mut jar = CookieJar::new();
    let outcome = op.browser_login(&auth_url, "admin-alice", &mut jar).await;
    assert!(
        outcome.callback_url.starts_with(REDIRECT_URI),
        "callback: {}",
        outcome.callback_url
    );
    assert_eq!(outcome.param("state").as_deref(), Some("state-123"));
    assert_eq!(outcome.param("iss").as_deref(), Some(op.issuer.as_str()));
    let code = outcome.param("code").expect("code in callback");
    assert!(
        !jar.names(&op.issuer).is_empty(),
        "provider session cookies recorded"
    );

    let tokens = op.exchange_code(&code, REDIRECT_URI).await;
    let id_token = tokens["id_token"].as_str().expect("id_token");
    let access_token = tokens["access_token"].as_str().expect("access_token");
    let refresh_token = tokens["refresh_token"].as_str().expect("refresh_token");
    assert_eq!(tokens["token_type"], "Bearer");
    assert!(tokens["expires_in"].as_i64().unwrap() > 0);
    assert_eq!(
        access_token.split('.').count(),
        1,
        "no resource: opaque access token"
    );

    let claims = decode_jwt_payload(id_token);
    assert_eq!(claims["iss"], op.issuer.as_str());
    assert_eq!(claims["aud"], CLIENT_ID);
    assert_eq!(claims["sub"], "admin-alice");
    assert_eq!(claims["nonce"], "nonce-456");
    assert_eq!(claims["email"], "admin-alice@example.test");
    assert_eq!(claims["email_verified"], true);
    assert_eq!(claims["roles"], serde_json::json!(["admin", "user"]));
    assert!(claims["exp"].as_i64().unwrap() > now());
    let header = decode_jwt_header(id_token);
    assert_eq!(header["alg"], "RS256");
    let jwks = op.jwks().await;
    assert!(
        jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["kid"] == header["kid"] && k["kty"] == "RSA" && k.get("d").is_none()),
        "ID token kid {} not among public keys {jwks}",
        header["kid"]
    );

    // The user's opaque access token introspects with the user's claims.
    let info = op.introspect(access_token).await;
    assert_eq!(info["active"], true, "{info}");
    assert_eq!(info["sub"], "admin-alice");
    assert_eq!(info["roles"], serde_json::json!(["admin", "user"]));

    // Refresh works (no rotation: same refresh token again).
    let (status, refreshed) = op.refresh(refresh_token).await;
    assert_eq!(status, 200, "{refreshed}");
    assert!(refreshed["access_token"].as_str().unwrap() != access_token);
    assert!(refreshed["id_token"].is_string(), "{refreshed}");
    let (status, again) = op.refresh(refresh_token).await;
    assert_eq!(status, 200, "refresh token reusable: {again}");

    // Userinfo answers the granted claims for the user's access token.
    let mut resp = awc::Client::new()
        .get(op.userinfo_endpoint())
        .bearer_auth(access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let userinfo: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(userinfo["sub"], "admin-alice");
    assert_eq!(userinfo["email"], "admin-alice@example.test");
    assert_eq!(userinfo["roles"], serde_json::json!(["admin", "user"]));

    // --- client_credentials: JWT with a resource --------------------------
    let jwt = op
        .client_credentials_token(Some(API_RESOURCE), "api:read")
        .await;
    assert_eq!(jwt.split('.').count(), 3, "JWT access token: {jwt}");
    let header = decode_jwt_header(&jwt);
    assert_eq!(header["typ"], "at+jwt");
    assert_eq!(header["alg"], "RS256");
    let at = decode_jwt_payload(&jwt);
    assert_eq!(at["iss"], op.issuer.as_str());
    assert_eq!(at["aud"], API_RESOURCE);
    assert_eq!(at["scope"], "api:read");
    assert_eq!(at["client_id"], CLIENT_ID);
    assert_eq!(at["sub"], CLIENT_ID);
    let exp = at["exp"].as_i64().expect("exp");
    assert!(exp > now() && exp <= now() + 300 + 5, "exp {exp}");

    // --- client_credentials: opaque without one, introspected -------------
    let opaque = op.client_credentials_token(None, "api:read").await;
    assert!(!opaque.contains('.'), "opaque token: {opaque}");
    let info = op.introspect(&opaque).await;
    assert_eq!(info["active"], true, "{info}");
    assert_eq!(info["client_id"], CLIENT_ID);
    assert_eq!(info["scope"], "api:read");
    assert_eq!(info["iss"], op.issuer.as_str());
    assert!(info["exp"].as_i64().unwrap() > now());

    // --- opaque for a resource: introspection names the audience ----------
    for resource in [OPAQUE_API_RESOURCE, OTHER_API_RESOURCE] {
        let token = op
            .client_credentials_token(Some(resource), "api:read")
            .await;
        assert!(!token.contains('.'), "opaque token: {token}");
        let info = op.introspect(&token).await;
        assert_eq!(info["active"], true, "{info}");
        assert_eq!(info["aud"], resource, "{info}");
    }

    // Revoked -> inactive; garbage -> inactive.
    assert_eq!(op.revoke(&opaque).await, 200);
    assert_eq!(op.introspect(&opaque).await["active"], false);
    assert_eq!(op.introspect("not-a-token").await["active"], false);
}

#[actix_rt::test]
async fn code_flow_for_a_resource_gives_a_jwt_and_session_is_reused() {
    let op = provider();
    let mut jar = CookieJar::new();
    let url = op.authorization_url(
        REDIRECT_URI,
        "openid email api:read",
        "s1",
        "n1",
        &[("resource", API_RESOURCE)],
    );
    let outcome = op.browser_login(&url, "bob", &mut jar).await;
    let code = outcome.param("code").expect("code");
    let tokens = op.exchange_code(&code, REDIRECT_URI).await;
    let access_token = tokens["access_token"].as_str().unwrap();
    assert_eq!(access_token.split('.').count(), 3, "{tokens}");
    let at = decode_jwt_payload(access_token);
    assert_eq!(at["aud"], API_RESOURCE);
    assert_eq!(at["sub"], "bob");
    assert_eq!(at["scope"], "api:read");
    assert_eq!(at["roles"], serde_json::json!(["user"]));
    assert_eq!(at["email"], "bob@example.test");
    assert!(tokens.get("refresh_token").is_some(), "{tokens}");
    let id = decode_jwt_payload(tokens["id_token"].as_str().unwrap());
    assert_eq!(id["email"], "bob@example.test");
    assert!(id.get("roles").is_none(), "roles scope not asked for");

    // Same jar: the provider session and grant are reused, no forms.
    let url = op.authorization_url(
        REDIRECT_URI,
        "openid email api:read",
        "s2",
        "n2",
        &[("resource", API_RESOURCE)],
    );
    let again = op.browser_login(&url, "ignored", &mut jar).await;
    assert_eq!(again.param("state").as_deref(), Some("s2"));
    let tokens = op
        .exchange_code(&again.param("code").unwrap(), REDIRECT_URI)
        .await;
    assert_eq!(
        decode_jwt_payload(tokens["id_token"].as_str().unwrap())["sub"],
        "bob"
    );

    // Wrong PKCE verifier is refused.
    let url = op.authorization_url(REDIRECT_URI, "openid", "s3", "n3", &[]);
    let third = op.browser_login(&url, "bob", &mut jar).await;
    let (status, err) = op
        .token_request(&[
            ("grant_type", "authorization_code"),
            ("code", &third.param("code").unwrap()),
            ("redirect_uri", REDIRECT_URI),
            ("code_verifier", "x".repeat(43).as_str()),
        ])
        .await;
    assert_eq!(status, 400);
    assert_eq!(err["error"], "invalid_grant");

    // No PKCE at all: the provider answers with an error redirect.
    let mut plain = url::Url::parse(&op.authorization_endpoint()).unwrap();
    plain
        .query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", CLIENT_ID)
        .append_pair("redirect_uri", REDIRECT_URI)
        .append_pair("scope", "openid")
        .append_pair("state", "s4");
    let refused = op.browser_login(plain.as_str(), "bob", &mut jar).await;
    assert_eq!(
        refused.param("error").as_deref(),
        Some("invalid_request"),
        "{}",
        refused.callback_url
    );

    // Logout at the provider ends the session: the next login shows forms,
    // and refresh tokens issued without offline_access die with the session.
    let refresh_token = tokens["refresh_token"].as_str().unwrap().to_string();
    assert_eq!(op.refresh(&refresh_token).await.0, 200);
    let logout = op
        .browser_logout(&op.end_session_endpoint(), &mut jar)
        .await;
    assert!(logout.starts_with(&op.issuer), "{logout}");
    let (status, err) = op.refresh(&refresh_token).await;
    assert_eq!(status, 400, "{err}");
    assert_eq!(err["error"], "invalid_grant");
    let url = op.authorization_url(REDIRECT_URI, "openid", "s5", "n5", &[]);
    let after = op.browser_login(&url, "carol-admin", &mut jar).await;
    let tokens = op
        .exchange_code(&after.param("code").unwrap(), REDIRECT_URI)
        .await;
    assert_eq!(
        decode_jwt_payload(tokens["id_token"].as_str().unwrap())["sub"],
        "carol-admin"
    );
}

#[actix_rt::test]
async fn unknown_resource_and_bad_secret_are_refused() {
    let op = provider();
    let (status, err) = op
        .token_request(&[
            ("grant_type", "client_credentials"),
            ("resource", "urn:other"),
        ])
        .await;
    assert_eq!(status, 400);
    assert_eq!(err["error"], "invalid_target");

    let mut wrong = url::form_urlencoded::Serializer::new(String::new());
    wrong.append_pair("grant_type", "client_credentials");
    let mut resp = awc::Client::new()
        .post(op.token_endpoint())
        .basic_auth(CLIENT_ID, "wrong")
        .insert_header(("content-type", "application/x-www-form-urlencoded"))
        .send_body(wrong.finish())
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "invalid_client");
}

#[test]
fn html_and_cookie_helpers() {
    let form = parse_form(
        r#"<p>x</p><form autocomplete="off" action="http://h:1/interaction/a?b=1&amp;c=2" method="post">
        <input type="hidden" name="prompt" value="login"/>
        <input required type="text" name="login" placeholder="Enter any login" autofocus="on">
        <input type=hidden name='xsrf' value='a&quot;b'>
        </form>"#,
    )
    .unwrap();
    assert_eq!(form.action, "http://h:1/interaction/a?b=1&c=2");
    assert_eq!(form.method, "post");
    assert!(form.has_input("login"));
    let hidden: Vec<_> = form
        .inputs
        .iter()
        .filter(|i| i.kind == "hidden")
        .map(|i| (i.name.as_str(), i.value.as_str()))
        .collect();
    assert_eq!(hidden, [("prompt", "login"), ("xsrf", "a\"b")]);

    let mut jar = CookieJar::new();
    let mut headers = awc::http::header::HeaderMap::new();
    for v in [
        "a=1; path=/; httponly",
        "b=2; path=/auth/x; expires=Thu, 01 Jan 2099 00:00:00 GMT",
        "gone=; path=/; expires=Thu, 01 Jan 1970 00:00:00 GMT",
        "zero=z; Max-Age=0",
    ] {
        headers.append(
            awc::http::header::SET_COOKIE,
            awc::http::header::HeaderValue::from_static(v),
        );
    }
    jar.set("http://127.0.0.1:5/", "gone", "old");
    jar.store("http://127.0.0.1:5/x", &headers);
    assert_eq!(
        jar.header_for("http://127.0.0.1:5/y").as_deref(),
        Some("a=1; b=2")
    );
    assert_eq!(
        jar.header_for("http://127.0.0.1:6/y"),
        None,
        "ports are kept apart"
    );
    assert_eq!(base64url_decode("eyJhIjoxfQ").unwrap(), br#"{"a":1}"#);
}

#[actix_rt::test]
async fn client_secret_post_and_other_credentials() {
    let op = OidcProvider::start_with_env(
        &[REDIRECT_URI.to_string()],
        &[
            ("OIDC_CLIENT_AUTH_METHOD", "client_secret_post"),
            ("OIDC_CLIENT_ID", "other"),
            ("OIDC_CLIENT_SECRET", "s3cret"),
            ("OIDC_CLIENT_CREDENTIALS_TTL", "7"),
        ],
    );
    assert_eq!(op.client_id, "other");
    let opaque = op.client_credentials_token(None, "").await;
    let info = op.introspect(&opaque).await;
    assert_eq!(info["active"], true, "{info}");
    assert_eq!(info["client_id"], "other");
    let ttl = info["exp"].as_i64().unwrap() - info["iat"].as_i64().unwrap();
    assert_eq!(ttl, 7);
}
