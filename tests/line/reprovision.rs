//! Explicit, audited re-provisioning (issue 6, point 4): the same devices (their flash on disk)
//! come back in a second batch. Without the choice they are refused and nothing changes; with
//! `reprovision = "RMA 123"` each locked device is factory-reset, its old identity revoked, a new
//! one issued, written and enrolled in place of the old one in DPS, and the device registers with
//! its new credential while the old credential no longer does.

use std::collections::HashMap;
use std::process::{Command, Output};

use base64::Engine as _;
use base64::prelude::BASE64_STANDARD;
use dps_station::device::ClientOptions;
use dps_station::device::simulator::{Flash, Fleet, SimOptions};
use dps_station::dps::model::{BulkEnrollmentOperation, BulkEnrollmentOperationResult, BulkMode};
use dps_station::dps::payload::{self, EnrollmentSettings};
use dps_station::ledger::{IdentityFilter, IdentityRecord, IdentityState, Ledger, WriterIdentity};
use dps_station::secret::SecretString;
use dps_station::station::config::Mode;
use dps_station::station::demo::{DemoWorkspace, KeyStoreChoice, RunOptions, USER_PIN};
use dps_station::station::engine::{Engine, RunSummary};
use dps_station::station::enrollment::{
    EnrollOptions, enroll_pending, export_pending, import_pending_results,
};
use dps_station::station::events::Stage;
use dps_station::station::source::{DeviceSource, SimulatedRecord, VirtualFixture};

use super::common::{BIN, ledger_verify, station_toml};

const DEVICES: u64 = 3;

struct Run {
    summary: RunSummary,
    devices: Vec<SimulatedRecord>,
}

/// One batch of `mode` over the devices whose flash lives in `sim.flash_dir`, through the engine.
fn run(
    ws: &DemoWorkspace,
    mode: Mode,
    name: &str,
    sim: &SimOptions,
    reprovision: Option<&str>,
) -> Run {
    run_timed(ws, mode, name, sim, reprovision, "immediately", DEVICES)
}

/// [`run`] with the batch's enrollment timing (`immediately`, `batch-end`, `offline`).
fn run_timed(
    ws: &DemoWorkspace,
    mode: Mode,
    name: &str,
    sim: &SimOptions,
    reprovision: Option<&str>,
    timing: &'static str,
    devices: u64,
) -> Run {
    let options = RunOptions {
        devices,
        slots: devices as usize,
        sim: sim.clone(),
        timing,
    };
    let mut toml = ws.batch_toml(mode, name, &options);
    if let Some(reason) = reprovision {
        // Top-level keys go before the first table of the file.
        toml = format!("reprovision = {reason:?}\n{toml}");
    }
    run_toml(ws, name, sim, devices, &toml)
}

/// One batch described by `toml` over `devices` simulated devices, through the engine.
fn run_toml(ws: &DemoWorkspace, name: &str, sim: &SimOptions, devices: u64, toml: &str) -> Run {
    let fixture = VirtualFixture::new(devices, sim.clone(), ClientOptions::default());
    let sources: Vec<(String, Box<dyn DeviceSource>)> = (1..=devices)
        .map(|i| {
            let slot = format!("S{i}");
            (
                slot.clone(),
                Box::new(fixture.slot(&slot)) as Box<dyn DeviceSource>,
            )
        })
        .collect();
    let engine = Engine::start(ws.engine_setup(name, toml, sources).unwrap()).unwrap();
    for _ in engine.events.iter() {}
    let summary = engine.join().unwrap();
    Run {
        summary,
        devices: fixture.records(),
    }
}

fn regid(flash: &Flash) -> String {
    flash
        .config
        .as_ref()
        .and_then(|c| c.iter().find(|(k, _)| k == "regid"))
        .map(|(_, v)| v.clone())
        .unwrap()
}

/// What the station wrote, without what changes at every boot.
fn provisioned(flash: &Flash) -> (Option<String>, Option<String>, Option<String>, bool) {
    (
        flash.key.clone(),
        flash.chain.clone(),
        flash.symmetric_key.clone(),
        flash.locked,
    )
}

fn identities(ws: &DemoWorkspace) -> Vec<IdentityRecord> {
    Ledger::open_read_only(&ws.station.ledger)
        .unwrap()
        .list_identities(&IdentityFilter::default())
        .unwrap()
}

fn sim_in(dir: &std::path::Path) -> SimOptions {
    SimOptions {
        flash_dir: Some(dir.to_path_buf()),
        ..SimOptions::default()
    }
}

