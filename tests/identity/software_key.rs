//! The file-backed development CA key: 0600 on disk, readable by openssl, signs like an HSM key.

use std::os::unix::fs::PermissionsExt;

use dps_station::identity::issue::{Issuer, make_root_ca};
use dps_station::identity::pem;
use dps_station::identity::profile::CaProfile;
use dps_station::identity::signer::CaSigner;
use dps_station::keystore::software::{SoftwareCaKey, SoftwareKeyError};

use crate::support::{MemoryCaKey, openssl_ok, temp_dir, write};

#[test]
fn generated_key_is_private_reloadable_and_named() {
    let dir = temp_dir();
    let path = dir.path().join("ca.key.pem");
    let key = SoftwareCaKey::generate(&path).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(key.key_name(), format!("software:{}", path.display()));
    assert!(!format!("{key:?}").contains("PRIVATE"));
    let again = SoftwareCaKey::load(&path).unwrap();
    assert_eq!(again.public_key_sec1(), key.public_key_sec1());
    assert!(matches!(
        SoftwareCaKey::generate(&path),
        Err(SoftwareKeyError::Exists(_))
    ));
    // openssl reads it as a P-256 key.
    let text = openssl_ok(
        dir.path(),
        &["pkey", "-in", "ca.key.pem", "-noout", "-text"],
    );
    assert!(text.contains("P-256"), "{text}");
    // And what it signs verifies with openssl.
    let root = make_root_ca(&CaProfile::root("Software Root").unwrap(), &key).unwrap();
    write(dir.path(), "root.pem", root.pem());
    let out = openssl_ok(dir.path(), &["verify", "-CAfile", "root.pem", "root.pem"]);
    assert!(out.contains("OK"), "{out}");
    Issuer::new(root.der, &again).unwrap();
}

#[test]
fn openssl_keys_load_and_encrypted_or_foreign_ones_are_refused_clearly() {
    let dir = temp_dir();
    let d = dir.path();
    openssl_ok(
        d,
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            "pkcs8.pem",
        ],
    );
    SoftwareCaKey::load(&d.join("pkcs8.pem")).unwrap();
    openssl_ok(
        d,
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            "sec1.pem",
        ],
    );
    SoftwareCaKey::load(&d.join("sec1.pem")).unwrap();
    // With the EC PARAMETERS block openssl writes before the key when -noout is not given.
    openssl_ok(
        d,
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-out",
            "params.pem",
        ],
    );
    SoftwareCaKey::load(&d.join("params.pem")).unwrap();
    // The same key in DER.
    openssl_ok(
        d,
        &[
            "pkey",
            "-in",
            "pkcs8.pem",
            "-outform",
            "DER",
            "-out",
            "pkcs8.der",
        ],
    );
    SoftwareCaKey::load(&d.join("pkcs8.der")).unwrap();
    // The test's in-memory key as PKCS#8 PEM gives the same public key.
    let memory = MemoryCaKey::new("x");
    write(d, "memory.pem", memory.pkcs8_pem());
    let loaded = SoftwareCaKey::load(&d.join("memory.pem")).unwrap();
    assert_eq!(loaded.public_key_sec1(), memory.public_key_sec1());

    openssl_ok(
        d,
        &[
            "pkcs8",
            "-topk8",
            "-in",
            "pkcs8.pem",
            "-out",
            "enc.pem",
            "-passout",
            "pass:1234",
            "-v2",
            "aes-256-cbc",
        ],
    );
    let err = SoftwareCaKey::load(&d.join("enc.pem")).unwrap_err();
    assert!(matches!(err, SoftwareKeyError::Encrypted(_)), "{err}");
    assert!(err.to_string().contains("openssl pkcs8"), "{err}");

    openssl_ok(
        d,
        &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            "rsa.pem",
        ],
    );
    let err = SoftwareCaKey::load(&d.join("rsa.pem")).unwrap_err();
    assert!(
        err.to_string().contains("P-256") && err.to_string().contains("rsa.pem"),
        "{err}"
    );

    let err = SoftwareCaKey::load(&d.join("missing.pem")).unwrap_err();
    assert!(err.to_string().contains("missing.pem"), "{err}");
    write(
        d,
        "cert.pem",
        pem::encode(pem::label::CERTIFICATE, b"\x30\x00"),
    );
    assert!(SoftwareCaKey::load(&d.join("cert.pem")).is_err());
}
