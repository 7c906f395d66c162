//! The manifest signer: the certificate whose key signs every entry of a Trust&GO manifest.
//! Each entry's protected header names it twice, by `kid` (the base64url of its Subject Key
//! Identifier) and by `x5t#S256` (the base64url of the SHA-256 of its DER), as Microchip's own
//! manifest tools write and check them.

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p256::ecdsa::VerifyingKey;
use sha2::{Digest, Sha256};
use x509_parser::extensions::ParsedExtension;

use super::error::ManifestError;
use crate::identity::pem;

/// The signer certificate, with what entries are checked against.
#[derive(Debug, Clone)]
pub struct ManifestSigner {
    der: Vec<u8>,
    key: VerifyingKey,
    point: Vec<u8>,
    kid: Option<String>,
    x5t_s256: String,
}

impl ManifestSigner {
    /// Reads a PEM or DER certificate file.
    pub fn load(path: &Path) -> Result<Self, ManifestError> {
        let bytes = std::fs::read(path).map_err(|cause| ManifestError::Read {
            path: path.to_path_buf(),
            cause,
        })?;
        let der = pem::der_from_pem_or_der(&bytes, &["CERTIFICATE"]).map_err(|e| {
            ManifestError::Signer {
                path: path.to_path_buf(),
                reason: e.to_string(),
            }
        })?;
        Self::from_der(&der).map_err(|reason| ManifestError::Signer {
            path: path.to_path_buf(),
            reason,
        })
    }

    /// From the certificate's DER; the error says what is wrong with it.
    pub fn from_der(der: &[u8]) -> Result<Self, String> {
        let (_, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| format!("not an X.509 certificate ({e})"))?;
        let point = cert.public_key().subject_public_key.data.as_ref();
        let key = VerifyingKey::from_sec1_bytes(point)
            .map_err(|_| "its key is not an ECC P-256 key (ES256 needs one)".to_string())?;
        let kid = cert
            .iter_extensions()
            .find_map(|ext| match ext.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(id) => Some(URL_SAFE_NO_PAD.encode(id.0)),
                _ => None,
            });
        Ok(Self {
            der: der.to_vec(),
            point: key.to_sec1_point(false).as_bytes().to_vec(),
            key,
            kid,
            x5t_s256: URL_SAFE_NO_PAD.encode(Sha256::digest(der)),
        })
    }

    /// The certificate, DER.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// The key that verifies entries.
    pub fn key(&self) -> &VerifyingKey {
        &self.key
    }

    /// Its public key as an uncompressed SEC1 point.
    pub fn point(&self) -> &[u8] {
        &self.point
    }

    /// `kid` of the entries it signs: base64url of its Subject Key Identifier, if it has one.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// `x5t#S256` of the entries it signs: base64url of the SHA-256 of its DER.
    pub fn x5t_s256(&self) -> &str {
        &self.x5t_s256
    }

    /// Its SHA-256 thumbprint, uppercase hex (as DPS and the ledger show thumbprints).
    pub fn thumbprint(&self) -> String {
        hex::encode_upper(Sha256::digest(&self.der))
    }
}
