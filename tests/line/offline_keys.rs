//! `symmetric-individual` identities left queued by an offline batch (issue 6, point 3): the
//! ledger holds only each key's nonce and fingerprint, so `dps-station export` and `enroll` take
//! the batch's key source (`--config station.toml --batch batch.toml`), recompute every key in the
//! HSM, check it against the fingerprint, and send or write it. Without the options they say which
//! to add; with the wrong master key they refuse each identity by name and leave it queued.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use base64::Engine as _;
use base64::prelude::BASE64_STANDARD;
use dps_station::device::ClientOptions;
use dps_station::device::simulator::{Flash, SimOptions};
use dps_station::dps::model::{BulkEnrollmentOperation, BulkMode};
use dps_station::ledger::{IdentityState, Ledger};
use dps_station::station::config::{KeyStoreConfig, Mode};
use dps_station::station::demo::{DemoWorkspace, KeyStoreChoice, RunOptions, USER_PIN};
use dps_station::station::engine::Engine;
use dps_station::station::events::Event;
use dps_station::station::source::{DeviceSource, VirtualFixture};

use super::common::BIN;

const DEVICES: u64 = 3;

/// A workspace after one offline symmetric-individual batch, with its station.toml and
/// batch.toml on disk for the commands.
struct Offline {
    ws: DemoWorkspace,
    flashes: Vec<Flash>,
    station_toml: PathBuf,
    batch_toml: PathBuf,
    options: RunOptions,
    tmp: tempfile::TempDir,
}

fn offline_batch() -> Offline {
    let ws = DemoWorkspace::create(KeyStoreChoice::SoftHsm).unwrap();
    let options = RunOptions {
        devices: DEVICES,
        slots: DEVICES as usize,
        timing: "offline",
        ..RunOptions::default()
    };
    let run = ws
        .run_mode(Mode::SymmetricIndividual, "night", &options, &mut |_| {})
        .unwrap();
    assert_eq!(run.summary.passed(), DEVICES as usize, "{:?}", run.summary);
    assert_eq!(run.summary.pending_enrollments, DEVICES);
    assert!(ws.emulator.enrollments_snapshot().is_empty(), "offline");

    let tmp = tempfile::tempdir().unwrap();
    let KeyStoreConfig::Pkcs11 { token_label, .. } = &ws.station.keystore else {
        panic!("SoftHSM2 expected")
    };
    let station = format!(
        "name = \"office\"\nledger = {:?}\n[keystore]\nkind = \"pkcs11\"\nprofile = \"softhsm2\"\ntoken_label = {token_label:?}\nmodule = \"/usr/lib/softhsm/libsofthsm2.so\"\n[dps.emulator]\nconnection_string_env = \"DPS_STATION_TEST_CS\"\nendpoint = {:?}\nca_file = {:?}\n[fixture.slots]\nS1 = \"/dev/serial/by-id/usb-line-1\"\n",
        ws.station.ledger.display().to_string(),
        ws.emulator.service_url(),
        ws.dir.join("emulator-ca.pem").display().to_string(),
    );
    let station_toml = tmp.path().join("station.toml");
    std::fs::write(&station_toml, station).unwrap();
    let batch_toml = tmp.path().join("night.toml");
    std::fs::write(
        &batch_toml,
        ws.batch_toml(Mode::SymmetricIndividual, "night", &options),
    )
    .unwrap();
    Offline {
        flashes: run.devices.into_iter().map(|d| d.flash).collect(),
        ws,
        station_toml,
        batch_toml,
        options,
        tmp,
    }
}

impl Offline {
    /// `dps-station <args>` with the PIN, the connection string and the emulator's endpoint
    /// (for `enroll`) in place.
    fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .env_remove("DPS_STATION_LEDGER")
            .env("DPS_STATION_HSM_PIN", USER_PIN)
            .env(
                "DPS_CONNECTION_STRING",
                self.ws.emulator.connection_string().expose(),
            );
        if args.first() == Some(&"enroll") {
            cmd.args(["--endpoint", &self.ws.emulator.service_url(), "--trust-ca"])
                .arg(self.ws.dir.join("emulator-ca.pem"));
        }
        cmd
    }

    fn key_source(&self, batch: &Path) -> Vec<String> {
        vec![
            "--config".into(),
            self.station_toml.display().to_string(),
            "--batch".into(),
            batch.display().to_string(),
        ]
    }

    fn states(&self) -> Vec<IdentityState> {
        let ledger = Ledger::open_read_only(&self.ws.station.ledger).unwrap();
        self.flashes
            .iter()
            .map(|f| ledger.find_identity(&regid(f)).unwrap().unwrap().state)
            .collect()
    }
}

