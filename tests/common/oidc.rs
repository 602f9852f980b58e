//! A real OpenID Connect provider for end-to-end tests: `oidc-provider`
//! (Node) from `tests/oidc/provider.mjs`, on a free port of 127.0.0.1, plus
//! a minimal browser (cookie jar, manual redirects, the provider's dev login
//! and consent forms) to log in through it.
//!
//! Needs `node` on the PATH and `npm ci --prefix tests/oidc` done once.
//! See `tests/oidc/README.md` for the provider's settings and token recipes.
//!
//! Self-contained on purpose (nothing from `common/mod.rs`), so that a test
//! file can include it alone with `#[path = "common/oidc.rs"] mod oidc;`.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use awc::http::header::{
    HeaderMap, HeaderValue, ACCEPT, CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE,
};
use awc::http::StatusCode;
use url::Url;

/// Client of the provider unless overridden with `OIDC_CLIENT_ID` /
/// `OIDC_CLIENT_SECRET` in [`OidcProvider::start_with_env`].
pub const CLIENT_ID: &str = "gateway";
pub const CLIENT_SECRET: &str = "gateway-secret";
/// The resource server whose access tokens are JWTs.
pub const API_RESOURCE: &str = "urn:gateway:api";
/// Resource servers whose access tokens are opaque: introspection answers
/// carry the resource as `aud`.
pub const OPAQUE_API_RESOURCE: &str = "urn:gateway:opaque-api";
pub const OTHER_API_RESOURCE: &str = "urn:gateway:other-api";
/// PKCE pair from RFC 7636 appendix B (challenge = BASE64URL(SHA256(verifier))).
pub const PKCE_VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
pub const PKCE_CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
/// The dev login form accepts any password.
pub const PASSWORD: &str = "any-password";

/// Per attempt. A start normally takes well under a second; rarely (about
/// one start in fifty under the parallel test load, cause not found) node
/// stays silent without listening, so a slow start is retried on a new port.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
const HTTP_TIMEOUT: Duration = Duration::from_secs(30);
const MAX_BROWSER_STEPS: usize = 30;
const BODY_LIMIT: usize = 16 * 1024 * 1024;

fn oidc_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("oidc")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Certificates (PEM) of the HTTPS providers this test process started:
/// the harness's own client trusts them, as a user's browser would trust
/// the private CA.
static TRUSTED_PEMS: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn http() -> awc::Client {
    let pems = TRUSTED_PEMS.lock().unwrap().clone();
    let builder = awc::Client::builder()
        .timeout(HTTP_TIMEOUT)
        .disable_redirects();
    if pems.is_empty() {
        return builder.finish();
    }
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for pem in &pems {
        for cert in rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes()) {
            roots.add(cert.expect("test CA PEM")).expect("test CA");
        }
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocols")
    .with_root_certificates(roots)
    .with_no_client_auth();
    builder
        .connector(awc::Connector::new().rustls_0_23(Arc::new(tls)))
        .finish()
}

// ---------------------------------------------------------------------------
// The provider process
// ---------------------------------------------------------------------------

/// A running `oidc-provider`; killed when dropped.
pub struct OidcProvider {
    /// `http://127.0.0.1:<port>` (`https://localhost:<port>` with TLS), also
    /// the `iss` of its tokens.
    pub issuer: String,
    pub port: u16,
    pub client_id: String,
    pub client_secret: String,
    /// `client_secret_basic` (default) or `client_secret_post`.
    pub client_auth_method: String,
    child: Child,
    stderr: Arc<Mutex<String>>,
    stdout: Arc<Mutex<String>>,
    /// HTTPS providers: the certificate and key files.
    tls_dir: Option<tempfile::TempDir>,
}

impl OidcProvider {
    /// Starts the provider with one confidential client allowed to redirect
    /// to `redirect_uris`, and waits (at most 20 s) until it listens.
    pub fn start(redirect_uris: &[String]) -> Self {
        Self::start_with_env(redirect_uris, &[])
    }