/// The emulator's individual enrollment of `rid` holds exactly this device's credential.
fn enrollment_holds(
    ws: &DemoWorkspace,
    mode: Mode,
    rid: &str,
    live: &IdentityRecord,
    flash: &Flash,
) {
    let enrollments = ws.emulator.enrollments_snapshot();
    let found: Vec<_> = enrollments
        .iter()
        .filter(|e| e["registrationId"].as_str() == Some(rid))
        .collect();
    assert_eq!(found.len(), 1, "{rid}: one enrollment, never a duplicate");
    let attestation = &found[0]["attestation"];
    if mode == Mode::SymmetricIndividual {
        let key = hex::decode(flash.symmetric_key.as_ref().unwrap()).unwrap();
        assert_eq!(
            attestation["symmetricKey"]["primaryKey"].as_str(),
            Some(BASE64_STANDARD.encode(key).as_str()),
            "{rid}: the enrollment holds the device's new key"
        );
    } else {
        let thumb =
            attestation["x509"]["clientCertificates"]["primary"]["info"]["sha256Thumbprint"]
                .as_str()
                .unwrap();
        assert!(
            thumb.eq_ignore_ascii_case(&live.certificate.as_ref().unwrap().sha256_thumbprint),
            "{rid}: the enrollment holds the new certificate"
        );
    }
}

fn refuses_then_reprovisions(mode: Mode) {
    let ws = DemoWorkspace::create(KeyStoreChoice::SoftHsm).unwrap();
    let flash_dir = tempfile::tempdir().unwrap();
    let sim = sim_in(flash_dir.path());

    // 1. Provisioned once.
    let first = run(&ws, mode, &format!("first-{mode}"), &sim, None);
    assert_eq!(
        first.summary.passed(),
        DEVICES as usize,
        "{mode}: {:?}",
        first.summary.outcomes
    );
    assert_eq!(first.summary.enrollment.enrolled, DEVICES, "{mode}");
    let old: HashMap<String, Flash> = first
        .devices
        .iter()
        .map(|d| (d.flash.serial.clone(), d.flash.clone()))
        .collect();
    for flash in old.values() {
        // The old credential works before re-provisioning (so its refusal later means something).
        ws.register_device(flash).unwrap();
    }
    let identities_before = identities(&ws);
    let enrollments_before = ws.emulator.enrollments_snapshot();

    // 2. The same devices again, without the choice: refused, nothing changes.
    let refused = run(&ws, mode, &format!("rma-{mode}"), &sim, None);
    assert_eq!(refused.summary.failed(), DEVICES as usize, "{mode}");
    for o in &refused.summary.outcomes {
        let (stage, reason) = o.failure.as_ref().unwrap();
        assert_eq!(*stage, Stage::Check, "{reason}");
        assert!(
            reason.contains("was seen before") && reason.contains("--reprovision"),
            "{mode}: {reason}"
        );
    }
    for d in &refused.devices {
        assert_eq!(
            provisioned(&d.flash),
            provisioned(&old[&d.flash.serial]),
            "{mode}: a refused device is left as it was"
        );
    }
    assert_eq!(
        identities(&ws),
        identities_before,
        "{mode}: ledger identities unchanged"
    );
    assert_eq!(
        ws.emulator.enrollments_snapshot().len(),
        enrollments_before.len(),
        "{mode}"
    );

    // 3. With the choice: each device gets a new identity, the old one is revoked with reason.
    let again = run(&ws, mode, &format!("rma-{mode}"), &sim, Some("RMA 123"));
    assert_eq!(
        again.summary.passed(),
        DEVICES as usize,
        "{mode}: {:?}",
        again.summary.outcomes
    );
    assert_eq!(again.summary.enrollment.enrolled, DEVICES, "{mode}");
    assert_eq!(again.summary.enrollment.failed, 0, "{mode}");
    let ledger = Ledger::open_read_only(&ws.station.ledger).unwrap();
    for d in &again.devices {
        let flash = &d.flash;
        let before = &old[&flash.serial];
        let rid = regid(flash);
        assert!(flash.locked, "{mode}: {rid} locked again");
        assert_ne!(
            provisioned(flash),
            provisioned(before),
            "{mode}: {rid} holds a new credential"
        );
        if mode == Mode::SymmetricIndividual {
            assert_ne!(
                flash.symmetric_key, before.symmetric_key,
                "a new random key"
            );
        } else {
            assert_ne!(flash.key, before.key, "a new device key");
        }

        let history = ledger.identity_history(&rid).unwrap();
        assert_eq!(history.len(), 2, "{mode}: {rid}: {history:?}");
        let (revoked, live) = (&history[0], &history[1]);
        assert_eq!(revoked.state, IdentityState::Revoked);
        let reason = revoked.revoked_reason.as_deref().unwrap();
        assert!(
            reason.contains("re-provisioned")
                && reason.contains(&format!("rma-{mode}"))
                && reason.contains("RMA 123"),
            "{reason}"
        );
        assert_eq!(live.state, IdentityState::Enrolled);
        assert_eq!(live.batch.as_deref(), Some(format!("rma-{mode}").as_str()));
        if mode == Mode::SymmetricIndividual {
            assert!(live.key_nonce.is_some() && revoked.key_nonce.is_some());
            assert_ne!(
                live.key_nonce, revoked.key_nonce,
                "a fresh nonce per identity"
            );
            assert_ne!(live.key_fingerprint, revoked.key_fingerprint);
        }
        let audit = ledger.audit_for(&rid).unwrap();
        let event = audit
            .iter()
            .find(|a| a.action == "reprovision")
            .unwrap_or_else(|| panic!("{rid}: no reprovision audit row"));
        let details: serde_json::Value = serde_json::from_str(&event.details).unwrap();
        assert_eq!(details["device_serial"], flash.serial.as_str());
        assert_eq!(details["old_identity"], revoked.id.0);
        assert_eq!(details["operator"], "demo");
        assert_eq!(details["reason"], "RMA 123");
        // The factory reset of the locked device left its own trace, before the re-provisioning.
        let reset = audit
            .iter()
            .find(|a| a.action == "device.factory_reset")
            .unwrap_or_else(|| panic!("{rid}: no device.factory_reset audit row"));
        assert!(reset.id < event.id, "{rid}: the reset is recorded first");
        let reset: serde_json::Value = serde_json::from_str(&reset.details).unwrap();
        assert_eq!(reset["device_serial"], flash.serial.as_str());
        assert_eq!(reset["old_identity"], revoked.id.0);
        assert_eq!(reset["batch"], format!("rma-{mode}").as_str());
        assert_eq!(reset["reason"], "RMA 123");

        // DPS holds the new credential, in the one enrollment of the registration ID.
        enrollment_holds(&ws, mode, &rid, live, flash);
        // The device registers with what it now holds; the old credential no longer does.
        ws.register_device(flash)
            .unwrap_or_else(|e| panic!("{mode}: {rid} could not register: {e}"));
        assert!(
            ws.register_device(before).is_err(),
            "{mode}: {rid} still registers with its OLD credential"
        );
    }
    assert!(ledger.verify_audit_chain().unwrap().is_intact());
    drop(ledger);
    let (ok, out) = ledger_verify(&ws.station.ledger);
    assert!(ok, "{out}");
    no_device_key_in_the_ledger(
        &ws,
        old.values().chain(again.devices.iter().map(|d| &d.flash)),
    );
}

