//! Issuing through the signing trait, cross-checked with `openssl verify` and `openssl x509 -text`.

use dps_station::identity::csr::CsrError;
use dps_station::identity::issue::{
    IssueError, Issuer, issue_device_certificate, make_intermediate_ca, make_root_ca,
    verification_certificate, verify_issued_by,
};
use dps_station::identity::pem;
use dps_station::identity::profile::{CaProfile, CaSubject, DeviceProfile, Validity};
use dps_station::identity::registration_id::RegistrationId;
use dps_station::identity::signer::CaSigner;

use crate::support::{
    FailingCaKey, MemoryCaKey, P256, openssl, openssl_csr, openssl_ok, temp_dir, write,
};

struct Chain {
    root_key: MemoryCaKey,
    root_der: Vec<u8>,
    inter_key: MemoryCaKey,
    inter_der: Vec<u8>,
}

fn chain() -> Chain {
    let root_key = MemoryCaKey::new("root");
    let mut root_profile = CaProfile::root("Contoso Test Root").unwrap();
    root_profile.subject = CaSubject {
        common_name: "Contoso Test Root".into(),
        organization: Some("Contoso".into()),
        organizational_unit: Some("Azure IoT".into()),
        country: Some("us".into()),
    };
    let root = make_root_ca(&root_profile, &root_key).unwrap();
    let inter_key = MemoryCaKey::new("intermediate");
    let root_issuer = Issuer::new(root.der.clone(), &root_key).unwrap();
    let inter = make_intermediate_ca(
        &CaProfile::intermediate("Contoso Line 1").unwrap(),
        inter_key.public_key_sec1(),
        &root_issuer,
    )
    .unwrap();
    Chain {
        root_key,
        root_der: root.der,
        inter_key,
        inter_der: inter.der,
    }
}

fn pem_of(der: &[u8]) -> String {
    pem::encode(pem::label::CERTIFICATE, der)
}

#[test]
fn openssl_csr_gives_a_leaf_that_verifies_through_the_chain() {
    let dir = temp_dir();
    let c = chain();
    let csr = openssl_csr(
        dir.path(),
        "dev",
        P256,
        "/CN=ignored-by-station/O=Device Corp",
    );
    let csr_der = pem::der_from_pem_or_der(&csr, &[pem::label::CERTIFICATE_REQUEST]).unwrap();
    let issuer = Issuer::new(c.inter_der.clone(), &c.inter_key).unwrap();
    let id = RegistrationId::parse("Thermo-000042").unwrap();
    let leaf = issue_device_certificate(
        &csr_der,
        &id,
        &DeviceProfile::valid_for_days(365).unwrap(),
        &issuer,
    )
    .unwrap();
    write(dir.path(), "root.pem", pem_of(&c.root_der));
    write(dir.path(), "inter.pem", pem_of(&c.inter_der));
    write(dir.path(), "leaf.pem", leaf.pem());

    let out = openssl_ok(
        dir.path(),
        &[
            "verify",
            "-x509_strict",
            "-purpose",
            "sslclient",
            "-CAfile",
            "root.pem",
            "-untrusted",
            "inter.pem",
            "leaf.pem",
        ],
    );
    assert!(out.contains("leaf.pem: OK"), "{out}");
    // Without the intermediate the leaf does not chain: the intermediate really signed it.
    let out = openssl(dir.path(), &["verify", "-CAfile", "root.pem", "leaf.pem"]);
    assert!(!out.status.success());

    let text = openssl_ok(dir.path(), &["x509", "-in", "leaf.pem", "-noout", "-text"]);
    assert!(text.contains("Subject: CN = thermo-000042"), "{text}");
    assert!(
        !text.contains("Device Corp"),
        "the CSR's subject leaked: {text}"
    );
    assert!(text.contains("TLS Web Client Authentication"), "{text}");
    assert!(
        text.contains("X509v3 Key Usage: critical\n                Digital Signature\n"),
        "{text}"
    );
    assert!(text.contains("CA:FALSE"), "{text}");
    assert!(text.contains("X509v3 Subject Key Identifier"), "{text}");
    assert!(text.contains("X509v3 Authority Key Identifier"), "{text}");
    assert!(text.contains("ecdsa-with-SHA256"), "{text}");
    // The leaf's key is the CSR's key.
    let leaf_pub = openssl_ok(
        dir.path(),
        &["x509", "-in", "leaf.pem", "-noout", "-pubkey"],
    );
    let csr_pub = openssl_ok(dir.path(), &["req", "-in", "dev.csr", "-noout", "-pubkey"]);
    assert_eq!(leaf_pub, csr_pub);
    // Random positive 16-byte serial.
    assert_eq!(
        leaf.info.serial_number.len(),
        32,
        "{}",
        leaf.info.serial_number
    );
    assert!(u8::from_str_radix(&leaf.info.serial_number[..2], 16).unwrap() < 0x80);
    assert_eq!(leaf.info.issuer_name, "CN=Contoso Line 1");
    verify_issued_by(&leaf.der, &c.inter_der).unwrap();
}

