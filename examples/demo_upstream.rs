//! A tiny upstream for `make run-local` and `make bench`: the gateway proxies
//! to it so a newcomer sees a request go through at once.
//!
//! `GET /hello` answers a short text; `/echo` answers JSON describing the
//! request it received (method, path, query, headers), which shows what the
//! gateway forwards. `demo_upstream --help` prints the usage.
//!
//! It binds before it says anything: "listening" on stdout means the port
//! is its own; a port it cannot bind ends it with a message naming the
//! address and exit status 1 (`make run-local` relies on both).

use std::net::SocketAddr;
use std::process::ExitCode;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use clap::Parser;

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
