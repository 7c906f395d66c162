//! The `tpm` mode beyond "it passes" (that is in `modes.rs`): a template naming `{regid}` takes
//! the ID the device suggests, the ledger and DPS hold the EK as the TPM's TPM2B_PUBLIC, and a
//! device whose EK is not the enrolled one cannot register; a locked TPM device whose identity was
//! voided is completed on the next run only if it still has the recorded EK.

use base64::Engine as _;
use base64::prelude::BASE64_STANDARD;
use dps_station::device::ClientOptions;
use dps_station::device::simulator::{Flash, Fleet, SimFaults, SimOptions};
use dps_station::identity::tpm_ek;
use dps_station::ledger::{IdentityState, Ledger};
use dps_station::station::config::Mode;
use dps_station::station::demo::{DemoWorkspace, KeyStoreChoice, RunOptions};
use dps_station::station::engine::Engine;
use dps_station::station::events::Stage;
use dps_station::station::source::{DeviceSource, VirtualFixture};
use p256::pkcs8::EncodePublicKey as _;
use sha2::{Digest, Sha256};

use super::common::port_sources;

/// The DER SPKI of a simulated TPM's EK, from the scalar its flash keeps.
fn ek_spki(scalar_hex: &str) -> Vec<u8> {
    let secret = p256::SecretKey::from_slice(&hex::decode(scalar_hex).unwrap()).unwrap();
    secret
        .public_key()
        .to_public_key_der()
        .unwrap()
        .as_bytes()
        .to_vec()
}

#[test]
fn a_regid_template_takes_the_devices_suggestion_and_a_foreign_ek_cannot_register() {
    let ws = DemoWorkspace::create(KeyStoreChoice::Software).unwrap();
    let options = RunOptions {
        devices: 3,
        slots: 3,
        ..RunOptions::default()
    };
    let text = ws
        .batch_toml(Mode::Tpm, "tpm-suggested", &options)
        .replace("{product}-tpm-{serial}", "{product}-{regid}");
    assert!(text.contains("{regid}"), "{text}");
    let fixture = VirtualFixture::new(3, SimOptions::default(), ClientOptions::default());
    let sources: Vec<(String, Box<dyn DeviceSource>)> = ["S1", "S2", "S3"]
        .iter()
        .map(|s| {
            (
                s.to_string(),
                Box::new(fixture.slot(s)) as Box<dyn DeviceSource>,
            )
        })
        .collect();
    let engine = Engine::start(ws.engine_setup("tpm-suggested", &text, sources).unwrap()).unwrap();
    for _ in engine.events.iter() {}
    let summary = engine.join().unwrap();
    assert_eq!(summary.passed(), 3, "{:?}", summary.outcomes);

    let enrollments = ws.emulator.enrollments_snapshot();
    let ledger = Ledger::open_read_only(&ws.station.ledger).unwrap();
    let devices = fixture.records();
    assert_eq!(devices.len(), 3);
    for device in &devices {
        let flash = &device.flash;
        let spki = ek_spki(flash.tpm_ek.as_deref().unwrap());
        // The simulator suggests the first 32 hex digits of SHA-256 over its EK's SPKI.
        let suggestion = &hex::encode(Sha256::digest(&spki))[..32];
        let rid = format!("demo-{suggestion}");
        let config = flash.config.as_ref().unwrap();
        assert_eq!(
            config.iter().find(|(k, _)| k == "regid").unwrap().1,
            rid,
            "the device holds the suggested ID"
        );
        let tpm2b = tpm_ek::spki_to_tpm2b_public(&spki).unwrap();
        let record = ledger.find_identity(&rid).unwrap().unwrap();
        assert_eq!(
            record.endorsement_key.as_deref(),
            Some(tpm2b.as_slice()),
            "the ledger keeps the TPM2B_PUBLIC"
        );
        let enrollment = enrollments
            .iter()
            .find(|e| e["registrationId"] == rid.as_str())
            .unwrap_or_else(|| panic!("{rid} is not enrolled"));
        assert_eq!(enrollment["attestation"]["type"], "tpm");
        assert_eq!(
            enrollment["attestation"]["tpm"]["endorsementKey"],
            BASE64_STANDARD.encode(&tpm2b),
            "DPS holds the TPM2B_PUBLIC"
        );
        ws.register_device(flash)
            .unwrap_or_else(|e| panic!("{rid} could not register: {e}"));
    }

    // The same device with another TPM (another EK) is refused by DPS.
    let mut impostor = devices[0].flash.clone();
    impostor.tpm_ek = Some(hex::encode([0x5Au8; 32]));
    let err = ws.register_device(&impostor).unwrap_err().to_string();
    assert!(
        err.contains("401") && err.contains("not the enrolled one"),
        "{err}"
    );
}

