//! Arbitrary `X-Forwarded-For` lines and trusted proxies through
//! `ClientInfo::resolve`, which decides the client address of rate-limit
//! keys, logs and IP rules.
//!
//! Input: `peer\ntrusted,cidrs\nxff line\nxff line...` (an unparsable peer
//! or CIDR is skipped). Asserts: the peer is trusted exactly when it is in
//! one of the trusted networks; an untrusted peer is the client whatever
//! the header says; the client is the peer or an address that appears as
//! a hop of the header; a client other than the peer is reached only
//! through trusted hops (every hop to its right is a trusted proxy).
#![no_main]

use std::net::IpAddr;

use actix_web::http::header::{HeaderMap, HeaderValue};
use gateway::tools::{forwarded_hops, ClientInfo, X_FORWARDED_FOR};
use ipnet::IpNet;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut lines = text.split('\n');
    let Some(Ok(peer)) = lines.next().map(|l| l.trim().parse::<IpAddr>()) else {
        return;
    };
    let trusted: Vec<IpNet> = lines
        .next()
        .unwrap_or_default()
        .split(',')
        .filter_map(|c| c.trim().parse().ok())
        .collect();
    let mut headers = HeaderMap::new();
    for line in lines {
        if let Ok(value) = HeaderValue::from_str(line) {
            headers.append(X_FORWARDED_FOR, value);
        }
    }
    let in_trusted = |ip: IpAddr| trusted.iter().any(|n| n.contains(&ip));

    let info = ClientInfo::resolve(peer, &headers, &trusted);
    assert_eq!(info.peer, peer);
    assert_eq!(info.peer_trusted, in_trusted(peer), "{peer} in {trusted:?}");
    if !info.peer_trusted {
        assert_eq!(info.ip, peer, "an untrusted peer chose its address");
        return;
    }
    if info.ip == peer {
        return;
    }
    let hops: Vec<Option<IpAddr>> = forwarded_hops(&headers)
        .into_iter()
        .map(|h| h.parse().ok())
        .collect();
    let at = hops
        .iter()
        .rposition(|h| *h == Some(info.ip))
        .unwrap_or_else(|| panic!("{} is neither the peer nor a hop of {hops:?}", info.ip));
    assert!(
        hops[at + 1..].iter().all(|h| h.is_some_and(in_trusted)),
        "{} believed past an untrusted hop: {hops:?}",
        info.ip
    );
});
