//! Shared test harness: real upstream HTTP servers, the real `gateway`
//! binary on free ports, and an awc client. Nothing here is mocked: each
//! test talks to the gateway over TCP exactly as a user would.
#![allow(dead_code)]

pub mod oidc;

use std::fs::File;
use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use bytes::Bytes;
use futures_util::StreamExt;

pub const GATEWAY_BIN: &str = env!("CARGO_BIN_EXE_gateway");

/// A port nobody listens on right now. Taken below the kernel's ephemeral
/// range (32768+), so the outgoing connections of busy tests and benchmarks
/// cannot grab it between this check and the server binding it; a counter
/// keeps the tests of one process apart.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let _ = NEXT.compare_exchange(
        0,
        20_000 + (std::process::id() % 1_000) as u16 * 10,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    loop {
        let port = NEXT.fetch_add(1, Ordering::SeqCst);
        let port = 20_000 + (port - 20_000) % 12_000;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Polls `check` until it holds or `timeout` passes; returns whether it held.
pub async fn eventually<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn client() -> awc::Client {
    awc::Client::builder()
        .timeout(Duration::from_secs(120))
        .disable_redirects()
        .finish()
}

// ---------------------------------------------------------------------------
// Upstream
// ---------------------------------------------------------------------------

/// A real HTTP upstream on a free port, with endpoints that show what the
/// gateway forwarded.
pub struct Upstream {
    pub addr: SocketAddr,
    pub name: String,
    handle: actix_web::dev::ServerHandle,
}

impl Upstream {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        // stop() sends the command at once; its future only reports completion.
        drop(self.handle.stop(false));
    }
}

/// FNV-1a, to compare bodies without keeping them.
pub fn fnv(hash: u64, bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(hash, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100000001b3))
}
pub const FNV_START: u64 = 0xcbf29ce484222325;

/// Echo: method, path, query, headers and a streamed count + hash of the body.
async fn echo(req: HttpRequest, mut body: web::Payload, name: web::Data<String>) -> HttpResponse {
    let mut len = 0u64;
    let mut hash = FNV_START;
    while let Some(chunk) = body.next().await {
        let Ok(chunk) = chunk else {
            return HttpResponse::BadRequest().finish();
        };
        len += chunk.len() as u64;
        hash = fnv(hash, &chunk);
    }
    let mut headers = serde_json::Map::new();
    for (k, v) in req.headers() {
        let entry = headers
            .entry(k.as_str().to_owned())
            .or_insert_with(|| serde_json::Value::Array(vec![]));
        if let serde_json::Value::Array(list) = entry {
            list.push(String::from_utf8_lossy(v.as_bytes()).into());
        }
    }
    HttpResponse::Ok()
        .insert_header(("x-upstream", name.as_str()))
        .json(serde_json::json!({
            "upstream": name.as_str(),
            "method": req.method().as_str(),
            "version": format!("{:?}", req.version()),
            "path": req.uri().path(),
            "query": req.uri().query(),
            "headers": headers,
            "body_len": len,
            "body_fnv": hash,
        }))
}

