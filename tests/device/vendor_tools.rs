//! The vendors' own host tools accept the simulators unchanged: Nordic's `nrfcredstore` (PyPI,
//! installed by `tests/clients/setup.sh`) reads the simulated modem's IMEI, generates a key and
//! CSR, writes, lists and deletes credentials, and what it sees is what the modem holds.

use std::path::PathBuf;
use std::process::Command;

use dps_station::device::simulator::{ModemFaults, Nrf91Sim, SmpFaults, SmpSim};
use sha2::{Digest, Sha256};

fn clients() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/clients")
}

/// Runs nrfcredstore (through the wrapper that lists the pty as a serial port) on `port`.
fn nrfcredstore(port: &str, args: &[&str]) -> (bool, String) {
    let python = clients().join(".venv-devices/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run tests/clients/setup.sh (scripts/test.sh does) to install nrfcredstore",
        python.display()
    );
    let out = Command::new(python)
        .arg(clients().join("nrfcredstore_pty.py"))
        .arg(port)
        .args(["--timeout", "2"])
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn nrfcredstore_reads_the_imei_generates_writes_lists_and_deletes() {
    let sim = Nrf91Sim::on_pty(3, ModemFaults::default()).unwrap();
    let port = sim.path().to_string();
    let imei = sim.with_modem(|m| m.imei().to_string());
    let dir = tempfile::tempdir().unwrap();

    let (ok, out) = nrfcredstore(&port, &["imei"]);
    assert!(ok, "{out}");
    assert!(out.contains(&format!("IMEI: {imei}")), "{out}");

    let csr_path = dir.path().join("csr.der");
    let (ok, out) = nrfcredstore(
        &port,
        &[
            "generate",
            "77",
            csr_path.to_str().unwrap(),
            "--attributes",
            "CN=dev-77",
        ],
    );
    assert!(ok, "{out}");
    let csr = std::fs::read(&csr_path).unwrap();
    let verified = dps_station::identity::csr::verify_csr(&csr).unwrap();
    assert!(!verified.public_key_sec1.is_empty());
    assert!(
        sim.with_modem(|m| m.credential(77, 2).is_some()),
        "the key stays in the modem"
    );

    let cert = super::common::issue_chain(csr);
    let cert_path = dir.path().join("cert.pem");
    std::fs::write(&cert_path, &cert).unwrap();
    let (ok, out) = nrfcredstore(
        &port,
        &["write", "77", "CLIENT_CERT", cert_path.to_str().unwrap()],
    );
    assert!(ok, "{out}");
    assert_eq!(
        sim.with_modem(|m| m.credential(77, 1).map(str::to_string))
            .as_deref(),
        Some(cert.trim_end())
    );

    let (ok, out) = nrfcredstore(&port, &["list", "--tag", "77"]);
    assert!(ok, "{out}");
    // The tool shows the digest of the text as the modem stores it (its own expectation).
    let sha = hex::encode_upper(Sha256::digest(cert.trim_end().as_bytes()));
    let row = out
        .lines()
        .find(|l| l.contains("CLIENT_CERT"))
        .unwrap_or("");
    assert!(row.starts_with("77") && row.contains(&sha), "{out}");
    assert!(out.contains("CLIENT_KEY"), "{out}");

    let (ok, out) = nrfcredstore(&port, &["delete", "77", "CLIENT_CERT"]);
    assert!(ok, "{out}");
    assert!(sim.with_modem(|m| m.credential(77, 1).is_none()));
    let (ok, out) = nrfcredstore(&port, &["list", "--tag", "77"]);
    assert!(
        ok && !out.contains("CLIENT_CERT") && out.contains("CLIENT_KEY"),
        "{out}"
    );
}

/// Runs smpmgr on `port`.
fn smpmgr(port: &str, args: &[&str]) -> (bool, String) {
    let smpmgr = clients().join(".venv-devices/bin/smpmgr");
    assert!(
        smpmgr.exists(),
        "{} is missing: run tests/clients/setup.sh (scripts/test.sh does) to install smpmgr",
        smpmgr.display()
    );
    let out = Command::new(smpmgr)
        .args(["--port", port, "--timeout", "3"])
        .args(args)
        .env("COLUMNS", "200")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn smpmgr_and_smpclient_echo_upload_hash_download_and_use_settings() {
    let sim = SmpSim::on_pty(4, SmpFaults::default()).unwrap();
    let port = sim.path().to_string();
    let dir = tempfile::tempdir().unwrap();

    let (ok, out) = smpmgr(&port, &["os", "echo", "hello from the line"]);
    assert!(ok && out.contains("hello from the line"), "{out}");

    // A file bigger than one SMP buffer and one download chunk.
    let content: Vec<u8> = (0..3000u32).map(|i| (i * 7 % 251) as u8).collect();
    let local = dir.path().join("cert.bin");
    std::fs::write(&local, &content).unwrap();
    let (ok, out) = smpmgr(
        &port,
        &[
            "file",
            "upload",
            local.to_str().unwrap(),
            "/lfs/dps/device.crt",
        ],
    );
    assert!(ok, "{out}");
    assert_eq!(
        sim.with_device(|d| d.file("/lfs/dps/device.crt").map(<[u8]>::to_vec)),
        Some(content.clone())
    );
    let (ok, out) = smpmgr(&port, &["file", "get-hash", "/lfs/dps/device.crt"]);
    assert!(ok, "{out}");
    // Without a type, Zephyr answers its default, CRC32 (IEEE).
    let crc = content.iter().fold(0xFFFF_FFFFu32, |mut crc, &b| {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
        crc
    }) ^ 0xFFFF_FFFF;
    assert!(
        out.contains("crc32") && out.contains(&format!("output={crc}")) && out.contains("len=3000"),
        "{out}"
    );
    let back = dir.path().join("back.bin");
    let (ok, out) = smpmgr(
        &port,
        &[
            "file",
            "download",
            "/lfs/dps/device.crt",
            back.to_str().unwrap(),
        ],
    );
    assert!(ok, "{out}");
    assert_eq!(std::fs::read(&back).unwrap(), content);

    // Settings through smpclient's own requests (smpmgr has no settings command).
    let python = clients().join(".venv-devices/bin/python");
    let out = Command::new(python)
        .arg(clients().join("smp_settings.py"))
        .args([&port, "dps/scope", "0ne00000A0A"])
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success()
            && text.contains("read back: 0ne00000A0A")
            && text.contains("missing: error"),
        "{text}"
    );
    assert_eq!(
        sim.with_device(|d| d.saved_setting("dps/scope").map(<[u8]>::to_vec)),
        Some(b"0ne00000A0A".to_vec()),
        "saved"
    );
}
