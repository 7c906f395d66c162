//! TLS for the station's link to the central service (rustls, `ring` provider).
//!
//! - The client key is any [`CaSigner`] (a P-256 key in the station's PKCS#11 token, or an
//!   owner-only PEM file through `keystore::software`), seen by rustls as a
//!   [`rustls::sign::SigningKey`]: the private key never leaves where it lives.
//! - After joining, the service's CA (stored at join) is the only root.
//! - During join the station has no CA yet: [`PinnedCaVerifier`] takes the CA from the chain the
//!   server presents ([server, CA]) only if its DER's SHA-256 equals the one printed in the join
//!   token, then verifies the server certificate (name, validity, signature) against it.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, WebPkiServerVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, SignatureAlgorithm, SignatureScheme};
use sha2::{Digest, Sha256};

use crate::identity::signer::CaSigner;

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads every certificate of a PEM text.
pub fn pem_certificates(pem: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not a PEM certificate: {e}"))?;
    if certs.is_empty() {
        return Err("holds no PEM certificate".into());
    }
    Ok(certs)
}

/// A client configuration: `roots` (the service's CA) or, during join, the pin; and the station's
/// certificate chain with its key, when it has one.
pub fn client_config(
    trust: Trust,
    client: Option<(Vec<CertificateDer<'static>>, Arc<dyn CaSigner>)>,
) -> Result<rustls::ClientConfig, String> {
    let provider = provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match trust {
        Trust::Ca(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in ca {
                roots
                    .add(cert)
                    .map_err(|e| format!("the service's CA certificate is unusable: {e}"))?;
            }
            builder.with_root_certificates(roots)
        }
        Trust::PinnedCa { sha256 } => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinnedCaVerifier { sha256, provider })),
    };
    Ok(match client {
        Some((chain, key)) => {
            let key = Arc::new(StationKey { signer: key });
            builder.with_client_cert_resolver(Arc::new(StationCertificate(Arc::new(
                CertifiedKey::new(chain, key),
            ))))
        }
        None => builder.with_no_client_auth(),
    })
}

/// What the station trusts the server through.
pub enum Trust {
    /// The service's CA certificate(s), stored at join.
    Ca(Vec<CertificateDer<'static>>),
    /// The SHA-256 (lowercase hex) of the CA's DER, from the join token.
    PinnedCa { sha256: String },
}

/// Accepts a server whose chain carries the pinned CA and whose certificate that CA issued.
#[derive(Debug)]
pub struct PinnedCaVerifier {
    sha256: String,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedCaVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(ca) = intermediates
            .iter()
            .find(|c| hex::encode(Sha256::digest(c.as_ref())).eq_ignore_ascii_case(&self.sha256))
        else {
            return Err(rustls::Error::General(format!(
                "the server did not present the CA certificate the join token names (SHA-256 {}): this is not the central service that made the token",
                self.sha256
            )));
        };
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(ca.clone().into_owned())
            .map_err(|e| rustls::Error::General(format!("the pinned CA is unusable: {e}")))?;
        let inner =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
                .build()
                .map_err(|e| rustls::Error::General(e.to_string()))?;
        inner.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The station's client certificate and key, offered whenever the server asks.
#[derive(Debug)]
struct StationCertificate(Arc<CertifiedKey>);

impl ResolvesClientCert for StationCertificate {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        sigschemes
            .contains(&SignatureScheme::ECDSA_NISTP256_SHA256)
            .then(|| self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// A P-256 [`CaSigner`] as rustls's signing key (ECDSA P-256 / SHA-256 only).
struct StationKey {
    signer: Arc<dyn CaSigner>,
}

impl std::fmt::Debug for StationKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StationKey")
            .field("key", &self.signer.key_name())
            .finish()
    }
}

impl rustls::sign::SigningKey for StationKey {
    fn choose_scheme(&self, offered: &[SignatureScheme]) -> Option<Box<dyn rustls::sign::Signer>> {
        offered
            .contains(&SignatureScheme::ECDSA_NISTP256_SHA256)
            .then(|| {
                Box::new(StationSigner {
                    signer: self.signer.clone(),
                }) as Box<dyn rustls::sign::Signer>
            })
    }

    fn algorithm(&self) -> SignatureAlgorithm {
        SignatureAlgorithm::ECDSA
    }
}

struct StationSigner {
    signer: Arc<dyn CaSigner>,
}

impl std::fmt::Debug for StationSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StationSigner")
            .field("key", &self.signer.key_name())
            .finish()
    }
}

impl rustls::sign::Signer for StationSigner {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rustls::Error> {
        self.signer.sign_p256_sha256(message).map_err(|e| {
            rustls::Error::General(format!(
                "the station's central key {} cannot sign: {e}",
                self.signer.key_name()
            ))
        })
    }

    fn scheme(&self) -> SignatureScheme {
        SignatureScheme::ECDSA_NISTP256_SHA256
    }
}
