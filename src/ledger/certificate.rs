//! Reads the facts the ledger keeps about a certificate from its DER, so that thumbprints, issuer,
//! serial and validity can never disagree with the certificate stored next to them.

use sha1::Sha1;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::types::CertificateFacts;

/// Parses `der` (one X.509 certificate, nothing after it) into the facts DPS reports.
pub fn facts(der: &[u8]) -> Result<CertificateFacts, String> {
    let (rest, cert) = X509Certificate::from_der(der).map_err(|e| e.to_string())?;
    if !rest.is_empty() {
        return Err(format!("{} bytes after the certificate", rest.len()));
    }
    let validity = cert.validity();
    Ok(CertificateFacts {
        sha1_thumbprint: hex::encode_upper(Sha1::digest(der)),
        sha256_thumbprint: hex::encode_upper(Sha256::digest(der)),
        // RFC 4514 order, as `identity show` and DPS print them (x509-parser's Display is the
        // reverse, the DER order).
        subject: crate::dn::rfc4514(cert.subject()),
        issuer: crate::dn::rfc4514(cert.issuer()),
        serial: hex::encode_upper(cert.raw_serial()),
        not_before: rfc3339(validity.not_before.timestamp())?,
        not_after: rfc3339(validity.not_after.timestamp())?,
    })
}

fn rfc3339(unix: i64) -> Result<String, String> {
    let t = OffsetDateTime::from_unix_timestamp(unix).map_err(|e| e.to_string())?;
    t.format(&time::format_description::well_known::Rfc3339)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_stored_most_specific_first() {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CountryName, "DE");
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "Contoso");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Line CA");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let f = facts(cert.der()).unwrap();
        assert_eq!(f.subject, "CN=Line CA, O=Contoso, C=DE");
        assert_eq!(f.issuer, f.subject);
    }
}
