//! The `esp_secure_cert` image against Espressif's own `esp-secure-cert-tool` (PyPI, pinned in
//! `tests/clients/devices-requirements.txt`): an image `device esp32 secure-cert-image` builds is
//! read back by their parser with the same contents, their generator's image from the same inputs
//! is byte for byte ours (then erased flash), and `parse-secure-cert` reads theirs.

use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_dps-station");

fn tool() -> (PathBuf, PathBuf) {
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/clients/.venv-devices/bin");
    let python = venv.join("python");
    assert!(
        python.exists(),
        "{} is missing: run tests/clients/setup.sh (scripts/test.sh does) to install esp-secure-cert-tool",
        python.display()
    );
    (python, venv.join("configure_esp_secure_cert.py"))
}

/// A CA, a device certificate it signs and the device's P-256 key (PKCS#8), as PEM files in `dir`.
fn pem_files(dir: &Path) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(vec![]).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "esp32 test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut dev_params = rcgen::CertificateParams::new(vec![]).unwrap();
    dev_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "esp32-dev-16");
    let dev = dev_params
        .signed_by(&key, &rcgen::Issuer::new(ca_params, ca_key))
        .unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.join("dev.pem"), dev.pem()).unwrap();
    std::fs::write(dir.join("dev.key"), key.serialize_pem()).unwrap();
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd:?}\n{text}");
    text
}

fn der_of(pem: &[u8]) -> Vec<u8> {
    x509_parser::pem::parse_x509_pem(pem).unwrap().1.contents
}

#[test]
fn espressifs_tool_reads_our_image_and_builds_the_same_one() {
    let (python, script) = tool();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    pem_files(d);

    let ours = run(Command::new(BIN).current_dir(d).args([
        "device",
        "esp32",
        "secure-cert-image",
        "--ca",
        "ca.pem",
        "--cert",
        "dev.pem",
        "--key",
        "dev.key",
        "--id-scope",
        "0ne00016ABC",
        "--registration-id",
        "esp32-dev-16",
        "--out",
        "ours.bin",
    ]));
    assert!(ours.contains("8192 bytes"), "{ours}");

    // Their parser: same certificates, same key, same user data, every CRC valid.
    run(Command::new(&python)
        .current_dir(d)
        .arg(&script)
        .args(["--parse_bin", "ours.bin"]));
    let parsed = d.join("esp_secure_cert_parsed_data");
    let csv = std::fs::read_to_string(parsed.join("esp_secure_cert_parsed.csv")).unwrap();
    for row in [
        "ESP_SECURE_CERT_DEV_CERT_TLV,0,contents/devcert_1_0.pem,file",
        "ESP_SECURE_CERT_CA_CERT_TLV,0,contents/cacert_0_0.pem,file",
        "ESP_SECURE_CERT_PRIV_KEY_TLV,0,contents/privkey_2_0.pem,file,plaintext,ECDSA",
        "ESP_SECURE_CERT_USER_DATA_1_TLV,0,0ne00016ABC,string",
        "ESP_SECURE_CERT_USER_DATA_2_TLV,0,global.azure-devices-provisioning.net,string",
        "ESP_SECURE_CERT_USER_DATA_3_TLV,0,esp32-dev-16,string",
    ] {
        assert!(csv.contains(row), "missing {row} in\n{csv}");
    }
    let contents = parsed.join("contents");
    for (theirs, mine) in [("devcert_1_0.pem", "dev.pem"), ("cacert_0_0.pem", "ca.pem")] {
        assert_eq!(
            der_of(&std::fs::read(contents.join(theirs)).unwrap()),
            der_of(&std::fs::read(d.join(mine)).unwrap()),
            "{theirs}"
        );
    }
    let their_key = std::fs::read_to_string(contents.join("privkey_2_0.pem")).unwrap();
    let mine = std::fs::read_to_string(d.join("dev.key")).unwrap();
    use p256::pkcs8::DecodePrivateKey as _;
    assert_eq!(
        p256::SecretKey::from_pkcs8_pem(&their_key).unwrap(),
        p256::SecretKey::from_pkcs8_pem(&mine).unwrap()
    );
    let raw = std::fs::read_to_string(parsed.join("tlv_entries_raw.txt")).unwrap();
    assert_eq!(raw.matches("(✓ VALID)").count(), 7, "{raw}");

    // Their generator from the same inputs: our image is theirs, then erased flash.
    std::fs::write(
        d.join("in.csv"),
        "tlv_type,tlv_subtype,data_value,data_type,priv_key_type,algorithm,key_size,efuse_id,efuse_key\n\
         ESP_SECURE_CERT_DEV_CERT_TLV,0,dev.pem,file,,,,,\n\
         ESP_SECURE_CERT_CA_CERT_TLV,0,ca.pem,file,,,,,\n\
         ESP_SECURE_CERT_PRIV_KEY_TLV,0,dev.key,file,plaintext,ECDSA,256,,\n\
         ESP_SECURE_CERT_USER_DATA_1_TLV,0,0ne00016ABC,string,,,,,\n\
         ESP_SECURE_CERT_USER_DATA_2_TLV,0,global.azure-devices-provisioning.net,string,,,,,\n\
         ESP_SECURE_CERT_USER_DATA_3_TLV,0,esp32-dev-16,string,,,,,\n",
    )
    .unwrap();
    run(Command::new(&python).current_dir(d).arg(&script).args([
        "--esp_secure_cert_csv",
        "in.csv",
        "--target_chip",
        "esp32c3",
        "--secure_cert_type",
        "cust_flash_tlv",
        "--skip_flash",
    ]));
    let theirs = std::fs::read(d.join("esp_secure_cert_data/esp_secure_cert.bin")).unwrap();
    let ours = std::fs::read(d.join("ours.bin")).unwrap();
    assert!(theirs.len() > 1000, "{} bytes", theirs.len());
    assert_eq!(&ours[..theirs.len()], &theirs[..]);
    assert!(ours[theirs.len()..].iter().all(|&b| b == 0xFF));

    // And ours reads theirs, the key named but never shown.
    let shown = run(Command::new(BIN).current_dir(d).args([
        "device",
        "esp32",
        "parse-secure-cert",
        "esp_secure_cert_data/esp_secure_cert.bin",
    ]));
    assert!(shown.contains("private key: P-256, present"), "{shown}");
    assert!(shown.contains("registration ID: esp32-dev-16"), "{shown}");
    assert!(shown.contains("subject \"CN=esp32-dev-16\""), "{shown}");
    assert!(!shown.contains("PRIVATE KEY"), "{shown}");
}

