//! OAuth2 / OpenID Connect end to end: the real gateway binary, a real
//! OpenID provider (the `oidc-provider` npm package, tests/oidc/), real
//! upstreams and, for the multi-replica cases, a real redis-server.

mod common;

use std::time::Duration;

use common::oidc::{
    CookieJar, OidcProvider, API_RESOURCE as API, OPAQUE_API_RESOURCE, OTHER_API_RESOURCE,
};
use common::*;

const SECRET: &str = "test-session-secret-0123456789abcdef";

struct Setup {
    op: OidcProvider,
    up: Upstream,
    ports: Vec<(u16, u16)>,
}

/// A provider that knows the callbacks of `replicas` gateways.
fn setup(replicas: usize, op_env: &[(&str, &str)]) -> Setup {
    let ports: Vec<(u16, u16)> = (0..replicas).map(|_| (free_port(), free_port())).collect();
    let callbacks: Vec<String> = ports
        .iter()
        .map(|(p, _)| format!("http://127.0.0.1:{p}/oauth2/callback"))
        .collect();
    Setup {
        op: OidcProvider::start_with_env(&callbacks, op_env),
        up: spawn_upstream("app"),
        ports,
    }
}

fn config(s: &Setup, replica: usize, extra: &str) -> String {
    config_ttl(s, replica, extra, 1)
}

fn config_ttl(s: &Setup, replica: usize, extra: &str, cache_ttl_secs: u64) -> String {
    let port = s.ports[replica].0;
    format!(
        r#"{extra}
upstreams: {{u: {{targets: ["{up}"]}}}}
auth:
  provider:
    issuer: "{issuer}"
    client_id: gateway
    client_secret: gateway-secret
    audiences: ["{API}", "{OPAQUE_API_RESOURCE}"]
    scopes: [openid, email, roles, offline_access]
    redirect_url: "http://127.0.0.1:{port}/oauth2/callback"
  allowed_redirect_hosts: ["app.example.test"]
  session: {{secret: "{SECRET}", cookie_secure: false, cache_ttl_secs: {cache_ttl_secs}}}
routes:
  - {{name: app, path_prefix: /app, upstream: u, auth: session}}
  - {{name: admin, path_prefix: /admin, upstream: u, auth: session, require: {{roles: [admin]}}}}
  - {{name: api, path_prefix: /api, upstream: u, auth: bearer, require: {{scopes: ["api:read"]}}}}
  - {{name: mixed, path_prefix: /mixed, upstream: u, auth: session_or_bearer}}
  - {{name: public, path_prefix: /, upstream: u}}
"#,
        up = s.up.url(),
        issuer = s.op.issuer,
    )
}

/// Logs `login` in through the gateway like a browser; returns the session
/// cookie value and the callback response's Set-Cookie header.
async fn browser_session(
    op: &OidcProvider,
    gw: &Gateway,
    login: &str,
    rd: &str,
) -> (String, String) {
    browser_session_in(op, gw, login, rd, &mut CookieJar::new()).await
}

/// [`browser_session`] in a browser that keeps its cookies (`jar`), so a
/// session at the provider outlives the gateway's.
async fn browser_session_in(
    op: &OidcProvider,
    gw: &Gateway,
    login: &str,
    rd: &str,
    jar: &mut CookieJar,
) -> (String, String) {
    let start = gw.url(&format!("/oauth2/login?rd={rd}"));
    let outcome = op.browser_login(&start, login, jar).await;
    assert!(
        outcome
            .callback_url
            .starts_with(&gw.url("/oauth2/callback")),
        "login ended at {}",
        outcome.callback_url
    );
    let mut callback = client().get(&outcome.callback_url);
    if let Some(cookies) = outcome.jar.header_for(&outcome.callback_url) {
        callback = callback.insert_header(("cookie", cookies));
    }
    let res = callback.send().await.unwrap();
    assert_eq!(res.status(), 302, "callback answers with a redirect");
    assert_eq!(hdr(&res, "location"), rd);
    let set_cookie = res
        .headers()
        .get_all("set-cookie")
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("gateway_session="))
        .expect("session cookie")
        .to_owned();
    let value = set_cookie
        .split(';')
        .next()
        .and_then(|kv| kv.strip_prefix("gateway_session="))
        .expect("session cookie value")
        .to_owned();
    (value, set_cookie)
}

async fn get_with_cookie(gw: &Gateway, path: &str, cookie: &str) -> (u16, serde_json::Value) {
    let mut res = client()
        .get(gw.url(path))
        .insert_header(("cookie", format!("gateway_session={cookie}")))
        .insert_header(("x-auth-subject", "spoofed"))
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let body = res.body().limit(1 << 20).await.unwrap();
    (
        status,
        serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
    )
}

fn upstream_header(echo: &serde_json::Value, name: &str) -> String {
    echo["headers"][name][0].as_str().unwrap_or("").to_owned()
}