/// `/bytes/{n}`: n bytes of a repeating pattern, streamed in 64 KiB chunks;
/// `?chunked=1` leaves out Content-Length.
async fn bytes(path: web::Path<u64>, req: HttpRequest) -> HttpResponse {
    let total = path.into_inner();
    let chunk = Bytes::from((0..65_536u32).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
    let stream = futures_util::stream::unfold(0u64, move |sent| {
        let chunk = chunk.clone();
        async move {
            if sent >= total {
                return None;
            }
            let n = (total - sent).min(chunk.len() as u64) as usize;
            Some((Ok::<_, actix_web::Error>(chunk.slice(..n)), sent + n as u64))
        }
    });
    let mut res = HttpResponse::Ok();
    res.content_type("application/octet-stream");
    if req.query_string().contains("chunked=1") {
        res.streaming(stream)
    } else {
        res.no_chunking(total).streaming(stream)
    }
}

/// The `/text/{n}` body: compressible text, the same for every n prefix.
pub fn text_body(n: usize) -> Vec<u8> {
    b"{\"id\": 12345, \"name\": \"gateway\", \"tags\": [\"a\", \"b\"]}\n"
        .iter()
        .copied()
        .cycle()
        .take(n)
        .collect()
}

/// `/text/{n}`: n bytes of JSON lines in 16 KiB chunks (`?type=` sets the
/// Content-Type, `?encoded=1` claims `Content-Encoding: gzip`, `?hold=1`
/// stops halfway until [`held_text`] is notified); a `Range` request gets
/// 206 with the first 10 bytes.
async fn text(path: web::Path<usize>, req: HttpRequest) -> HttpResponse {
    let body = Bytes::from(text_body(path.into_inner()));
    let query = req.query_string().to_owned();
    let content_type = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("type="))
        .map_or("application/json".to_owned(), |t| t.replace("%2F", "/"));
    let mut res = if req.headers().contains_key("range") {
        let mut res = HttpResponse::PartialContent();
        res.insert_header(("content-range", format!("bytes 0-9/{}", body.len())));
        return res
            .content_type(content_type)
            .body(body.slice(..10.min(body.len())));
    } else {
        HttpResponse::Ok()
    };
    res.content_type(content_type);
    if query.contains("encoded=1") {
        res.insert_header(("content-encoding", "gzip"));
    }
    let len = body.len();
    let hold = query.contains("hold=1");
    let chunks = futures_util::stream::iter((0..len).step_by(16_384)).then(move |at| {
        let chunk = body.slice(at..(at + 16_384).min(len));
        async move {
            if hold && (len / 2..len / 2 + 16_384).contains(&at) {
                held_text().notified().await;
            }
            Ok::<_, actix_web::Error>(chunk)
        }
    });
    res.no_chunking(len as u64).streaming(chunks)
}

/// What `/text/{n}?hold=1` waits on halfway through its body.
pub fn held_text() -> &'static tokio::sync::Notify {
    static HELD: std::sync::OnceLock<tokio::sync::Notify> = std::sync::OnceLock::new();
    HELD.get_or_init(tokio::sync::Notify::new)
}

async fn slow(path: web::Path<u64>, name: web::Data<String>) -> HttpResponse {
    actix_rt::time::sleep(Duration::from_millis(path.into_inner())).await;
    HttpResponse::Ok()
        .insert_header(("x-upstream", name.as_str()))
        .body("slow done")
}

/// `/dribble/{ms}`: sends the head and a first chunk, then waits `ms`
/// before the rest.
async fn dribble(path: web::Path<u64>) -> HttpResponse {
    let wait = Duration::from_millis(path.into_inner());
    let parts = futures_util::stream::iter([0u8, 1]).then(move |i| async move {
        if i == 1 {
            actix_rt::time::sleep(wait).await;
        }
        Ok::<_, actix_web::Error>(Bytes::from_static(b"part;"))
    });
    HttpResponse::Ok().streaming(parts)
}

async fn status(path: web::Path<u16>) -> HttpResponse {
    let code = actix_web::http::StatusCode::from_u16(path.into_inner())
        .unwrap_or(actix_web::http::StatusCode::IM_A_TEAPOT);
    HttpResponse::build(code).body("status")
}

/// `/ws`: a WebSocket echo server. Text `whoami` answers JSON with the path
/// and headers of the handshake it received; other text comes back as
/// `echo:<text>`, binary as is. Offers of protocol `chat` are accepted.
async fn websocket(req: HttpRequest, body: web::Payload) -> actix_web::Result<HttpResponse> {
    let (mut res, mut session, mut messages) = actix_ws::handle(&req, body)?;
    let wants_chat = req
        .headers()
        .get("sec-websocket-protocol")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|p| p.trim() == "chat"));
    if wants_chat {
        res.headers_mut().insert(
            actix_web::http::header::SEC_WEBSOCKET_PROTOCOL,
            actix_web::http::header::HeaderValue::from_static("chat"),
        );
    }
    let mut seen = serde_json::Map::new();
    for (k, v) in req.headers() {
        seen.insert(k.to_string(), v.to_str().unwrap_or("").into());
    }
    let whoami = serde_json::json!({"path": req.uri().to_string(), "headers": seen}).to_string();
    actix_rt::spawn(async move {
        while let Some(Ok(msg)) = messages.next().await {
            let sent = match msg {
                actix_ws::Message::Text(t) if &*t == "whoami" => session.text(whoami.clone()).await,
                actix_ws::Message::Text(t) => session.text(format!("echo:{t}")).await,
                actix_ws::Message::Binary(b) => session.binary(b).await,
                actix_ws::Message::Ping(p) => session.pong(&p).await,
                actix_ws::Message::Close(reason) => {
                    let _ = session.close(reason).await;
                    return;
                }
                _ => Ok(()),
            };
            if sent.is_err() {
                return;
            }
        }
    });
    Ok(res)
}