#[test]
fn ca_certificates_carry_constraints_and_key_usage() {
    let dir = temp_dir();
    let c = chain();
    write(dir.path(), "root.pem", pem_of(&c.root_der));
    write(dir.path(), "inter.pem", pem_of(&c.inter_der));
    let root = openssl_ok(dir.path(), &["x509", "-in", "root.pem", "-noout", "-text"]);
    assert!(root.contains("CA:TRUE, pathlen:1"), "{root}");
    assert!(root.contains("Certificate Sign, CRL Sign"), "{root}");
    assert!(
        root.contains("Subject: C = US, O = Contoso, OU = Azure IoT, CN = Contoso Test Root"),
        "{root}"
    );
    let inter = openssl_ok(dir.path(), &["x509", "-in", "inter.pem", "-noout", "-text"]);
    assert!(inter.contains("CA:TRUE, pathlen:0"), "{inter}");
    assert!(inter.contains("Certificate Sign, CRL Sign"), "{inter}");
    assert!(
        inter.contains("Issuer: C = US, O = Contoso, OU = Azure IoT, CN = Contoso Test Root"),
        "{inter}"
    );
    let out = openssl_ok(
        dir.path(),
        &["verify", "-x509_strict", "-CAfile", "root.pem", "inter.pem"],
    );
    assert!(out.contains("OK"), "{out}");
    let info =
        dps_station::identity::cert_info::X509CertificateInfo::from_der(&c.root_der).unwrap();
    assert_eq!(
        info.subject_name,
        "CN=Contoso Test Root, OU=Azure IoT, O=Contoso, C=US"
    );
}

fn flip(der: &[u8], index: usize) -> Vec<u8> {
    let mut out = der.to_vec();
    out[index] ^= 0x01;
    out
}

#[test]
fn tampered_csrs_are_refused() {
    let dir = temp_dir();
    let c = chain();
    let issuer = Issuer::new(c.inter_der.clone(), &c.inter_key).unwrap();
    let profile = DeviceProfile::valid_for_days(30).unwrap();
    let id = RegistrationId::parse("dev-1").unwrap();
    let csr = openssl_csr(dir.path(), "dev", P256, "/CN=dev-subject-1");
    let der = pem::der_from_pem_or_der(&csr, &[pem::label::CERTIFICATE_REQUEST]).unwrap();
    issue_device_certificate(&der, &id, &profile, &issuer).unwrap();

    // A byte inside the signature's s value (the last bytes of the DER).
    let err =
        issue_device_certificate(&flip(&der, der.len() - 3), &id, &profile, &issuer).unwrap_err();
    assert!(
        matches!(err, IssueError::Csr(CsrError::BadSignature(_))),
        "{err}"
    );
    assert!(err.to_string().contains("does not verify"), "{err}");

    // A letter of the subject: "dev-subject-1" -> "dev-subject-0".
    let at = der.windows(13).position(|w| w == b"dev-subject-1").unwrap();
    let err = issue_device_certificate(&flip(&der, at + 12), &id, &profile, &issuer).unwrap_err();
    assert!(
        matches!(err, IssueError::Csr(CsrError::BadSignature(_))),
        "{err}"
    );

    // A byte of the public key.
    let err = issue_device_certificate(&flip(&der, at + 40), &id, &profile, &issuer).unwrap_err();
    assert!(matches!(err, IssueError::Csr(_)), "{err}");

    // Garbage and truncation.
    assert!(issue_device_certificate(&der[..der.len() / 2], &id, &profile, &issuer).is_err());
    assert!(issue_device_certificate(b"", &id, &profile, &issuer).is_err());
}

