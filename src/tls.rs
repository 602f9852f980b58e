//! TLS for the proxy listener (rustls with the ring provider), built from
//! `server.tls` PEM files. Validation calls this too, so a bad certificate
//! or key is reported by `gateway check` and stops startup.

use std::io;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::settings::TlsSettings;

pub fn server_config(tls: &TlsSettings) -> io::Result<rustls::ServerConfig> {
    let invalid = |what: &str, e: &dyn std::fmt::Display| {
        io::Error::new(io::ErrorKind::InvalidData, format!("{what}: {e}"))
    };
    let certs = CertificateDer::pem_file_iter(&tls.cert_file)
        .map_err(|e| invalid("cannot read certificate PEM", &e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid("bad certificate PEM", &e))?;
    if certs.is_empty() {
        return Err(invalid("no certificate in file", &tls.cert_file.display()));
    }
    let key = PrivateKeyDer::from_pem_file(&tls.key_file)
        .map_err(|e| invalid("cannot read private key PEM", &e))?;
    rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid("TLS protocol setup", &e))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| invalid("certificate and key do not form a usable pair", &e))
}