/// A TPM device whose LOCK landed but whose answer was lost (the cable went): the identity is
/// voided, and the next run completes it from the device's config and EK, unless the device no
/// longer has the recorded EK.
#[test]
fn a_locked_tpm_device_with_a_voided_identity_is_completed_only_with_its_recorded_ek() {
    let ws = DemoWorkspace::create(KeyStoreChoice::Software).unwrap();
    let flash_dir = tempfile::tempdir().unwrap();
    let options = RunOptions {
        devices: 2,
        ..RunOptions::default()
    };
    let text = ws.batch_toml(Mode::Tpm, "tpm-resume", &options);

    // HELLO, TPM-EK, CONFIG, READBACK are answered; then the cable goes before LOCK's answer.
    let cut = SimOptions {
        faults: SimFaults {
            disconnect_after: Some(4),
            ..SimFaults::default()
        },
        flash_dir: Some(flash_dir.path().to_path_buf()),
        ..SimOptions::default()
    };
    let fleet = Fleet::start(2, &cut).unwrap();
    let engine = Engine::start(
        ws.engine_setup("tpm-resume", &text, port_sources(&fleet.paths()))
            .unwrap(),
    )
    .unwrap();
    for _ in engine.events.iter() {}
    let summary = engine.join().unwrap();
    assert_eq!(summary.failed(), 2, "{:?}", summary.outcomes);
    for o in &summary.outcomes {
        let (stage, reason) = o.failure.clone().unwrap();
        assert_eq!(stage, Stage::Lock, "{reason}");
    }
    drop(fleet);

    // The LOCK did land on both; device 1 has since had its TPM replaced.
    for i in 0..2 {
        let path = flash_dir.path().join(format!("sim-{i}.json"));
        let mut flash = Flash::load(&path).unwrap().unwrap();
        flash.locked = true;
        if i == 1 {
            flash.tpm_ek = Some(hex::encode([0x33u8; 32]));
        }
        flash.save(&path).unwrap();
    }
    let healthy = SimOptions {
        flash_dir: Some(flash_dir.path().to_path_buf()),
        ..SimOptions::default()
    };
    let fleet = Fleet::start(2, &healthy).unwrap();
    let engine = Engine::start(
        ws.engine_setup("tpm-resume", &text, port_sources(&fleet.paths()))
            .unwrap(),
    )
    .unwrap();
    for _ in engine.events.iter() {}
    let summary = engine.join().unwrap();
    let failures: Vec<_> = summary
        .outcomes
        .iter()
        .filter_map(|o| o.failure.clone())
        .collect();
    assert_eq!(failures.len(), 1, "{:?}", summary.outcomes);
    assert_eq!(failures[0].0, Stage::Check);
    assert!(failures[0].1.contains("factory reset"), "{}", failures[0].1);
    drop(fleet);

    let ledger = Ledger::open_read_only(&ws.station.ledger).unwrap();
    let flash0 = Flash::load(&flash_dir.path().join("sim-0.json"))
        .unwrap()
        .unwrap();
    let rid0 = flash0.config.as_ref().unwrap()[0].1.clone();
    let record = ledger.find_identity(&rid0).unwrap().unwrap();
    assert!(
        matches!(
            record.state,
            IdentityState::Written | IdentityState::Enrolled
        ),
        "{rid0}: {:?}",
        record.state
    );
    ws.register_device(&flash0)
        .unwrap_or_else(|e| panic!("{rid0} could not register: {e}"));
    let flash1 = Flash::load(&flash_dir.path().join("sim-1.json"))
        .unwrap()
        .unwrap();
    let rid1 = flash1.config.as_ref().unwrap()[0].1.clone();
    let record = ledger.find_identity(&rid1).unwrap().unwrap();
    assert_eq!(record.state, IdentityState::Failed, "{rid1}");
}