#[test]
fn rsa_and_p384_csrs_are_refused_by_name() {
    let dir = temp_dir();
    let c = chain();
    let issuer = Issuer::new(c.inter_der.clone(), &c.inter_key).unwrap();
    let profile = DeviceProfile::valid_for_days(30).unwrap();
    let id = RegistrationId::parse("dev-1").unwrap();

    let rsa = openssl_csr(dir.path(), "rsa", &["-newkey", "rsa:2048"], "/CN=dev-1");
    let rsa = pem::der_from_pem_or_der(&rsa, &[pem::label::CERTIFICATE_REQUEST]).unwrap();
    let err = issue_device_certificate(&rsa, &id, &profile, &issuer).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("RSA 2048-bit") && text.contains("P-256"),
        "{text}"
    );

    let p384 = openssl_csr(
        dir.path(),
        "p384",
        &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-384"],
        "/CN=dev-1",
    );
    let p384 = pem::der_from_pem_or_der(&p384, &[pem::label::CERTIFICATE_REQUEST]).unwrap();
    let err = issue_device_certificate(&p384, &id, &profile, &issuer).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("EC P-384") && text.contains("P-256"),
        "{text}"
    );
}

#[test]
fn issuer_checks_key_ca_flag_and_lifetime() {
    let c = chain();
    // The root certificate with the intermediate's key: refused, naming the key.
    let err = Issuer::new(c.root_der.clone(), &c.inter_key).unwrap_err();
    assert!(matches!(err, IssueError::KeyMismatch { .. }), "{err}");
    assert!(err.to_string().contains("memory:intermediate"), "{err}");
    // A device certificate cannot be an issuer.
    let dir = temp_dir();
    let csr = openssl_csr(dir.path(), "dev", P256, "/CN=x");
    let csr = pem::der_from_pem_or_der(&csr, &[pem::label::CERTIFICATE_REQUEST]).unwrap();
    let issuer = Issuer::new(c.inter_der.clone(), &c.inter_key).unwrap();
    let id = RegistrationId::parse("dev-2").unwrap();
    let leaf = issue_device_certificate(
        &csr,
        &id,
        &DeviceProfile::valid_for_days(30).unwrap(),
        &issuer,
    )
    .unwrap();
    assert!(Issuer::new(leaf.der.clone(), &c.inter_key).is_err());
    // Longer than the intermediate (5 years) is refused.
    let err = issue_device_certificate(
        &csr,
        &id,
        &DeviceProfile::valid_for_days(20 * 365).unwrap(),
        &issuer,
    )
    .unwrap_err();
    assert!(matches!(err, IssueError::OutlivesIssuer { .. }), "{err}");
    // A registration ID over 64 characters cannot be a CN.
    let long = RegistrationId::parse(&"a".repeat(65)).unwrap();
    let err = issue_device_certificate(
        &csr,
        &long,
        &DeviceProfile::valid_for_days(30).unwrap(),
        &issuer,
    )
    .unwrap_err();
    assert!(err.to_string().contains("64"), "{err}");
}

#[test]
fn key_store_errors_come_back_by_name() {
    let c = chain();
    let failing = FailingCaKey(c.inter_key);
    let issuer = Issuer::new(c.inter_der.clone(), &failing).unwrap();
    let dir = temp_dir();
    let csr = openssl_csr(dir.path(), "dev", P256, "/CN=x");
    let csr = pem::der_from_pem_or_der(&csr, &[pem::label::CERTIFICATE_REQUEST]).unwrap();
    let err = issue_device_certificate(
        &csr,
        &RegistrationId::parse("dev-3").unwrap(),
        &DeviceProfile::valid_for_days(30).unwrap(),
        &issuer,
    )
    .unwrap_err();
    let text = format!("{err}");
    assert!(text.contains("pkcs11:token=line1;object=ca"), "{text}");
    assert!(text.contains("CKR_USER_NOT_LOGGED_IN"), "{text}");
    let _ = c.root_key;
}