/// Neither the old nor the new device keys reach the ledger file or its WAL, in any encoding.
fn no_device_key_in_the_ledger<'a>(ws: &DemoWorkspace, flashes: impl Iterator<Item = &'a Flash>) {
    let mut bytes = std::fs::read(&ws.station.ledger).unwrap();
    let mut wal = ws.station.ledger.as_os_str().to_owned();
    wal.push("-wal");
    bytes.extend(std::fs::read(std::path::PathBuf::from(wal)).unwrap_or_default());
    let mut checked = 0;
    for flash in flashes {
        for key in [&flash.key, &flash.symmetric_key].into_iter().flatten() {
            let raw = hex::decode(key).unwrap();
            for form in [
                raw.clone(),
                BASE64_STANDARD.encode(&raw).into_bytes(),
                hex::encode(&raw).into_bytes(),
                hex::encode_upper(&raw).into_bytes(),
            ] {
                assert!(
                    !bytes.windows(form.len()).any(|w| w == form.as_slice()),
                    "a device key of {} is in the ledger",
                    flash.serial
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 2 * DEVICES as usize, "{checked} keys checked");
}

#[test]
fn x509_csr_devices_seen_before_are_refused_then_reprovisioned_when_chosen() {
    refuses_then_reprovisions(Mode::X509Csr);
}

#[test]
fn symmetric_individual_devices_seen_before_are_refused_then_reprovisioned_when_chosen() {
    refuses_then_reprovisions(Mode::SymmetricIndividual);
}

#[test]
fn a_guarded_device_fails_the_slot_asking_for_its_reset_input_and_nothing_changes() {
    let ws = DemoWorkspace::create(KeyStoreChoice::SoftHsm).unwrap();
    let flash_dir = tempfile::tempdir().unwrap();
    let sim = sim_in(flash_dir.path());
    let first = run(&ws, Mode::X509Csr, "first", &sim, None);
    assert_eq!(first.summary.passed(), DEVICES as usize);
    let identities_before = identities(&ws);

    let mut guarded = sim.clone();
    guarded.firmware.reset_guarded = true;
    let rma = run(&ws, Mode::X509Csr, "rma", &guarded, Some("RMA 7"));
    assert_eq!(rma.summary.failed(), DEVICES as usize);
    for o in &rma.summary.outcomes {
        let (stage, reason) = o.failure.as_ref().unwrap();
        assert_eq!(*stage, Stage::Reset, "{reason}");
        assert!(
            reason.contains("GUARDED") && reason.contains("assert the device's reset input"),
            "{reason}"
        );
    }
    for d in &rma.devices {
        assert!(d.flash.locked, "a guarded device stays as it was");
    }
    assert_eq!(
        identities(&ws),
        identities_before,
        "no identity revoked or issued"
    );
    let ledger = Ledger::open_read_only(&ws.station.ledger).unwrap();
    for i in &identities_before {
        assert!(
            ledger
                .audit_for(&i.registration_id)
                .unwrap()
                .iter()
                .all(|a| a.action != "reprovision"),
            "no reprovision recorded for {}",
            i.registration_id
        );
    }
}

/// Two devices that render one registration ID (here a template without `{serial}`): the
/// second is refused at check, naming both serials, with or without re-provisioning, and the
/// first device's identity is left as it was.
#[test]
fn a_registration_id_collision_is_refused_and_never_revokes_the_other_device() {
    let ws = DemoWorkspace::create(KeyStoreChoice::SoftHsm).unwrap();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let colliding = |name: &str, reprovision: Option<&str>| {
        let options = RunOptions {
            devices: 1,
            slots: 1,
            sim: SimOptions::default(),
            timing: "immediately",
        };
        let toml = ws
            .batch_toml(Mode::X509Csr, name, &options)
            .replace("-{serial}\"", "-{model}\"");
        assert!(toml.contains("-{model}\""), "{toml}");
        match reprovision {
            Some(reason) => format!("reprovision = {reason:?}\n{toml}"),
            None => toml,
        }
    };
    let first = run_toml(
        &ws,
        "first",
        &sim_in(dir_a.path()),
        1,
        &colliding("first", None),
    );
    assert_eq!(first.summary.passed(), 1, "{:?}", first.summary.outcomes);
    let serial_a = first.devices[0].flash.serial.clone();
    let rid = regid(&first.devices[0].flash);
    let before = identities(&ws);

    for (name, reprovision) in [("second", None), ("rma", Some("RMA 9"))] {
        let second = run_toml(
            &ws,
            name,
            &sim_in(dir_b.path()),
            1,
            &colliding(name, reprovision),
        );
        assert_eq!(second.summary.failed(), 1, "{name}");
        let serial_b = &second.devices[0].flash.serial;
        assert_ne!(serial_b, &serial_a);
        let (stage, reason) = second.summary.outcomes[0].failure.as_ref().unwrap();
        assert_eq!(*stage, Stage::Check, "{reason}");
        assert!(
            reason.contains("registration ID collision")
                && reason.contains(&serial_a)
                && reason.contains(serial_b.as_str())
                && reason.contains(&rid)
                && reason.contains("registration_id template"),
            "{name}: {reason}"
        );
        assert!(
            !second.devices[0].flash.locked,
            "{name}: device B untouched"
        );
        assert_eq!(identities(&ws), before, "{name}: device A's identity kept");
    }
    let live = Ledger::open_read_only(&ws.station.ledger)
        .unwrap()
        .find_identity(&rid)
        .unwrap()
        .unwrap();
    assert_eq!(live.state, IdentityState::Enrolled);
    assert_eq!(live.device.unwrap().serial_number, serial_a);
}

/// Two colliding devices in two slots of one batch, at the same time: whichever records first
/// keeps the registration ID; the other fails (at check as a collision, or at record as a
/// duplicate) without voiding, reissuing or revoking the first one's identity.
#[test]
fn colliding_devices_in_one_batch_never_replace_each_others_identity() {
    let ws = DemoWorkspace::create(KeyStoreChoice::SoftHsm).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let options = RunOptions {
        devices: 2,
        slots: 2,
        sim: SimOptions::default(),
        timing: "immediately",
    };
    let toml = ws
        .batch_toml(Mode::X509Csr, "both", &options)
        .replace("-{serial}\"", "-{model}\"");
    let run = run_toml(&ws, "both", &sim_in(dir.path()), 2, &toml);
    assert_eq!(run.summary.passed(), 1, "{:?}", run.summary.outcomes);
    assert_eq!(run.summary.failed(), 1, "{:?}", run.summary.outcomes);
    let (_, reason) = run
        .summary
        .outcomes
        .iter()
        .find_map(|o| o.failure.as_ref())
        .unwrap();
    assert!(
        reason.contains("registration ID collision") || reason.contains("already in the ledger"),
        "{reason}"
    );
    let holder = run.devices.iter().find(|d| d.flash.locked).unwrap();
    let rid = regid(&holder.flash);
    let ledger = Ledger::open_read_only(&ws.station.ledger).unwrap();
    let history = ledger.identity_history(&rid).unwrap();
    assert_eq!(history.len(), 1, "{history:?}");
    assert_eq!(history[0].state, IdentityState::Enrolled);
    assert_eq!(
        history[0].device.as_ref().unwrap().serial_number,
        holder.flash.serial
    );
    ws.register_device(&holder.flash).unwrap();
}

/// The real `dps-station run` over simulated devices on pseudo-terminals: station.toml,
/// batch.toml, `--reprovision "<reason>"`.
#[test]
fn the_run_command_refuses_seen_devices_and_reprovisions_them_with_the_flag() {
    let ws = DemoWorkspace::create(KeyStoreChoice::SoftHsm).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sim = sim_in(&dir.path().join("flash"));
    std::fs::create_dir_all(dir.path().join("flash")).unwrap();
    let fleet = Fleet::start(DEVICES as usize, &sim).unwrap();
    let station = station_toml(
        &ws,
        "rma-station",
        "connection_string_env = \"DPS_STATION_TEST_CS\"",
        &fleet.paths(),
    );
    std::fs::write(dir.path().join("station.toml"), station).unwrap();
    let options = RunOptions {
        devices: DEVICES,
        ..RunOptions::default()
    };
    let batch = |name: &str| {
        let path = dir.path().join(format!("{name}.toml"));
        std::fs::write(
            &path,
            ws.batch_toml(Mode::SymmetricIndividual, name, &options),
        )
        .unwrap();
        path
    };
    let station_run = |batch: &std::path::Path, extra: &[&str]| -> Output {
        Command::new(BIN)
            .args(["run", "--headless", "--config"])
            .arg(dir.path().join("station.toml"))
            .arg("--batch")
            .arg(batch)
            .args(extra)
            .env("DPS_STATION_HSM_PIN", USER_PIN)
            .env(
                "DPS_STATION_TEST_CS",
                ws.emulator.connection_string().expose(),
            )
            .output()
            .unwrap()
    };
    let text = |o: &Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };
    let first = station_run(&batch("first"), &[]);
    assert!(first.status.success(), "{}", text(&first));

    let rma = batch("rma");
    let refused = station_run(&rma, &[]);
    assert!(!refused.status.success(), "{}", text(&refused));
    assert!(
        text(&refused).contains("--reprovision"),
        "{}",
        text(&refused)
    );

    let empty = station_run(&rma, &["--reprovision", " "]);
    assert!(!empty.status.success());
    assert!(text(&empty).contains("needs a reason"), "{}", text(&empty));

    // A group batch cannot re-provision (DPS would still accept the old credential): refused
    // before any device is touched, saying why and what to do.
    let group = dir.path().join("grp.toml");
    std::fs::write(&group, ws.batch_toml(Mode::SymmetricGroup, "grp", &options)).unwrap();
    let grouped = station_run(&group, &["--reprovision", "RMA 123"]);
    assert!(!grouped.status.success(), "{}", text(&grouped));
    assert!(
        text(&grouped).contains("cannot re-provision")
            && text(&grouped).contains("individual-enrollment mode"),
        "{}",
        text(&grouped)
    );

    let done = station_run(&rma, &["--reprovision", "RMA 123"]);
    assert!(done.status.success(), "{}", text(&done));
    assert!(text(&done).contains("RE-PROVISIONING"), "{}", text(&done));

    let ledger = Ledger::open_read_only(&dir.path().join("ledger.db")).unwrap();
    let all = ledger.list_identities(&IdentityFilter::default()).unwrap();
    let count = |state| all.iter().filter(|i| i.state == state).count();
    assert_eq!(count(IdentityState::Revoked), DEVICES as usize, "{all:?}");
    assert_eq!(count(IdentityState::Enrolled), DEVICES as usize, "{all:?}");
    assert!(
        ledger
            .audit_for("batch:rma")
            .unwrap()
            .iter()
            .any(|a| a.action == "reprovisioning.chosen" && a.details.contains("RMA 123")),
        "the run's choice is audited"
    );
    drop(ledger);
    let (ok, out) = ledger_verify(&dir.path().join("ledger.db"));
    assert!(ok, "{out}");
    for i in 0..DEVICES as usize {
        let flash = fleet.flash(i).unwrap();
        ws.register_device(&flash)
            .unwrap_or_else(|e| panic!("{}: {e}", flash.serial));
    }
    fleet.stop();
}

/// The key of a `symmetric-individual` identity is recomputed in the HSM from the nonce the
/// ledger recorded: a device written and locked by a run that stopped before the ledger said
/// `written` is completed (its read-back matches the recomputed key), not refused.
#[test]
fn a_symmetric_individual_key_is_recomputed_from_the_recorded_nonce_after_a_crash() {
    let ws = DemoWorkspace::create(KeyStoreChoice::SoftHsm).unwrap();
    let flash_dir = tempfile::tempdir().unwrap();
    let sim = sim_in(flash_dir.path());
    let first = run(&ws, Mode::SymmetricIndividual, "crash", &sim, None);
    assert_eq!(first.summary.passed(), DEVICES as usize);
    // What a crash between LOCK and the `written` commit leaves: the identities still `issued`,
    // nothing queued. (Written with the sqlite3 shell's equivalent; the audit chain is untouched.)
    {
        let c = rusqlite::Connection::open(&ws.station.ledger).unwrap();
        c.execute_batch(
            "DELETE FROM enrollments; UPDATE identities SET state = 'issued' WHERE state = 'enrolled';",
        )
        .unwrap();
    }
    let nonces: Vec<_> = identities(&ws).iter().map(|i| i.key_nonce).collect();
    assert!(nonces.iter().all(Option::is_some), "{nonces:?}");

    let resumed = run(&ws, Mode::SymmetricIndividual, "crash", &sim, None);
    assert_eq!(resumed.summary.resumed.voided, DEVICES);
    assert_eq!(
        resumed.summary.passed(),
        DEVICES as usize,
        "{:?}",
        resumed.summary.outcomes
    );
    assert_eq!(resumed.summary.enrollment.enrolled, DEVICES);
    let after = identities(&ws);
    assert!(
        after.iter().all(|i| i.state == IdentityState::Enrolled),
        "{after:?}"
    );
    assert_eq!(
        after.iter().map(|i| i.key_nonce).collect::<Vec<_>>(),
        nonces,
        "completed, not reissued"
    );
    for d in &resumed.devices {
        assert_eq!(
            d.flash.symmetric_key,
            first
                .devices
                .iter()
                .find(|f| f.flash.serial == d.flash.serial)
                .unwrap()
                .flash
                .symmetric_key
        );
        ws.register_device(&d.flash).unwrap();
    }
}

/// An enrollment DPS holds with other content, outside re-provisioning, is reported and left as
/// it is; re-provisioning the device is what replaces it.
#[test]
fn an_unexpected_conflict_is_reported_not_overwritten_and_reprovisioning_replaces_it() {
    let ws = DemoWorkspace::create(KeyStoreChoice::SoftHsm).unwrap();
    let flash_dir = tempfile::tempdir().unwrap();
    let sim = sim_in(flash_dir.path());
    // Devices whose serials are known before the run, and someone else's enrollment for the
    // registration ID of one of them.
    let mut rids = Vec::new();
    for i in 0..DEVICES as usize {
        let flash = Flash::factory(i);
        rids.push(format!(
            "demo-x509-csr-{}",
            flash.serial.to_ascii_lowercase()
        ));
        flash
            .save(&flash_dir.path().join(format!("sim-{i}.json")))
            .unwrap();
    }
    let taken = &rids[0];
    let foreign = payload::symmetric_key_individual(
        taken,
        Some(SecretString::new(BASE64_STANDARD.encode([5u8; 32]))),
        None,
        &EnrollmentSettings::default(),
    )
    .unwrap();
    ws.client().create_enrollment(&foreign).unwrap();

    let first = run(&ws, Mode::X509Csr, "first", &sim, None);
    assert_eq!(
        first.summary.passed(),
        DEVICES as usize,
        "the devices are written"
    );
    assert_eq!(first.summary.enrollment.enrolled, DEVICES - 1);
    assert_eq!(
        first.summary.enrollment.failed, 1,
        "the conflict is reported"
    );
    let ledger = Ledger::open_read_only(&ws.station.ledger).unwrap();
    let conflicted = ledger.find_identity(taken).unwrap().unwrap();
    assert_eq!(conflicted.state, IdentityState::Failed);
    let why = conflicted.failed_reason.clone().unwrap();
    assert!(
        why.contains("different attestation") && why.contains("re-provisioning"),
        "{why}"
    );
    drop(ledger);
    let held = |ws: &DemoWorkspace| {
        ws.emulator
            .enrollments_snapshot()
            .into_iter()
            .find(|e| e["registrationId"].as_str() == Some(taken.as_str()))
            .unwrap()
    };
    assert_eq!(
        held(&ws)["attestation"]["type"],
        "symmetricKey",
        "the existing enrollment is left untouched"
    );

    // The operator chooses re-provisioning (a new batch, so every device of the first one is
    // re-provisioned): each is reset and re-issued, and the conflicting enrollment is replaced.
    let rma = run(&ws, Mode::X509Csr, "rma", &sim, Some("conflict in DPS"));
    assert_eq!(
        rma.summary.passed(),
        DEVICES as usize,
        "{:?}",
        rma.summary.outcomes
    );
    assert_eq!(rma.summary.enrollment.enrolled, DEVICES);
    assert_eq!(held(&ws)["attestation"]["type"], "x509");
    let flash = rma
        .devices
        .iter()
        .find(|d| regid(&d.flash) == *taken)
        .unwrap();
    ws.register_device(&flash.flash).unwrap();
}

/// A first batch enrolled immediately, then the same three devices back with a new one in an
/// offline re-provisioning batch: four identities queued, three of them replacing a revoked one.
fn queued_rma(ws: &DemoWorkspace, sim: &SimOptions) -> Run {
    let first = run(ws, Mode::X509Csr, "first", sim, None);
    assert_eq!(first.summary.enrollment.enrolled, DEVICES);
    let rma = run_timed(
        ws,
        Mode::X509Csr,
        "rma",
        sim,
        Some("RMA 9"),
        "offline",
        DEVICES + 1,
    );
    assert_eq!(
        rma.summary.passed(),
        DEVICES as usize + 1,
        "{:?}",
        rma.summary.outcomes
    );
    assert_eq!(rma.summary.pending_enrollments, DEVICES + 1);
    rma
}

fn office_ledger(ws: &DemoWorkspace) -> Ledger {
    Ledger::open(
        &ws.station.ledger,
        &WriterIdentity {
            station: "office".into(),
            operator: "eve".into(),
        },
    )
    .unwrap()
}

/// Re-provisioned identities left queued (offline enrollment) replace their DPS enrollment when
/// `dps-station enroll` sends them later.
#[test]
fn queued_reprovisioned_identities_are_replaced_by_enroll() {
    let ws = DemoWorkspace::create(KeyStoreChoice::SoftHsm).unwrap();
    let flash_dir = tempfile::tempdir().unwrap();
    let rma = queued_rma(&ws, &sim_in(flash_dir.path()));
    let mut ledger = office_ledger(&ws);
    let summary = enroll_pending(
        &mut ledger,
        &ws.client(),
        &EnrollOptions {
            dps_target: "emulator".into(),
            settings: EnrollmentSettings::default(),
            reprovision: false,
            individual_keys: None,
            batch: None,
        },
        |_| {},
    )
    .unwrap();
    assert_eq!(summary.replaced, DEVICES as usize, "{summary:?}");
    assert_eq!(summary.created, 1, "{summary:?}");
    assert!(summary.failed.is_empty(), "{summary:?}");
    for d in &rma.devices {
        let rid = regid(&d.flash);
        let live = ledger.find_identity(&rid).unwrap().unwrap();
        assert_eq!(live.state, IdentityState::Enrolled);
        enrollment_holds(&ws, Mode::X509Csr, &rid, &live, &d.flash);
        ws.register_device(&d.flash).unwrap();
    }
}

/// Exported, the re-provisioned identities go into their own bulk files with `"mode": "update"`
/// (and `az iot dps enrollment update` commands, CSV operation `update`), the new device into a
/// `create` file. Applied to DPS as written, the update file replaces the old enrollments; the
/// answers imported mark all four enrolled, and every device registers with its new certificate.
#[test]
fn queued_reprovisioned_identities_are_exported_as_replacements() {
    let ws = DemoWorkspace::create(KeyStoreChoice::SoftHsm).unwrap();
    let flash_dir = tempfile::tempdir().unwrap();
    let rma = queued_rma(&ws, &sim_in(flash_dir.path()));
    let mut ledger = office_ledger(&ws);
    let out = tempfile::tempdir().unwrap();
    let files = out.path().join("files");
    let report = export_pending(
        &ledger,
        "emulator",
        None,
        &EnrollmentSettings::default(),
        Vec::new(),
        None,
        &files,
    )
    .unwrap();
    assert_eq!(report.written.individuals, DEVICES as usize + 1);
    assert!(report.left_out.is_empty(), "{:?}", report.left_out);

    let read = |name: &str| -> BulkEnrollmentOperation {
        serde_json::from_str(&std::fs::read_to_string(files.join(name)).unwrap()).unwrap()
    };
    let creating = read("bulk/enrollments-0001.json");
    let replacing = read("bulk/enrollments-update-0001.json");
    assert_eq!(creating.mode, BulkMode::Create);
    assert_eq!(creating.enrollments.len(), 1);
    assert_eq!(replacing.mode, BulkMode::Update);
    assert_eq!(replacing.enrollments.len(), DEVICES as usize);
    assert!(!files.join("bulk/enrollments-0002.json").exists());
    let first_ids: Vec<String> = {
        let mut all: Vec<_> = rma.devices.iter().map(|d| regid(&d.flash)).collect();
        all.retain(|id| {
            replacing
                .enrollments
                .iter()
                .any(|e| e.registration_id == *id)
        });
        all
    };
    assert_eq!(first_ids.len(), DEVICES as usize, "the three seen devices");

    let script = std::fs::read_to_string(files.join("enroll-with-az.sh")).unwrap();
    for id in &first_ids {
        assert!(
            script.contains(&format!(
                "az iot dps enrollment update --dps-name \"$DPS_NAME\" --resource-group \"$DPS_RESOURCE_GROUP\" \\\n    --enrollment-id '{id}' --certificate-path"
            )),
            "{script}"
        );
    }
    assert_eq!(
        script.matches("az iot dps enrollment update").count(),
        DEVICES as usize
    );
    let check = Command::new("sh")
        .arg("-n")
        .arg(files.join("enroll-with-az.sh"))
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let mut csv = csv::Reader::from_path(files.join("enrollments.csv")).unwrap();
    let headers = csv.headers().unwrap().clone();
    let op = headers.iter().position(|h| h == "operation").unwrap();
    let id_col = headers.iter().position(|h| h == "registration_id").unwrap();
    for row in csv.records().map(Result::unwrap) {
        let expected = if first_ids.iter().any(|id| id == &row[id_col]) {
            "update"
        } else {
            "create"
        };
        assert_eq!(&row[op], expected, "{row:?}");
    }
    let readme = std::fs::read_to_string(files.join("README.txt")).unwrap();
    assert!(readme.contains("enrollments-update-NNNN.json"), "{readme}");

    // A create over the old enrollments would be refused: the update body replaces them.
    let client = ws.client();
    for (name, body) in [
        ("bulk/enrollments-0001.result.json", &creating),
        ("bulk/enrollments-update-0001.result.json", &replacing),
    ] {
        let report = client.bulk_enrollments(&body.enrollments, body.mode);
        assert!(report.all_succeeded(), "{name}: {report:?}");
        // What DPS answers to a bulk call in which every item succeeded.
        let answer = BulkEnrollmentOperationResult {
            is_successful: true,
            errors: Vec::new(),
        };
        std::fs::write(files.join(name), serde_json::to_vec(&answer).unwrap()).unwrap();
    }
    let imported = import_pending_results(&mut ledger, "emulator", &files).unwrap();
    assert_eq!(imported.enrolled, DEVICES as usize + 1, "{imported:?}");
    for d in &rma.devices {
        let rid = regid(&d.flash);
        let live = ledger.find_identity(&rid).unwrap().unwrap();
        assert_eq!(live.state, IdentityState::Enrolled);
        enrollment_holds(&ws, Mode::X509Csr, &rid, &live, &d.flash);
        ws.register_device(&d.flash).unwrap();
    }
}