#[test]
fn a_corrupt_image_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    pem_files(d);
    let mut args: Vec<&str> = vec!["device", "esp32", "secure-cert-image", "--ca", "ca.pem"];
    args.extend([
        "--cert",
        "dev.pem",
        "--key",
        "dev.key",
        "--id-scope",
        "0ne00016ABC",
        "--registration-id",
        "esp32-dev-16",
        "--out",
        "image.bin",
    ]);
    run(Command::new(BIN).current_dir(d).args(&args));
    let mut bytes = std::fs::read(d.join("image.bin")).unwrap();
    bytes[100] ^= 0x40;
    std::fs::write(d.join("bad.bin"), &bytes).unwrap();
    let out = Command::new(BIN)
        .current_dir(d)
        .args(["device", "esp32", "parse-secure-cert", "bad.bin"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.bin") && err.contains("CRC32"), "{err}");

    // A key that is not a key: refused, naming the flag's file kind.
    let out = Command::new(BIN)
        .current_dir(d)
        .args(
            args.iter()
                .map(|a| if *a == "dev.key" { "ca.pem" } else { a }),
        )
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("private key"));
}

#[test]
fn espressifs_tool_reads_a_symmetric_image_with_the_key_in_user_data_4() {
    use dps_station::device::DeviceConfig;
    use dps_station::device::esp32::symmetric::symmetric_image;
    let (python, script) = tool();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let config = DeviceConfig {
        registration_id: "esp32-sym-1".into(),
        id_scope: "0ne00016ABC".into(),
        global_endpoint: "global.azure-devices-provisioning.net".into(),
        extra: Default::default(),
    };
    let key: Vec<u8> = (100u8..132).collect();
    let image = symmetric_image(&key, &config)
        .unwrap()
        .to_bytes(0x2000)
        .unwrap();
    std::fs::write(d.join("sym.bin"), &image).unwrap();
    run(Command::new(&python)
        .current_dir(d)
        .arg(&script)
        .args(["--parse_bin", "sym.bin"]));
    let csv =
        std::fs::read_to_string(d.join("esp_secure_cert_parsed_data/esp_secure_cert_parsed.csv"))
            .unwrap();
    use base64::Engine as _;
    let b64 = base64::prelude::BASE64_STANDARD.encode(&key);
    for row in [
        "ESP_SECURE_CERT_USER_DATA_1_TLV,0,0ne00016ABC,string".to_string(),
        "ESP_SECURE_CERT_USER_DATA_3_TLV,0,esp32-sym-1,string".to_string(),
        format!("ESP_SECURE_CERT_USER_DATA_4_TLV,0,{b64},string"),
    ] {
        assert!(csv.contains(&row), "missing {row} in\n{csv}");
    }

    // Ours names the key's presence and length, never the key.
    let shown = run(Command::new(BIN).current_dir(d).args([
        "device",
        "esp32",
        "parse-secure-cert",
        "sym.bin",
    ]));
    assert!(
        shown.contains("symmetric key: present, 32 bytes (not shown)"),
        "{shown}"
    );
    assert!(shown.contains("private key: absent"), "{shown}");
    assert!(!shown.contains(&b64), "{shown}");
}
