//! Helpers shared by the ledger tests: a temp dir per test, a writer, real certificates.

#![allow(dead_code)]

use std::path::PathBuf;

use dps_station::ledger::{Attestation, KeyFingerprint, Ledger, NewIdentity, WriterIdentity};

/// A temp dir that lives as long as the test, and the ledger path inside it.
pub struct TestDir {
    pub dir: tempfile::TempDir,
    pub ledger: PathBuf,
}

pub fn test_dir() -> TestDir {
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("ledger.db");
    TestDir { dir, ledger }
}

pub fn writer() -> WriterIdentity {
    WriterIdentity {
        station: "line-1".into(),
        operator: "ann".into(),
    }
}

pub fn open(path: &std::path::Path) -> Ledger {
    Ledger::open(path, &writer()).unwrap()
}

/// A real self-signed P-256 certificate with CN = `cn`, DER.
pub fn certificate(cn: &str) -> Vec<u8> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    params.self_signed(&key).unwrap().der().to_vec()
}

pub fn x509_identity(registration_id: &str) -> NewIdentity {
    NewIdentity {
        registration_id: registration_id.into(),
        batch: None,
        device: None,
        attestation: Attestation::X509 {
            certificate_der: certificate(registration_id),
        },
    }
}

pub fn symmetric_identity(registration_id: &str, key: &[u8]) -> NewIdentity {
    NewIdentity {
        registration_id: registration_id.into(),
        batch: None,
        device: None,
        attestation: Attestation::SymmetricKey {
            key_fingerprint: KeyFingerprint::of_key(key),
            key_nonce: None,
        },
    }
}

pub fn tpm_identity(registration_id: &str, ek: &[u8]) -> NewIdentity {
    NewIdentity {
        registration_id: registration_id.into(),
        batch: None,
        device: None,
        attestation: Attestation::Tpm {
            endorsement_key: ek.to_vec(),
        },
    }
}

/// The bytes of the ledger file (and its WAL), to check that an error left it as it was.
pub fn file_bytes(path: &std::path::Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_default()
}
