//! Round trips through the real `dps-station` binary, checked with openssl.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use crate::support::{P256, openssl_csr, openssl_ok, temp_dir, write};

const GROUP_KEY: &str =
    "8isrFI1sGsIlvvFSSFRiMfCNzv21fjbE/+ah/lSh3lF8e2YG1Te7w1KpZhJFFXJrqYKi9yegxkqIChbqOS9Egw==";
const DEVICE_ID: &str = "sn-007-888-abc-mac-a1-b2-c3-d4-e5-f6";
const DEVICE_KEY: &str = "Jsm0lyGpjaVYVP2g3FnmnmG9dI/9qU24wNoykUmermc=";

fn station(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dps-station"))
        .args(args)
        .current_dir(dir)
        .env_remove("DPS_GROUP_KEY")
        .output()
        .unwrap()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "dps-station failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn failed(out: &Output) -> String {
    assert!(!out.status.success(), "expected a failure: {out:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn ca_create_then_issue_from_an_openssl_csr() {
    let tmp = temp_dir();
    let dir = tmp.path();
    let out = ok(&station(
        dir,
        &[
            "ca",
            "create",
            "--out-dir",
            "ca",
            "--intermediate",
            "--country",
            "US",
        ],
    ));
    assert!(out.contains("Software CA for development"), "{out}");
    assert!(out.contains("NOT in an HSM"), "{out}");
    assert_eq!(mode(&dir.join("ca/root.key.pem")), 0o600);
    assert_eq!(mode(&dir.join("ca/intermediate.key.pem")), 0o600);
    let text = openssl_ok(
        dir,
        &["x509", "-in", "ca/intermediate.cert.pem", "-noout", "-text"],
    );
    assert!(text.contains("CA:TRUE, pathlen:0"), "{text}");
    // A second create into the same directory never overwrites the keys.
    let err = failed(&station(dir, &["ca", "create", "--out-dir", "ca"]));
    assert!(err.contains("already holds a CA"), "{err}");

    // The registration ID from the CSR's CN, lowercased.
    openssl_csr(dir, "dev", P256, "/CN=Python-device-01");
    let out = station(
        dir,
        &[
            "cert", "issue", "--csr", "dev.csr", "--ca", "ca", "--out", "leaf.pem",
        ],
    );
    ok(&out);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("NOT in an HSM"), "{err}");
    let verified = openssl_ok(
        dir,
        &[
            "verify",
            "-x509_strict",
            "-purpose",
            "sslclient",
            "-CAfile",
            "ca/root.cert.pem",
            "-untrusted",
            "ca/intermediate.cert.pem",
            "leaf.pem",
        ],
    );
    assert!(verified.contains("leaf.pem: OK"), "{verified}");
    let subject = openssl_ok(dir, &["x509", "-in", "leaf.pem", "-noout", "-subject"]);
    assert_eq!(subject.trim(), "subject=CN = python-device-01");

    // --registration-id overrides the CN; --json reports the DPS info; --with-chain appends the intermediate.
    let out = ok(&station(
        dir,
        &[
            "cert",
            "issue",
            "--csr",
            "dev.csr",
            "--ca",
            "ca",
            "--registration-id",
            "line1-000042",
            "--validity-days",
            "30",
            "--out",
            "leaf2.pem",
            "--with-chain",
            "--json",
        ],
    ));
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["registrationId"], "line1-000042");
    assert_eq!(report["info"]["subjectName"], "CN=line1-000042");
    assert!(report["notice"].as_str().unwrap().contains("NOT in an HSM"));
    let chain = std::fs::read_to_string(dir.join("leaf2.pem")).unwrap();
    assert_eq!(chain.matches("BEGIN CERTIFICATE").count(), 2);
    let fp = openssl_ok(
        dir,
        &[
            "x509",
            "-in",
            "leaf2.pem",
            "-noout",
            "-fingerprint",
            "-sha1",
        ],
    );
    assert!(
        fp.replace(':', "")
            .contains(report["info"]["sha1Thumbprint"].as_str().unwrap())
    );
}