/// The batch file of the same batch naming another secret of the token as its master.
fn wrong_master_batch(o: &Offline, options: &RunOptions) -> String {
    let group_line =
        o.ws.batch_toml(Mode::SymmetricGroup, "night", options)
            .lines()
            .find(|l| l.starts_with("group_key = "))
            .unwrap()
            .to_string();
    o.ws.batch_toml(Mode::SymmetricIndividual, "night", options)
        .lines()
        .map(|l| {
            if l.starts_with("device_key_master = ") {
                group_line.replace("group_key", "device_key_master")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn regid(flash: &Flash) -> String {
    flash
        .config
        .as_ref()
        .and_then(|c| c.iter().find(|(k, _)| k == "regid"))
        .map(|(_, v)| v.clone())
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn args(fixed: &[&str], more: &[String]) -> Vec<String> {
    fixed
        .iter()
        .map(|s| s.to_string())
        .chain(more.iter().cloned())
        .collect()
}

fn run(o: &Offline, a: &[String]) -> Output {
    let refs: Vec<&str> = a.iter().map(String::as_str).collect();
    o.cmd(&refs).output().unwrap()
}

/// Export with the key source: the bulk body holds exactly the devices' keys (owner-only, the
/// README warns), applying it lets every device register, and `enroll` with the key source then
/// confirms them all.
#[test]
fn offline_symmetric_individual_identities_are_exported_with_their_recomputed_keys() {
    let o = offline_batch();
    let out = o.tmp.path().join("files");
    let export = run(
        &o,
        &args(
            &["export", "--output", out.to_str().unwrap()],
            &o.key_source(&o.batch_toml),
        ),
    );
    assert!(export.status.success(), "{}", text(&export));
    assert!(
        text(&export).contains(&format!("wrote {DEVICES} individual enrollment(s)")),
        "{}",
        text(&export)
    );
    assert!(
        text(&export).contains("THEY HOLD SECRETS"),
        "{}",
        text(&export)
    );

    let readme = std::fs::read_to_string(out.join("README.txt")).unwrap();
    assert!(readme.starts_with("WARNING: THESE FILES HOLD SECRETS."));
    let body_path = out.join("bulk/enrollments-0001.json");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&body_path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "a file with keys is owner-only");
    }
    let body: BulkEnrollmentOperation =
        serde_json::from_str(&std::fs::read_to_string(&body_path).unwrap()).unwrap();
    assert_eq!(body.mode, BulkMode::Create);
    assert_eq!(body.enrollments.len(), DEVICES as usize);
    let raw: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&body_path).unwrap()).unwrap();
    for flash in &o.flashes {
        let key =
            BASE64_STANDARD.encode(hex::decode(flash.symmetric_key.as_ref().unwrap()).unwrap());
        let item = raw["enrollments"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["registrationId"].as_str() == Some(regid(flash).as_str()))
            .unwrap();
        assert_eq!(
            item["attestation"]["symmetricKey"]["primaryKey"].as_str(),
            Some(key.as_str()),
            "{}: the exported key is the one the device holds",
            regid(flash)
        );
    }
    let csv = std::fs::read_to_string(out.join("enrollments.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + DEVICES as usize, "{csv}");
    let script = std::fs::read_to_string(out.join("enroll-with-az.sh")).unwrap();
    assert!(script.contains("--attestation-type symmetricKey --primary-key"));

    // The site applies the body as DPS takes it; every device registers with what it holds.
    let report = o.ws.client().bulk_enrollments(&body.enrollments, body.mode);
    assert!(report.all_succeeded(), "{report:?}");
    for flash in &o.flashes {
        o.ws.register_device(flash)
            .unwrap_or_else(|e| panic!("{}: {e}", regid(flash)));
    }
    assert!(o.states().iter().all(|s| *s == IdentityState::Written));

    // `enroll` with the key source confirms them (DPS holds the same keys: already present).
    let enroll = run(&o, &args(&["enroll"], &o.key_source(&o.batch_toml)));
    assert!(enroll.status.success(), "{}", text(&enroll));
    assert!(
        text(&enroll).contains(&format!("{DEVICES} pending, {DEVICES} enrolled")),
        "{}",
        text(&enroll)
    );
    assert!(o.states().iter().all(|s| *s == IdentityState::Enrolled));
}

/// Without the key source both commands name the options to add; with another master key every
/// identity is refused by name and stays queued; with the right one `enroll` creates them and the
/// devices register.
#[test]
fn enroll_needs_the_batch_key_source_and_refuses_a_wrong_master_key() {
    let o = offline_batch();
    let bare = run(
        &o,
        &args(
            &["enroll", "--dps-target", "emulator", "--ledger"],
            &[o.ws.station.ledger.display().to_string()],
        ),
    );
    assert!(!bare.status.success(), "{}", text(&bare));
    assert!(
        text(&bare).contains("add --config <station.toml> --batch <batch.toml>"),
        "{}",
        text(&bare)
    );
    assert!(
        text(&bare).contains(&regid(&o.flashes[0])),
        "{}",
        text(&bare)
    );
    let out = o.tmp.path().join("bare-export");
    let bare_export = run(
        &o,
        &args(
            &[
                "export",
                "--dps-target",
                "emulator",
                "--output",
                out.to_str().unwrap(),
                "--ledger",
            ],
            &[o.ws.station.ledger.display().to_string()],
        ),
    );
    assert!(
        text(&bare_export).contains("add --config <station.toml> --batch <batch.toml>")
            && text(&bare_export).contains("dps-station export"),
        "{}",
        text(&bare_export)
    );

    let wrong_text = wrong_master_batch(&o, &o.options);
    let wrong = o.tmp.path().join("wrong.toml");
    std::fs::write(&wrong, wrong_text).unwrap();
    let refused = run(&o, &args(&["enroll"], &o.key_source(&wrong)));
    assert!(!refused.status.success(), "{}", text(&refused));
    for flash in &o.flashes {
        let line = text(&refused)
            .lines()
            .find(|l| l.contains(&regid(flash)) && l.contains("not sendable"))
            .map(str::to_string);
        assert!(
            line.as_deref()
                .is_some_and(|l| l.contains("does not match the ledger's fingerprint")),
            "{}: {}",
            regid(flash),
            text(&refused)
        );
    }
    assert!(
        o.ws.emulator.enrollments_snapshot().is_empty(),
        "nothing sent"
    );
    assert!(
        o.states().iter().all(|s| *s == IdentityState::Written),
        "left queued"
    );
    let refused_export = run(
        &o,
        &args(
            &[
                "export",
                "--output",
                o.tmp.path().join("wrong-files").to_str().unwrap(),
            ],
            &o.key_source(&wrong),
        ),
    );
    assert!(
        text(&refused_export).contains("does not match the ledger's fingerprint"),
        "{}",
        text(&refused_export)
    );

    let enroll = run(&o, &args(&["enroll"], &o.key_source(&o.batch_toml)));
    assert!(enroll.status.success(), "{}", text(&enroll));
    assert!(
        text(&enroll).contains(&format!("{DEVICES} enrolled ({DEVICES} created")),
        "{}",
        text(&enroll)
    );
    assert!(o.states().iter().all(|s| *s == IdentityState::Enrolled));
    for flash in &o.flashes {
        o.ws.register_device(flash)
            .unwrap_or_else(|e| panic!("{}: {e}", regid(flash)));
    }
}

#[test]
fn the_engine_leaves_queued_identities_whose_recomputed_key_does_not_match_pending() {
    let o = offline_batch();
    // The same batch run again online, its batch file naming the wrong master key: the run's
    // enroll worker picks up the queued identities of the batch, and must not send them.
    let options = RunOptions {
        // The batch is resumed: one device more than the first run made.
        devices: DEVICES + 1,
        slots: 1,
        timing: "immediately",
        ..RunOptions::default()
    };
    let wrong = wrong_master_batch(&o, &options);
    let fixture = VirtualFixture::new(1, SimOptions::default(), ClientOptions::default());
    let sources = vec![(
        "S1".to_string(),
        Box::new(fixture.slot("S1")) as Box<dyn DeviceSource>,
    )];
    let engine = Engine::start(o.ws.engine_setup("night", &wrong, sources).unwrap()).unwrap();
    let events: Vec<Event> = engine.events.iter().collect();
    let summary = engine.join().unwrap();
    assert_eq!(summary.passed(), 1, "{summary:?}");

    let enrolled: Vec<String> =
        o.ws.emulator
            .enrollments_snapshot()
            .iter()
            .filter_map(|e| e["registrationId"].as_str().map(str::to_string))
            .collect();
    for flash in &o.flashes {
        let id = regid(flash);
        assert!(!enrolled.contains(&id), "{id} sent with a wrong key");
        assert!(
            events.iter().any(|e| matches!(e, Event::EnrollmentProblem { message }
                if message.contains(&id) && message.contains("does not match the ledger's fingerprint"))),
            "{id}: no problem reported: {events:?}"
        );
    }
    assert!(
        o.states().iter().all(|s| *s == IdentityState::Written),
        "left queued: {:?}",
        o.states()
    );
}
