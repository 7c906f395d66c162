//! Offline exports carry the whole batch (issue 17, points 1 and 2): an `enrollment = "offline"`
//! batch exported with its batch.toml writes the batch's `iot_hubs`, `allocation_policy` and
//! `initial_twin` into every format, and an enrollment imported from the bulk file is, field by
//! field, the enrollment an immediately enrolled batch of the same settings made. `export --batch`
//! holds one batch only (by file or by name), needs no device key master for a mode without one,
//! and the folder's README gives an `import-results` command that works as written.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use dps_station::device::ClientOptions;
use dps_station::device::simulator::SimOptions;
use dps_station::dps::model::{BulkEnrollmentGroupOperation, BulkEnrollmentOperation};
use dps_station::ledger::{IdentityState, Ledger};
use dps_station::station::config::{KeyStoreConfig, Mode};
use dps_station::station::demo::{DemoWorkspace, KeyStoreChoice, RunOptions, USER_PIN};
use dps_station::station::engine::Engine;
use dps_station::station::source::{DeviceSource, SimulatedRecord, VirtualFixture};
use serde_json::{Value, json};

use super::common::BIN;

const DEVICES: u64 = 2;
const HUBS: [&str; 2] = ["hub-a.azure-devices.net", "hub-b.azure-devices.net"];

/// The demo's batch of `mode` with hubs, an allocation policy and a full initial twin.
fn batch_text(ws: &DemoWorkspace, mode: Mode, name: &str, timing: &'static str) -> String {
    let options = RunOptions {
        devices: DEVICES,
        slots: 1,
        timing,
        ..RunOptions::default()
    };
    let base = ws.batch_toml(mode, name, &options);
    // The demo's batch has a desired twin already (its telemetry interval): add to that table,
    // since TOML refuses a second one.
    let desired = "[initial_twin.desired]\n";
    assert!(base.contains(desired), "{base}");
    let base = base.replacen(
        desired,
        &format!("{desired}firmware = {{ channel = \"stable\", interval = 30 }}\n"),
        1,
    );
    let (first, rest) = base.split_once('\n').unwrap();
    format!("{first}\niot_hubs = {HUBS:?}\nallocation_policy = \"hashed\"\n{rest}\n")
}

/// Runs a batch on a one-slot virtual fixture; the registration IDs of its devices.
fn run_batch(ws: &DemoWorkspace, name: &str, text: &str) -> Vec<String> {
    run_batch_devices(ws, name, text)
        .iter()
        .map(regid)
        .collect()
}

fn regid(r: &SimulatedRecord) -> String {
    r.flash
        .config
        .as_ref()
        .and_then(|c| c.iter().find(|(k, _)| k == "regid"))
        .map(|(_, v)| v.clone())
        .unwrap()
}

/// Runs a batch on a one-slot virtual fixture; its simulated devices.
fn run_batch_devices(ws: &DemoWorkspace, name: &str, text: &str) -> Vec<SimulatedRecord> {
    let fixture = VirtualFixture::new(DEVICES, SimOptions::default(), ClientOptions::default());
    let sources: Vec<(String, Box<dyn DeviceSource>)> =
        vec![("S1".into(), Box::new(fixture.slot("S1")))];
    let engine = Engine::start(ws.engine_setup(name, text, sources).unwrap()).unwrap();
    for _ in engine.events.iter() {}
    let summary = engine.join().unwrap();
    assert_eq!(summary.passed(), DEVICES as usize, "{summary:?}");
    let ledger = Ledger::open_read_only(&ws.station.ledger).unwrap();
    let records = fixture.records();
    for r in &records {
        let id = regid(r);
        assert!(ledger.find_identity(&id).unwrap().is_some(), "{id}");
    }
    records
}

