//! Signing in the token through the identity module's `CaSigner`: a root and an intermediate whose
//! chain `openssl verify` accepts, and four threads signing at once.

use std::process::Command;
use std::sync::Arc;

use dps_station::identity::signer::CaSigner;
use dps_station::keystore::KeyStore;
use p256::ecdsa::signature::Verifier;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyUsagePurpose, PublicKeyData,
    SignatureAlgorithm, SigningKey,
};

use crate::common::*;

/// Lets rcgen sign through a `CaSigner` (a test-only bridge; the identity module has its own).
struct ViaSigner(Arc<dyn CaSigner>);

impl PublicKeyData for ViaSigner {
    fn der_bytes(&self) -> &[u8] {
        self.0.public_key_sec1()
    }
    fn algorithm(&self) -> &'static SignatureAlgorithm {
        &rcgen::PKCS_ECDSA_P256_SHA256
    }
}

impl SigningKey for ViaSigner {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        self.0
            .sign_p256_sha256(msg)
            .map_err(|_| rcgen::Error::RemoteKeyError)
    }
}

fn ca_params(cn: &str, path_len: u8) -> CertificateParams {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(path_len));
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p
}

#[test]
fn a_root_and_intermediate_signed_in_the_token_verify_with_openssl() {
    let (_label, store) = open_fresh("chain");
    let root_uri = store.generate_ec_p256("root", &[0x01]).unwrap();
    let int_uri = store.generate_ec_p256("intermediate", &[0x02]).unwrap();
    let root_key = ViaSigner(store.signer(&root_uri).unwrap());
    let int_key = ViaSigner(store.signer(&int_uri).unwrap());

    let root_params = ca_params("Test Root", 1);
    let root = root_params.self_signed(&root_key).unwrap();
    let issuer = Issuer::from_params(&root_params, &root_key);
    let int_params = ca_params("Test Intermediate", 0);
    let intermediate = int_params.signed_by(&int_key, &issuer).unwrap();
    let int_issuer = Issuer::from_params(&int_params, &int_key);
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let mut leaf_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, "device-0001");
    let leaf = leaf_params.signed_by(&leaf_key, &int_issuer).unwrap();

    store
        .store_certificate("root", &[0x01], root.der())
        .unwrap();
    store
        .store_certificate("intermediate", &[0x02], intermediate.der())
        .unwrap();
    assert_eq!(store.certificates().unwrap().len(), 2);

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("root.pem"), root.pem()).unwrap();
    std::fs::write(dir.path().join("int.pem"), intermediate.pem()).unwrap();
    std::fs::write(dir.path().join("leaf.pem"), leaf.pem()).unwrap();
    let out = Command::new("openssl")
        .current_dir(dir.path())
        .args([
            "verify",
            "-CAfile",
            "root.pem",
            "-untrusted",
            "int.pem",
            "leaf.pem",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl verify: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new("openssl")
        .current_dir(dir.path())
        .args(["verify", "-CAfile", "root.pem", "int.pem"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn four_threads_sign_at_once_and_every_signature_verifies() {
    let (_label, store) = open_fresh("threads");
    let uri = store.generate_ec_p256("ca", &[0x01]).unwrap();
    let signer = store.signer(&uri).unwrap();
    let verifying = p256::ecdsa::VerifyingKey::from_sec1_bytes(signer.public_key_sec1()).unwrap();
    let barrier = Arc::new(std::sync::Barrier::new(4));
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let signer = signer.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                (0..50)
                    .map(|i| {
                        let msg = format!("thread {t} message {i}").into_bytes();
                        let sig = signer.sign_p256_sha256(&msg).unwrap();
                        (msg, sig)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut total = 0;
    for h in handles {
        for (msg, der) in h.join().unwrap() {
            let sig = p256::ecdsa::Signature::from_der(&der).unwrap();
            verifying.verify(&msg, &sig).unwrap();
            total += 1;
        }
    }
    assert_eq!(total, 200);
    assert_eq!(store.max_sessions(), 4);
}

#[test]
fn a_profile_promising_ecdsa_sha256_on_softhsm2_gets_a_clear_error() {
    let label = fresh_token("mech");
    let mut config = softhsm_config(&label);
    config.profile.mechanisms.ecdsa_sha256 = true;
    let store = dps_station::keystore::pkcs11::Pkcs11KeyStore::open(
        &config,
        dps_station::secret::SecretString::new(USER_PIN),
    )
    .unwrap();
    let uri = store.generate_ec_p256("ca", &[0x01]).unwrap();
    let err = store.sign_p256_sha256(&uri, b"tbs").unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(
            err,
            dps_station::keystore::KeyStoreError::MechanismMissing { .. }
        ),
        "{msg}"
    );
    assert!(
        msg.contains(&label) && msg.contains("ecdsa_sha256 = false") && msg.contains("object=ca"),
        "{msg}"
    );
}
