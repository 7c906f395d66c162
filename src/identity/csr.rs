//! Device CSRs: the proof that the device holds the private key of the public key it sends.
//!
//! The station takes only two things from a CSR: its public key (after checking the signature and
//! that the key is P-256) and, optionally, its CN as a registration-ID proposal. Subject, CA flag,
//! key usages, validity and serial of the certificate come from the profile. The CSR is parsed here
//! with x509-parser rather than rcgen's `CertificateSigningRequestParams::from_der`, which refuses
//! CSRs carrying extensions it does not know (many device SDKs add some).

use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::prelude::FromDer;
use x509_parser::x509::SubjectPublicKeyInfo;

use super::pem;

const OID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const OID_P256: &str = "1.2.840.10045.3.1.7";

/// A CSR whose signature verified and whose key is P-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedCsr {
    /// The public key, an uncompressed SEC1 point (65 bytes).
    pub public_key_sec1: Vec<u8>,
    /// The subject CN the device asked for, if any (a proposal only: validate before use).
    pub common_name: Option<String>,
}

/// Why a CSR is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CsrError {
    /// Not a PKCS#10 request.
    #[error("not a certificate signing request ({0}); give a PEM or DER PKCS#10 CSR")]
    Malformed(String),
    /// The key is not P-256.
    #[error(
        "the CSR's key is {found}; the station issues device certificates for ECDSA P-256 keys only: have the device generate a P-256 (prime256v1) key"
    )]
    UnsupportedKey {
        /// What was found, e.g. `RSA 2048-bit`, `EC P-384`.
        found: String,
    },
    /// A P-256 point in compressed form.
    #[error(
        "the CSR's P-256 public key is in compressed form ({0} bytes); the station needs the uncompressed point (65 bytes)"
    )]
    CompressedPoint(usize),
    /// The signature does not verify: the CSR was altered or the device does not hold the key.
    #[error(
        "the CSR's signature does not verify ({0}): it was altered in transit or not signed with the key it carries; ask the device for a new CSR"
    )]
    BadSignature(String),
}

/// Parses a CSR from PEM or DER bytes, verifies its signature and requires a P-256 key.
pub fn verify_csr_pem_or_der(bytes: &[u8]) -> Result<VerifiedCsr, CsrError> {
    let der = pem::der_from_pem_or_der(
        bytes,
        &[
            pem::label::CERTIFICATE_REQUEST,
            pem::label::NEW_CERTIFICATE_REQUEST,
        ],
    )
    .map_err(|err| CsrError::Malformed(err.to_string()))?;
    verify_csr(&der)
}

/// Parses a DER CSR, requires a P-256 key, and verifies its signature.
pub fn verify_csr(der: &[u8]) -> Result<VerifiedCsr, CsrError> {
    let (rest, csr) = X509CertificationRequest::from_der(der)
        .map_err(|err| CsrError::Malformed(err.to_string()))?;
    if !rest.is_empty() {
        return Err(CsrError::Malformed(format!(
            "{} unexpected bytes after the request",
            rest.len()
        )));
    }
    let info = &csr.certification_request_info;
    let spki = &info.subject_pki;
    // The key type first: "RSA 2048-bit" tells the operator more than a signature verdict.
    require_p256(spki)?;
    require_canonical_envelope(der, &csr)?;
    let point = spki.subject_public_key.data.as_ref();
    match point.first() {
        Some(0x04) if point.len() == 65 => {}
        Some(0x02 | 0x03) => return Err(CsrError::CompressedPoint(point.len())),
        _ => {
            return Err(CsrError::Malformed(format!(
                "the P-256 public key is {} bytes, not an uncompressed point",
                point.len()
            )));
        }
    }
    // Checks the point is on the curve too: ring refuses a key that is not.
    csr.verify_signature()
        .map_err(|err| CsrError::BadSignature(err.to_string()))?;
    let common_name = info
        .subject
        .iter_common_name()
        .next()
        .map(|cn| {
            cn.as_str()
                .map(str::to_owned)
                .map_err(|_| CsrError::Malformed("the subject CN is not a text string".into()))
        })
        .transpose()?;
    Ok(VerifiedCsr {
        public_key_sec1: point.to_vec(),
        common_name,
    })
}

/// The signature covers only the request info; x509-parser reads the envelope around it (outer
/// SEQUENCE, signature algorithm, BIT STRING) leniently, e.g. ignoring a flipped tag class. Re-encode
/// the envelope in DER and require the input to be exactly that, so any altered byte is refused.
fn require_canonical_envelope(
    der: &[u8],
    csr: &X509CertificationRequest<'_>,
) -> Result<(), CsrError> {
    let altered = || CsrError::BadSignature("the request is not canonically DER-encoded".into());
    if csr.signature_algorithm.parameters.is_some() || csr.signature_value.unused_bits != 0 {
        // ECDSA signature algorithms carry no parameters (RFC 5758 §3.2).
        return Err(altered());
    }
    let mut alg = Vec::new();
    push_tlv(&mut alg, 0x06, csr.signature_algorithm.algorithm.as_bytes());
    let mut bits = vec![0u8];
    bits.extend_from_slice(&csr.signature_value.data);
    let mut body = csr.certification_request_info.raw.to_vec();
    push_tlv(&mut body, 0x30, &alg);
    push_tlv(&mut body, 0x03, &bits);
    let mut expected = Vec::with_capacity(body.len() + 4);
    push_tlv(&mut expected, 0x30, &body);
    if expected != der {
        return Err(altered());
    }
    Ok(())
}

/// Appends a DER tag-length-value.
fn push_tlv(out: &mut Vec<u8>, tag: u8, value: &[u8]) {
    out.push(tag);
    let len = value.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(value);
}

fn require_p256(spki: &SubjectPublicKeyInfo<'_>) -> Result<(), CsrError> {
    let alg = spki.algorithm.algorithm.to_id_string();
    if alg == OID_EC_PUBLIC_KEY {
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok())
            .map(|oid| oid.to_id_string());
        return match curve.as_deref() {
            Some(OID_P256) => Ok(()),
            Some(other) => Err(CsrError::UnsupportedKey {
                found: format!("EC {}", curve_name(other)),
            }),
            None => Err(CsrError::UnsupportedKey {
                found: "EC with explicit or missing curve parameters".into(),
            }),
        };
    }
    Err(CsrError::UnsupportedKey {
        found: key_type_name(spki, &alg),
    })
}

fn curve_name(oid: &str) -> String {
    match oid {
        "1.3.132.0.34" => "P-384 (secp384r1)".into(),
        "1.3.132.0.35" => "P-521 (secp521r1)".into(),
        "1.3.132.0.10" => "secp256k1".into(),
        "1.2.840.10045.3.1.1" => "P-192 (prime192v1)".into(),
        "1.3.36.3.3.2.8.1.1.7" => "brainpoolP256r1".into(),
        other => format!("curve {other}"),
    }
}

fn key_type_name(spki: &SubjectPublicKeyInfo<'_>, alg: &str) -> String {
    match alg {
        "1.2.840.113549.1.1.1" | "1.2.840.113549.1.1.10" => match spki.parsed() {
            Ok(x509_parser::public_key::PublicKey::RSA(rsa)) => {
                format!("RSA {}-bit", rsa.key_size())
            }
            _ => "RSA".into(),
        },
        "1.3.101.112" => "Ed25519".into(),
        "1.3.101.113" => "Ed448".into(),
        "1.2.840.10040.4.1" => "DSA".into(),
        other => format!("an unknown key type (OID {other})"),
    }
}
