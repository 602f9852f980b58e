//! A tiny upstream for `make run-local` and `make bench`: the gateway proxies
//! to it so a newcomer sees a request go through at once.
//!
//! `GET /hello` answers a short text; `/echo` answers JSON describing the
//! request it received (method, path, query, headers), which shows what the
//! gateway forwards. Usage: `demo_upstream --listen 127.0.0.1:8081 [--workers N]`.

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};

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

fn arg(name: &str) -> Option<String> {
    let mut args = std::env::args().skip_while(|a| a != name);
    args.next()?;
    args.next()
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let listen = arg("--listen").unwrap_or_else(|| "127.0.0.1:8081".to_owned());
    let workers = arg("--workers").and_then(|w| w.parse().ok()).unwrap_or(1);
    println!("demo upstream listening on http://{listen}");
    HttpServer::new(|| {
        App::new()
            .route("/hello", web::get().to(hello))
            .route("/echo", web::to(echo))
            .default_service(web::to(echo))
    })
    .workers(workers)
    .backlog(4096)
    .bind(listen)?
    .run()
    .await
}