/// Like `spawn_upstream`, over HTTPS with a fresh self-signed certificate
/// for `localhost`; returns the upstream and the PEM of its certificate (the
/// CA a client must trust).
pub fn spawn_tls_upstream(name: &str) -> (Upstream, String) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("cert");
    let pem = cert.cert.pem();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocols")
    .with_no_client_auth()
    .with_single_cert(vec![cert.cert.der().clone()], key)
    .expect("server config");
    (spawn_upstream_with(name, Some(config)), pem)
}

pub fn spawn_upstream(name: &str) -> Upstream {
    spawn_upstream_with(name, None)
}

fn spawn_upstream_with(name: &str, tls: Option<rustls::ServerConfig>) -> Upstream {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind upstream");
    let addr = listener.local_addr().expect("upstream addr");
    let (tx, rx) = std::sync::mpsc::channel();
    let label = name.to_owned();
    std::thread::spawn(move || {
        actix_rt::System::new().block_on(async move {
            let server = HttpServer::new(move || {
                App::new()
                    .app_data(web::Data::new(label.clone()))
                    .route("/bytes/{n}", web::to(bytes))
                    .route("/text/{n}", web::to(text))
                    .route("/slow/{ms}", web::to(slow))
                    .route("/status/{code}", web::to(status))
                    .route("/dribble/{ms}", web::to(dribble))
                    .route("/ws", web::get().to(websocket))
                    .default_service(web::to(echo))
            })
            .workers(2)
            .disable_signals();
            let server = match tls {
                Some(config) => server.listen_rustls_0_23(listener, config),
                None => server.listen(listener),
            }
            .expect("listen")
            .run();
            tx.send(server.handle()).expect("send handle");
            let _ = server.await;
        });
    });
    let handle = rx.recv().expect("upstream started");
    Upstream {
        addr,
        name: name.to_owned(),
        handle,
    }
}

// ---------------------------------------------------------------------------
// Gateway process
// ---------------------------------------------------------------------------

pub struct Gateway {
    child: Child,
    pub port: u16,
    pub admin_port: u16,
    pub dir: tempfile::TempDir,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Gateway {
    /// Starts the real binary with `yaml` (listen addresses are added on
    /// free ports) and waits until it reports ready.
    pub async fn start(yaml: &str) -> Self {
        let gw = Self::spawn(yaml, &[]);
        gw.wait_ready().await;
        gw
    }

    /// Starts without waiting (for tests of refused configurations).
    pub fn spawn(yaml: &str, extra_args: &[&str]) -> Self {
        Self::spawn_env(yaml, extra_args, &[])
    }

    /// Starts with extra command-line arguments and environment variables.
    pub fn spawn_env(yaml: &str, extra_args: &[&str], envs: &[(&str, &str)]) -> Self {
        Self::spawn_on((free_port(), free_port()), yaml, extra_args, envs)
    }

    /// Starts on ports chosen beforehand (for settings that must name the
    /// gateway's own address, such as an OAuth2 redirect URL) and waits.
    pub async fn start_on(ports: (u16, u16), yaml: &str) -> Self {
        let gw = Self::spawn_on(ports, yaml, &[], &[]);
        gw.wait_ready().await;
        gw
    }

    pub fn spawn_on(
        (port, admin_port): (u16, u16),
        yaml: &str,
        extra_args: &[&str],
        envs: &[(&str, &str)],
    ) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("gateway.yaml");
        File::create(&config)
            .and_then(|mut f| f.write_all(yaml.as_bytes()))
            .expect("write config");
        let stdout = dir.path().join("stdout.log");
        let stderr = dir.path().join("stderr.log");
        let child = Command::new(GATEWAY_BIN)
            .arg("--config")
            .arg(&config)
            .arg("--set")
            .arg(format!("server.listen=127.0.0.1:{port}"))
            .arg("--set")
            .arg(format!("admin.listen=127.0.0.1:{admin_port}"))
            .args(extra_args)
            .current_dir(dir.path())
            .env_remove("GATEWAY_SERVER__WORKERS")
            .envs(envs.iter().copied())
            .stdin(Stdio::null())
            .stdout(File::create(&stdout).expect("stdout file"))
            .stderr(File::create(&stderr).expect("stderr file"))
            .spawn()
            .expect("spawn gateway");
        Self {
            child,
            port,
            admin_port,
            dir,
            stdout,
            stderr,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.admin_port, path)
    }