fn station_toml(ws: &DemoWorkspace, dir: &Path) -> PathBuf {
    let KeyStoreConfig::Pkcs11 { token_label, .. } = &ws.station.keystore else {
        panic!("SoftHSM2 expected")
    };
    let station = format!(
        "name = \"office\"\nledger = {:?}\n[keystore]\nkind = \"pkcs11\"\nprofile = \"softhsm2\"\ntoken_label = {token_label:?}\nmodule = \"/usr/lib/softhsm/libsofthsm2.so\"\n[dps.emulator]\nconnection_string_env = \"DPS_STATION_TEST_CS\"\nendpoint = {:?}\nca_file = {:?}\n[fixture.slots]\nS1 = \"/dev/serial/by-id/usb-line-1\"\n",
        ws.station.ledger.display().to_string(),
        ws.emulator.service_url(),
        ws.dir.join("emulator-ca.pem").display().to_string(),
    );
    let path = dir.join("station.toml");
    std::fs::write(&path, station).unwrap();
    path
}

fn cli(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("DPS_STATION_LEDGER")
        .env("DPS_STATION_HSM_PIN", USER_PIN)
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// An enrollment as DPS holds it, without what differs per device and per write.
fn settings_of(enrollment: &Value) -> Value {
    let mut e = enrollment.clone();
    let map = e.as_object_mut().unwrap();
    for per_device in [
        "registrationId",
        "attestation",
        "etag",
        "createdDateTimeUtc",
        "lastUpdatedDateTimeUtc",
        "registrationState",
    ] {
        map.remove(per_device);
    }
    e
}

fn enrollment(ws: &DemoWorkspace, id: &str) -> Value {
    ws.emulator
        .enrollments_snapshot()
        .into_iter()
        .find(|e| e["registrationId"].as_str() == Some(id))
        .unwrap_or_else(|| panic!("the emulator holds no enrollment {id}"))
}

#[test]
fn an_offline_export_carries_the_batch_settings_into_every_format() {
    let ws = DemoWorkspace::create(KeyStoreChoice::SoftHsm).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let station = station_toml(&ws, tmp.path());
    let day = run_batch(
        &ws,
        "day",
        &batch_text(&ws, Mode::X509Csr, "day", "immediately"),
    );
    let night_text = batch_text(&ws, Mode::X509Csr, "night", "offline");
    let night = run_batch(&ws, "night", &night_text);
    let night_toml = tmp.path().join("night.toml");
    std::fs::write(&night_toml, &night_text).unwrap();
    // Another offline batch on the same DPS target: not part of night's export.
    let eve = run_batch(
        &ws,
        "eve",
        &batch_text(&ws, Mode::X509Csr, "eve", "offline"),
    );

    let out = tmp.path().join("files");
    let export = cli(&[
        "export",
        "--config",
        station.to_str().unwrap(),
        "--batch",
        night_toml.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ]);
    assert!(export.status.success(), "{}", text(&export));
    assert!(
        text(&export).contains(&format!("wrote {DEVICES} individual enrollment(s)")),
        "only night's identities: {}",
        text(&export)
    );

    // Bulk JSON: applied as DPS takes it, each enrollment equals an immediately enrolled one.
    let body: BulkEnrollmentOperation = serde_json::from_str(
        &std::fs::read_to_string(out.join("bulk/enrollments-0001.json")).unwrap(),
    )
    .unwrap();
    let ids: Vec<&str> = body
        .enrollments
        .iter()
        .map(|e| e.registration_id.as_str())
        .collect();
    let mut expected: Vec<&str> = night.iter().map(String::as_str).collect();
    expected.sort();
    let mut got = ids.clone();
    got.sort();
    assert_eq!(got, expected, "the export holds night's devices, not eve's");
    let report = ws.client().bulk_enrollments(&body.enrollments, body.mode);
    assert!(report.all_succeeded(), "{report:?}");
    let immediate = enrollment(&ws, &day[0]);
    assert_eq!(immediate["initialTwin"]["tags"], json!({"line": "demo"}));
    assert_eq!(
        immediate["initialTwin"]["properties"]["desired"]["firmware"],
        json!({"channel": "stable", "interval": 30})
    );
    assert_eq!(immediate["iotHubs"], json!(HUBS));
    assert_eq!(immediate["allocationPolicy"], "hashed");
    for id in &night {
        let imported = enrollment(&ws, id);
        let (imported, immediate) = (settings_of(&imported), settings_of(&immediate));
        for (field, value) in immediate.as_object().unwrap() {
            assert_eq!(
                imported.get(field),
                Some(value),
                "{id}: field {field} of the offline-exported enrollment"
            );
        }
        assert_eq!(imported, immediate, "{id}: no field more or less");
    }

    // CSV: hubs, policy and the twin as DPS takes it.
    let mut csv = csv::Reader::from_path(out.join("enrollments.csv")).unwrap();
    let header = csv.headers().unwrap().clone();
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let rows: Vec<csv::StringRecord> = csv.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), DEVICES as usize);
    for row in &rows {
        assert_eq!(&row[col("iot_hubs")], HUBS.join(" "));
        assert_eq!(&row[col("allocation_policy")], "hashed");
        let twin: Value = serde_json::from_str(&row[col("initial_twin")]).unwrap();
        assert_eq!(twin, enrollment(&ws, &day[0])["initialTwin"]);
    }

    // az script: every setting as the extension's flags.
    let script = std::fs::read_to_string(out.join("enroll-with-az.sh")).unwrap();
    for flag in [
        format!("--iot-hubs '{}'", HUBS.join(" ")),
        "--allocation-policy hashed".to_string(),
        "--initial-twin-tags '{\"line\":\"demo\"}'".to_string(),
        "--initial-twin-properties '{\"firmware\":".to_string(),
    ] {
        assert_eq!(
            script.matches(flag.as_str()).count(),
            DEVICES as usize,
            "{flag} in every command:\n{script}"
        );
    }

    // The README's import-results command works as written.
    let readme = std::fs::read_to_string(out.join("README.txt")).unwrap();
    let line = readme
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("dps-station import-results"))
        .unwrap_or_else(|| panic!("no import-results command:\n{readme}"));
    assert!(line.contains("--dps-target 'emulator'"), "{line}");
    let results = out.join("az-results.csv");
    let mut answers = String::from("registration_id,status\n");
    for id in &night {
        answers += &format!("{id},enrolled\n");
    }
    std::fs::write(&results, answers).unwrap();
    let mut args: Vec<String> = line
        .split_whitespace()
        .skip(1)
        .map(|w| w.trim_matches('\'').to_string())
        .filter(|w| w != "<this" && w != "folder>")
        .collect();
    args.extend([
        out.display().to_string(),
        "--ledger".into(),
        ws.station.ledger.display().to_string(),
    ]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let import = cli(&refs);
    assert!(import.status.success(), "{}", text(&import));
    let ledger = Ledger::open_read_only(&ws.station.ledger).unwrap();
    for id in &night {
        assert_eq!(
            ledger.find_identity(id).unwrap().unwrap().state,
            IdentityState::Enrolled
        );
    }
    for id in &eve {
        assert_eq!(
            ledger.find_identity(id).unwrap().unwrap().state,
            IdentityState::Written,
            "{id}: another batch's identity is untouched"
        );
    }
    drop(ledger);

    // By name: eve alone, and the note that the ledger does not hold its settings.
    let by_name = tmp.path().join("eve-files");
    let export = cli(&[
        "export",
        "--ledger",
        ws.station.ledger.to_str().unwrap(),
        "--dps-target",
        "emulator",
        "--batch",
        "eve",
        "--output",
        by_name.to_str().unwrap(),
    ]);
    assert!(export.status.success(), "{}", text(&export));
    assert!(
        text(&export).contains(&format!("wrote {DEVICES} individual enrollment(s)"))
            && text(&export).contains("does not hold batch 'eve''s iot_hubs"),
        "{}",
        text(&export)
    );
    let csv = std::fs::read_to_string(by_name.join("enrollments.csv")).unwrap();
    for id in &eve {
        assert!(csv.contains(id.as_str()), "{csv}");
    }
    let unknown = cli(&[
        "export",
        "--ledger",
        ws.station.ledger.to_str().unwrap(),
        "--dps-target",
        "emulator",
        "--batch",
        "evening",
        "--output",
        tmp.path().join("none").to_str().unwrap(),
    ]);
    assert!(!unknown.status.success());
    assert!(
        text(&unknown).contains("holds no batch named 'evening'"),
        "{}",
        text(&unknown)
    );

    // `enroll` with the batch file sends that batch only, with its settings (eve stays queued).
    let late_text = batch_text(&ws, Mode::X509Csr, "late", "offline");
    let late = run_batch(&ws, "late", &late_text);
    let late_toml = tmp.path().join("late.toml");
    std::fs::write(&late_toml, &late_text).unwrap();
    let enroll = Command::new(BIN)
        .args(["enroll", "--config"])
        .arg(&station)
        .arg("--batch")
        .arg(&late_toml)
        .args(["--endpoint", &ws.emulator.service_url(), "--trust-ca"])
        .arg(ws.dir.join("emulator-ca.pem"))
        .env_remove("DPS_STATION_LEDGER")
        .env("DPS_STATION_HSM_PIN", USER_PIN)
        .env(
            "DPS_CONNECTION_STRING",
            ws.emulator.connection_string().expose(),
        )
        .output()
        .unwrap();
    assert!(enroll.status.success(), "{}", text(&enroll));
    assert!(
        text(&enroll).contains(&format!("{DEVICES} pending, {DEVICES} enrolled")),
        "{}",
        text(&enroll)
    );
    for id in &late {
        assert_eq!(
            settings_of(&enrollment(&ws, id)),
            settings_of(&enrollment(&ws, &day[0])),
            "{id}"
        );
    }
    let ledger = Ledger::open_read_only(&ws.station.ledger).unwrap();
    for id in &eve {
        assert_eq!(
            ledger.find_identity(id).unwrap().unwrap().state,
            IdentityState::Written
        );
    }
}