#[actix_rt::test]
async fn browser_login_creates_a_server_side_session() {
    let s = setup(1, &[]);
    let gw = Gateway::start_on(s.ports[0], &config(&s, 0, "")).await;
    let c = client();

    // Browsers are sent to login; API clients get a JSON 401.
    let res = c
        .get(gw.url("/app/page?x=1"))
        .insert_header(("accept", "text/html,application/xhtml+xml"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 302);
    assert_eq!(
        hdr(&res, "location"),
        "/oauth2/login?rd=%2Fapp%2Fpage%3Fx%3D1"
    );
    let mut res = c.get(gw.url("/app/page")).send().await.unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(
        json_body(&mut res).await["error"]["code"],
        "unauthenticated"
    );

    let (cookie, set_cookie) = browser_session(&s.op, &gw, "alice", "/app/page").await;
    assert_eq!(cookie.len(), 43, "a 256-bit random id, nothing else");
    for flag in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=28800"] {
        assert!(set_cookie.contains(flag), "{flag} missing: {set_cookie}");
    }
    assert!(!set_cookie.contains("Secure"), "cookie_secure: false");

    let (status, echo) = get_with_cookie(&gw, "/app/page", &cookie).await;
    assert_eq!(status, 200);
    assert_eq!(
        upstream_header(&echo, "x-auth-subject"),
        "alice",
        "spoofed header replaced"
    );
    assert_eq!(upstream_header(&echo, "x-auth-email"), "alice@example.test");
    assert_eq!(upstream_header(&echo, "x-auth-roles"), "user");
    assert!(upstream_header(&echo, "x-auth-scopes").contains("openid"));
    assert!(
        echo["headers"].get("cookie").is_none(),
        "the session cookie is the gateway's credential: never sent upstream"
    );
    let mut res = c
        .get(gw.url("/app/page"))
        .insert_header((
            "cookie",
            format!("theme=dark; gateway_session={cookie}; lang=en"),
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let echo = json_body(&mut res).await;
    assert_eq!(
        upstream_header(&echo, "cookie"),
        "theme=dark; lang=en",
        "the application's own cookies still reach the upstream"
    );
    // One non-ASCII byte in an application cookie must not carry the
    // session id past the filter (found by the cookie fuzz target).
    let mut res = c
        .get(gw.url("/app/page"))
        .insert_header((
            "cookie",
            awc::http::header::HeaderValue::from_bytes(
                format!("name=J\u{fc}rgen; gateway_session={cookie}").as_bytes(),
            )
            .unwrap(),
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "the session is still recognised");
    let echo = json_body(&mut res).await;
    assert_eq!(
        upstream_header(&echo, "cookie"),
        "name=J\u{fc}rgen",
        "the session cookie is taken out of a non-ASCII Cookie header too"
    );

    let (status, info) = get_with_cookie(&gw, "/oauth2/userinfo", &cookie).await;
    assert_eq!(status, 200);
    assert_eq!(info["sub"], "alice");
    assert_eq!(info["email"], "alice@example.test");
    let res = c.get(gw.url("/oauth2/userinfo")).send().await.unwrap();
    assert_eq!(res.status(), 401);

    // Roles: alice is no admin; an admin login is.
    assert_eq!(get_with_cookie(&gw, "/admin/x", &cookie).await.0, 403);
    let (admin_cookie, _) = browser_session(&s.op, &gw, "the-admin", "/admin/x").await;
    assert_eq!(get_with_cookie(&gw, "/admin/x", &admin_cookie).await.0, 200);

    // A forged cookie is just unauthenticated.
    assert_eq!(
        get_with_cookie(&gw, "/app/page", "forged-value").await.0,
        401
    );
    // Unknown paths under /oauth2 are ordinary routing, not gateway errors;
    // a wrong method on an endpoint is a 405.
    let res = c.get(gw.url("/oauth2/other")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let res = c.post(gw.url("/oauth2/login")).send().await.unwrap();
    assert_eq!(res.status(), 405);
    assert_eq!(hdr(&res, "allow"), "GET");

    let logs = gw.stdout_text();
    assert!(!logs.contains(&cookie), "session id never logged");
    let logged_user = eventually(Duration::from_secs(3), || {
        let hit = gw
            .log_lines()
            .into_iter()
            .any(|l| l["path"] == "/app/page" && l["status"] == 200 && l["user"] == "alice");
        async move { hit }
    })
    .await;
    assert!(logged_user, "the access log names the user");
}

#[actix_rt::test]
async fn login_state_is_one_time_and_redirects_are_checked() {
    let s = setup(1, &[]);
    let gw = Gateway::start_on(s.ports[0], &config(&s, 0, "")).await;
    let c = client();

    let mut jar = CookieJar::new();
    let outcome =
        s.op.browser_login(&gw.url("/oauth2/login?rd=/app"), "bob", &mut jar)
            .await;
    let callback = outcome.callback_url.clone();
    let browser = outcome.jar.header_for(&callback).expect("login cookie");
    let with_browser = |url: &str| c.get(url).insert_header(("cookie", browser.clone()));
    // Tampered state: refused, and the real one still works once.
    let tampered = callback.replace("state=", "state=x");
    let mut res = with_browser(&tampered).send().await.unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(json_body(&mut res).await["error"]["code"], "bad_request");
    // Another browser (no login cookie) cannot finish this login (login CSRF).
    assert_eq!(c.get(&callback).send().await.unwrap().status(), 400);
    // That attempt consumed the state: the login must start again.
    let outcome =
        s.op.browser_login(&gw.url("/oauth2/login?rd=/app"), "bob", &mut jar)
            .await;
    let callback = outcome.callback_url.clone();
    let browser = outcome.jar.header_for(&callback).expect("login cookie");
    let with_browser = |url: &str| c.get(url).insert_header(("cookie", browser.clone()));
    assert_eq!(with_browser(&callback).send().await.unwrap().status(), 302);
    // Replayed: the pre-login record is gone.
    assert_eq!(with_browser(&callback).send().await.unwrap().status(), 400);

    // Open redirects are refused; allowed hosts and relative paths work.
    for bad in [
        "https://evil.example/x",
        "//evil.example/x",
        "/\\evil.example",
        "/\t/evil.example",
    ] {
        let url = format!("/oauth2/login?rd={}", urlencode(bad));
        assert_eq!(
            c.get(gw.url(&url)).send().await.unwrap().status(),
            400,
            "{bad}"
        );
    }
    let ok = format!(
        "/oauth2/login?rd={}",
        urlencode("https://app.example.test/home")
    );
    let res = c.get(gw.url(&ok)).send().await.unwrap();
    assert_eq!(res.status(), 302);
    let location = hdr(&res, "location");
    assert!(location.starts_with(&s.op.issuer), "{location}");
    for param in [
        "code_challenge_method=S256",
        "code_challenge=",
        "state=",
        "nonce=",
    ] {
        assert!(location.contains(param), "{param} missing in {location}");
    }
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[actix_rt::test]
async fn bearer_tokens_jwt_and_introspection() {
    let s = setup(1, &[]);
    let gw = Gateway::start_on(s.ports[0], &config(&s, 0, "")).await;
    let c = client();
    let call = |token: String, path: &'static str| {
        let req = client()
            .get(gw.url(path))
            .insert_header(("authorization", format!("Bearer {token}")));
        async move { req.send().await.unwrap() }
    };

    // JWT, validated locally against the provider's JWKS.
    let jwt = s.op.client_credentials_token(Some(API), "api:read").await;
    assert_eq!(jwt.split('.').count(), 3);
    let mut res = call(jwt.clone(), "/api/things").await;
    assert_eq!(res.status(), 200);
    let echo = json_body(&mut res).await;
    assert_eq!(upstream_header(&echo, "x-auth-subject"), "gateway");
    assert!(upstream_header(&echo, "x-auth-scopes").contains("api:read"));
    assert!(
        echo["headers"].get("authorization").is_some(),
        "the token goes upstream"
    );

    // Valid token, missing scope: 403.
    let write_only = s.op.client_credentials_token(Some(API), "api:write").await;
    assert_eq!(call(write_only, "/api/things").await.status(), 403);

    // A tampered signature and garbage are 401 with WWW-Authenticate.
    let mut forged = jwt.clone();
    forged.truncate(forged.len() - 4);
    forged.push_str("AAAA");
    let res = call(forged, "/api/things").await;
    assert_eq!(res.status(), 401);
    assert!(hdr(&res, "www-authenticate").starts_with("Bearer"));
    assert_eq!(call("not.a.jwt".into(), "/api/things").await.status(), 401);
    let res = c.get(gw.url("/api/things")).send().await.unwrap();
    assert_eq!(res.status(), 401, "no token");

    // Opaque token: introspection; revoked tokens stop working once the
    // introspection cache (cache_ttl_secs: 1) lets go.
    let opaque = s.op.client_credentials_token(None, "api:read").await;
    assert_eq!(opaque.split('.').count(), 1);
    assert_eq!(call(opaque.clone(), "/api/things").await.status(), 200);
    s.op.revoke(&opaque).await;
    actix_rt::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(call(opaque, "/api/things").await.status(), 401);

    // Opaque tokens whose introspection names an audience: one of ours is
    // accepted, another resource's is refused although the provider calls
    // it active.
    let introspections = |m: &str, result| counter(m, "gateway_auth_introspections_total", result);
    let ours =
        s.op.client_credentials_token(Some(OPAQUE_API_RESOURCE), "api:read")
            .await;
    assert_eq!(ours.split('.').count(), 1);
    assert_eq!(call(ours, "/api/things").await.status(), 200);
    let before = gw.metrics().await;
    let theirs =
        s.op.client_credentials_token(Some(OTHER_API_RESOURCE), "api:read")
            .await;
    assert_eq!(s.op.introspect(&theirs).await["active"], true);
    let res = call(theirs, "/api/things").await;
    assert_eq!(res.status(), 401);
    assert!(hdr(&res, "www-authenticate").starts_with("Bearer"));
    let after = gw.metrics().await;
    assert_eq!(
        introspections(&after, "inactive") - introspections(&before, "inactive"),
        1,
        "{after}"
    );

    // A made-up opaque token, replayed: every request is refused, and the
    // provider is asked once (refusals are cached like answers).
    let before = gw.metrics().await;
    for _ in 0..10 {
        let res = call("made-up-opaque-token".into(), "/api/things").await;
        assert_eq!(res.status(), 401);
    }
    let after = gw.metrics().await;
    assert_eq!(
        introspections(&after, "inactive") - introspections(&before, "inactive"),
        1,
        "{after}"
    );
    assert!(introspections(&after, "active") >= 1);

    // session_or_bearer takes either.
    assert_eq!(call(jwt, "/mixed/x").await.status(), 200);
    let metrics = gw.metrics().await;
    assert!(metrics.contains(
        "gateway_auth_outcomes_total{reason=\"bearer\",result=\"authenticated\",route=\"api\"}"
    ));
    assert!(metrics.contains("result=\"forbidden\""));
}

/// The `redis` settings line for one redis-server.
fn redis_setting(redis: &RedisServer) -> String {
    format!("redis: {{url: \"{}\"}}", redis.url())
}

/// Two gateways sharing `redis_yaml`'s Redis, with a long session cache TTL
/// (so only pub/sub invalidation can make one notice the other's logout).
async fn two_replicas(s: &Setup, redis_yaml: &str) -> (Gateway, Gateway) {
    let a = Gateway::start_on(s.ports[0], &config_ttl(s, 0, redis_yaml, 300)).await;
    let b = Gateway::start_on(s.ports[1], &config_ttl(s, 1, redis_yaml, 300)).await;
    (a, b)
}

/// A gateway with `auth.logout.provider` on, sending browsers back to
/// `signed_out` after the provider's logout.
async fn gateway_with_provider_logout(s: &Setup, signed_out: &str) -> Gateway {
    let set_back = format!("auth.logout.post_logout_redirect_url={signed_out}");
    let gw = Gateway::spawn_on(
        s.ports[0],
        &config(s, 0, ""),
        &["--set", "auth.logout.provider=true", "--set", &set_back],
        &[],
    );
    gw.wait_ready().await;
    gw
}

/// A browser's GET /oauth2/logout: checks the 302 that clears the cookie;
/// returns where it leads (the provider's logout URL).
async fn browser_logout(gw: &Gateway, cookie: &str) -> String {
    let res = client()
        .get(gw.url("/oauth2/logout?rd=/"))
        .insert_header(("cookie", format!("gateway_session={cookie}")))
        .insert_header(("accept", "text/html"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 302);
    assert!(hdr(&res, "set-cookie").contains("Max-Age=0"));
    hdr(&res, "location")
}

/// A query parameter of `url`.
fn query_param(url: &str, name: &str) -> Option<String> {
    url::Url::parse(url)
        .ok()?
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

#[actix_rt::test]
async fn logout_at_the_provider_ends_the_provider_session_too() {
    let signed_out = "http://app.example.test/signed-out";
    let s = setup(1, &[("OIDC_POST_LOGOUT_REDIRECT_URIS", signed_out)]);
    let gw = gateway_with_provider_logout(&s, signed_out).await;

    let mut browser = CookieJar::new();
    let (cookie, _) = browser_session_in(&s.op, &gw, "alice", "/app", &mut browser).await;
    assert_eq!(get_with_cookie(&gw, "/app/x", &cookie).await.0, 200);

    // An API client is told where the provider's logout is.
    let (api_cookie, _) = browser_session(&s.op, &gw, "erin", "/app").await;
    let mut res = logout(&gw, &api_cookie).await;
    assert_eq!(res.status(), 200);
    let body = json_body(&mut res).await;
    assert_eq!(body["status"], "logged_out");
    let provider_logout = body["provider_logout_url"].as_str().unwrap_or_default();
    assert!(
        provider_logout.starts_with(&s.op.end_session_endpoint()),
        "{body}"
    );

    // A browser is sent to the provider with the ID token as a hint.
    let location = browser_logout(&gw, &cookie).await;
    let param = |name: &str| query_param(&location, name);
    assert!(
        location.starts_with(&s.op.end_session_endpoint()),
        "{location}"
    );
    assert_eq!(param("client_id").as_deref(), Some("gateway"));
    assert_eq!(
        param("post_logout_redirect_uri").as_deref(),
        Some(signed_out)
    );
    let hint = param("id_token_hint").expect("id_token_hint");
    assert_eq!(common::oidc::decode_jwt_payload(&hint)["sub"], "alice");
    assert_eq!(get_with_cookie(&gw, "/app/x", &cookie).await.0, 401);

    // The browser confirms at the provider and lands on the registered page.
    let landed = s.op.browser_logout(&location, &mut browser).await;
    assert_eq!(landed, signed_out);

    // The provider forgot alice: the next login asks who it is, so bob can
    // log in from the same browser (a surviving provider session would
    // have signed alice straight back in).
    let (cookie, _) = browser_session_in(&s.op, &gw, "bob", "/app", &mut browser).await;
    let (status, echo) = get_with_cookie(&gw, "/app/x", &cookie).await;
    assert_eq!(status, 200);
    assert_eq!(upstream_header(&echo, "x-auth-subject"), "bob");
}

#[actix_rt::test]
async fn after_a_refresh_the_provider_logout_carries_the_new_id_token() {
    let signed_out = "http://app.example.test/signed-out";
    // Access tokens live 4 s: due for refresh in the second half of that.
    let s = setup(
        1,
        &[
            ("OIDC_POST_LOGOUT_REDIRECT_URIS", signed_out),
            ("OIDC_ACCESS_TOKEN_TTL", "4"),
        ],
    );
    let gw = gateway_with_provider_logout(&s, signed_out).await;
    let mut browser = CookieJar::new();
    let (cookie, _) = browser_session_in(&s.op, &gw, "frank", "/app", &mut browser).await;

    // Due after 2 s (half the token's life); ID tokens carry whole seconds,
    // so the refreshed one is issued in a later second than the login's.
    actix_rt::time::sleep(Duration::from_millis(2200)).await;
    let refresh_started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert_eq!(get_with_cookie(&gw, "/app/x", &cookie).await.0, 200);
    let metrics = gw.metrics().await;
    assert!(
        metrics.contains(
            "gateway_auth_outcomes_total{reason=\"session\",result=\"refreshed\",route=\"app\"}"
        ),
        "{metrics}"
    );

    let location = browser_logout(&gw, &cookie).await;
    let hint = query_param(&location, "id_token_hint").expect("id_token_hint");
    let claims = common::oidc::decode_jwt_payload(&hint);
    assert_eq!(claims["sub"], "frank");
    assert!(
        claims["iat"].as_u64().unwrap_or(0) >= refresh_started,
        "the hint is the login's ID token, not the refreshed one: {claims}"
    );
    // The provider takes the hint: the browser lands on the registered page.
    assert_eq!(
        s.op.browser_logout(&location, &mut browser).await,
        signed_out
    );
}

#[actix_rt::test]
async fn discovery_for_another_issuer_is_refused_at_start() {
    let s = setup(1, &[]);
    // The same provider under another name: its document says 127.0.0.1.
    let renamed = s.op.issuer.replace("127.0.0.1", "localhost");
    let yaml = config(&s, 0, "").replace(
        &format!("issuer: \"{}\"", s.op.issuer),
        &format!("issuer: \"{renamed}\""),
    );
    assert!(yaml.contains(&renamed));
    let mut gw = Gateway::spawn_on(s.ports[0], &yaml, &[], &[]);
    let status = gw.wait_exit(Duration::from_secs(20));
    assert_eq!(status.and_then(|s| s.code()), Some(1));
    let stderr = gw.stderr();
    assert!(
        stderr.contains("OpenID discovery")
            && stderr.contains(&format!("the document is for issuer {}", s.op.issuer)),
        "{stderr}"
    );
}

#[actix_rt::test]
async fn a_provider_behind_a_private_ca_is_reached_through_its_tls_ca_file() {
    let ports = (free_port(), free_port());
    let callback = format!("http://127.0.0.1:{}/oauth2/callback", ports.0);
    let (op, ca_pem) = OidcProvider::start_tls(&[callback]);
    assert!(op.issuer.starts_with("https://localhost:"), "{}", op.issuer);
    let s = Setup {
        op,
        up: spawn_upstream("app"),
        ports: vec![ports],
    };
    let yaml = config(&s, 0, "");
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("idp-ca.pem");
    std::fs::write(&ca_file, ca_pem).unwrap();

    // Mozilla's roots do not know the private CA: no start.
    let mut untrusting = Gateway::spawn_on((free_port(), free_port()), &yaml, &[], &[]);
    let status = untrusting.wait_exit(Duration::from_secs(20));
    assert_eq!(status.and_then(|s| s.code()), Some(1));
    let stderr = untrusting.stderr();
    assert!(
        stderr.contains("OpenID discovery") && stderr.contains("UnknownIssuer"),
        "{stderr}"
    );

    let trust = format!("auth.provider.tls_ca_file={}", ca_file.display());
    let gw = Gateway::spawn_on(ports, &yaml, &["--set", &trust], &[]);
    gw.wait_ready().await;
    // Login: code exchange, JWKS and userinfo over HTTPS.
    let (cookie, _) = browser_session(&s.op, &gw, "dana", "/app").await;
    let (status, echo) = get_with_cookie(&gw, "/app/x", &cookie).await;
    assert_eq!(status, 200);
    assert_eq!(upstream_header(&echo, "x-auth-subject"), "dana");
    // Bearer tokens: a JWT (keys fetched over HTTPS) and an opaque token
    // (introspected over HTTPS).
    for resource in [Some(API), None] {
        let token = s.op.client_credentials_token(resource, "api:read").await;
        let res = client()
            .get(gw.url("/api/things"))
            .insert_header(("authorization", format!("Bearer {token}")))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "resource {resource:?}");
    }
}

#[actix_rt::test]
async fn the_login_endpoints_have_their_own_rate_limit() {
    let s = setup(1, &[]);
    let policies = "rate_limits: {login: {requests: 3, period_secs: 60, burst: 0, key: ip}}";
    let gw = Gateway::spawn_on(
        s.ports[0],
        &config(&s, 0, policies),
        &["--set", r#"auth.rate_limit=["login"]"#],
        &[],
    );
    gw.wait_ready().await;
    let c = client();
    // Each login start writes a pre-login record: a flood of them is what
    // the policy stops.
    for i in 0..3 {
        let res = c.get(gw.url("/oauth2/login?rd=/app")).send().await.unwrap();
        assert_eq!(res.status(), 302, "login {i}");
        assert_eq!(hdr(&res, "ratelimit-remaining"), (2 - i).to_string());
    }
    let mut res = c.get(gw.url("/oauth2/login?rd=/app")).send().await.unwrap();
    assert_eq!(res.status(), 429);
    assert!(!hdr(&res, "retry-after").is_empty());
    assert!(hdr(&res, "set-cookie").is_empty(), "no login started");
    assert_eq!(json_body(&mut res).await["error"]["code"], "rate_limited");
    // The budget is the four endpoints' own, not the proxied routes'.
    let res = c.get(gw.url("/oauth2/userinfo")).send().await.unwrap();
    assert_eq!(res.status(), 429, "same budget for every /oauth2 endpoint");
    let res = c.get(gw.url("/public/x")).send().await.unwrap();
    assert_eq!(res.status(), 200);
}

/// Logs out with a POST on `gw`.
async fn logout(
    gw: &Gateway,
    cookie: &str,
) -> awc::ClientResponse<
    impl futures_util::Stream<Item = Result<bytes::Bytes, awc::error::PayloadError>>,
> {
    client()
        .post(gw.url("/oauth2/logout"))
        .insert_header(("cookie", format!("gateway_session={cookie}")))
        .send()
        .await
        .unwrap()
}

/// Waits until `cookie` is refused on `gw` (bounded).
async fn refused_soon(gw: &Gateway, cookie: &str) -> bool {
    eventually(Duration::from_secs(2), || {
        let cookie = cookie.to_owned();
        async move { get_with_cookie(gw, "/app/x", &cookie).await.0 == 401 }
    })
    .await
}

#[actix_rt::test]
async fn logout_ends_the_session_on_every_replica() {
    let redis = RedisServer::start();
    let s = setup(2, &[]);
    let redis_yaml = redis_setting(&redis);
    let (a, b) = two_replicas(&s, &redis_yaml).await;

    let (cookie, _) = browser_session(&s.op, &a, "carol", "/app").await;
    assert_eq!(get_with_cookie(&a, "/app/x", &cookie).await.0, 200);
    assert_eq!(
        get_with_cookie(&b, "/app/x", &cookie).await.0,
        200,
        "shared through Redis"
    );
    // Redis holds a sealed session under the id's hash, never the id.
    let keys = redis.cli(&["KEYS", "gw:session:*"]).unwrap();
    assert_eq!(keys.lines().count(), 1, "{keys}");
    assert!(!keys.contains(&cookie));
    let stored = redis.cli(&["GET", keys.trim()]).unwrap();
    assert!(!stored.contains("carol"), "session contents are encrypted");

    // Cross-site GET logout is refused; POST works.
    let res = client()
        .get(a.url("/oauth2/logout"))
        .insert_header(("cookie", format!("gateway_session={cookie}")))
        .insert_header(("sec-fetch-site", "cross-site"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let res = logout(&a, &cookie).await;
    assert_eq!(res.status(), 200);
    assert!(
        hdr(&res, "set-cookie").contains("Max-Age=0"),
        "cookie cleared"
    );
    assert_eq!(get_with_cookie(&a, "/app/x", &cookie).await.0, 401);
    // Replica b drops its cached copy at once (pub/sub), long before
    // its cache TTL of 300 s.
    assert!(
        refused_soon(&b, &cookie).await,
        "logout seen by the other replica"
    );
}

/// Redis `GET` commands served so far.
fn redis_gets(redis: &RedisServer) -> u64 {
    let stats = redis.cli(&["INFO", "commandstats"]).unwrap_or_default();
    stats
        .lines()
        .find_map(|l| l.strip_prefix("cmdstat_get:calls="))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// Value of `gateway_session_cache_lookups_total{result=...}`.
fn lookups(metrics: &str, result: &str) -> u64 {
    counter(metrics, "gateway_session_cache_lookups_total", result)
}

/// A `{result="..."}` counter's value in a /metrics text (0 when absent).
fn counter(metrics: &str, name: &str, result: &str) -> u64 {
    let label = format!("{name}{{result=\"{result}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(label.as_str()))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[actix_rt::test]
async fn a_cold_replica_reads_a_session_from_redis_once() {
    let redis = RedisServer::start();
    let s = setup(2, &[]);
    let redis_yaml = redis_setting(&redis);
    let (a, b) = two_replicas(&s, &redis_yaml).await;
    let (cookie, _) = browser_session(&s.op, &a, "grace", "/app").await;

    // Replica b has never seen the session: 32 requests arrive at once.
    let before = redis_gets(&redis);
    let urls: Vec<String> = (0..32).map(|i| b.url(&format!("/app/{i}"))).collect();
    let statuses = concurrent_gets(urls, &cookie).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(
        redis_gets(&redis) - before,
        1,
        "concurrent misses share one Redis read"
    );
    let metrics = b.metrics().await;
    assert_eq!(lookups(&metrics, "store_hit"), 1, "{metrics}");
    assert_eq!(
        lookups(&metrics, "hit") + lookups(&metrics, "coalesced"),
        31,
        "{metrics}"
    );
}

/// `/health`'s `session_store` section.
async fn session_store_health(gw: &Gateway) -> serde_json::Value {
    match client().get(gw.admin_url("/health")).send().await {
        Ok(mut res) => json_body(&mut res).await["session_store"].clone(),
        Err(_) => serde_json::Value::Null,
    }
}

#[actix_rt::test]
async fn session_store_outage_answers_503_then_recovers_by_itself() {
    let mut redis = RedisServer::start();
    let s = setup(1, &[]);
    let redis_yaml = redis_setting(&redis);
    // Replica cache of 1 s: after that every request needs Redis.
    let gw = Gateway::start_on(s.ports[0], &config(&s, 0, &redis_yaml)).await;
    let (cookie, _) = browser_session(&s.op, &gw, "heidi", "/app").await;
    assert_eq!(get_with_cookie(&gw, "/app/x", &cookie).await.0, 200);
    assert_eq!(session_store_health(&gw).await["status"], "ok");

    redis.kill();
    actix_rt::time::sleep(Duration::from_millis(1200)).await;
    let mut during = Vec::new();
    for i in 0..6 {
        during.push(get_with_cookie(&gw, &format!("/app/{i}"), &cookie).await.0);
    }
    assert!(during.iter().all(|s| *s == 503), "{during:?}");
    let health = session_store_health(&gw).await;
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(health["breaker_open"], true, "{health}");
    let res = client()
        .get(gw.admin_url("/health/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "readiness is not tied to Redis");

    // An empty Redis comes back: the breaker closes without traffic, and the
    // lost session is an ordinary unknown one (401, not 503).
    redis.restart();
    let recovered = eventually(Duration::from_secs(20), || async {
        session_store_health(&gw).await["status"] == "ok"
    })
    .await;
    assert!(recovered, "session store breaker closes once Redis is back");
    assert_eq!(get_with_cookie(&gw, "/app/y", &cookie).await.0, 401);
    let logged = eventually(Duration::from_secs(3), || {
        let seen = gw.count_log_messages("session store circuit breaker closed") == 1;
        async move { seen }
    })
    .await;
    assert!(logged, "{}", gw.stdout_text());
    assert_eq!(
        gw.count_log_messages("session store circuit breaker opened"),
        1
    );
}

#[actix_rt::test]
async fn tokens_close_to_expiry_are_refreshed_transparently() {
    // Access tokens live 4 s: due for refresh in the second half of that.
    let s = setup(1, &[("OIDC_ACCESS_TOKEN_TTL", "4")]);
    let gw = Gateway::start_on(s.ports[0], &config(&s, 0, "")).await;
    let (cookie, _) = browser_session(&s.op, &gw, "dave", "/app").await;
    actix_rt::time::sleep(Duration::from_millis(2200)).await;
    assert_eq!(get_with_cookie(&gw, "/app/1", &cookie).await.0, 200);
    let metrics = gw.metrics().await;
    assert!(
        metrics.contains(
            "gateway_auth_outcomes_total{reason=\"session\",result=\"refreshed\",route=\"app\"} 1"
        ),
        "{metrics}"
    );
    // Concurrent requests after the refresh all pass.
    let urls: Vec<String> = (0..10).map(|i| gw.url(&format!("/app/{i}"))).collect();
    let statuses = concurrent_gets(urls, &cookie).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
}

/// GETs every URL at once with the session cookie; the statuses in order.
async fn concurrent_gets(urls: Vec<String>, cookie: &str) -> Vec<u16> {
    let tasks: Vec<_> = urls
        .into_iter()
        .map(|url| {
            let req = client()
                .get(url)
                .insert_header(("cookie", format!("gateway_session={cookie}")));
            actix_rt::spawn(async move { req.send().await.map(|r| r.status().as_u16()) })
        })
        .collect();
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap().unwrap_or(0));
    }
    statuses
}

#[actix_rt::test]
async fn two_replicas_refresh_a_session_exactly_once() {
    let redis = RedisServer::start();
    // 8 s tokens: due for refresh 4 s after login (half their life).
    let s = setup(2, &[("OIDC_ACCESS_TOKEN_TTL", "8")]);
    let redis_yaml = redis_setting(&redis);
    let (a, b) = two_replicas(&s, &redis_yaml).await;
    let (cookie, _) = browser_session(&s.op, &a, "erin", "/app").await;
    assert_eq!(get_with_cookie(&b, "/app/warm", &cookie).await.0, 200);
    actix_rt::time::sleep(Duration::from_millis(5500)).await;

    let urls: Vec<String> = (0..16)
        .map(|i| {
            if i % 2 == 0 {
                a.url("/app/r")
            } else {
                b.url("/app/r")
            }
        })
        .collect();
    let statuses = concurrent_gets(urls, &cookie).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let total = refreshes(&a.metrics().await) + refreshes(&b.metrics().await);
    assert_eq!(
        total, 1,
        "one refresh for 16 concurrent requests on two replicas"
    );
}

#[actix_rt::test]
async fn sessions_are_shared_on_a_redis_cluster() {
    let cluster = RedisCluster::start();
    let s = setup(2, &[]);
    let redis_yaml = format!("redis: {{url: \"{}\", cluster: true}}", cluster.urls());
    let (a, b) = two_replicas(&s, &redis_yaml).await;
    let (cookie, _) = browser_session(&s.op, &a, "frank", "/app").await;
    assert_eq!(get_with_cookie(&b, "/app/x", &cookie).await.0, 200);
    assert_eq!(logout(&b, &cookie).await.status(), 200);
    assert!(
        refused_soon(&a, &cookie).await,
        "logout on b seen by a through the cluster"
    );
}

/// One process, its two workers sharing the in-memory session store, an
/// expired access token and 20 concurrent requests on the session: the
/// provider sees one refresh, and a token shorter-lived than the refresh
/// window does not make every later request refresh again.
#[actix_rt::test]
async fn one_process_refreshes_an_expired_session_exactly_once() {
    // 4 s tokens: far inside the 30 s refresh window from the start.
    let s = setup(1, &[("OIDC_ACCESS_TOKEN_TTL", "4")]);
    let gw = Gateway::start_on(s.ports[0], &config(&s, 0, "server: {workers: 2}")).await;
    let (cookie, _) = browser_session(&s.op, &gw, "frank", "/app").await;
    actix_rt::time::sleep(Duration::from_millis(4500)).await;
    let urls: Vec<String> = (0..20).map(|i| gw.url(&format!("/app/{i}"))).collect();
    let statuses = concurrent_gets(urls, &cookie).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    // And a few more right after, on the fresh token.
    for i in 0..5 {
        assert_eq!(
            get_with_cookie(&gw, &format!("/app/after{i}"), &cookie)
                .await
                .0,
            200
        );
    }
    let metrics = gw.metrics().await;
    assert_eq!(
        refreshes(&metrics),
        1,
        "one refresh for 25 requests: {metrics}"
    );
}

/// How many requests refreshed their session's tokens, from `/metrics`.
fn refreshes(metrics: &str) -> u64 {
    metrics
        .lines()
        .find(|l| {
            l.starts_with("gateway_auth_outcomes_total") && l.contains("result=\"refreshed\"")
        })
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// A reload that adds auth to a gateway that had none brings the login
/// endpoints up; later reloads keep sessions (in memory) unless the
/// session settings change.
#[actix_rt::test]
async fn reloads_add_auth_and_keep_sessions_until_the_session_settings_change() {
    let s = setup(1, &[]);
    let full = config(&s, 0, "server: {watch_settings_files: false}");
    let routes_at = full.find("routes:").expect("routes");
    let public_only = format!(
        "{}routes:\n  - {{name: public, path_prefix: /, upstream: u}}\n",
        &full[..routes_at]
    );
    let gw = Gateway::start_on(s.ports[0], &public_only).await;
    let file = gw.dir.path().join("gateway.yaml");
    let reload = |yaml: String, n: usize| {
        std::fs::write(&file, yaml).unwrap();
        gw.signal("HUP");
        let gw = &gw;
        async move {
            let done = eventually(Duration::from_secs(15), || {
                let done = gw.count_log_messages("settings reloaded") >= n;
                async move { done }
            })
            .await;
            assert!(done, "{}", gw.stdout_text());
        }
    };
    // No route authenticates: /oauth2/login is an ordinary path.
    let (status, echo) = get_with_cookie(&gw, "/oauth2/login", "x").await;
    assert_eq!(
        (status, echo["path"].as_str()),
        (200, Some("/oauth2/login"))
    );

    reload(full.clone(), 1).await;
    let (cookie, _) = browser_session(&s.op, &gw, "alice", "/app/home").await;
    assert_eq!(get_with_cookie(&gw, "/app/x", &cookie).await.0, 200);

    // Another route: the session store carries over.
    let more = full.replace(
        "routes:\n",
        "routes:\n  - {name: extra, path_prefix: /extra, upstream: u}\n",
    );
    reload(more.clone(), 2).await;
    let line = gw
        .log_lines()
        .into_iter()
        .rev()
        .find(|l| l["msg"] == "settings reloaded")
        .unwrap();
    assert_eq!(line["sessions_kept"], true, "{line}");
    assert_eq!(get_with_cookie(&gw, "/app/x", &cookie).await.0, 200);

    // A new session secret: sessions sealed or stored under the old
    // settings are gone, as after a restart.
    reload(
        more.replace(SECRET, "another-session-secret-0123456789abcdef"),
        3,
    )
    .await;
    assert_eq!(get_with_cookie(&gw, "/app/x", &cookie).await.0, 401);
}
