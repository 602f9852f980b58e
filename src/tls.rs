//! TLS with rustls (ring provider): the proxy listener's server side, built
//! from `server.tls` PEM files, and the client side used towards `https://`
//! upstreams and the identity provider (Mozilla's roots, or an upstream's
//! own `tls_ca_file`). Validation calls these too, so a bad certificate,
//! key or CA file is reported by `gateway check` and stops startup (or
//! refuses a reload). The listener's certificate can be replaced while it
//! serves ([`ServerCertificate`]), which is how a reload rotates it.
//!
//! A leaf: it takes file paths, not settings, and imports nothing from the
//! gateway.

use std::io;
use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

fn invalid(what: &str, e: &dyn std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("{what}: {e}"))
}

/// A certificate chain and its private key from PEM files, checked to
/// belong together.
pub fn certified_key(cert_file: &Path, key_file: &Path) -> io::Result<Arc<CertifiedKey>> {
    let certs = CertificateDer::pem_file_iter(cert_file)
        .map_err(|e| invalid("cannot read certificate PEM", &e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid("bad certificate PEM", &e))?;
    if certs.is_empty() {
        return Err(invalid("no certificate in file", &cert_file.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key_file)
        .map_err(|e| invalid("cannot read private key PEM", &e))?;
    CertifiedKey::from_der(certs, key, &provider())
        .map(Arc::new)
        .map_err(|e| invalid("certificate and key do not form a usable pair", &e))
}

/// The listener's certificate, replaceable while it serves: handshakes
/// after [`ServerCertificate::replace`] present the new one; connections
/// already established keep theirs.
#[derive(Debug)]
pub struct ServerCertificate(ArcSwap<CertifiedKey>);

impl ServerCertificate {
    pub fn load(cert_file: &Path, key_file: &Path) -> io::Result<Arc<Self>> {
        Ok(Arc::new(Self(ArcSwap::new(certified_key(
            cert_file, key_file,
        )?))))
    }

    pub fn replace(&self, key: Arc<CertifiedKey>) {
        self.0.store(key);
    }
}

impl ResolvesServerCert for ServerCertificate {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.load_full())
    }
}

/// The listener's TLS, presenting `certificate`.
pub fn server_config(certificate: Arc<ServerCertificate>) -> io::Result<rustls::ServerConfig> {
    Ok(rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid("TLS protocol setup", &e))?
        .with_no_client_auth()
        .with_cert_resolver(certificate))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Client TLS trusting Mozilla's root store, or only the PEM certificates
/// of `ca_file` when given (private CAs inside a cluster).
pub fn client_config(ca_file: Option<&Path>) -> io::Result<Arc<rustls::ClientConfig>> {
    client_config_with_alpn(ca_file, Vec::new())
}

/// [`client_config`] offering `alpn` protocols (e.g. `h2`, `http/1.1`).
pub fn client_config_with_alpn(
    ca_file: Option<&Path>,
    alpn: Vec<Vec<u8>>,
) -> io::Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{e}")))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{e}")))?;
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "no usable CA certificate in file",
                ));
            }
        }
    }
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| io::Error::other(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn;
    Ok(Arc::new(config))
}
