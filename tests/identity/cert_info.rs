//! `X509CertificateInfo` of certificates made by openssl, compared with what openssl reports.

use dps_station::identity::cert_info::X509CertificateInfo;

use crate::support::{openssl_ok, temp_dir};

#[test]
fn info_matches_openssl_and_the_dps_shape() {
    let dir = temp_dir();
    openssl_ok(
        dir.path(),
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "k.pem",
            "-out",
            "c.pem",
            "-days",
            "30",
            "-subj",
            "/C=US/O=MSFT/OU=Azure IoT/CN=ROOT_x",
            "-set_serial",
            "0x0123ABCD",
        ],
    );
    let pem = std::fs::read(dir.path().join("c.pem")).unwrap();
    let info = X509CertificateInfo::from_pem_or_der(&pem).unwrap();
    assert_eq!(info.subject_name, "CN=ROOT_x, OU=Azure IoT, O=MSFT, C=US");
    assert_eq!(info.issuer_name, info.subject_name);
    assert_eq!(info.version, 3);
    assert_eq!(info.serial_number, "0123ABCD");

    let sha1 = openssl_ok(
        dir.path(),
        &["x509", "-in", "c.pem", "-noout", "-fingerprint", "-sha1"],
    );
    let sha256 = openssl_ok(
        dir.path(),
        &["x509", "-in", "c.pem", "-noout", "-fingerprint", "-sha256"],
    );
    let hex_of = |line: &str| line.trim().rsplit('=').next().unwrap().replace(':', "");
    assert_eq!(info.sha1_thumbprint, hex_of(&sha1));
    assert_eq!(info.sha256_thumbprint, hex_of(&sha256));

    let json = serde_json::to_value(&info).unwrap();
    for key in [
        "subjectName",
        "sha1Thumbprint",
        "sha256Thumbprint",
        "issuerName",
        "notBeforeUtc",
        "notAfterUtc",
        "serialNumber",
        "version",
    ] {
        assert!(json.get(key).is_some(), "missing {key} in {json}");
    }
    assert!(
        info.not_before_utc.ends_with('Z'),
        "{}",
        info.not_before_utc
    );
}