    pub async fn wait_ready(&self) {
        let c = client();
        let url = self.admin_url("/health/ready");
        let ready = eventually(Duration::from_secs(20), || {
            let req = c.get(&url).send();
            async move { matches!(req.await, Ok(r) if r.status() == 200) }
        })
        .await;
        assert!(
            ready,
            "gateway not ready; stderr:\n{}\nstdout:\n{}",
            self.stderr(),
            self.stdout_text()
        );
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    pub fn stdout_text(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    /// Every JSON line the gateway has written to stdout so far.
    pub fn log_lines(&self) -> Vec<serde_json::Value> {
        self.stdout_text()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// How many log lines so far have a `msg` starting with `prefix`.
    pub fn count_log_messages(&self, prefix: &str) -> usize {
        self.log_lines()
            .iter()
            .filter(|l| l["msg"].as_str().is_some_and(|m| m.starts_with(prefix)))
            .count()
    }

    /// Waits for the access-log line of `request_id`.
    pub async fn access_log_for(&self, request_id: &str) -> serde_json::Value {
        let mut found = None;
        eventually(Duration::from_secs(10), || {
            found = self
                .log_lines()
                .into_iter()
                .find(|l| l["msg"] == "request" && l["request_id"] == request_id);
            let hit = found.is_some();
            async move { hit }
        })
        .await;
        found.unwrap_or_else(|| panic!("no access log line for {request_id}"))
    }

    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Sends SIGTERM and waits (up to `timeout`, off the test's runtime
    /// thread) for the process to exit; hands the gateway back, so that
    /// its complete output can be read.
    pub async fn terminate(self, timeout: Duration) -> (Option<ExitStatus>, Gateway) {
        self.signal("TERM");
        self.exited(timeout).await
    }

    /// Waits (up to `timeout`, off the test's runtime thread) for the
    /// process to exit; hands the gateway back.
    pub async fn exited(mut self, timeout: Duration) -> (Option<ExitStatus>, Gateway) {
        actix_rt::task::spawn_blocking(move || {
            let status = self.wait_exit(timeout);
            (status, self)
        })
        .await
        .expect("waiting for the gateway")
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Peak resident memory of the gateway process so far, in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        proc_status_kib(self.pid(), "VmHWM:")
    }

    pub fn rss_kib(&self) -> u64 {
        proc_status_kib(self.pid(), "VmRSS:")
    }

    /// The admin listener's `/health` document.
    pub async fn health(&self) -> serde_json::Value {
        let mut res = client()
            .get(self.admin_url("/health"))
            .send()
            .await
            .expect("health");
        json_body(&mut res).await
    }

    /// Waits (bounded) until `upstream` has a request in flight on one of
    /// its targets; returns whether it happened.
    pub async fn wait_for_request_at(&self, upstream: &str) -> bool {
        eventually(Duration::from_secs(5), || async {
            let health = self.health().await;
            health["upstreams"][upstream]["targets"]
                .as_array()
                .is_some_and(|targets| targets.iter().any(|t| t["in_flight"] != 0))
        })
        .await
    }

    pub async fn metrics(&self) -> String {
        let mut res = client()
            .get(self.admin_url("/metrics"))
            .send()
            .await
            .expect("metrics");
        String::from_utf8_lossy(&res.body().limit(16 << 20).await.expect("body")).into_owned()
    }
}

fn proc_status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads a whole JSON response body.
pub async fn json_body<S>(res: &mut awc::ClientResponse<S>) -> serde_json::Value
where
    S: futures_util::Stream<Item = Result<Bytes, awc::error::PayloadError>> + Unpin,
{
    let body = res.body().limit(16 << 20).await.expect("body");
    serde_json::from_slice(&body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&body)))
}

/// A response header as text ("" when absent).
pub fn hdr<S>(res: &awc::ClientResponse<S>, name: &str) -> String {
    res.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

/// Settings of one worker with one upstream (`main`, at `up`) behind the
/// route `/api`; `server` lines (indented by two spaces) join the `server`
/// section.
pub fn api_route_config(up: &Upstream, server: &str) -> String {
    format!(
        r#"
server:
  workers: 1
  {server}
upstreams:
  main: {{targets: ["{up}"]}}
routes:
  - {{name: api, path_prefix: /api, upstream: main}}
"#,
        up = up.url()
    )
}

/// Sends `request` as raw bytes on a new connection and returns what comes
/// back: one response, or what arrived before the peer closed or went
/// silent for 1.5 s.
pub fn raw_request(port: u16, request: &str) -> String {
    let mut conn = RawConnection::open(port);
    conn.send(request.as_bytes());
    conn.read_response()
}

/// A client connection speaking raw HTTP/1.1, for what awc will not send:
/// slow request heads, odd framing, several requests on one connection.
pub struct RawConnection {
    stream: std::net::TcpStream,
}

impl RawConnection {
    pub fn open(port: u16) -> Self {
        let stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_millis(1500)))
            .expect("timeout");
        Self { stream }
    }

    /// The socket, for reads a test paces itself.
    pub fn stream(&mut self) -> &mut std::net::TcpStream {
        &mut self.stream
    }

    /// Writes `bytes`; false when the gateway has closed the connection.
    pub fn send(&mut self, bytes: &[u8]) -> bool {
        self.stream.write_all(bytes).is_ok()
    }

    /// One response: its head and its `Content-Length` body, or what
    /// arrived before the peer closed or went silent for 1.5 s.
    pub fn read_response(&mut self) -> String {
        use std::io::Read;
        let mut out = Vec::new();
        let mut buf = [0u8; 65536];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    out.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&out);
                    if let Some(end) = text.find("\r\n\r\n") {
                        let len = content_length(&text[..end]);
                        if len.is_some_and(|len| out.len() >= end + 4 + len) {
                            break;
                        }
                    }
                }
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Up to `n` responses (status, body) on this connection, framed by
    /// their `Content-Length`; fewer when the peer closes or is silent for
    /// 1.5 s. Bodies as bytes, for pipelined and binary answers.
    pub fn read_responses(&mut self, n: usize) -> Vec<(u16, Vec<u8>)> {
        use std::io::Read;
        let mut data = Vec::new();
        let mut answers = Vec::new();
        let mut buf = [0u8; 65536];
        while answers.len() < n {
            let Ok(read @ 1..) = self.stream.read(&mut buf) else {
                break;
            };
            data.extend_from_slice(&buf[..read]);
            while let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&data[..end]).into_owned();
                let status = head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
                let len = content_length(&head).unwrap_or(0);
                if data.len() < end + 4 + len {
                    break;
                }
                answers.push((status, data[end + 4..end + 4 + len].to_vec()));
                data.drain(..end + 4 + len);
            }
        }
        answers
    }

    /// What the gateway sends until it closes the connection, if it does
    /// within `within`; `None` while it is still open then.
    pub fn read_until_closed(&mut self, within: Duration) -> Option<String> {
        use std::io::{ErrorKind, Read};
        let deadline = Instant::now() + within;
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        self.stream
            .set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        while Instant::now() < deadline {
            match self.stream.read(&mut buf) {
                Ok(0) => return Some(String::from_utf8_lossy(&out).into_owned()),
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => return Some(String::from_utf8_lossy(&out).into_owned()),
            }
        }
        None
    }
}