#[test]
fn verification_certificate_proves_possession_of_the_root_key() {
    let dir = temp_dir();
    let c = chain();
    let issuer = Issuer::new(c.root_der.clone(), &c.root_key).unwrap();
    let code = "1B1F84DE79B9BD5F16D71E92709917C2A1CA19D5A156CB9F";
    let cert =
        verification_certificate(code, &Validity::days_from_now(30).unwrap(), &issuer).unwrap();
    write(dir.path(), "root.pem", pem_of(&c.root_der));
    write(dir.path(), "verify.pem", cert.pem());
    let out = openssl_ok(dir.path(), &["verify", "-CAfile", "root.pem", "verify.pem"]);
    assert!(out.contains("OK"), "{out}");
    let subject = openssl_ok(
        dir.path(),
        &["x509", "-in", "verify.pem", "-noout", "-subject"],
    );
    assert_eq!(subject.trim(), format!("subject=CN = {code}"));
    let err =
        verification_certificate("not a code!", &Validity::days_from_now(1).unwrap(), &issuer)
            .unwrap_err();
    assert!(matches!(err, IssueError::VerificationCode { .. }), "{err}");
}

#[test]
fn path_lengths_must_leave_room_below_the_issuer() {
    let c = chain();
    // The intermediate (path length 0) cannot sign another intermediate.
    let issuer = Issuer::new(c.inter_der.clone(), &c.inter_key).unwrap();
    let other = MemoryCaKey::new("other");
    let err = make_intermediate_ca(
        &CaProfile::intermediate("Too Deep").unwrap(),
        other.public_key_sec1(),
        &issuer,
    )
    .unwrap_err();
    assert!(err.to_string().contains("path length is 0"), "{err}");
    // Under the root (path length 1) an intermediate must have path length 0.
    let root = Issuer::new(c.root_der.clone(), &c.root_key).unwrap();
    let mut profile = CaProfile::intermediate("Same Depth").unwrap();
    profile.path_len = Some(1);
    let err = make_intermediate_ca(&profile, other.public_key_sec1(), &root).unwrap_err();
    assert!(
        err.to_string().contains("path length must be below"),
        "{err}"
    );
}

#[test]
fn a_csr_asking_for_ca_powers_gets_a_plain_device_certificate() {
    let dir = temp_dir();
    let c = chain();
    let csr = openssl_csr(
        dir.path(),
        "greedy",
        &[
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-addext",
            "extendedKeyUsage=serverAuth,codeSigning",
            "-addext",
            "subjectAltName=DNS:evil.example",
            "-addext",
            "1.2.3.4.5=ASN1:UTF8String:vendor-extension",
        ],
        "/CN=greedy-device/O=Evil",
    );
    let asked = openssl_ok(dir.path(), &["req", "-in", "greedy.csr", "-noout", "-text"]);
    assert!(
        asked.contains("CA:TRUE") && asked.contains("evil.example"),
        "{asked}"
    );
    let der = pem::der_from_pem_or_der(&csr, &[pem::label::CERTIFICATE_REQUEST]).unwrap();
    let issuer = Issuer::new(c.inter_der.clone(), &c.inter_key).unwrap();
    // rcgen's own CSR parser would refuse the vendor extension; ours takes only the key.
    let leaf = issue_device_certificate(
        &der,
        &RegistrationId::parse("greedy-device").unwrap(),
        &DeviceProfile::valid_for_days(30).unwrap(),
        &issuer,
    )
    .unwrap();
    write(dir.path(), "leaf.pem", leaf.pem());
    let text = openssl_ok(dir.path(), &["x509", "-in", "leaf.pem", "-noout", "-text"]);
    assert!(text.contains("CA:FALSE"), "{text}");
    assert!(!text.contains("CA:TRUE"), "{text}");
    assert!(!text.contains("Certificate Sign"), "{text}");
    assert!(!text.contains("evil.example"), "{text}");
    assert!(
        !text.contains("Code Signing") && !text.contains("Server Authentication"),
        "{text}"
    );
    assert!(!text.contains("Evil"), "{text}");
    assert!(!text.contains("1.2.3.4.5"), "{text}");
}
