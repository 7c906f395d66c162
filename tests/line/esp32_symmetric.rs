//! ESP32s in symmetric-key batches (issue 16, point 1): `symmetric-group` and
//! `symmetric-individual`, the device key derived for each registration ID and written in the
//! `esp_secure_cert` partition's user-data entry 4 (type 54); the group (or each identity)
//! enrolled, and every device registering through the emulator with the key read back from its
//! simulated flash, as firmware reads it. The derived keys cross to the device and nowhere else:
//! not in the station's log at any level, not in the ledger's SQLite file.

use std::io::Write;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::prelude::BASE64_STANDARD;
use dps_station::device::esp32::driver::Esp32Options;
use dps_station::device::esp32::secure_cert::SecureCertImage;
use dps_station::device::esp32::symmetric::{TYPE_SYMMETRIC_KEY, symmetric_key};
use dps_station::device::simulator::Esp32Faults;
use dps_station::emulator::device_client::DeviceCredential;
use dps_station::ledger::{IdentityFilter, IdentityState, Ledger};
use dps_station::station::config::Mode;
use dps_station::station::demo::{DemoWorkspace, KeyStoreChoice, RunOptions};
use dps_station::station::engine::Engine;
use dps_station::station::events::BatchState;
use dps_station::station::sim_fixture::SimFixture;
use dps_station::station::sim_fixture_esp32::{Esp32Family, esp32_registration, register_esp32};
use dps_station::station::source::DeviceSource;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn symmetric_batches_of_esp32s_register_with_the_keys_in_flash_and_the_keys_go_nowhere_else() {
    // Global, at TRACE for the station's crate: the engine's, the slots' and the emulator's
    // threads are all captured. No other test of this binary installs a subscriber.
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("dps_station=trace"))
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .try_init()
        .expect("the only subscriber of the line test binary");

    let ws = DemoWorkspace::create(KeyStoreChoice::SoftHsm).unwrap();
    let flash = tempfile::tempdir().unwrap();
    let mut keys = Vec::new();
    for (mode, name, first) in [
        (Mode::SymmetricGroup, "t-esp32-sym", 3200),
        (Mode::SymmetricIndividual, "t-esp32-ind", 3210),
    ] {
        let options = RunOptions {
            devices: 6,
            ..RunOptions::default()
        };
        let text = ws.batch_toml(mode, name, &options);
        let text = format!("plaintext_cable = true\n{text}");
        let fixture = SimFixture::of(
            6,
            first,
            Esp32Family {
                faults: Esp32Faults::default(),
                driver: Esp32Options::default(),
                flash_dir: flash.path().to_path_buf(),
            },
        );
        let sources: Vec<(String, Box<dyn DeviceSource>)> = (1..=3)
            .map(|i| {
                let slot = format!("S{i}");
                (
                    slot.clone(),
                    Box::new(Arc::clone(&fixture).slot(&slot)) as Box<dyn DeviceSource>,
                )
            })
            .collect();
        let engine = Engine::start(ws.engine_setup(name, &text, sources).unwrap()).unwrap();
        for _ in engine.events.iter() {}
        let summary = engine.join().unwrap();
        let failures: Vec<_> = summary
            .outcomes
            .iter()
            .filter_map(|o| o.failure.clone())
            .collect();
        assert!(failures.is_empty(), "{failures:?}");
        assert_eq!(summary.passed(), 6);
        assert_eq!(summary.state, BatchState::Closed);
        assert_eq!(summary.enrollment.enrolled, 6, "every identity confirmed");
        if mode == Mode::SymmetricGroup {
            assert!(
                ws.emulator
                    .groups_snapshot()
                    .iter()
                    .any(|g| g["attestation"]["type"] == "symmetricKey"),
                "the devices register through a symmetric-key enrollment group"
            );
        }

        for device in &fixture.records() {
            assert!(device.passed, "{device:?}");
            let image = SecureCertImage::parse(&device.partition).unwrap();
            assert!(
                image.entry(TYPE_SYMMETRIC_KEY).is_some() && image.entry(1).is_none(),
                "esp32 {}: the key in user data 4, no certificate",
                device.serial
            );
            let reg = esp32_registration(&ws, device).unwrap();
            assert!(matches!(reg.credential, DeviceCredential::SymmetricKey(_)));
            assert_eq!(reg.id_scope, ws.emulator.id_scope());
            register_esp32(&ws, device).unwrap_or_else(|e| panic!("esp32 {}: {e}", device.serial));
            keys.push(symmetric_key(&image).unwrap().to_vec());
        }

        let ledger = Ledger::open_read_only(&ws.station.ledger).unwrap();
        let enrolled = ledger
            .list_identities(&IdentityFilter {
                batch: Some(name.into()),
                state: Some(IdentityState::Enrolled),
                ..IdentityFilter::default()
            })
            .unwrap();
        assert_eq!(enrolled.len(), 6);
        drop(ledger);
    }
    assert_eq!(keys.len(), 12);

    // The keys, in every form a careless line would print or store them.
    let log = captured.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
    assert!(
        contains(&log, b"esp32"),
        "the log was captured (it names the family)"
    );
    let mut files = Vec::new();
    for suffix in ["", "-wal", "-journal"] {
        let path = format!("{}{suffix}", ws.station.ledger.display());
        if let Ok(bytes) = std::fs::read(&path) {
            files.push((path, bytes));
        }
    }
    assert!(!files.is_empty(), "the ledger file was read");
    for key in &keys {
        let forms = [
            key.clone(),
            BASE64_STANDARD.encode(key).into_bytes(),
            hex::encode(key).into_bytes(),
            hex::encode_upper(key).into_bytes(),
        ];
        for form in &forms {
            assert!(!contains(&log, form), "a derived key is in the log");
            for (path, bytes) in &files {
                assert!(!contains(bytes, form), "a derived key is in {path}");
            }
        }
    }
}
