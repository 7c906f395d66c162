//! The `tpm` mode beyond "it passes" (that is in `modes.rs`): a template naming `{regid}` takes
//! the ID the device suggests, the ledger and DPS hold the EK as the TPM's TPM2B_PUBLIC, and a
//! device whose EK is not the enrolled one cannot register.

use base64::Engine as _;
use base64::prelude::BASE64_STANDARD;
use dps_station::device::ClientOptions;
use dps_station::device::simulator::SimOptions;
use dps_station::identity::tpm_ek;
use dps_station::ledger::Ledger;
use dps_station::station::config::Mode;
use dps_station::station::demo::{DemoWorkspace, KeyStoreChoice, RunOptions};
use dps_station::station::engine::Engine;
use dps_station::station::source::{DeviceSource, VirtualFixture};
use p256::pkcs8::EncodePublicKey as _;
use sha2::{Digest, Sha256};

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
