//! The official device SDKs, unchanged, against the emulator's MQTT listener: Python
//! `azure-iot-device` 2.14 and Node's `azure-iot-provisioning-device-mqtt` +
//! `azure-iot-device-mqtt` register with DPS over MQTT (an X.509 device certificate made by the
//! station, individual enrollment, as in the seed quickstart; and a group-derived symmetric key),
//! connect to the local hub they were assigned, read their twin (the enrollment's initialTwin),
//! patch reported properties and send ten messages. The hub is `localhost`, whose MQTT port is
//! 8883 for both SDKs (Python cannot change it), so these tests take turns on a lock.

use std::path::{Path, PathBuf};
use std::process::Command;

use dps_station::emulator::EmulatorConfig;
use dps_station::identity::profile::Validity;
use dps_station::identity::registration_id::RegistrationId;
use dps_station::identity::self_signed::self_signed_device;
use dps_station::identity::symmetric::derive_device_key;
use dps_station::secret::SecretString;
use serde_json::{Value, json};

use crate::clients::{clients_dir, require, run, step};
use crate::common::{V, start};

/// The tests that listen on 8883 run one at a time.
static PORT_8883: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn python() -> PathBuf {
    let python = clients_dir().join(".venv/bin/python");
    require(&python);
    python
}

/// Which SDK runs the device sample.
#[derive(Clone, Copy, Debug)]
enum Sdk {
    Python,
    Node,
}

/// Runs the device sample with these variables; returns its JSON lines, checking it exited 0.
fn run_device(sdk: Sdk, envs: &[(&str, &str)], ca_file: &Path) -> Vec<Value> {
    let mut cmd = match sdk {
        Sdk::Python => {
            let mut c = Command::new(python());
            c.arg(clients_dir().join("python_device.py"))
                .env("SSL_CERT_FILE", ca_file);
            c
        }
        Sdk::Node => {
            require(&clients_dir().join("node_modules/azure-iot-provisioning-device-mqtt"));
            let mut c = Command::new("node");
            c.arg(clients_dir().join("node_device.js"))
                .env("NODE_EXTRA_CA_CERTS", ca_file);
            c
        }
    };
    cmd.env("DPS_HOST", "localhost");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    run(cmd, &format!("{sdk:?} device"))
}

#[test]
fn the_python_device_sdk_registers_over_mqtt_and_sends_telemetry_to_the_local_hub() {
    sdk_registers_and_sends_telemetry(Sdk::Python, "python", "test wind speed");
}

#[test]
fn the_node_device_sdk_registers_over_mqtt_and_sends_telemetry_to_the_local_hub() {
    sdk_registers_and_sends_telemetry(Sdk::Node, "node", "node wind speed");
}

fn sdk_registers_and_sends_telemetry(sdk: Sdk, name: &str, body_prefix: &str) {
    let _turn = PORT_8883.lock().unwrap_or_else(|p| p.into_inner());
    let dps = start(EmulatorConfig {
        mqtt: Some("127.0.0.1:8883".parse().unwrap()),
        ..EmulatorConfig::loopback()
    });
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, dps.emu.ca_certificate_pem().unwrap()).unwrap();
    let scope = dps.emu.id_scope().to_owned();

    // X.509, individual enrollment, a certificate the station makes.
    let id = RegistrationId::parse(&format!("{name}-x509-01")).unwrap();
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
        sdk,
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
    assert_eq!(step(&lines, "telemetry")["sent"], 10);
    let messages = dps.emu.telemetry(Some(id.as_str()));
    assert_eq!(messages.len(), 10, "ten messages kept by the hub");
    for (i, m) in messages.iter().enumerate() {
        assert_eq!(m.body, format!("{body_prefix} {}", i + 1).into_bytes());
        assert_eq!(m.properties["count"], (i + 1).to_string());
        assert!(!m.system_properties["mid"].is_empty());
    }
    let devices = dps.emu.hub_devices();
    let x509 = devices
        .iter()
        .find(|d| d["deviceId"] == id.as_str())
        .expect("the hub identity DPS created");
    assert_eq!(x509["authentication"], "selfSigned");
    assert_eq!(x509["twin"]["properties"]["reported"]["sample"], name);

    // Symmetric key derived from a group key, the way a symmetric-group batch provisions.
    let group_id = format!("{name}-sym");
    let group = json!({ "enrollmentGroupId": group_id, "attestation": { "type": "symmetricKey" } });
    assert_eq!(
        dps.put(&format!("/enrollmentGroups/{group_id}"), &group)
            .status,
        200
    );
    let keys = dps.call(
        "POST",
        &format!("/enrollmentGroups/{group_id}/attestationmechanism?{V}"),
        None,
        &[],
    );
    let group_key = SecretString::new(keys.body["symmetricKey"]["primaryKey"].as_str().unwrap());
    let sym_id = format!("{name}-sym-07");
    let device_key = derive_device_key(&group_key, &sym_id).unwrap();
    let lines = run_device(
        sdk,
        &[
            ("ID_SCOPE", &scope),
            ("REGISTRATION_ID", &sym_id),
            ("SYMMETRIC_KEY", device_key.expose()),
        ],
        &ca_file,
    );
    assert_eq!(step(&lines, "register")["status"], "assigned");
    assert_eq!(step(&lines, "connect")["connected"], true);
    assert_eq!(dps.emu.telemetry(Some(&sym_id)).len(), 10);
    let devices = dps.emu.hub_devices();
    let sym = devices
        .iter()
        .find(|d| d["deviceId"] == sym_id.as_str())
        .expect("the hub identity DPS created");
    assert_eq!(sym["enrollmentGroupId"], group_id.as_str());
    assert_eq!(sym["authentication"], "sas");
}
