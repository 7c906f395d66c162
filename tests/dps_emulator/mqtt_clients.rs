//! The official device SDKs, unchanged, against the emulator's MQTT listener: Python
//! `azure-iot-device` 2.14 registers with DPS over MQTT (an X.509 device certificate made by the
//! station, individual enrollment, as in the seed quickstart; and a group-derived symmetric key),
//! connects to the local hub it was assigned, reads its twin (the enrollment's initialTwin),
//! patches reported properties and sends ten messages. The SDK's port is fixed at 8883, so all of
//! it runs in this one test, one device after the other.

use std::path::{Path, PathBuf};
use std::process::Command;

use dps_station::emulator::EmulatorConfig;
use dps_station::identity::profile::Validity;
use dps_station::identity::registration_id::RegistrationId;
use dps_station::identity::self_signed::self_signed_device;
use dps_station::identity::symmetric::derive_device_key;
use dps_station::secret::SecretString;
use serde_json::{Value, json};

use crate::common::{V, start};

fn clients_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients")
}

fn python() -> PathBuf {
    let python = clients_dir().join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run tests/clients/setup.sh (scripts/test.sh does) to install the official SDKs",
        python.display()
    );
    python
}

/// Runs the device sample with these variables; returns its JSON lines, checking it exited 0.
fn run_device(envs: &[(&str, &str)], ca_file: &Path) -> Vec<Value> {
    let mut cmd = Command::new(python());
    cmd.arg(clients_dir().join("python_device.py"))
        .env("SSL_CERT_FILE", ca_file)
        .env("DPS_HOST", "localhost");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("cannot run the Python device sample");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the Python device sample failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn step<'a>(lines: &'a [Value], name: &str) -> &'a Value {
    lines
        .iter()
        .find(|l| l["step"] == name)
        .unwrap_or_else(|| panic!("the sample printed no step '{name}': {lines:?}"))
}

#[test]
fn the_python_device_sdk_registers_over_mqtt_and_sends_telemetry_to_the_local_hub() {
    let dps = start(EmulatorConfig {
        mqtt: Some("127.0.0.1:8883".parse().unwrap()),
        ..EmulatorConfig::loopback()
    });
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, dps.emu.ca_certificate_pem().unwrap()).unwrap();
    let scope = dps.emu.id_scope().to_owned();

    // X.509, individual enrollment, a certificate the station makes.
    let id = RegistrationId::parse("python-x509-01").unwrap();
    let device = self_signed_device(&id, &Validity::days_from_now(30).unwrap()).unwrap();
    let cert_file = dir.path().join("device.pem");
    let key_file = dir.path().join("device.key");
    std::fs::write(&cert_file, device.certificate.pem()).unwrap();
    std::fs::write(&key_file, device.private_key_pem.expose()).unwrap();
    let enrollment = json!({
        "registrationId": id.as_str(),
        "attestation": { "type": "x509", "x509": { "clientCertificates": {
            "primary": { "certificate": device.certificate.pem() } } } },
        "initialTwin": { "tags": { "line": "A" }, "properties": { "desired": { "telemetryInterval": 30 } } },
    });
    assert_eq!(
        dps.put(&format!("/enrollments/{id}"), &enrollment).status,
        200
    );
    let lines = run_device(
        &[
            ("ID_SCOPE", &scope),
            ("REGISTRATION_ID", id.as_str()),
            ("X509_CERT_FILE", cert_file.to_str().unwrap()),
            ("X509_KEY_FILE", key_file.to_str().unwrap()),
        ],
        &ca_file,
    );
    let register = step(&lines, "register");
    assert_eq!(register["status"], "assigned");
    assert_eq!(register["assigned_hub"], "localhost");
    assert_eq!(register["device_id"], id.as_str());
    assert_eq!(step(&lines, "connect")["connected"], true);
    assert_eq!(step(&lines, "twin")["desired"]["telemetryInterval"], 30);
    assert_eq!(
        step(&lines, "patch")["reported"]["firmware"]["version"],
        "1.2.3"
    );
    let messages = dps.emu.telemetry(Some(id.as_str()));
    assert_eq!(messages.len(), 10, "ten messages kept by the hub");
    for (i, m) in messages.iter().enumerate() {
        assert_eq!(m.body, format!("test wind speed {}", i + 1).into_bytes());
        assert_eq!(m.properties["count"], (i + 1).to_string());
        assert_eq!(m.system_properties["cid"], "correlation-1234");
        assert!(!m.system_properties["mid"].is_empty());
    }

    // Symmetric key derived from a group key, the way a symmetric-group batch provisions.
    let group =
        json!({ "enrollmentGroupId": "python-sym", "attestation": { "type": "symmetricKey" } });
    assert_eq!(dps.put("/enrollmentGroups/python-sym", &group).status, 200);
    let keys = dps.call(
        "POST",
        &format!("/enrollmentGroups/python-sym/attestationmechanism?{V}"),
        None,
        &[],
    );
    let group_key = SecretString::new(
        keys.body["symmetricKey"]["primaryKey"]
            .as_str()
            .unwrap()
            .to_owned(),
    );
    let device_key = derive_device_key(&group_key, "python-sym-07").unwrap();
    let lines = run_device(
        &[
            ("ID_SCOPE", &scope),
            ("REGISTRATION_ID", "python-sym-07"),
            ("SYMMETRIC_KEY", device_key.expose()),
        ],
        &ca_file,
    );
    assert_eq!(step(&lines, "register")["status"], "assigned");
    assert_eq!(step(&lines, "connect")["connected"], true);
    assert_eq!(dps.emu.telemetry(Some("python-sym-07")).len(), 10);
    let devices = dps.emu.hub_devices();
    let sym = devices
        .iter()
        .find(|d| d["deviceId"] == "python-sym-07")
        .expect("the hub identity DPS created");
    assert_eq!(sym["enrollmentGroupId"], "python-sym");
    assert_eq!(sym["authentication"], "sas");
    assert_eq!(sym["twin"]["properties"]["reported"]["sample"], "python");
}
