//! Certificates in enrollments: decoding the three encodings clients send (PEM text, base64 of
//! the PEM text, base64 of DER; REFERENCE.md §3) and computing the `X509CertificateInfo` the
//! service returns in their place.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::clock::rfc3339;

/// Decodes a certificate string to DER, whichever of the three encodings it is in, and checks
/// that the DER is a certificate.
pub fn decode(certificate: &str) -> Result<Vec<u8>, String> {
    let der = decode_any(certificate)?;
    parse(&der)?;
    Ok(der)
}

fn decode_any(certificate: &str) -> Result<Vec<u8>, String> {
    let text = certificate.trim();
    if text.starts_with("-----BEGIN") {
        return pem_to_der(text);
    }
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    let bytes = STANDARD
        .decode(compact.as_bytes())
        .map_err(|_| "the certificate is neither PEM nor base64".to_owned())?;
    if bytes.starts_with(b"-----BEGIN") {
        let pem = String::from_utf8(bytes)
            .map_err(|_| "the base64 certificate decodes to text that is not UTF-8".to_owned())?;
        return pem_to_der(&pem);
    }
    Ok(bytes)
}

/// First certificate of a PEM text.
pub fn pem_to_der(pem: &str) -> Result<Vec<u8>, String> {
    let (_, parsed) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .map_err(|e| format!("the PEM certificate cannot be read: {e}"))?;
    if parsed.label != "CERTIFICATE" {
        return Err(format!(
            "the PEM block is a '{}', not a CERTIFICATE",
            parsed.label
        ));
    }
    Ok(parsed.contents)
}

/// Parses DER and checks there is nothing after the certificate.
pub fn parse(der: &[u8]) -> Result<X509Certificate<'_>, String> {
    let (rest, cert) = X509Certificate::from_der(der)
        .map_err(|e| format!("the certificate is not valid X.509 DER: {e}"))?;
    if !rest.is_empty() {
        return Err("the certificate has trailing bytes after its DER".into());
    }
    Ok(cert)
}

/// The subject CN, which is the registration ID of an X.509 device.
pub fn common_name(der: &[u8]) -> Option<String> {
    let cert = parse(der).ok()?;
    cert.subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_owned)
}

/// SHA-256 thumbprint, upper-case hex, as the service writes it.
pub fn sha256_thumbprint(der: &[u8]) -> String {
    hex::encode_upper(Sha256::digest(der))
}

/// The `X509CertificateInfo` of a certificate.
pub fn info(der: &[u8]) -> Result<Value, String> {
    let cert = parse(der)?;
    let validity = cert.validity();
    Ok(json!({
        "subjectName": crate::dn::rfc4514(cert.subject()),
        "sha1Thumbprint": hex::encode_upper(Sha1::digest(der)),
        "sha256Thumbprint": sha256_thumbprint(der),
        "issuerName": crate::dn::rfc4514(cert.issuer()),
        "notBeforeUtc": rfc3339(validity.not_before.to_datetime()),
        "notAfterUtc": rfc3339(validity.not_after.to_datetime()),
        "serialNumber": hex::encode_upper(cert.raw_serial()),
        "version": cert.version().0.saturating_add(1),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_encodings_give_the_same_info() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec![]).unwrap();
        // Subject in the usual order (O before CN); the service shows it most specific first.
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "Acme");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "dev-1");
        let cert = params.self_signed(&key).unwrap();
        let pem = cert.pem();
        let der = cert.der().to_vec();
        let a = info(&decode(&pem).unwrap()).unwrap();
        let b = info(&decode(&STANDARD.encode(pem.as_bytes())).unwrap()).unwrap();
        let c = info(&decode(&STANDARD.encode(&der)).unwrap()).unwrap();
        assert_eq!(a, b);
        assert_eq!(a, c);
        assert_eq!(a["subjectName"], "CN=dev-1, O=Acme");
        assert_eq!(a["version"], 3);
        assert_eq!(a["sha256Thumbprint"].as_str().unwrap().len(), 64);
        assert_eq!(common_name(&der).as_deref(), Some("dev-1"));
        assert!(decode("not a cert").is_err());
        assert!(info(&[1, 2, 3]).is_err());
    }
}
