//! Keys on the token: generated and imported keys never extractable (checked with pkcs11-tool),
//! imported CA keys (encrypted PKCS#8), group keys and the DPS derived-key vector computed inside
//! the token, URIs that match no key or several.

use std::process::Command;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use dps_station::keystore::import::parse_p256_private_key;
use dps_station::keystore::{KeyKind, KeyStore, KeyStoreError, ObjectType, Pkcs11Uri};
use dps_station::secret::{SecretBytes, SecretString};

use crate::common::*;

/// The `Access:` line pkcs11-tool prints for the object labelled `label` of kind `header`.
fn access_of(listing: &str, header: &str, label: &str) -> Vec<String> {
    let blocks: Vec<&str> = listing.split("\n").collect();
    let mut in_object = false;
    let mut right_label = false;
    for line in blocks {
        if !line.starts_with(' ') {
            in_object = line.starts_with(header);
            right_label = false;
        } else if in_object && line.trim() == format!("label:      {label}") {
            right_label = true;
        } else if in_object && right_label && line.trim_start().starts_with("Access:") {
            return line
                .trim_start()
                .trim_start_matches("Access:")
                .split(',')
                .map(|w| w.trim().to_owned())
                .collect();
        }
    }
    panic!("no {header} labelled {label} in:\n{listing}");
}

fn assert_never_leaves(listing: &str, header: &str, label: &str) {
    let access = access_of(listing, header, label);
    assert!(
        access.contains(&"sensitive".to_owned()),
        "{label}: {access:?}"
    );
    assert!(
        !access.contains(&"extractable".to_owned()),
        "{label} is extractable: {access:?}"
    );
}

#[test]
fn generated_keys_are_sensitive_and_never_extractable() {
    let (label, store) = open_fresh("gen");
    let ca = store.generate_ec_p256("root-ca", &[0x01]).unwrap();
    assert_eq!(
        ca.to_string(),
        format!("pkcs11:token={label};object=root-ca;id=%01;type=private")
    );
    let group = store.generate_secret("group-a", &[0x10], 64).unwrap();
    let listing = pkcs11_tool_list(&label);
    assert_never_leaves(&listing, "Private Key Object; EC", "root-ca");
    assert_never_leaves(&listing, "Secret Key Object", "group-a");
    assert!(
        access_of(&listing, "Private Key Object; EC", "root-ca")
            .contains(&"never extractable".to_owned())
    );
    // A CA key only signs (SoftHSM2 would otherwise default to decrypt and unwrap too).
    assert!(
        listing.contains(
            "Private Key Object; EC\n  label:      root-ca\n  ID:         01\n  Usage:      sign\n"
        ),
        "{listing}"
    );

    let info = store.find(&group).unwrap();
    assert_eq!(info.kind, KeyKind::GenericSecret);
    assert_eq!(
        (info.sensitive, info.extractable),
        (Some(true), Some(false))
    );
    assert_eq!(store.public_key_sec1(&ca).unwrap().len(), 65);
    // Labels and ids are never reused: a second key by the same name is refused.
    let err = store.generate_ec_p256("root-ca", &[0x02]).unwrap_err();
    assert!(matches!(err, KeyStoreError::AlreadyExists { .. }), "{err}");
}

#[test]
fn an_encrypted_pkcs8_ca_key_is_imported_non_extractable_with_its_public_key() {
    let (label, store) = open_fresh("import");
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("ca.pem");
    let enc = dir.path().join("ca.p8.pem");
    let ok = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
        ])
        .arg(&plain)
        .status()
        .unwrap();
    assert!(ok.success());
    let ok = Command::new("openssl")
        .args([
            "pkcs8",
            "-topk8",
            "-v2",
            "aes-256-cbc",
            "-passout",
            "pass:correct horse",
            "-in",
        ])
        .arg(&plain)
        .arg("-out")
        .arg(&enc)
        .status()
        .unwrap();
    assert!(ok.success());
    let bytes = std::fs::read(&enc).unwrap();

    let msg = parse_p256_private_key("ca.p8.pem", &bytes, None)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("passphrase"), "{msg}");
    let wrong = SecretString::new("wrong");
    assert!(parse_p256_private_key("ca.p8.pem", &bytes, Some(&wrong)).is_err());
    let scalar = parse_p256_private_key(
        "ca.p8.pem",
        &bytes,
        Some(&SecretString::new("correct horse")),
    )
    .unwrap();
    let plain_scalar =
        parse_p256_private_key("ca.pem", &std::fs::read(&plain).unwrap(), None).unwrap();
    assert_eq!(scalar.expose(), plain_scalar.expose());

    let uri = store.import_ec_p256("site-ca", &[0x42], &scalar).unwrap();
    let listing = pkcs11_tool_list(&label);
    assert_never_leaves(&listing, "Private Key Object; EC", "site-ca");

    // The public key on the token is the one openssl derives from the file.
    let pubout = Command::new("openssl")
        .args(["pkey", "-pubout", "-outform", "DER", "-in"])
        .arg(&plain)
        .output()
        .unwrap();
    let spki = pubout.stdout;
    let sec1 = store.public_key_sec1(&uri).unwrap();
    assert_eq!(&spki[spki.len() - 65..], &sec1[..]);
}

