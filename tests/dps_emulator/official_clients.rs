//! The official service SDKs against the emulator: Node `azure-iot-provisioning-service` 1.11.2
//! (plain HTTP over a Unix socket, the only plain-HTTP path it has) and Python
//! `azure-iot-deviceprovisioning` 1.0.0b1 (plain HTTP to 127.0.0.1). `tests/clients/setup.sh`
//! installs both (scripts/test.sh runs it before cargo test).

use std::path::Path;
use std::process::Command;

use dps_station::emulator::EmulatorConfig;
use serde_json::Value;

use crate::clients::{clients_dir, require, run, step};
use crate::common::start;

/// The steps every client script must report, with what they saw.
fn check_common(lines: &[Value], who: &str) {
    assert_eq!(step(lines, "create")["etag_present"], true, "{who}");
    assert_eq!(step(lines, "create_again")["status"], 409, "{who}");
    assert_eq!(step(lines, "get")["registrationId"], "official-1", "{who}");
    assert_eq!(
        step(lines, "get")["has_keys"],
        false,
        "{who}: GET hides keys"
    );
    assert_eq!(
        step(lines, "update")["provisioningStatus"],
        "disabled",
        "{who}"
    );
    assert_eq!(step(lines, "update_stale_etag")["status"], 412, "{who}");
    assert_eq!(step(lines, "attestation")["primary_key_bytes"], 64, "{who}");
    assert_eq!(step(lines, "bulk_create")["isSuccessful"], true, "{who}");
    assert_eq!(step(lines, "bulk_again")["isSuccessful"], false, "{who}");
    assert_eq!(
        step(lines, "bulk_again")["first_error_code"],
        409201,
        "{who}"
    );
    let q = step(lines, "query");
    assert_eq!(
        q["pages"],
        serde_json::json!([4, 4, 4]),
        "{who}: 12 enrollments, pages of 4"
    );
    assert_eq!(q["unique"], 12, "{who}");
    assert_eq!(
        step(lines, "group_create")["enrollmentGroupId"],
        "official-group",
        "{who}"
    );
    assert_eq!(
        step(lines, "group_attestation")["primary_key_bytes"],
        64,
        "{who}"
    );
    assert_eq!(step(lines, "group_query")["count"], 1, "{who}");
    assert_eq!(
        step(lines, "registration_get")["status"],
        "assigned",
        "{who}"
    );
    assert_eq!(step(lines, "registration_query")["count"], 1, "{who}");
    assert_eq!(step(lines, "registration_delete")["ok"], true, "{who}");
    assert_eq!(step(lines, "delete")["ok"], true, "{who}");
    assert_eq!(step(lines, "get_deleted")["status"], 404, "{who}");
    assert_eq!(step(lines, "wrong_key")["status"], 401, "{who}");
}

/// Registers one member of `official-group` through the device API, so the registrations
/// operations have something to show; the scripts wait for a file that says it is done.
fn register_member_when_asked(dps: &crate::common::Dps, dir: &Path) -> std::thread::JoinHandle<()> {
    let flag = dir.join("group-created");
    let done = dir.join("member-registered");
    let endpoint = dps.emu.device_url();
    let scope = dps.emu.id_scope().to_owned();
    let trust = dps.emu.ca_certificate_pem().map(str::to_owned);
    let emu_keys = dps.emu.primary_key().clone();
    let host = dps.emu.host();
    let service = dps.emu.service_url();
    let client = dps.client.clone();
    std::thread::spawn(move || {
        use dps_station::emulator::device_client::{
            DeviceCredential, DeviceRegistration, register,
        };
        use dps_station::emulator::sas;
        for _ in 0..600 {
            if flag.exists() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        if !flag.exists() {
            return;
        }
        let se = crate::common::now() + 600;
        let sig = sas::sign(emu_keys.expose(), &format!("{host}\n{se}")).unwrap();
        let token = format!(
            "SharedAccessSignature sr={host}&sig={}&se={se}&skn=provisioningserviceowner",
            sas::percent_encode(&sig)
        );
        let att: Value = client
            .post(format!("{service}/enrollmentGroups/official-group/attestationmechanism?api-version=2021-10-01"))
            .header("authorization", token)
            .send()
            .unwrap()
            .json()
            .unwrap();
        let group_key = dps_station::secret::SecretString::new(
            att["symmetricKey"]["primaryKey"].as_str().unwrap(),
        );
        let reg = DeviceRegistration {
            endpoint,
            id_scope: scope,
            registration_id: "official-member-1".into(),
            credential: DeviceCredential::SymmetricKey(
                dps_station::identity::symmetric::derive_device_key(
                    &group_key,
                    "official-member-1",
                )
                .unwrap(),
            ),
            trust_pem: trust,
            payload: None,
        };
        register(&reg, std::time::Duration::from_secs(10)).unwrap();
        std::fs::write(done, b"ok").unwrap();
    })
}

#[test]
fn the_node_service_sdk_works_against_the_emulator() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("dps.sock");
    let dps = start(EmulatorConfig {
        unix_socket: Some(socket.clone()),
        ..EmulatorConfig::loopback()
    });
    let clients = clients_dir();
    require(&clients.join("node_modules/azure-iot-provisioning-service/package.json"));
    let helper = register_member_when_asked(&dps, dir.path());
    let mut cmd = Command::new("node");
    cmd.arg(clients.join("node_client.js"))
        .env("DPS_SOCKET", &socket)
        .env("DPS_HOST", dps.emu.host_name())
        .env("DPS_KEY", dps.emu.primary_key().expose())
        .env("DPS_SYNC_DIR", dir.path());
    let lines = run(cmd, "Node");
    helper.join().unwrap();
    check_common(&lines, "node");
    assert_eq!(
        dps.emu.enrollments_snapshot().len(),
        12,
        "the 12 bulk enrollments remain"
    );
}

#[test]
fn the_python_service_sdk_works_against_the_emulator() {
    let dir = tempfile::tempdir().unwrap();
    let dps = start(EmulatorConfig::loopback());
    let clients = clients_dir();
    let python = clients.join(".venv/bin/python");
    require(&python);
    let helper = register_member_when_asked(&dps, dir.path());
    let ca_file = dir.path().join("emulator-ca.pem");
    std::fs::write(&ca_file, dps.emu.ca_certificate_pem().unwrap()).unwrap();
    let mut cmd = Command::new(python);
    cmd.arg(clients.join("python_client.py"))
        .env(
            "DPS_CONNECTION_STRING",
            dps.emu.connection_string().expose(),
        )
        .env("DPS_CA_FILE", &ca_file)
        .env("DPS_ENDPOINT", dps.emu.http_url().unwrap())
        .env("DPS_KEY", dps.emu.primary_key().expose())
        .env("DPS_SYNC_DIR", dir.path());
    let lines = run(cmd, "Python");
    helper.join().unwrap();
    check_common(&lines, "python");
    assert_eq!(
        step(&lines, "https_connection_string")["registrationId"],
        "official-bulk-00",
        "the printed connection string works as is, over HTTPS"
    );
    assert_eq!(dps.emu.enrollments_snapshot().len(), 12);
}