/// An offline x509-group batch: `export` with its batch file writes its enrollment group (over the
/// batch's issuing CA, with the batch's settings), and the devices register once it is applied.
#[test]
fn an_offline_x509_group_batch_exports_its_group() {
    let ws = DemoWorkspace::create(KeyStoreChoice::SoftHsm).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let station = station_toml(&ws, tmp.path());
    let grp = batch_text(&ws, Mode::X509Group, "grp", "offline");
    let devices = run_batch_devices(&ws, "grp", &grp);
    let batch_toml = tmp.path().join("grp.toml");
    std::fs::write(&batch_toml, &grp).unwrap();
    assert!(
        ws.emulator
            .groups_snapshot()
            .iter()
            .all(|g| g["enrollmentGroupId"] != "demo-x509-group")
    );

    let out = tmp.path().join("files");
    let export = cli(&[
        "export",
        "--config",
        station.to_str().unwrap(),
        "--batch",
        batch_toml.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ]);
    assert!(export.status.success(), "{}", text(&export));
    assert!(
        text(&export).contains("wrote 0 individual enrollment(s) and 1 group(s)"),
        "{}",
        text(&export)
    );
    let body: BulkEnrollmentGroupOperation = serde_json::from_str(
        &std::fs::read_to_string(out.join("bulk/enrollment-groups-0001.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(body.enrollment_groups.len(), 1);
    let raw = serde_json::to_value(&body.enrollment_groups[0]).unwrap();
    assert_eq!(raw["enrollmentGroupId"], "demo-x509-group");
    assert_eq!(raw["iotHubs"], json!(HUBS));
    assert_eq!(raw["allocationPolicy"], "hashed");
    assert_eq!(raw["initialTwin"]["tags"], json!({"line": "demo"}));
    assert_eq!(
        raw["initialTwin"]["properties"]["desired"]["firmware"]["channel"],
        "stable"
    );
    let report = ws.client().bulk_groups(&body.enrollment_groups, body.mode);
    assert!(report.all_succeeded(), "{report:?}");
    for d in &devices {
        ws.register_device(&d.flash)
            .unwrap_or_else(|e| panic!("{}: {e}", regid(d)));
    }
}
