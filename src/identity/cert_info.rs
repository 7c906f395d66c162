//! Certificate facts in the shape DPS reports them (`X509CertificateInfo`), so the ledger, the
//! emulator and the reports show a certificate exactly as the service and the Azure portal do.
//!
//! Conventions of the service (it is a .NET service): thumbprints are uppercase hex; names are
//! written most specific first (`CN=ROOT_x, OU=Azure IoT, O=MSFT, C=US`, the reverse of the DER
//! order) with .NET's attribute abbreviations (`S` for state, `E` for e-mail) and values holding
//! special characters in double quotes; the serial number is the uppercase hex of the DER INTEGER's
//! bytes; `version` is 3 for an X.509 v3 certificate.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sha1::Sha1;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::x509::X509Name;

use super::pem::{self, PemError};

/// `X509CertificateInfo` of the DPS service API (all fields required), serde camelCase.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct X509CertificateInfo {
    /// The subject, most specific first: `CN=dev-1, O=Contoso`.
    pub subject_name: String,
    /// SHA-1 over the DER, uppercase hex (40 characters).
    pub sha1_thumbprint: String,
    /// SHA-256 over the DER, uppercase hex (64 characters).
    pub sha256_thumbprint: String,
    /// The issuer, most specific first.
    pub issuer_name: String,
    /// Start of validity, RFC 3339 UTC (`2026-11-24T15:00:00Z`).
    pub not_before_utc: String,
    /// End of validity, RFC 3339 UTC.
    pub not_after_utc: String,
    /// The serial number, uppercase hex of the DER INTEGER's bytes.
    pub serial_number: String,
    /// The X.509 version (3 for v3).
    pub version: i32,
}

/// Why a certificate could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertInfoError {
    /// Not a DER X.509 certificate.
    #[error("not an X.509 certificate ({0}); give a PEM or DER certificate file")]
    NotACertificate(String),
    /// Trailing bytes after the certificate.
    #[error("{0} unexpected bytes follow the certificate; give one DER certificate")]
    TrailingBytes(usize),
    /// The PEM text is broken.
    #[error("{0}")]
    Pem(#[from] PemError),
    /// A DPS `certificate` field that is none of PEM, base64 of PEM, or base64 of DER.
    #[error(
        "the certificate field is neither PEM, base64 of PEM, nor base64 of DER; DPS clients send one of those"
    )]
    UnknownEncoding,
}

/// The SHA-1 thumbprint of a DER certificate, uppercase hex, as DPS and Windows show it.
pub fn sha1_thumbprint(der: &[u8]) -> String {
    hex::encode_upper(Sha1::digest(der))
}

/// The SHA-256 thumbprint of a DER certificate, uppercase hex.
pub fn sha256_thumbprint(der: &[u8]) -> String {
    hex::encode_upper(Sha256::digest(der))
}

/// Parses one DER certificate, refusing trailing bytes (so a concatenated chain is not mistaken
/// for its first certificate).
pub fn parse_certificate(der: &[u8]) -> Result<X509Certificate<'_>, CertInfoError> {
    let (rest, cert) = X509Certificate::from_der(der)
        .map_err(|err| CertInfoError::NotACertificate(err.to_string()))?;
    if !rest.is_empty() {
        return Err(CertInfoError::TrailingBytes(rest.len()));
    }
    Ok(cert)
}

impl X509CertificateInfo {
    /// The info of one DER certificate.
    pub fn from_der(der: &[u8]) -> Result<Self, CertInfoError> {
        let cert = parse_certificate(der)?;
        Ok(Self {
            subject_name: dps_name(cert.subject()),
            sha1_thumbprint: sha1_thumbprint(der),
            sha256_thumbprint: sha256_thumbprint(der),
            issuer_name: dps_name(cert.issuer()),
            not_before_utc: rfc3339(cert.validity().not_before.to_datetime()),
            not_after_utc: rfc3339(cert.validity().not_after.to_datetime()),
            serial_number: hex::encode_upper(cert.raw_serial()),
            version: i32::try_from(cert.version().0).unwrap_or(i32::MAX - 1) + 1,
        })
    }

    /// The info of the first certificate in PEM text, or of DER bytes.
    pub fn from_pem_or_der(bytes: &[u8]) -> Result<Self, CertInfoError> {
        let der = pem::der_from_pem_or_der(bytes, &[pem::label::CERTIFICATE])?;
        Self::from_der(&der)
    }
}

fn rfc3339(at: OffsetDateTime) -> String {
    // Formatting fails only for years outside 0..=9999, which X.509 times cannot hold; fall back
    // to time's own display rather than failing the whole info.
    at.format(&Rfc3339).unwrap_or_else(|_| at.to_string())
}

/// A name as DPS shows it: RDNs most specific first (RFC 4514 order), `, ` between them, ` + `
/// inside a multi-valued RDN, .NET abbreviations; the one spelling the ledger stores too.
pub fn dps_name(name: &X509Name<'_>) -> String {
    crate::dn::rfc4514(name)
}

/// The DER inside a DPS `certificate` field, whichever encoding the client chose: PEM text
/// (Node), base64 of the PEM text (C SDK) or base64 of the DER (C# v1). See REFERENCE.md §3.
pub fn der_from_dps_certificate_field(field: &str) -> Result<Vec<u8>, CertInfoError> {
    let trimmed = field.trim();
    if trimmed.contains("-----BEGIN ") {
        return Ok(pem::der_from_pem_or_der(
            trimmed.as_bytes(),
            &[pem::label::CERTIFICATE],
        )?);
    }
    let compact: String = trimmed.chars().filter(|c| !c.is_whitespace()).collect();
    let decoded = STANDARD
        .decode(compact.as_bytes())
        .map_err(|_| CertInfoError::UnknownEncoding)?;
    if decoded.windows(11).any(|w| w == b"-----BEGIN ") {
        return Ok(pem::der_from_pem_or_der(
            &decoded,
            &[pem::label::CERTIFICATE],
        )?);
    }
    // A DER certificate starts with a SEQUENCE tag.
    if decoded.first() == Some(&0x30) {
        parse_certificate(&decoded)?;
        return Ok(decoded);
    }
    Err(CertInfoError::UnknownEncoding)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_not_a_certificate() {
        assert!(X509CertificateInfo::from_der(b"\x30\x03\x02\x01\x01").is_err());
        assert!(X509CertificateInfo::from_der(b"").is_err());
        assert!(matches!(
            der_from_dps_certificate_field("%%%"),
            Err(CertInfoError::UnknownEncoding)
        ));
    }
}