/// The `Content-Length` of a response head, if it has one.
fn content_length(head: &str) -> Option<usize> {
    head.lines().find_map(|l| {
        l.to_ascii_lowercase()
            .strip_prefix("content-length:")
            .and_then(|v| v.trim().parse().ok())
    })
}

/// An upstream that answers every request with the same raw bytes (actix
/// rewrites `Connection`, so hop-by-hop tests need exact control).
pub fn spawn_raw_upstream(response: &'static str) -> SocketAddr {
    use std::io::Read;
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind raw upstream");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 8192];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = stream.write_all(response.as_bytes());
            });
        }
    });
    addr
}

/// An upstream that accepts connections and never answers (a hung
/// process): the connections stay open for as long as the test runs.
pub fn spawn_hung_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind hung upstream");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    addr
}

// ---------------------------------------------------------------------------
// Redis
// ---------------------------------------------------------------------------

/// A real `redis-server` on a free port, owned by the test (it can be
/// killed and restarted on the same port). Nothing is persisted.
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
    /// TLS only: the server's self-signed certificate (PEM file), the CA a
    /// client must trust.
    tls_cert: Option<std::path::PathBuf>,
}

impl RedisServer {
    pub fn start() -> Self {
        let mut server = Self {
            port: free_port(),
            child: None,
            dir: tempfile::tempdir().expect("redis dir"),
            tls_cert: None,
        };
        server.launch();
        server
    }