#[test]
fn cert_issue_refuses_bad_csrs_and_ids_with_clear_messages() {
    let tmp = temp_dir();
    let dir = tmp.path();
    ok(&station(dir, &["ca", "create", "--out-dir", "ca"]));
    openssl_csr(dir, "rsa", &["-newkey", "rsa:2048"], "/CN=dev-1");
    let err = failed(&station(
        dir,
        &["cert", "issue", "--csr", "rsa.csr", "--ca", "ca"],
    ));
    assert!(
        err.contains("rsa.csr") && err.contains("RSA 2048-bit"),
        "{err}"
    );

    openssl_csr(dir, "bad", P256, "/CN=bad id");
    let err = failed(&station(
        dir,
        &["cert", "issue", "--csr", "bad.csr", "--ca", "ca"],
    ));
    assert!(
        err.contains("' ' at position 4") && err.contains("--registration-id"),
        "{err}"
    );
    // The override makes the same CSR usable.
    ok(&station(
        dir,
        &[
            "cert",
            "issue",
            "--csr",
            "bad.csr",
            "--ca",
            "ca",
            "--registration-id",
            "dev-2",
        ],
    ));

    let err = failed(&station(
        dir,
        &[
            "cert",
            "issue",
            "--csr",
            "bad.csr",
            "--ca",
            "nowhere",
            "--registration-id",
            "dev-3",
        ],
    ));
    assert!(err.contains("ca create"), "{err}");
    let err = failed(&station(
        dir,
        &["cert", "issue", "--csr", "missing.csr", "--ca", "ca"],
    ));
    assert!(err.contains("missing.csr"), "{err}");
}

#[test]
fn self_signed_matches_the_quickstart_shape() {
    let tmp = temp_dir();
    let dir = tmp.path();
    let out = ok(&station(
        dir,
        &[
            "cert",
            "self-signed",
            "--registration-id",
            "Python-device-01",
            "--out-dir",
            "out",
            "--json",
        ],
    ));
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["registrationId"], "python-device-01");
    let cert = "out/python-device-01.cert.pem";
    let key = "out/python-device-01.key.pem";
    assert_eq!(mode(&dir.join(key)), 0o600);
    let verified = openssl_ok(dir, &["verify", "-CAfile", cert, cert]);
    assert!(verified.contains("OK"), "{verified}");
    let text = openssl_ok(dir, &["x509", "-in", cert, "-noout", "-text"]);
    assert!(text.contains("Subject: CN = python-device-01"), "{text}");
    assert!(text.contains("TLS Web Client Authentication"), "{text}");
    assert!(text.contains("NIST CURVE: P-256"), "{text}");
    let cert_pub = openssl_ok(dir, &["x509", "-in", cert, "-noout", "-pubkey"]);
    let key_pub = openssl_ok(dir, &["pkey", "-in", key, "-pubout"]);
    assert_eq!(cert_pub, key_pub);
    // Never overwrites.
    failed(&station(
        dir,
        &[
            "cert",
            "self-signed",
            "--registration-id",
            "python-device-01",
            "--out-dir",
            "out",
        ],
    ));
}

