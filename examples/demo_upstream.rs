//! A tiny upstream for `make run-local` and `make bench`: the gateway proxies
//! to it so a newcomer sees a request go through at once.
//!
//! `GET /hello` answers a short text; `/echo` answers JSON describing the
//! request it received (method, path, query, headers), which shows what the
//! gateway forwards. `demo_upstream --help` prints the usage.
//!
//! For `bench/matrix.sh`: `GET /bytes/{n}` answers `n` bytes (at most
//! 8 MiB, from one static buffer, so the upstream costs almost nothing per
//! byte), and `POST /sink` reads the request body, whatever its size, throws
//! it away and answers its length.
//!
//! It binds before it says anything: "listening" on stdout means the port
//! is its own; a port it cannot bind ends it with a message naming the
//! address and exit status 1 (`make run-local` relies on both).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::OnceLock;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use bytes::Bytes;
use clap::Parser;
use futures_util::StreamExt;

/// The largest body `GET /bytes/{n}` answers.
const MAX_BYTES: usize = 8 << 20;

/// The demo upstream that `make run-local` puts behind the gateway.
#[derive(Parser)]
#[command(name = "demo_upstream")]
struct Cli {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8081", value_name = "ADDR")]
    listen: SocketAddr,
    /// Worker threads.
    #[arg(long, default_value_t = 1, value_name = "N")]
    workers: usize,
}

async fn hello() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .body("hello from the demo upstream\n")
}

/// `GET /bytes/{n}`: `n` bytes of `x`, sliced (not copied) from one buffer
/// made on first use; 400 above [`MAX_BYTES`].
async fn bytes(n: web::Path<usize>) -> HttpResponse {
    static BUF: OnceLock<Bytes> = OnceLock::new();
    let n = n.into_inner();
    if n > MAX_BYTES {
        return HttpResponse::BadRequest()
            .content_type("text/plain; charset=utf-8")
            .body(format!("at most {MAX_BYTES} bytes\n"));
    }
    let buf = BUF.get_or_init(|| Bytes::from(vec![b'x'; MAX_BYTES]));
    HttpResponse::Ok()
        .content_type("application/octet-stream")
        .body(buf.slice(..n))
}

/// `POST /sink`: reads the body chunk by chunk (no size limit, nothing
/// kept) and answers its length in bytes.
async fn sink(mut body: web::Payload) -> actix_web::Result<HttpResponse> {
    let mut len: u64 = 0;
    while let Some(chunk) = body.next().await {
        len += chunk?.len() as u64;
    }
    Ok(HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .body(format!("{len}\n")))
}

async fn echo(req: HttpRequest, body: web::Bytes) -> HttpResponse {
    let headers: serde_json::Map<String, serde_json::Value> = req
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("<binary>").into()))
        .collect();
    HttpResponse::Ok().json(serde_json::json!({
        "method": req.method().as_str(),
        "path": req.path(),
        "query": req.query_string(),
        "headers": headers,
        "body_bytes": body.len(),
    }))
}

#[actix_web::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let server = HttpServer::new(|| {
        App::new()
            .route("/hello", web::get().to(hello))
            .route("/echo", web::to(echo))
            .route("/bytes/{n}", web::get().to(bytes))
            .route("/sink", web::post().to(sink))
            .default_service(web::to(echo))
    })
    .workers(cli.workers.max(1))
    .backlog(4096)
    .bind(cli.listen);
    let server = match server {
        Ok(server) => server,
        Err(e) => {
            eprintln!("demo_upstream: cannot listen on {}: {e}", cli.listen);
            return ExitCode::FAILURE;
        }
    };
    println!("demo upstream listening on http://{}", cli.listen);
    match server.run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo_upstream: {e}");
            ExitCode::FAILURE
        }
    }
}