    /// Like [`start`](Self::start), over HTTPS with a fresh self-signed
    /// certificate for `localhost` (the issuer is `https://localhost:<port>`);
    /// returns the provider and the certificate's PEM, the CA to trust.
    pub fn start_tls(redirect_uris: &[String]) -> (Self, String) {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("cert");
        let dir = tempfile::tempdir().expect("temp dir");
        let (cert_file, key_file) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        let pem = cert.cert.pem();
        std::fs::write(&cert_file, &pem).expect("write cert");
        std::fs::write(&key_file, cert.signing_key.serialize_pem()).expect("write key");
        TRUSTED_PEMS.lock().unwrap().push(pem.clone());
        let mut provider = Self::start_with_env(
            redirect_uris,
            &[
                ("OIDC_TLS_CERT_FILE", cert_file.to_str().expect("path")),
                ("OIDC_TLS_KEY_FILE", key_file.to_str().expect("path")),
            ],
        );
        provider.tls_dir = Some(dir);
        (provider, pem)
    }

    /// Like [`start`](Self::start), with extra environment variables for the
    /// provider (`OIDC_ACCESS_TOKEN_TTL`, `OIDC_CLIENT_SECRET`, ...; see
    /// `tests/oidc/README.md`).
    pub fn start_with_env(redirect_uris: &[String], env: &[(&str, &str)]) -> Self {
        // A port picked by binding :0 may be taken again before node binds
        // it: retry a few times on that one failure.
        let mut last_failure = String::new();
        for _ in 0..3 {
            match Self::try_start(redirect_uris, env) {
                Ok(provider) => return provider,
                Err((message, retry)) => {
                    if !retry {
                        panic!("{message}");
                    }
                    last_failure = message;
                }
            }
        }
        panic!("{last_failure}");
    }

