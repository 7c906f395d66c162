//! The emulator's HTTPS: a certificate it makes (a small CA and a server certificate) or one it
//! is given, and a client-certificate verifier that asks every client for a certificate and
//! accepts any chain at the TLS layer. Whether a device's chain is good is decided later, per
//! registration ID, against its enrollment (that is where DPS decides it too).

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, ServerConfig, SignatureScheme};

use super::config::TlsIdentity;
use super::error::EmulatorError;

/// The server's certificate chain and key, plus the certificate clients should trust.
pub struct TlsMaterial {
    /// Chain sent to clients, server certificate first.
    pub chain: Vec<CertificateDer<'static>>,
    /// The server key.
    pub key: PrivateKeyDer<'static>,
    /// PEM that clients add to their trust store.
    pub trust_pem: String,
}

/// Makes or loads the certificate.
/// A generated certificate covers `localhost`, `127.0.0.1`, `::1` and every host name given
/// (the DPS host name, the local hub's), so the device SDKs verify it under any of them.
pub fn material(identity: &TlsIdentity, host_names: &[&str]) -> Result<TlsMaterial, EmulatorError> {
    match identity {
        TlsIdentity::Generate => generate(host_names),
        TlsIdentity::Given {
            cert_chain_pem,
            key_pem,
        } => {
            let chain: Vec<CertificateDer<'static>> =
                rustls::pki_types::pem::PemObject::pem_slice_iter(cert_chain_pem.as_bytes())
                    .collect::<Result<_, _>>()
                    .map_err(|e| {
                        EmulatorError::Tls(format!("the TLS certificate file is not PEM: {e}"))
                    })?;
            if chain.is_empty() {
                return Err(EmulatorError::Tls(
                    "the TLS certificate file holds no CERTIFICATE".into(),
                ));
            }
            let key =
                <PrivateKeyDer<'static> as rustls::pki_types::pem::PemObject>::from_pem_slice(
                    key_pem.expose().as_bytes(),
                )
                .map_err(|e| {
                    EmulatorError::Tls(format!("the TLS key file holds no usable private key: {e}"))
                })?;
            // The last certificate of the chain is the one closest to the root: trust that.
            let trust = chain
                .last()
                .map(|c| pem("CERTIFICATE", c))
                .unwrap_or_default();
            Ok(TlsMaterial {
                chain,
                key,
                trust_pem: trust,
            })
        }
    }
}

fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or(""));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn generate(host_names: &[&str]) -> Result<TlsMaterial, EmulatorError> {
    let host_name = host_names.first().copied().unwrap_or("localhost");
    let tls = |e: rcgen::Error| {
        EmulatorError::Tls(format!("making the emulator's TLS certificate failed: {e}"))
    };
    let ca_key = rcgen::KeyPair::generate().map_err(tls)?;
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(tls)?;
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "dps-station emulator CA");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let ca = ca_params.self_signed(&ca_key).map_err(tls)?;
    let issuer = rcgen::Issuer::new(ca_params, ca_key);

    let key = rcgen::KeyPair::generate().map_err(tls)?;
    let mut names: Vec<String> = Vec::new();
    for name in host_names
        .iter()
        .copied()
        .chain(["localhost", "127.0.0.1", "::1"])
    {
        if !names.iter().any(|n| n.eq_ignore_ascii_case(name)) {
            names.push(name.to_owned());
        }
    }
    let mut params = rcgen::CertificateParams::new(names).map_err(tls)?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, host_name);
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params.signed_by(&key, &issuer).map_err(tls)?;
    Ok(TlsMaterial {
        chain: vec![cert.der().clone(), ca.der().clone()],
        key: PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        trust_pem: ca.pem(),
    })
}

/// Asks for a client certificate, accepts any chain, but still checks the handshake signature
/// (the client must hold the key of the certificate it shows).
#[derive(Debug)]
struct AnyClientCertificate {
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ClientCertVerifier for AnyClientCertificate {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
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

/// The rustls server configuration (ring) with the given ALPN protocols (`http/1.1` for HTTPS;
/// none for MQTT, whose clients offer none or `mqtt`, which rustls would otherwise refuse).
pub fn server_config(
    material: &TlsMaterial,
    alpn: &[&[u8]],
) -> Result<Arc<ServerConfig>, EmulatorError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(AnyClientCertificate {
        provider: provider.clone(),
    });
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| EmulatorError::Tls(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(material.chain.clone(), material.key.clone_key())
        .map_err(|e| {
            EmulatorError::Tls(format!(
                "the TLS certificate and key do not fit together: {e}"
            ))
        })?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}