#[test]
fn key_derive_matches_az_compute_device_key_from_every_source() {
    let tmp = temp_dir();
    let dir = tmp.path();
    let from_flag = ok(&station(
        dir,
        &[
            "key",
            "derive",
            "--group-key",
            GROUP_KEY,
            "--registration-id",
            DEVICE_ID,
        ],
    ));
    assert_eq!(from_flag.trim(), DEVICE_KEY);
    let from_env = Command::new(env!("CARGO_BIN_EXE_dps-station"))
        .args(["key", "derive", "--registration-id", DEVICE_ID])
        .env("DPS_GROUP_KEY", GROUP_KEY)
        .output()
        .unwrap();
    assert_eq!(ok(&from_env).trim(), DEVICE_KEY);
    write(dir, "group.key", format!("{GROUP_KEY}\n"));
    let from_file = ok(&station(
        dir,
        &[
            "key",
            "derive",
            "--group-key-file",
            "group.key",
            "--registration-id",
            DEVICE_ID,
            "--json",
        ],
    ));
    let report: serde_json::Value = serde_json::from_str(&from_file).unwrap();
    assert_eq!(report["derivedKey"], DEVICE_KEY);
    assert!(
        report["fingerprint"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );

    let err = failed(&station(
        dir,
        &["key", "derive", "--registration-id", DEVICE_ID],
    ));
    assert!(err.contains("DPS_GROUP_KEY"), "{err}");
    let err = failed(&station(
        dir,
        &[
            "key",
            "derive",
            "--group-key",
            "secret*notbase64",
            "--registration-id",
            DEVICE_ID,
        ],
    ));
    assert!(
        err.contains("group key") && !err.contains("secret*"),
        "{err}"
    );
    let err = failed(&station(
        dir,
        &[
            "key",
            "derive",
            "--group-key",
            GROUP_KEY,
            "--registration-id",
            "dev#1",
        ],
    ));
    assert!(err.contains("'#' at position 4"), "{err}");
}

#[test]
fn key_generate_and_cert_info() {
    let tmp = temp_dir();
    let dir = tmp.path();
    let key = ok(&station(dir, &["key", "generate"]));
    assert_eq!(key.trim().len(), 44);
    let report: serde_json::Value = serde_json::from_str(&ok(&station(
        dir,
        &["key", "generate", "--bytes", "64", "--json"],
    )))
    .unwrap();
    assert_eq!(report["key"].as_str().unwrap().len(), 88);
    let err = failed(&station(dir, &["key", "generate", "--bytes", "48"]));
    assert!(err.contains("32 or 64"), "{err}");

    ok(&station(
        dir,
        &["cert", "self-signed", "--registration-id", "dev-9"],
    ));
    let info: serde_json::Value = serde_json::from_str(&ok(&station(
        dir,
        &["cert", "info", "--json", "dev-9.cert.pem"],
    )))
    .unwrap();
    assert_eq!(info["subjectName"], "CN=dev-9");
    assert_eq!(info["version"], 3);
    let fp = openssl_ok(
        dir,
        &[
            "x509",
            "-in",
            "dev-9.cert.pem",
            "-noout",
            "-fingerprint",
            "-sha256",
        ],
    );
    assert!(
        fp.replace(':', "")
            .contains(info["sha256Thumbprint"].as_str().unwrap())
    );
    let text = ok(&station(dir, &["cert", "info", "dev-9.cert.pem"]));
    assert!(text.contains("subjectName       CN=dev-9"), "{text}");
    let err = failed(&station(dir, &["cert", "info", "dev-9.key.pem"]));
    assert!(
        err.contains("dev-9.key.pem") && err.contains("\"PRIVATE KEY\", not \"CERTIFICATE\""),
        "{err}"
    );
}

#[test]
fn every_identity_command_explains_itself() {
    let tmp = temp_dir();
    for args in [
        vec!["ca", "create", "--help"],
        vec!["ca", "verify", "--help"],
        vec!["cert", "issue", "--help"],
        vec!["cert", "self-signed", "--help"],
        vec!["cert", "info", "--help"],
        vec!["key", "derive", "--help"],
        vec!["key", "generate", "--help"],
    ] {
        let mut full = args.clone();
        full.pop();
        let help = ok(&station(tmp.path(), &args));
        assert!(help.contains("Usage: dps-station"), "{args:?}: {help}");
        assert!(
            help.lines().next().unwrap().len() > 20,
            "{args:?} has no description: {help}"
        );
    }
    let top = ok(&station(tmp.path(), &["--help"]));
    for name in ["ca", "cert", "key"] {
        assert!(top.contains(&format!("  {name} ")), "{top}");
    }
}

#[test]
fn intermediate_added_to_an_existing_root_and_verification_certificate() {
    let tmp = temp_dir();
    let dir = tmp.path();
    ok(&station(
        dir,
        &[
            "ca",
            "create",
            "--out-dir",
            "ca",
            "--root-name",
            "Factory Root",
        ],
    ));
    let out = ok(&station(
        dir,
        &[
            "ca",
            "create",
            "--out-dir",
            "ca",
            "--intermediate",
            "--json",
        ],
    ));
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["softwareCa"], true);
    assert!(report["notice"].as_str().unwrap().contains("NOT in an HSM"));
    assert_eq!(
        report["intermediate"]["info"]["issuerName"],
        "CN=Factory Root"
    );
    assert!(
        report["intermediate"]["keyName"]
            .as_str()
            .unwrap()
            .starts_with("software:")
    );
    let verified = openssl_ok(
        dir,
        &[
            "verify",
            "-CAfile",
            "ca/root.cert.pem",
            "ca/intermediate.cert.pem",
        ],
    );
    assert!(verified.contains("OK"), "{verified}");
    // A third time: the intermediate exists, nothing is overwritten.
    let err = failed(&station(
        dir,
        &["ca", "create", "--out-dir", "ca", "--intermediate"],
    ));
    assert!(err.contains("already holds an intermediate"), "{err}");

    // Proof of possession for the root, as DPS asks after uploading root.cert.pem.
    let code = "0F2A3B4C5D6E7F8091A2B3C4D5E6F708192A3B4C5D6E7F80";
    let out = station(
        dir,
        &[
            "ca",
            "verify",
            "--ca",
            "ca",
            "--code",
            code,
            "--out",
            "verify.pem",
        ],
    );
    ok(&out);
    assert!(String::from_utf8_lossy(&out.stderr).contains("NOT in an HSM"));
    let verified = openssl_ok(
        dir,
        &["verify", "-CAfile", "ca/root.cert.pem", "verify.pem"],
    );
    assert!(verified.contains("OK"), "{verified}");
    let subject = openssl_ok(dir, &["x509", "-in", "verify.pem", "-noout", "-subject"]);
    assert_eq!(subject.trim(), format!("subject=CN = {code}"));
    // And for the intermediate.
    ok(&station(
        dir,
        &[
            "ca",
            "verify",
            "--ca",
            "ca",
            "--intermediate",
            "--code",
            "ABC123",
            "--out",
            "v2.pem",
        ],
    ));
    let verified = openssl_ok(
        dir,
        &[
            "verify",
            "-CAfile",
            "ca/root.cert.pem",
            "-untrusted",
            "ca/intermediate.cert.pem",
            "v2.pem",
        ],
    );
    assert!(verified.contains("OK"), "{verified}");
}
