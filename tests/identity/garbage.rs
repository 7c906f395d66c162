//! Input from outside (CSRs from devices, certificate files, DPS fields, templates typed by a
//! production engineer) never panics: every truncation and bit flip of a real CSR and certificate,
//! and a bounded run of pseudo-random inputs, gets an error or a value.

use dps_station::identity::cert_info::{X509CertificateInfo, der_from_dps_certificate_field};
use dps_station::identity::csr::verify_csr;
use dps_station::identity::pem;
use dps_station::identity::registration_id::{IdUse, validate};
use dps_station::identity::template::RegistrationIdTemplate;

use crate::support::{P256, openssl_csr, openssl_ok, temp_dir};

/// xorshift64: deterministic, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn truncated_and_flipped_csrs_and_certificates_never_panic() {
    let dir = temp_dir();
    let csr = openssl_csr(dir.path(), "dev", P256, "/CN=dev-1");
    let csr = pem::der_from_pem_or_der(&csr, &[pem::label::CERTIFICATE_REQUEST]).unwrap();
    openssl_ok(
        dir.path(),
        &[
            "req", "-x509", "-key", "dev.key", "-in", "dev.csr", "-out", "c.pem", "-days", "1",
        ],
    );
    let cert = std::fs::read(dir.path().join("c.pem")).unwrap();
    let cert = pem::der_from_pem_or_der(&cert, &[pem::label::CERTIFICATE]).unwrap();
    verify_csr(&csr).unwrap();
    X509CertificateInfo::from_der(&cert).unwrap();

    let mut accepted_flips = 0;
    for len in 0..csr.len() {
        assert!(
            verify_csr(&csr[..len]).is_err(),
            "truncated to {len} accepted"
        );
    }
    for index in 0..csr.len() {
        let mut flipped = csr.clone();
        flipped[index] ^= 0x80;
        if verify_csr(&flipped).is_ok() {
            accepted_flips += 1;
        }
    }
    // Flips outside the signed request info (tag bytes of the envelope) are refused too.
    assert_eq!(accepted_flips, 0);
    for len in 0..cert.len() {
        let _ = X509CertificateInfo::from_der(&cert[..len]);
    }
    for index in 0..cert.len() {
        let mut flipped = cert.clone();
        flipped[index] ^= 0x80;
        let _ = X509CertificateInfo::from_der(&flipped);
    }
}

#[test]
fn random_inputs_never_panic() {
    let mut rng = Rng(0x5eed_1234_abcd_9876);
    let alphabet: Vec<char> = "{}:0a-Z_.9 /é}{pxroducserialhwid".chars().collect();
    for _ in 0..3000 {
        let len = (rng.next() % 48) as usize;
        let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        let _ = verify_csr(&bytes);
        let _ = X509CertificateInfo::from_pem_or_der(&bytes);
        let text: String = (0..len)
            .map(|_| alphabet[(rng.next() % alphabet.len() as u64) as usize])
            .collect();
        let _ = RegistrationIdTemplate::parse(&text);
        let _ = validate(&text, IdUse::X509CommonName);
        let _ = der_from_dps_certificate_field(&text);
        let _ = pem::decode_all(&format!("-----BEGIN X-----\n{text}\n-----END X-----\n"));
    }
}