    fn try_start(redirect_uris: &[String], env: &[(&str, &str)]) -> Result<Self, (String, bool)> {
        let dir = oidc_dir();
        let port = free_port();
        let lookup = |name: &str, default: &str| -> String {
            env.iter()
                .rev()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
                .unwrap_or_else(|| default.to_string())
        };
        let client_id = lookup("OIDC_CLIENT_ID", CLIENT_ID);
        let client_secret = lookup("OIDC_CLIENT_SECRET", CLIENT_SECRET);
        let client_auth_method = lookup("OIDC_CLIENT_AUTH_METHOD", "client_secret_basic");

        let mut child = Command::new("node")
            .arg(dir.join("provider.mjs"))
            .current_dir(&dir)
            .env("OIDC_PORT", port.to_string())
            .env("OIDC_CLIENT_ID", &client_id)
            .env("OIDC_CLIENT_SECRET", &client_secret)
            .env("OIDC_REDIRECT_URIS", redirect_uris.join(","))
            .env("NODE_ENV", "development")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                (
                    format!("could not run `node` for the OIDC provider: {e}"),
                    false,
                )
            })?;

        let stderr = Arc::new(Mutex::new(String::new()));
        let stdout = Arc::new(Mutex::new(String::new()));
        {
            let mut pipe = child.stderr.take().expect("stderr pipe");
            let sink = Arc::clone(&stderr);
            std::thread::spawn(move || {
                let mut buf = [0u8; 8192];
                while let Ok(n) = pipe.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    sink.lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            });
        }
        let (ready_tx, ready_rx) = mpsc::channel::<String>();
        {
            let pipe = child.stdout.take().expect("stdout pipe");
            let sink = Arc::clone(&stdout);
            std::thread::spawn(move || {
                // Keeps draining after READY so the pipe never fills up.
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    if let Some(issuer) = line.strip_prefix("READY ") {
                        let _ = ready_tx.send(issuer.trim().to_string());
                    }
                    let mut out = sink.lock().unwrap();
                    out.push_str(&line);
                    out.push('\n');
                }
            });
        }

        let started = Instant::now();
        let mut timed_out = false;
        let issuer = loop {
            match ready_rx.recv_timeout(Duration::from_millis(100)) {
                Ok(issuer) => break Some(issuer),
                Err(mpsc::RecvTimeoutError::Disconnected) => break None,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if started.elapsed() >= READY_TIMEOUT {
                        timed_out = true;
                        break None;
                    }
                    if let Ok(Some(_)) = child.try_wait() {
                        // Let the reader threads catch the last output.
                        std::thread::sleep(Duration::from_millis(200));
                        if let Ok(issuer) = ready_rx.try_recv() {
                            break Some(issuer);
                        }
                        break None;
                    }
                }
            }
        };

        let Some(issuer) = issuer else {
            let state = process_state(child.id());
            let _ = child.kill();
            let status = child.wait().ok();
            std::thread::sleep(Duration::from_millis(100));
            let err = stderr.lock().unwrap().clone();
            let out = stdout.lock().unwrap().clone();
            let retry = timed_out || err.contains("could not listen");
            let hint = if !dir.join("node_modules").join("oidc-provider").exists() {
                "\n(tests/oidc/node_modules is missing: run npm ci --prefix tests/oidc)"
            } else {
                ""
            };
            return Err((
                format!(
                    "OIDC provider did not become ready on port {port} (waited at most \
                     {READY_TIMEOUT:?}; exit status: {status:?}){hint}\nprocess before the \
                     kill: {state}\nstderr:\n{err}\nstdout:\n{out}"
                ),
                retry,
            ));
        };
        let expected = if lookup("OIDC_TLS_CERT_FILE", "").is_empty() {
            format!("http://127.0.0.1:{port}")
        } else {
            format!("https://localhost:{port}")
        };
        assert_eq!(issuer, expected, "unexpected issuer");
        Ok(Self {
            issuer,
            port,
            client_id,
            client_secret,
            client_auth_method,
            child,
            stderr,
            stdout,
            tls_dir: None,
        })
    }

    /// Everything the provider wrote to stderr so far (warnings, and the
    /// errors it reports: see `provider.mjs`).
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.issuer, path)
    }
    pub fn discovery_url(&self) -> String {
        self.url("/.well-known/openid-configuration")
    }
    pub fn authorization_endpoint(&self) -> String {
        self.url("/auth")
    }
    pub fn token_endpoint(&self) -> String {
        self.url("/token")
    }
    pub fn jwks_uri(&self) -> String {
        self.url("/jwks")
    }
    pub fn introspection_endpoint(&self) -> String {
        self.url("/token/introspection")
    }
    pub fn revocation_endpoint(&self) -> String {
        self.url("/token/revocation")
    }
    pub fn userinfo_endpoint(&self) -> String {
        self.url("/me")
    }
    pub fn end_session_endpoint(&self) -> String {
        self.url("/session/end")
    }

    /// An authorization request URL (code flow, PKCE S256 with
    /// [`PKCE_CHALLENGE`]) as the gateway would build it; `extra` adds
    /// parameters such as `("resource", API_RESOURCE)` or `("prompt", "login")`.
    pub fn authorization_url(
        &self,
        redirect_uri: &str,
        scope: &str,
        state: &str,
        nonce: &str,
        extra: &[(&str, &str)],
    ) -> String {
        let mut url = Url::parse(&self.authorization_endpoint()).expect("authorization URL");
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.client_id)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("scope", scope)
            .append_pair("state", state)
            .append_pair("nonce", nonce)
            .append_pair("code_challenge", PKCE_CHALLENGE)
            .append_pair("code_challenge_method", "S256")
            .extend_pairs(extra.iter().copied());
        url.to_string()
    }

    /// POSTs `form` to `endpoint` authenticated as the client; returns the
    /// status and the JSON body (`Value::Null` when the body is not JSON).
    pub async fn client_post(
        &self,
        endpoint: &str,
        form: &[(&str, &str)],
    ) -> (StatusCode, serde_json::Value) {
        let mut fields: Vec<(&str, &str)> = form.to_vec();
        let mut req = http()
            .post(endpoint)
            .insert_header((CONTENT_TYPE, "application/x-www-form-urlencoded"));
        if self.client_auth_method == "client_secret_post" {
            fields.push(("client_id", &self.client_id));
            fields.push(("client_secret", &self.client_secret));
        } else {
            // RFC 6749 2.3.1: form-encode id and secret before base64.
            req = req.basic_auth(
                form_encode(&self.client_id),
                form_encode(&self.client_secret),
            );
        }
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields.iter().copied())
            .finish();
        let mut resp = req
            .send_body(body)
            .await
            .unwrap_or_else(|e| panic!("POST {endpoint}: {e}"));
        let bytes = resp
            .body()
            .limit(BODY_LIMIT)
            .await
            .expect("provider response body");
        let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        (resp.status(), json)
    }

    /// `POST /token` with any grant; returns status and JSON.
    pub async fn token_request(&self, form: &[(&str, &str)]) -> (StatusCode, serde_json::Value) {
        self.client_post(&self.token_endpoint(), form).await
    }

    /// client_credentials grant. Without `resource` the access token is
    /// OPAQUE (introspect it); with `Some(API_RESOURCE)` it is a JWT signed
    /// with the provider's JWKS, `aud` = the resource; with
    /// `OPAQUE_API_RESOURCE` or `OTHER_API_RESOURCE` it is opaque and its
    /// introspection names the resource as `aud`. `scope` may be "".
    pub async fn client_credentials_token(&self, resource: Option<&str>, scope: &str) -> String {
        let mut form = vec![("grant_type", "client_credentials")];
        if !scope.is_empty() {
            form.push(("scope", scope));
        }
        if let Some(resource) = resource {
            form.push(("resource", resource));
        }
        let (status, json) = self.token_request(&form).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "client_credentials failed: {json}\n{}",
            self.stderr()
        );
        json["access_token"]
            .as_str()
            .expect("access_token")
            .to_string()
    }

    /// authorization_code grant with the [`PKCE_VERIFIER`]; returns the
    /// token response (access_token, id_token, refresh_token, ...).
    pub async fn exchange_code(&self, code: &str, redirect_uri: &str) -> serde_json::Value {
        let (status, json) = self
            .token_request(&[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", redirect_uri),
                ("code_verifier", PKCE_VERIFIER),
            ])
            .await;
        assert_eq!(
            status,
            StatusCode::OK,
            "code exchange failed: {json}\n{}",
            self.stderr()
        );
        json
    }

    /// refresh_token grant (rotation is off: the refresh token stays valid).
    pub async fn refresh(&self, refresh_token: &str) -> (StatusCode, serde_json::Value) {
        self.token_request(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ])
        .await
    }

    /// RFC 7662 introspection as the client.
    pub async fn introspect(&self, token: &str) -> serde_json::Value {
        let (status, json) = self
            .client_post(&self.introspection_endpoint(), &[("token", token)])
            .await;
        assert_eq!(status, StatusCode::OK, "introspection failed: {json}");
        json
    }

    /// RFC 7009 revocation as the client; returns the status (200 on success).
    pub async fn revoke(&self, token: &str) -> StatusCode {
        self.client_post(&self.revocation_endpoint(), &[("token", token)])
            .await
            .0
    }

    /// The provider's public keys (`{"keys": [...]}`).
    pub async fn jwks(&self) -> serde_json::Value {
        let mut resp = http().get(self.jwks_uri()).send().await.expect("GET jwks");
        let bytes = resp.body().limit(BODY_LIMIT).await.expect("jwks body");
        serde_json::from_slice(&bytes).expect("jwks JSON")
    }

    fn authority(&self) -> String {
        authority_of(&Url::parse(&self.issuer).expect("issuer URL"))
    }

    /// Logs in like a browser. Starts with a GET of `start_url` (the
    /// provider's authorization URL, or e.g. the gateway's
    /// `/oauth2/login?rd=/x` that redirects there), follows redirects by
    /// hand, submits the provider's dev login form (`login` as account id)
    /// and consent form, and stops at the first redirect, after having
    /// reached the provider, whose target is not on the provider: that URL
    /// (normally the client's redirect URI with `code`, `state` and `iss`,
    /// or with `error`) is returned without being followed.
    ///
    /// A jar that already holds a provider session skips the login form
    /// (and consent, once granted); use a fresh jar or `prompt=login` to log
    /// in as someone else.
    pub async fn browser_login(
        &self,
        start_url: &str,
        login: &str,
        jar: &mut CookieJar,
    ) -> LoginOutcome {
        let callback_url = self.drive(start_url, Some(login), jar, false).await;
        LoginOutcome {
            callback_url,
            jar: jar.clone(),
        }
    }

    /// Logs out like a browser: GETs `start_url` (the provider's
    /// `/session/end?...` or a client URL that redirects there), confirms the
    /// provider's logout form ("yes, sign out of the provider too") and
    /// returns the first URL off the provider it redirects to, or the URL of
    /// the provider's own "Sign-out Success" page.
    pub async fn browser_logout(&self, start_url: &str, jar: &mut CookieJar) -> String {
        self.drive(start_url, None, jar, true).await
    }

    async fn drive(
        &self,
        start_url: &str,
        login: Option<&str>,
        jar: &mut CookieJar,
        logout: bool,
    ) -> String {
        let provider = self.authority();
        let mut url =
            Url::parse(start_url).unwrap_or_else(|e| panic!("bad start URL {start_url}: {e}"));
        let mut post: Option<Vec<(String, String)>> = None;
        let mut seen_provider = false;
        let mut trace: Vec<String> = Vec::new();
        for _ in 0..MAX_BROWSER_STEPS {
            let on_provider = authority_of(&url) == provider;
            seen_provider |= on_provider;
            let method = if post.is_some() { "POST" } else { "GET" };
            let (status, headers, body) = match post.take() {
                Some(fields) => post_form(jar, url.as_str(), &fields).await,
                None => follow(jar, url.as_str()).await,
            };
            trace.push(format!("{method} {url} -> {status}"));

            if status.is_redirection() {
                let location = headers
                    .get(LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_else(|| {
                        panic!("redirect without Location at {url}\n{}", trace.join("\n"))
                    });
                let next = url
                    .join(location)
                    .unwrap_or_else(|e| panic!("bad Location {location:?} at {url}: {e}"));
                if seen_provider && authority_of(&next) != provider {
                    return next.to_string();
                }
                url = next;
                continue;
            }

            if status == StatusCode::OK && on_provider {
                match parse_form(&body) {
                    Some(form) => {
                        let mut fields: Vec<(String, String)> = form
                            .inputs
                            .iter()
                            .filter(|i| i.kind.eq_ignore_ascii_case("hidden"))
                            .map(|i| (i.name.clone(), i.value.clone()))
                            .collect();
                        if form.has_input("login") {
                            let login = login.unwrap_or_else(|| {
                                panic!("login form during logout\n{}\n{body}", trace.join("\n"))
                            });
                            fields.push(("login".into(), login.into()));
                            fields.push(("password".into(), PASSWORD.into()));
                        }
                        if logout && body.contains("name=\"logout\"") {
                            fields.push(("logout".into(), "yes".into()));
                        }
                        let action = if form.action.is_empty() {
                            url.as_str()
                        } else {
                            &form.action
                        };
                        url = url
                            .join(action)
                            .unwrap_or_else(|e| panic!("bad form action {:?}: {e}", form.action));
                        post = Some(fields);
                        continue;
                    }
                    None if logout => return url.to_string(),
                    None => {}
                }
            }

            panic!(
                "browser stopped at {status} {url} (expected a redirect or a form)\n\
                 steps:\n{}\nbody:\n{body}\nprovider stderr:\n{}",
                trace.join("\n"),
                self.stderr()
            );
        }
        panic!(
            "more than {MAX_BROWSER_STEPS} browser steps:\n{}",
            trace.join("\n")
        );
    }
}

