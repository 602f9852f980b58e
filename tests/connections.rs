//! Client connections as the gateway's HTTP/1.1 server keeps them: several
//! requests on one connection (pipelined, or with heads and bodies split
//! across writes), and what a kept-alive connection costs while it waits
//! for its client (actix-http patch #9 frees its buffers then).

mod common;

use std::io::{ErrorKind, Read};
use std::time::{Duration, Instant};

use common::{api_route_config, Gateway, RawConnection};

/// Reads from `conn` until `done` holds for what arrived, or 5 s pass.
fn read_until(conn: &mut RawConnection, done: impl Fn(&str) -> bool) -> String {
    let stream = conn.stream();
    stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut out = Vec::new();
    let mut buf = [0u8; 16384];
    while Instant::now() < deadline && !done(&String::from_utf8_lossy(&out)) {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The upstream's echo of each response in `text`, in order.
fn echoes(text: &str) -> Vec<serde_json::Value> {
    text.split("HTTP/1.1 ")
        .filter(|part| !part.is_empty())
        .map(|part| {
            assert!(part.starts_with("200"), "{part}");
            let body = &part[part.find("\r\n\r\n").expect("head end") + 4..];
            serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
        })
        .collect()
}

/// Requests sent back to back in one write are all answered, in order and
/// each with its own body; a head and a body that arrive in pieces, with
/// the connection idle in between, are put back together.
#[actix_rt::test]
async fn pipelined_and_split_requests_on_one_connection_are_answered_in_order() {
    let up = common::spawn_upstream("main");
    let gw = Gateway::start(&api_route_config(&up, "")).await;
    let mut conn = RawConnection::open(gw.port);

    conn.send(
        b"GET /api/one HTTP/1.1\r\nHost: gw\r\n\r\n\
          POST /api/two HTTP/1.1\r\nHost: gw\r\nContent-Length: 5\r\n\r\nhello\
          GET /api/three HTTP/1.1\r\nHost: gw\r\n\r\n",
    );
    let text = read_until(&mut conn, |t| echoes_complete(t, 3));
    let got = echoes(&text);
    let paths: Vec<&str> = got
        .iter()
        .map(|e| e["path"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(paths, ["/api/one", "/api/two", "/api/three"], "{text}");
    assert_eq!(got[1]["method"], "POST");
    assert_eq!(got[1]["body_len"], 5, "{text}");

    // A head in two pieces, the connection idle between them.
    conn.send(b"GET /api/fo");
    std::thread::sleep(Duration::from_millis(200));
    conn.send(b"ur HTTP/1.1\r\nHost: gw\r\n\r\n");
    let text = read_until(&mut conn, |t| echoes_complete(t, 1));
    assert_eq!(echoes(&text)[0]["path"], "/api/four", "{text}");

    // Idle between requests, then a body that comes after its head.
    std::thread::sleep(Duration::from_millis(200));
    conn.send(b"POST /api/five HTTP/1.1\r\nHost: gw\r\nContent-Length: 11\r\n\r\n");
    std::thread::sleep(Duration::from_millis(200));
    conn.send(b"hello world");
    let text = read_until(&mut conn, |t| echoes_complete(t, 1));
    let five = &echoes(&text)[0];
    assert_eq!(five["path"], "/api/five", "{text}");
    assert_eq!(five["body_len"], 11, "{text}");
}

/// Whether `text` holds `n` whole responses (each with a
/// `Content-Length` body).
fn echoes_complete(text: &str, n: usize) -> bool {
    let mut rest = text;
    for _ in 0..n {
        let Some(end) = rest.find("\r\n\r\n") else {
            return false;
        };
        let len = rest[..end]
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .and_then(|v| v.trim().parse::<usize>().ok())
            })
            .unwrap_or(0);
        if rest.len() < end + 4 + len {
            return false;
        }
        rest = &rest[end + 4 + len..];
    }
    true
}

/// A kept-alive connection waiting for its client's next request holds no
/// buffers: upstream actix-http kept 16 KiB per connection (an 8 KiB read
/// and an 8 KiB write buffer), so a few thousand idle browsers cost tens of
/// MiB. The resident set grows by the connection's bookkeeping only.
#[actix_rt::test]
async fn kept_alive_connections_waiting_for_their_client_hold_no_buffers() {
    const CONNECTIONS: usize = 400;
    // Per connection while idle: its task, socket registration and timers,
    // about 5 KiB in this (debug) build; with upstream's buffers, 12 KiB
    // (the pages of them that were touched).
    const MAX_BYTES_PER_CONNECTION: u64 = 8 * 1024;

    let up = common::spawn_upstream("main");
    let gw = Gateway::start(&api_route_config(&up, "")).await;
    let one_request = |conn: &mut RawConnection, i: usize| {
        conn.send(format!("GET /api/warm/{i} HTTP/1.1\r\nHost: gw\r\n\r\n").as_bytes());
        let answer = conn.read_response();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    };
    // Warm up: the worker's pools, the log buffer and the upstream
    // connection reach their working size before the baseline is read.
    let mut warm: Vec<RawConnection> = (0..20).map(|_| RawConnection::open(gw.port)).collect();
    for round in 0..10 {
        for (i, conn) in warm.iter_mut().enumerate() {
            one_request(conn, round * 100 + i);
        }
    }
    drop(warm);
    std::thread::sleep(Duration::from_millis(300));
    let before = gw.rss_kib();

    let mut idle: Vec<RawConnection> = (0..CONNECTIONS)
        .map(|_| RawConnection::open(gw.port))
        .collect();
    for (i, conn) in idle.iter_mut().enumerate() {
        one_request(conn, i);
    }
    std::thread::sleep(Duration::from_millis(300));
    let after = gw.rss_kib();

    let per_connection = after.saturating_sub(before) * 1024 / CONNECTIONS as u64;
    assert!(
        per_connection <= MAX_BYTES_PER_CONNECTION,
        "{CONNECTIONS} idle kept-alive connections: resident set {before} -> {after} KiB, \
         {per_connection} bytes each (at most {MAX_BYTES_PER_CONNECTION})"
    );
    // They are all still open and usable.
    for (i, conn) in idle.iter_mut().enumerate().step_by(50) {
        one_request(conn, 1000 + i);
    }
}
