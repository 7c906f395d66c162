//! The service's TLS: mutual TLS where a station has joined, none needed to join.
//!
//! Client certificates are checked against the service's CA only (no system roots): a certificate
//! from any other CA fails the handshake. A client without a certificate gets through the handshake
//! (`allow_unauthenticated`) so `/v1/join` and `/v1/health` work; every other route refuses it (the
//! station layer in [`super::stations`]). The server presents [server, CA] so a joining station can
//! pin the CA by the fingerprint in its token.

use std::sync::Arc;

use rustls::RootCertStore;
use rustls::ServerConfig;
use rustls::server::WebPkiClientVerifier;

use super::ca::Authority;

/// Why the TLS configuration could not be built from the service's files.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("the service's TLS cannot be set up ({0}): check the files `central init` wrote")]
    Config(String),
}

/// The rustls server configuration for `central serve` (HTTP/1.1).
pub fn server_config(authority: &Authority) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    roots
        .add(authority.ca_der().clone())
        .map_err(|e| TlsError::Config(format!("the CA certificate: {e}")))?;
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|e| TlsError::Config(format!("the client-certificate check: {e}")))?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(authority.server_chain().to_vec(), authority.server_key())
        .map_err(|e| {
            TlsError::Config(format!(
                "the server certificate and key do not fit together: {e}"
            ))
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