#[test]
fn the_derived_device_key_vector_is_computed_inside_the_token() {
    // REFERENCE.md §7: deviceKey = base64(HMAC-SHA256(base64decode(groupKey), registrationId)).
    let group_key =
        "8isrFI1sGsIlvvFSSFRiMfCNzv21fjbE/+ah/lSh3lF8e2YG1Te7w1KpZhJFFXJrqYKi9yegxkqIChbqOS9Egw==";
    let (label, store) = open_fresh("derive");
    let raw = SecretBytes::new(B64.decode(group_key).unwrap());
    let uri = store.import_secret("dps-group", &[0x20], &raw).unwrap();
    let mac = store
        .hmac_sha256(&uri, b"sn-007-888-abc-mac-a1-b2-c3-d4-e5-f6")
        .unwrap();
    assert_eq!(
        B64.encode(mac.expose()),
        "Jsm0lyGpjaVYVP2g3FnmnmG9dI/9qU24wNoykUmermc="
    );
    // The imported group key ends non-extractable, like a generated one.
    let listing = pkcs11_tool_list(&label);
    assert_never_leaves(&listing, "Secret Key Object", "dps-group");
    // A group key cannot be used as a CA key, nor a CA key as a group key.
    let ca = store.generate_ec_p256("ca", &[0x01]).unwrap();
    let err = store
        .hmac_sha256(&ca.with_type(ObjectType::Private), b"x")
        .unwrap_err();
    assert!(matches!(err, KeyStoreError::WrongKeyType { .. }), "{err}");
    assert!(
        err.to_string().contains("ca") && err.to_string().contains(&label),
        "{err}"
    );
    let err = store.sign_p256_sha256(&uri, b"x").unwrap_err();
    assert!(
        matches!(
            err,
            KeyStoreError::WrongKeyType { .. } | KeyStoreError::KeyNotFound { .. }
        ),
        "{err}"
    );
}

#[test]
fn a_uri_matching_no_key_or_several_is_a_clear_error() {
    let (label, store) = open_fresh("match");
    store.generate_ec_p256("ca-one", &[0x01]).unwrap();
    store.generate_ec_p256("ca-two", &[0x02]).unwrap();
    let none: Pkcs11Uri = format!("pkcs11:token={label};object=missing;type=private")
        .parse()
        .unwrap();
    let err = store.find(&none).unwrap_err();
    assert!(matches!(err, KeyStoreError::KeyNotFound { .. }), "{err}");
    assert!(
        err.to_string().contains("object=missing") && err.to_string().contains("hsm list"),
        "{err}"
    );
    // Without a type, the label names both halves of the key pair.
    let both: Pkcs11Uri = format!("pkcs11:token={label};object=ca-one")
        .parse()
        .unwrap();
    let err = store.find(&both).unwrap_err();
    assert!(
        matches!(err, KeyStoreError::KeyAmbiguous { count: 2, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("type="), "{err}");
    let other_token: Pkcs11Uri = "pkcs11:token=elsewhere;object=ca-one;type=private"
        .parse()
        .unwrap();
    let err = store.find(&other_token).unwrap_err();
    assert!(matches!(err, KeyStoreError::WrongToken { .. }), "{err}");
    let found = store.find(&both.with_type(ObjectType::Private)).unwrap();
    assert_eq!(found.kind, KeyKind::EcPrivate);
    assert_eq!(store.list().unwrap().len(), 4);
}