/// The state and kernel wait channel of each thread of a process (Linux),
/// for the report of a provider that never became ready.
fn process_state(pid: u32) -> String {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return "(no /proc)".to_owned();
    };
    tasks
        .filter_map(Result::ok)
        .map(|task| {
            let read =
                |file: &str| std::fs::read_to_string(task.path().join(file)).unwrap_or_default();
            let stat = read("stat");
            // "pid (comm) S ...": the state letter follows the command name.
            let state = stat
                .rsplit(')')
                .next()
                .unwrap_or("")
                .split_whitespace()
                .next();
            format!(
                "{}:{}:{}",
                read("comm").trim(),
                state.unwrap_or("?"),
                read("wchan").trim()
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where a browser login ended.
#[derive(Clone, Debug)]
pub struct LoginOutcome {
    /// The first off-provider redirect target (not fetched).
    pub callback_url: String,
    /// The cookies after the login (a copy of the jar passed in).
    pub jar: CookieJar,
}

impl LoginOutcome {
    /// A query parameter of the callback URL (`code`, `state`, `iss`, `error`).
    pub fn param(&self, name: &str) -> Option<String> {
        let url = Url::parse(&self.callback_url).ok()?;
        url.query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }
}

// ---------------------------------------------------------------------------
// Browser pieces: cookie jar, single steps
// ---------------------------------------------------------------------------

/// A browser's cookies, kept per `host:port` and name (ports are kept
/// apart, unlike a real browser, so the gateway and the provider on
/// 127.0.0.1 do not mix). Path, Domain, Secure and SameSite are ignored:
/// every cookie of a host:port goes with every request to it.
#[derive(Clone, Debug, Default)]
pub struct CookieJar {
    cookies: BTreeMap<(String, String), String>,
}

impl CookieJar {
    pub fn new() -> Self {
        Self::default()
    }

    /// The value of cookie `name` for the URL's host:port.
    pub fn get(&self, url: &str, name: &str) -> Option<String> {
        let authority = authority_of(&Url::parse(url).ok()?);
        self.cookies.get(&(authority, name.to_string())).cloned()
    }

    pub fn set(&mut self, url: &str, name: &str, value: &str) {
        let authority = authority_of(&Url::parse(url).expect("URL"));
        self.cookies
            .insert((authority, name.to_string()), value.to_string());
    }

    pub fn remove(&mut self, url: &str, name: &str) {
        let authority = authority_of(&Url::parse(url).expect("URL"));
        self.cookies.remove(&(authority, name.to_string()));
    }

    /// Names of the cookies held for the URL's host:port.
    pub fn names(&self, url: &str) -> Vec<String> {
        let Some(authority) = Url::parse(url).ok().map(|u| authority_of(&u)) else {
            return Vec::new();
        };
        self.cookies
            .keys()
            .filter(|(a, _)| *a == authority)
            .map(|(_, n)| n.clone())
            .collect()
    }

    /// The `Cookie` header value for a request to `url`, if any.
    pub fn header_for(&self, url: &str) -> Option<String> {
        let authority = authority_of(&Url::parse(url).ok()?);
        let pairs: Vec<String> = self
            .cookies
            .iter()
            .filter(|((a, _), _)| *a == authority)
            .map(|((_, n), v)| format!("{n}={v}"))
            .collect();
        (!pairs.is_empty()).then(|| pairs.join("; "))
    }

    /// Records the `Set-Cookie` headers of a response from `url`
    /// (`Max-Age<=0` or an `Expires` in the past removes the cookie).
    pub fn store(&mut self, url: &str, headers: &HeaderMap) {
        let Ok(parsed) = Url::parse(url) else { return };
        let authority = authority_of(&parsed);
        for value in headers.get_all(SET_COOKIE) {
            let Ok(line) = value.to_str() else { continue };
            let mut parts = line.split(';');
            let Some((name, value)) = parts.next().and_then(|nv| nv.split_once('=')) else {
                continue;
            };
            let (name, value) = (
                name.trim().to_string(),
                value.trim().trim_matches('"').to_string(),
            );
            if name.is_empty() {
                continue;
            }
            let mut expired = false;
            for attr in parts {
                let (k, v) = attr.split_once('=').unwrap_or((attr, ""));
                let (k, v) = (k.trim(), v.trim());
                if k.eq_ignore_ascii_case("max-age") {
                    if v.parse::<i64>().map(|n| n <= 0).unwrap_or(false) {
                        expired = true;
                    }
                } else if k.eq_ignore_ascii_case("expires") {
                    if let Some(at) = parse_http_date(v) {
                        let now = SystemTime::now()
                            .duration_since(UNIX_EPOCH)
                            .unwrap()
                            .as_secs() as i64;
                        if at <= now {
                            expired = true;
                        }
                    }
                }
            }
            let key = (authority.clone(), name);
            if expired {
                self.cookies.remove(&key);
            } else {
                self.cookies.insert(key, value);
            }
        }
    }
}

/// One browser GET of `url` with the jar's cookies (no redirect followed);
/// records `Set-Cookie`. Returns status, headers and the body as text.
pub async fn follow(jar: &mut CookieJar, url: &str) -> (StatusCode, HeaderMap, String) {
    let mut req = http()
        .get(url)
        .insert_header((ACCEPT, "text/html,application/xhtml+xml,*/*;q=0.8"));
    if let Some(cookie) = jar.header_for(url) {
        req = req.insert_header((
            COOKIE,
            HeaderValue::from_str(&cookie).expect("cookie header"),
        ));
    }
    let mut resp = req
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    finish(jar, url, &mut resp).await
}

/// One browser form POST (`application/x-www-form-urlencoded`) with the
/// jar's cookies; records `Set-Cookie`. A 302/303 answer is to be followed
/// with a GET, as browsers do.
pub async fn post_form(
    jar: &mut CookieJar,
    url: &str,
    fields: &[(String, String)],
) -> (StatusCode, HeaderMap, String) {
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .finish();
    let mut req = http()
        .post(url)
        .insert_header((ACCEPT, "text/html,application/xhtml+xml,*/*;q=0.8"))
        .insert_header((CONTENT_TYPE, "application/x-www-form-urlencoded"));
    if let Some(cookie) = jar.header_for(url) {
        req = req.insert_header((
            COOKIE,
            HeaderValue::from_str(&cookie).expect("cookie header"),
        ));
    }
    let mut resp = req
        .send_body(body)
        .await
        .unwrap_or_else(|e| panic!("POST {url}: {e}"));
    finish(jar, url, &mut resp).await
}

async fn finish<S>(
    jar: &mut CookieJar,
    url: &str,
    resp: &mut awc::ClientResponse<S>,
) -> (StatusCode, HeaderMap, String)
where
    S: futures_util::Stream<Item = Result<bytes::Bytes, awc::error::PayloadError>> + Unpin,
{
    jar.store(url, resp.headers());
    let body = resp
        .body()
        .limit(BODY_LIMIT)
        .await
        .unwrap_or_else(|e| panic!("body of {url}: {e}"));
    (
        resp.status(),
        resp.headers().clone(),
        String::from_utf8_lossy(&body).into_owned(),
    )
}

// ---------------------------------------------------------------------------
// Small parsers
// ---------------------------------------------------------------------------

/// The payload (claims) of a JWT, decoded without checking the signature.
pub fn decode_jwt_payload(jwt: &str) -> serde_json::Value {
    decode_jwt_part(jwt, 1)
}

/// The JOSE header of a JWT (`alg`, `kid`, `typ`).
pub fn decode_jwt_header(jwt: &str) -> serde_json::Value {
    decode_jwt_part(jwt, 0)
}

fn decode_jwt_part(jwt: &str, index: usize) -> serde_json::Value {
    let parts: Vec<&str> = jwt.split('.').collect();
    assert_eq!(parts.len(), 3, "not a JWS compact JWT: {jwt}");
    let bytes = base64url_decode(parts[index])
        .unwrap_or_else(|| panic!("bad base64url in JWT part {index}"));
    serde_json::from_slice(&bytes).expect("JWT part is JSON")
}

/// Unpadded (or padded) base64url.
pub fn base64url_decode(input: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(input.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in input.trim_end_matches('=').bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' | b'+' => 62,
            b'_' | b'/' => 63,
            _ => return None,
        } as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

fn form_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn authority_of(url: &Url) -> String {
    format!(
        "{}:{}",
        url.host_str().unwrap_or_default(),
        url.port_or_known_default().unwrap_or(0)
    )
}

#[derive(Debug, Default)]
pub struct HtmlForm {
    pub action: String,
    pub method: String,
    pub inputs: Vec<HtmlInput>,
}

#[derive(Debug, Default)]
pub struct HtmlInput {
    pub kind: String,
    pub name: String,
    pub value: String,
}

impl HtmlForm {
    pub fn has_input(&self, name: &str) -> bool {
        self.inputs.iter().any(|i| i.name == name)
    }
}

/// The first `<form>` of a page: its action, method and `<input>`s.
pub fn parse_form(html: &str) -> Option<HtmlForm> {
    let lower = html.to_ascii_lowercase();
    let start = lower.find("<form")?;
    let (attrs, after) = tag_attributes(html, start + "<form".len());
    let end = lower[after..]
        .find("</form")
        .map(|i| after + i)
        .unwrap_or(html.len());
    let mut form = HtmlForm {
        action: attr(&attrs, "action").unwrap_or_default(),
        method: attr(&attrs, "method").unwrap_or_else(|| "get".into()),
        inputs: Vec::new(),
    };
    let mut at = after;
    while let Some(i) = lower[at..end].find("<input") {
        let (attrs, next) = tag_attributes(html, at + i + "<input".len());
        if let Some(name) = attr(&attrs, "name") {
            form.inputs.push(HtmlInput {
                kind: attr(&attrs, "type").unwrap_or_else(|| "text".into()),
                name,
                value: attr(&attrs, "value").unwrap_or_default(),
            });
        }
        at = next.min(end);
    }
    Some(form)
}

fn attr(attrs: &[(String, String)], name: &str) -> Option<String> {
    attrs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
}

/// Parses `name="value"` attributes from `pos` (just after the tag name) to
/// the closing `>`; returns them (names lowercased, values unescaped) and
/// the index after `>`.
fn tag_attributes(html: &str, mut pos: usize) -> (Vec<(String, String)>, usize) {
    let b = html.as_bytes();
    let mut attrs = Vec::new();
    loop {
        while pos < b.len() && (b[pos].is_ascii_whitespace() || b[pos] == b'/') {
            pos += 1;
        }
        if pos >= b.len() {
            return (attrs, pos);
        }
        if b[pos] == b'>' {
            return (attrs, pos + 1);
        }
        let name_start = pos;
        while pos < b.len()
            && !b[pos].is_ascii_whitespace()
            && !matches!(b[pos], b'=' | b'>' | b'/')
        {
            pos += 1;
        }
        let name = html[name_start..pos].to_ascii_lowercase();
        while pos < b.len() && b[pos].is_ascii_whitespace() {
            pos += 1;
        }
        let mut value = String::new();
        if pos < b.len() && b[pos] == b'=' {
            pos += 1;
            while pos < b.len() && b[pos].is_ascii_whitespace() {
                pos += 1;
            }
            if pos < b.len() && (b[pos] == b'"' || b[pos] == b'\'') {
                let quote = b[pos];
                let vstart = pos + 1;
                let vend = html[vstart..]
                    .find(quote as char)
                    .map(|i| vstart + i)
                    .unwrap_or(b.len());
                value = html_unescape(&html[vstart..vend]);
                pos = (vend + 1).min(b.len());
            } else {
                let vstart = pos;
                while pos < b.len() && !b[pos].is_ascii_whitespace() && b[pos] != b'>' {
                    pos += 1;
                }
                value = html_unescape(&html[vstart..pos]);
            }
        }
        if !name.is_empty() {
            attrs.push((name, value));
        } else {
            pos += 1;
        }
    }
}

fn html_unescape(s: &str) -> String {
    if !s.contains('&') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let Some(semi) = rest.find(';').filter(|&j| j <= 10) else {
            out.push('&');
            rest = &rest[1..];
            continue;
        };
        let entity = &rest[1..semi];
        let decoded = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ if entity.starts_with("#x") || entity.starts_with("#X") => {
                u32::from_str_radix(&entity[2..], 16)
                    .ok()
                    .and_then(char::from_u32)
            }
            _ if entity.starts_with('#') => entity[1..].parse().ok().and_then(char::from_u32),
            _ => None,
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &rest[semi + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// `Thu, 01 Jan 1970 00:00:00 GMT` (IMF-fixdate; also tolerates dashes as
/// in `01-Jan-1970`) to Unix seconds.
fn parse_http_date(s: &str) -> Option<i64> {
    let s = s.split_once(',').map(|(_, rest)| rest).unwrap_or(s);
    let s = s.replace('-', " ");
    let mut it = s.split_whitespace();
    let day: i64 = it.next()?.parse().ok()?;
    let month = match &it.next()?.to_ascii_lowercase()[..] {
        "jan" => 1,
        "feb" => 2,
        "mar" => 3,
        "apr" => 4,
        "may" => 5,
        "jun" => 6,
        "jul" => 7,
        "aug" => 8,
        "sep" => 9,
        "oct" => 10,
        "nov" => 11,
        "dec" => 12,
        _ => return None,
    };
    let mut year: i64 = it.next()?.parse().ok()?;
    if year < 100 {
        year += if year < 70 { 2000 } else { 1900 };
    }
    let mut hms = it.next()?.split(':').map(|p| p.parse::<i64>());
    let (h, m, sec) = (hms.next()?.ok()?, hms.next()?.ok()?, hms.next()?.ok()?);
    // Days from civil (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = (if y >= 0 { y } else { y - 399 }) / 400;
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    Some(days * 86400 + h * 3600 + m * 60 + sec)
}