    /// A redis-server that speaks only TLS, with a fresh self-signed
    /// certificate for `localhost` (see [`tls_cert`](Self::tls_cert)).
    pub fn start_tls() -> Self {
        let dir = tempfile::tempdir().expect("redis dir");
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("cert");
        let cert_file = dir.path().join("redis-cert.pem");
        std::fs::write(&cert_file, cert.cert.pem()).expect("write cert");
        std::fs::write(
            dir.path().join("redis-key.pem"),
            cert.signing_key.serialize_pem(),
        )
        .expect("write key");
        let mut server = Self {
            port: free_port(),
            child: None,
            dir,
            tls_cert: Some(cert_file),
        };
        server.launch();
        server
    }

    pub fn url(&self) -> String {
        match self.tls_cert {
            None => format!("redis://127.0.0.1:{}/0", self.port),
            Some(_) => format!("rediss://localhost:{}/0", self.port),
        }
    }

    pub fn tls_cert(&self) -> &std::path::Path {
        self.tls_cert.as_deref().expect("a TLS redis-server")
    }

    fn launch(&mut self) {
        self.launch_with(&[]);
    }

    fn launch_with(&mut self, extra: &[&str]) {
        let port = self.port.to_string();
        let listen: Vec<String> = match &self.tls_cert {
            None => vec!["--port".into(), port],
            Some(cert) => {
                let cert = cert.display().to_string();
                let key = self.dir.path().join("redis-key.pem").display().to_string();
                vec![
                    "--port".into(),
                    "0".into(),
                    "--tls-port".into(),
                    port,
                    "--tls-cert-file".into(),
                    cert.clone(),
                    "--tls-key-file".into(),
                    key,
                    "--tls-ca-cert-file".into(),
                    cert,
                    "--tls-auth-clients".into(),
                    "no".into(),
                ]
            }
        };
        let child = Command::new("redis-server")
            .args(&listen)
            .args(extra)
            .args(["--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (apt-get install redis-server)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.cli(&["PING"]).is_some_and(|out| out.trim() == "PONG") {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("redis-server did not start on port {}", self.port);
    }

    /// Runs redis-cli against this server; None if it could not connect.
    pub fn cli(&self, args: &[&str]) -> Option<String> {
        let mut cli = Command::new("redis-cli");
        cli.args(["-p", &self.port.to_string()]);
        if let Some(cert) = &self.tls_cert {
            cli.args(["--tls", "--cacert"]).arg(cert);
        }
        let out = cli.args(args).output().ok()?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        (out.status.success() && !text.contains("Could not connect")).then_some(text)
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A port whose Redis Cluster bus port (port + 10000) is free too.
fn free_cluster_port() -> u16 {
    loop {
        let port = free_port();
        if port < 55_000 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

/// A real three-master Redis Cluster, built with `redis-cli --cluster create`.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    pub fn start() -> Self {
        let mut nodes = Vec::new();
        for _ in 0..3 {
            let mut node = RedisServer {
                port: free_cluster_port(),
                child: None,
                dir: tempfile::tempdir().expect("redis dir"),
                tls_cert: None,
            };
            node.launch_with(&["--cluster-enabled", "yes", "--cluster-node-timeout", "2000"]);
            nodes.push(node);
        }
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli --cluster create");
        assert!(
            out.status.success(),
            "cluster create failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let ok = nodes.iter().all(|n| {
                n.cli(&["CLUSTER", "INFO"])
                    .is_some_and(|info| info.contains("cluster_state:ok"))
            });
            if ok {
                return Self { nodes };
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("redis cluster did not become ready");
    }

    /// Seed URLs, comma-separated, as `redis.url` takes them.
    pub fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("redis://127.0.0.1:{}", n.port))
            .collect::<Vec<_>>()
            .join(",")
    }
}
