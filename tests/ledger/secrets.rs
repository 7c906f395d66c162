//! No private key, PIN, group key or DPS shared access key ever reaches the ledger file: identities
//! of every kind and the HSM records are written through the API, then the raw bytes of the file
//! and its WAL are searched for each secret in raw, base64 and hex form.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use dps_station::ledger::*;
use serde_json::json;

use crate::common::*;

/// The forms a secret could take in a file.
fn forms(secret: &[u8]) -> Vec<Vec<u8>> {
    vec![
        secret.to_vec(),
        STANDARD.encode(secret).into_bytes(),
        URL_SAFE_NO_PAD.encode(secret).into_bytes(),
        hex::encode(secret).into_bytes(),
        hex::encode_upper(secret).into_bytes(),
    ]
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.len() <= haystack.len() && haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn no_secret_reaches_the_ledger_file_or_its_wal() {
    let t = test_dir();
    // The secrets: a device's private key, a symmetric device key, a group key, a PIN, a DPS key.
    let device_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let private_key_der = device_key.serialize_der();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "x509-device");
    let cert_der = params.self_signed(&device_key).unwrap().der().to_vec();
    let symmetric_key: Vec<u8> = (0u8..64)
        .map(|i| i.wrapping_mul(37).wrapping_add(11))
        .collect();
    let group_key: Vec<u8> = (0u8..32)
        .map(|i| i.wrapping_mul(91).wrapping_add(5))
        .collect();
    let pin = b"8274-so-pin-5531".to_vec();
    let dps_key: Vec<u8> = (0u8..32)
        .map(|i| i.wrapping_mul(13).wrapping_add(200))
        .collect();
    let secrets: Vec<(&str, Vec<u8>)> = vec![
        ("private key", private_key_der.clone()),
        ("symmetric key", symmetric_key.clone()),
        ("group key", group_key.clone()),
        ("PIN", pin.clone()),
        ("DPS shared access key", dps_key.clone()),
    ];

    let mut l = open(&t.ledger);
    // Identities of every kind, as the station records them.
    l.record_issued(&NewIdentity {
        registration_id: "x509-device".into(),
        batch: None,
        device: None,
        attestation: Attestation::X509 {
            certificate_der: cert_der,
        },
    })
    .unwrap();
    l.record_issued(&symmetric_identity("sym-device", &symmetric_key))
        .unwrap();
    l.record_issued(&symmetric_identity("group-derived", &group_key))
        .unwrap();
    l.record_issued(&tpm_identity("tpm-device", b"public endorsement key bytes"))
        .unwrap();
    for reg in ["x509-device", "sym-device", "group-derived", "tpm-device"] {
        l.transition(reg, &Transition::Written).unwrap();
    }
    // An HSM session and a CA certificate, as the HSM engineer records them.
    let session = l
        .open_key_session(&NewKeySession {
            operator: "sam".into(),
            token_label: "ca-token".into(),
            token_serial: "0042".into(),
            token_model: "SoftHSM v2".into(),
        })
        .unwrap();
    let ca_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let ca_der = rcgen::CertificateParams::new(Vec::<String>::new())
        .unwrap()
        .self_signed(&ca_key)
        .unwrap()
        .der()
        .to_vec();
    let pin_text = String::from_utf8(pin.clone()).unwrap();
    // Attempts to smuggle secrets in are refused...
    let err = l
        .record_ca_certificate(
            &NewCaCertificate {
                name: "root".into(),
                role: CaRole::Root,
                key_uri: format!("pkcs11:token=ca-token;object=root?pin-value={pin_text}"),
                certificate_der: ca_der.clone(),
            },
            Some(session),
        )
        .unwrap_err();
    assert!(
        !err.to_string().contains(&pin_text),
        "the error does not echo the PIN"
    );
    let err = l
        .append_audit(
            "sam",
            "dps.configured",
            "dps",
            &json!({"endpoint": "x", "primaryKey": STANDARD.encode(&dps_key)}),
        )
        .unwrap_err();
    assert!(matches!(err, LedgerError::Refused { .. }));
    // ...and the legitimate records go in.
    l.record_ca_certificate(
        &NewCaCertificate {
            name: "root".into(),
            role: CaRole::Root,
            key_uri: "pkcs11:token=ca-token;object=root".into(),
            certificate_der: ca_der,
        },
        Some(session),
    )
    .unwrap();
    l.close_key_session(session).unwrap();
    l.append_audit(
        "sam",
        "dps.configured",
        "dps",
        &json!({"endpoint": "x", "key_name": "provisioningserviceowner"}),
    )
    .unwrap();

    // The fingerprint is there (so the scan can see the file), the keys are not.
    let fp = KeyFingerprint::of_key(&symmetric_key);
    let mut wal = t.ledger.as_os_str().to_owned();
    wal.push("-wal");
    let files = [t.ledger.clone(), std::path::PathBuf::from(wal)];
    let mut all = Vec::new();
    for f in &files {
        all.extend(std::fs::read(f).unwrap_or_default());
    }
    assert!(all.len() > 10_000, "the file and WAL were read");
    assert!(
        contains(&all, fp.as_str().as_bytes()),
        "the fingerprint is stored"
    );
    for (name, secret) in &secrets {
        for form in forms(secret) {
            assert!(
                !contains(&all, &form),
                "{name} found in the ledger as {:?}",
                String::from_utf8_lossy(&form)
            );
        }
    }
    // And after a checkpoint, in the main file alone.
    drop(l);
    let main = std::fs::read(&t.ledger).unwrap();
    assert!(contains(&main, fp.as_str().as_bytes()));
    for (name, secret) in &secrets {
        for form in forms(secret) {
            assert!(!contains(&main, &form), "{name} found after checkpoint");
        }
    }
}
