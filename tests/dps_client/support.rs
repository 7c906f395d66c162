//! Helpers shared by the DPS client tests: certificates made with rcgen, the OpenAPI schema.

#![allow(dead_code)]

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};

/// A self-signed leaf certificate (PEM) with subject CN `cn`, as a device would present.
pub fn device_cert(cn: &str) -> String {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, cn);
    let key = KeyPair::generate().unwrap();
    params.self_signed(&key).unwrap().pem()
}

/// A self-signed CA certificate (PEM), as a group's signing certificate.
pub fn ca_cert(cn: &str) -> String {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let key = KeyPair::generate().unwrap();
    params.self_signed(&key).unwrap().pem()
}

/// The official 2021-10-01 service OpenAPI file (a verbatim copy of Azure/azure-rest-api-specs).
pub fn openapi() -> serde_json::Value {
    serde_json::from_str(include_str!("service-2021-10-01.json")).unwrap()
}

/// A base64 key of `n` bytes.
pub fn key_b64(n: usize, fill: u8) -> String {
    use base64::Engine as _;
    base64::prelude::BASE64_STANDARD.encode(vec![fill; n])
}
