//! The proxy's HTTP clients: one awc client per upstream, per worker, with
//! that upstream's connect timeout, pool bounds, idle keep-alive, TLS trust
//! and HTTP/2 offer. Built in the `HttpServer` factory (awc clients are
//! `!Send`), reused for every request of the worker, and rebuilt when a
//! reload changes the upstreams ([`WorkerClients`]).

use std::cell::RefCell;
use std::rc::Rc;

use crate::settings::UpstreamSettings;

/// How many client sets a worker keeps: the newest, and the one before it
/// for requests still finishing on the previous settings.
const KEPT_SETS: usize = 2;

/// A worker's client sets, by the settings generation they were built for
/// (`Gateway::clients_generation`, which only moves when a reload changes
/// the upstreams, so connection pools outlive other reloads).
#[derive(Default)]
pub struct WorkerClients {
    sets: RefCell<Vec<(u64, Rc<UpstreamClients>)>>,
}

impl WorkerClients {
    /// The clients for `upstreams` of generation `generation`, built on
    /// first use in this worker.
    pub fn for_generation(
        &self,
        generation: u64,
        upstreams: &[UpstreamSettings],
    ) -> Rc<UpstreamClients> {
        let mut sets = self.sets.borrow_mut();
        if let Some((_, clients)) = sets.iter().find(|(g, _)| *g == generation) {
            return clients.clone();
        }
        let clients = Rc::new(UpstreamClients::new(upstreams));
        if sets.iter().all(|(g, _)| *g < generation) {
            sets.push((generation, clients.clone()));
            if sets.len() > KEPT_SETS {
                sets.remove(0);
            }
        }
        // Older than every kept set (a request from long ago, after two
        // reloads): it gets clients of its own, dropped when it ends.
        clients
    }
}

/// One awc client per upstream, per worker: awc clients are `!Send`, and a
/// client per upstream lets each upstream have its own connect timeout and
/// pool bounds. Built in the `HttpServer` factory, reused for every request.
pub struct UpstreamClients {
    requests: Vec<awc::Client>,
    /// Upstreams with `http2`: an HTTP/1.1-only client for WebSocket
    /// upgrades, which awc cannot tunnel over HTTP/2.
    tunnels: Vec<Option<awc::Client>>,
}

impl UpstreamClients {
    pub fn new(upstreams: &[UpstreamSettings]) -> Self {
        Self {
            requests: upstreams.iter().map(|u| client_for(u, u.http2)).collect(),
            tunnels: upstreams
                .iter()
                .map(|u| u.http2.then(|| client_for(u, false)))
                .collect(),
        }
    }

    pub fn for_requests(&self, upstream: usize) -> &awc::Client {
        &self.requests[upstream]
    }

    pub fn for_tunnels(&self, upstream: usize) -> &awc::Client {
        self.tunnels[upstream]
            .as_ref()
            .unwrap_or(&self.requests[upstream])
    }
}

pub fn client_for(u: &UpstreamSettings, http2: bool) -> awc::Client {
    let mut connector = awc::Connector::new()
        .timeout(u.connect_timeout)
        .limit(u.pool_max_connections)
        .conn_keep_alive(u.pool_keep_alive);
    // awc speaks HTTP/2 on a connection whose TLS handshake agreed on `h2`.
    let alpn = if http2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        Vec::new()
    };
    // Validation has already loaded the CA file once, so this only fails if
    // it changed since; plain-HTTP targets still work then.
    if let Ok(tls) = crate::tls::client_config_with_alpn(u.tls_ca_file.as_deref(), alpn) {
        connector = connector.rustls_0_23(tls);
    }
    awc::Client::builder()
        .connector(connector)
        // A proxy passes redirects to the client; it never follows them.
        .disable_redirects()
        // The client's own User-Agent goes upstream, not awc's.
        .no_default_headers()
        .timeout(u.request_timeout)
        .finish()
}
