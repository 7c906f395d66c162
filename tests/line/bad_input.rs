//! Bad input: a device of another product line, a device seen twice, a batch file with an unknown
//! key or an unavailable mode; and the headless `run`'s exit code and report.

use std::process::Command;

use dps_station::device::simulator::{Fleet, SimOptions};
use dps_station::device::{ClientOptions, LineClient};
use dps_station::station::config::Mode;
use dps_station::station::demo::{DemoWorkspace, KeyStoreChoice, RunOptions};
use dps_station::station::engine::Engine;
use dps_station::station::events::Stage;

use super::common::{BIN, port_sources};

#[test]
fn a_device_of_another_model_is_refused_and_a_device_seen_twice_is_refused() {
    let ws = DemoWorkspace::create(KeyStoreChoice::SoftHsm).unwrap();
    let fleet = Fleet::start(1, &SimOptions::default()).unwrap();
    let options = RunOptions {
        devices: 1,
        ..RunOptions::default()
    };

    let wrong = ws
        .batch_toml(Mode::X509Csr, "wrong-model", &options)
        .replacen(
            "product = \"demo\"",
            "product = \"demo\"\nmodel = \"pump-9\"",
            1,
        );
    let engine = Engine::start(
        ws.engine_setup("wrong-model", &wrong, port_sources(&fleet.paths()))
            .unwrap(),
    )
    .unwrap();
    let summary = engine.join().unwrap();
    let (stage, reason) = summary.outcomes[0].failure.clone().unwrap();
    assert_eq!(stage, Stage::Check);
    assert!(
        reason.contains("pump-9") && reason.contains("sim-sensor"),
        "{reason}"
    );

    let first = ws.batch_toml(Mode::X509Csr, "first", &options);
    let engine = Engine::start(
        ws.engine_setup("first", &first, port_sources(&fleet.paths()))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(engine.join().unwrap().passed(), 1);

    // Factory-reset the device and offer it to a second batch: same serial, same registration ID.
    let mut client = LineClient::open(&fleet.paths()[0], ClientOptions::default()).unwrap();
    client.factory_reset().unwrap();
    drop(client);
    let second = first.replace("name = \"first\"", "name = \"second\"");
    let engine = Engine::start(
        ws.engine_setup("second", &second, port_sources(&fleet.paths()))
            .unwrap(),
    )
    .unwrap();
    let summary = engine.join().unwrap();
    let (stage, reason) = summary.outcomes[0].failure.clone().unwrap();
    assert_eq!(stage, Stage::Check);
    assert!(reason.contains("seen before"), "{reason}");
    assert_eq!(
        ws.emulator.enrollments_snapshot().len(),
        1,
        "enrolled twice"
    );
}

#[test]
fn batch_files_with_unknown_keys_or_unavailable_modes_are_refused_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let station = dir.path().join("station.toml");
    std::fs::write(
        &station,
        "name = \"s\"\nledger = \"l.db\"\n[fixture.slots]\nA1 = \"/dev/serial/by-id/none\"\n[keystore]\nkind = \"software\"\ndir = \"k\"\n[dps.main]\nconnection_string_env = \"X_CS\"\n",
    )
    .unwrap();
    let base = "name = \"b\"\nproduct = \"p\"\ncount = 1\nregistration_id = \"{product}-{serial}\"\nid_scope = \"0ne1\"\ndps_target = \"main\"\n";
    for (text, needle) in [
        (
            format!(
                "{base}mode = \"symmetric-group\"\nenrollment_group = \"g\"\nretries = 3\n[keys]\ngroup_key = \"file:g\"\n"
            ),
            "retries",
        ),
        (
            format!(
                "{}mode = \"symmetric-individual\"\n[keys]\ndevice_key_master = \"file:m\"\n",
                base.replace("{serial}", "{regid}")
            ),
            "{regid}",
        ),
    ] {
        let batch = dir.path().join("batch.toml");
        std::fs::write(&batch, text).unwrap();
        let out = Command::new(BIN)
            .args(["run", "--headless", "--config"])
            .arg(&station)
            .arg("--batch")
            .arg(&batch)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(
            stderr.contains(needle) && stderr.contains("batch.toml"),
            "{stderr}"
        );
    }
}

#[test]
fn the_demo_runs_every_working_mode_and_its_devices_send_telemetry_to_their_hub() {
    let out = Command::new(BIN)
        .args(["demo", "--headless", "--devices", "2"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for mode in Mode::WORKING {
        assert!(
            stdout.contains(&format!("batch demo-{mode}: Closed; 2 passed, 0 failed")),
            "{mode}: {stdout}"
        );
    }
    assert_eq!(
        stdout
            .matches("2 of 2 devices sent telemetry to their hub")
            .count(),
        Mode::WORKING.len(),
        "{stdout}"
    );
    // The batch per family: station-protocol devices and nRF91 modems on one fixture.
    assert!(
        stdout.contains("batch demo-families: Closed; 6 passed, 0 failed")
            && stdout.contains("2 of 2 nRF91 modems registered")
            && stdout.contains("2 of 2 Zephyr SMP devices registered"),
        "{stdout}"
    );
    assert!(
        Mode::WORKING.contains(&Mode::Tpm) && !stdout.contains("not offered"),
        "every mode, tpm included, is offered: {stdout}"
    );
}
