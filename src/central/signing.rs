//! Receipts and leases are signed by the central service and verified by stations.
//!
//! A [`Signed`] value carries the exact JSON bytes that were signed (`payload`), so no canonical
//! JSON form is needed: the verifier checks the signature over those bytes, then parses them. The
//! signature is ECDSA P-256 with SHA-256, DER-encoded, base64 (standard alphabet). `signer` is the
//! SHA-256 of the signing certificate's DER (hex), so a station can tell "signed by another service"
//! from "signature broken".

use std::marker::PhantomData;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use p256::ecdsa::signature::{Signer as _, Verifier as _};
use p256::ecdsa::{DerSignature, SigningKey, VerifyingKey};
use p256::pkcs8::{DecodePrivateKey, DecodePublicKey};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A value and the service's signature over its JSON text.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(bound = "")]
pub struct Signed<T> {
    /// The JSON text of the value, exactly as signed.
    pub payload: String,
    /// Base64 of the DER ECDSA P-256/SHA-256 signature over `payload`'s bytes.
    pub signature: String,
    /// Hex SHA-256 of the signer certificate's DER.
    pub signer: String,
    #[serde(skip)]
    _of: PhantomData<fn() -> T>,
}

/// Why a signed value was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    #[error(
        "signed by another service (certificate {found}, expected {expected}): this station joined a different central service; check the URL in station.toml [central], or join again"
    )]
    OtherSigner { found: String, expected: String },
    #[error(
        "the signature does not verify: the receipt or lease was altered; report it to the central service's administrator"
    )]
    BadSignature,
    #[error("the signed payload is not a valid {what}: {reason}")]
    BadPayload { what: &'static str, reason: String },
    #[error("the signer certificate cannot be read ({reason}): join the central service again")]
    BadCertificate { reason: String },
    #[error(
        "the service's signing key cannot be read ({reason}): check the file `central init` wrote"
    )]
    BadKey { reason: String },
}

/// The service's signing key (P-256), with the certificate stations know it by.
pub struct ServiceSigner {
    key: SigningKey,
    certificate_sha256: String,
}

impl std::fmt::Debug for ServiceSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("ServiceSigner")
            .field("certificate_sha256", &self.certificate_sha256)
            .finish_non_exhaustive()
    }
}

impl ServiceSigner {
    /// From a PKCS#8 PEM private key and the DER of the certificate issued for it.
    pub fn from_pkcs8_pem(key_pem: &str, certificate_der: &[u8]) -> Result<Self, SigningError> {
        let key = SigningKey::from_pkcs8_pem(key_pem).map_err(|e| SigningError::BadKey {
            reason: e.to_string(),
        })?;
        Ok(Self {
            key,
            certificate_sha256: hex::encode(Sha256::digest(certificate_der)),
        })
    }

    /// Hex SHA-256 of the signer certificate's DER.
    pub fn certificate_sha256(&self) -> &str {
        &self.certificate_sha256
    }

    /// Serialises `value` and signs the text.
    pub fn sign<T: Serialize>(&self, value: &T) -> Result<Signed<T>, SigningError> {
        let payload = serde_json::to_string(value).map_err(|e| SigningError::BadPayload {
            what: std::any::type_name::<T>(),
            reason: e.to_string(),
        })?;
        let signature: DerSignature = self.key.sign(payload.as_bytes());
        Ok(Signed {
            payload,
            signature: B64.encode(signature.as_bytes()),
            signer: self.certificate_sha256.clone(),
            _of: PhantomData,
        })
    }
}

/// A station's copy of the service's signer certificate: verifies what the service signed.
#[derive(Debug, Clone)]
pub struct SignerCertificate {
    key: VerifyingKey,
    sha256: String,
}

impl SignerCertificate {
    /// From the certificate's DER (as `JoinResponse::signer_certificate_pem` decodes to).
    pub fn from_der(der: &[u8]) -> Result<Self, SigningError> {
        let (_, cert) =
            x509_parser::parse_x509_certificate(der).map_err(|e| SigningError::BadCertificate {
                reason: e.to_string(),
            })?;
        let key = VerifyingKey::from_public_key_der(cert.public_key().raw).map_err(|e| {
            SigningError::BadCertificate {
                reason: format!("not a P-256 key: {e}"),
            }
        })?;
        Ok(Self {
            key,
            sha256: hex::encode(Sha256::digest(der)),
        })
    }

    /// Hex SHA-256 of the certificate's DER.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// Checks signer and signature, then parses the payload.
    pub fn verify<T: DeserializeOwned>(&self, signed: &Signed<T>) -> Result<T, SigningError> {
        if !signed.signer.eq_ignore_ascii_case(&self.sha256) {
            return Err(SigningError::OtherSigner {
                found: signed.signer.clone(),
                expected: self.sha256.clone(),
            });
        }
        let der = B64
            .decode(signed.signature.as_bytes())
            .map_err(|_| SigningError::BadSignature)?;
        let signature =
            DerSignature::try_from(der.as_slice()).map_err(|_| SigningError::BadSignature)?;
        self.key
            .verify(signed.payload.as_bytes(), &signature)
            .map_err(|_| SigningError::BadSignature)?;
        serde_json::from_str(&signed.payload).map_err(|e| SigningError::BadPayload {
            what: std::any::type_name::<T>(),
            reason: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::central::wire::LeaseReturned;

    fn pair() -> (ServiceSigner, SignerCertificate) {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["signer".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let signer = ServiceSigner::from_pkcs8_pem(&key.serialize_pem(), cert.der()).unwrap();
        let verifier = SignerCertificate::from_der(cert.der()).unwrap();
        (signer, verifier)
    }

    fn value() -> LeaseReturned {
        LeaseReturned {
            lease_id: "L-1".into(),
            returned: 7,
            at: "2026-12-03T00:00:00Z".into(),
        }
    }

    #[test]
    fn a_signed_value_verifies_and_round_trips_through_json() {
        let (signer, verifier) = pair();
        let signed = signer.sign(&value()).unwrap();
        let wire = serde_json::to_string(&signed).unwrap();
        let back: Signed<LeaseReturned> = serde_json::from_str(&wire).unwrap();
        assert_eq!(verifier.verify(&back).unwrap(), value());
    }

    #[test]
    fn an_altered_payload_or_another_signer_is_refused() {
        let (signer, verifier) = pair();
        let mut signed = signer.sign(&value()).unwrap();
        signed.payload = signed.payload.replace("\"returned\":7", "\"returned\":8");
        assert!(matches!(
            verifier.verify(&signed),
            Err(SigningError::BadSignature)
        ));

        let (other, _) = pair();
        let signed = other.sign(&value()).unwrap();
        assert!(matches!(
            verifier.verify(&signed),
            Err(SigningError::OtherSigner { .. })
        ));
    }
}
