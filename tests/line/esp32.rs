//! ESP32s on the line: a batch of 8 simulated ROM bootloaders in four slots, `x509-inject` (the
//! station makes each key, the HSM signs each certificate, the key crosses the trusted cable in
//! the `esp_secure_cert` image), every identity enrolled in the emulator, and every device
//! registering through the emulator's device API with what is read back from its simulated flash.
//! Bad input: a chip whose flash fails MD5 is failed with its serial named and voided in the
//! ledger (nothing half recorded), and DPS gets nothing of it.

use std::sync::Arc;

use dps_station::device::esp32::driver::Esp32Options;
use dps_station::device::simulator::Esp32Faults;
use dps_station::ledger::{IdentityFilter, IdentityState, Ledger};
use dps_station::station::config::Mode;
use dps_station::station::demo::{DemoWorkspace, KeyStoreChoice, RunOptions};
use dps_station::station::engine::Engine;
use dps_station::station::events::BatchState;
use dps_station::station::sim_fixture::SimFixture;
use dps_station::station::sim_fixture_esp32::{Esp32Family, register_esp32};
use dps_station::station::source::DeviceSource;

use super::common::{max_in_flight, openssl_verify};

#[test]
fn eight_esp32s_are_provisioned_enrolled_and_register_with_what_their_flash_holds() {
    let ws = DemoWorkspace::create(KeyStoreChoice::SoftHsm).unwrap();
    let flash = tempfile::tempdir().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let text = ws.batch_toml(Mode::X509Inject, "t-esp32", &RunOptions::default());
    let text = format!("plaintext_cable = true\n{text}");
    let fixture = SimFixture::of(
        8,
        3000,
        Esp32Family {
            faults: Esp32Faults::default(),
            driver: Esp32Options::default(),
            flash_dir: flash.path().to_path_buf(),
        },
    );
    let sources: Vec<(String, Box<dyn DeviceSource>)> = (1..=4)
        .map(|i| {
            let slot = format!("E{i}");
            (
                slot.clone(),
                Box::new(Arc::clone(&fixture).slot(&slot)) as Box<dyn DeviceSource>,
            )
        })
        .collect();
    let engine = Engine::start(ws.engine_setup("t-esp32", &text, sources).unwrap()).unwrap();
    let events: Vec<_> = engine.events.iter().collect();
    let summary = engine.join().unwrap();
    let failures: Vec<_> = summary
        .outcomes
        .iter()
        .filter_map(|o| o.failure.clone())
        .collect();
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(summary.passed(), 8);
    assert_eq!(summary.state, BatchState::Closed);
    assert_eq!(
        summary.enrollment.enrolled, 8,
        "every identity confirmed by DPS"
    );
    assert!(max_in_flight(&events) >= 2, "slots did not run at once");

    let records = fixture.records();
    assert_eq!(records.len(), 8);
    let mut rids = std::collections::HashSet::new();
    for device in &records {
        assert!(device.passed, "{device:?}");
        assert_eq!(
            device.efuse_burns, 0,
            "no eFuse burnt without the batch option"
        );
        let reg = dps_station::station::sim_fixture_esp32::esp32_registration(&ws, device).unwrap();
        assert_eq!(reg.id_scope, ws.emulator.id_scope());
        if let dps_station::emulator::device_client::DeviceCredential::X509 { chain_pem, .. } =
            &reg.credential
        {
            openssl_verify(scratch.path(), chain_pem, ws.root_pem())
                .unwrap_or_else(|e| panic!("esp32 {}: {e}", device.serial));
        }
        register_esp32(&ws, device).unwrap_or_else(|e| panic!("esp32 {}: {e}", device.serial));
        rids.insert(reg.registration_id);
    }
    assert_eq!(rids.len(), 8, "one identity per chip");

    let ledger = Ledger::open_read_only(&ws.station.ledger).unwrap();
    let enrolled = ledger
        .list_identities(&IdentityFilter {
            batch: Some("t-esp32".into()),
            state: Some(IdentityState::Enrolled),
            ..IdentityFilter::default()
        })
        .unwrap();
    assert_eq!(enrolled.len(), 8);
}

#[test]
fn a_chip_whose_flash_fails_md5_is_failed_by_name_and_nothing_of_it_is_enrolled() {
    let ws = DemoWorkspace::create(KeyStoreChoice::SoftHsm).unwrap();
    let flash = tempfile::tempdir().unwrap();
    let text = ws.batch_toml(Mode::X509Inject, "t-esp32-md5", &RunOptions::default());
    let text = format!("plaintext_cable = true\n{text}");
    let enrollments_before = ws.emulator.enrollments_snapshot().len();
    let fixture = SimFixture::of(
        1,
        3100,
        Esp32Family {
            faults: Esp32Faults {
                bad_flash_write: true,
                ..Esp32Faults::default()
            },
            driver: Esp32Options::default(),
            flash_dir: flash.path().to_path_buf(),
        },
    );
    let sources: Vec<(String, Box<dyn DeviceSource>)> =
        vec![("E1".into(), Box::new(Arc::clone(&fixture).slot("E1")))];
    let engine = Engine::start(ws.engine_setup("t-esp32-md5", &text, sources).unwrap()).unwrap();
    for _ in engine.events.iter() {}
    let summary = engine.join().unwrap();
    assert_eq!(summary.passed(), 0);
    let outcome = &summary.outcomes[0];
    let serial = outcome.serial.clone().unwrap();
    let (_, reason) = outcome.failure.clone().unwrap();
    assert!(
        reason.contains("SPI_FLASH_MD5") && reason.contains("run the device again"),
        "{reason}"
    );
    assert_eq!(fixture.records()[0].serial, serial);
    // The identity issued for it is voided, not written, and DPS got nothing.
    let ledger = Ledger::open_read_only(&ws.station.ledger).unwrap();
    let ids = ledger
        .list_identities(&IdentityFilter {
            batch: Some("t-esp32-md5".into()),
            ..IdentityFilter::default()
        })
        .unwrap();
    assert!(
        !ids.is_empty() && ids.iter().all(|i| i.state == IdentityState::Failed),
        "{ids:?}"
    );
    assert_eq!(ws.emulator.enrollments_snapshot().len(), enrollments_before);
}

#[test]
fn a_partition_too_small_for_the_batchs_identities_is_refused_before_the_batch_starts() {
    let ws = DemoWorkspace::create(KeyStoreChoice::SoftHsm).unwrap();
    let dir = tempfile::tempdir().unwrap();
    // A CA whose certificate alone (a long subject) leaves no room in a 4 KiB partition.
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    for i in 0..40 {
        params.distinguished_name.push(
            rcgen::DnType::CustomDnType(vec![2, 5, 4, 11, i]),
            format!("a rather long organisational unit name number {i} of the factory"),
        );
    }
    let ca = params
        .self_signed(&rcgen::KeyPair::generate().unwrap())
        .unwrap();
    let chain = dir.path().join("big-ca.pem");
    std::fs::write(&chain, ca.pem()).unwrap();
    let table = dir.path().join("partitions.csv");
    std::fs::write(
        &table,
        "esp_secure_cert, 0x3F, , 0xD000, 0x1000, encrypted\n",
    )
    .unwrap();
    let text = ws.batch_toml(Mode::X509Inject, "t-esp32-room", &RunOptions::default());
    let demo_chain = ws.dir.join("ca-chain.pem").display().to_string();
    assert!(text.contains(&demo_chain));
    let text = format!(
        "plaintext_cable = true\n{}\n[esp32]\npartition_table = {:?}\n",
        text.replace(&demo_chain, &chain.display().to_string()),
        table.display().to_string()
    );
    let flash = tempfile::tempdir().unwrap();
    let fixture = SimFixture::of(
        1,
        3300,
        Esp32Family {
            faults: Esp32Faults::default(),
            driver: Esp32Options::default(),
            flash_dir: flash.path().to_path_buf(),
        },
    );
    let sources: Vec<(String, Box<dyn DeviceSource>)> =
        vec![("E1".into(), Box::new(Arc::clone(&fixture).slot("E1")))];
    let Err(err) = Engine::start(ws.engine_setup("t-esp32-room", &text, sources).unwrap()) else {
        panic!("a partition that holds no identity of the batch must be refused");
    };
    let text = err.to_string();
    assert!(
        text.contains("slot E1")
            && text.contains("esp32.partition_table")
            && text.contains("keys.ca_chain")
            && text.contains("0x1000 at 0xD000"),
        "{text}"
    );
    assert_eq!(fixture.started(), 0, "no device was touched");
}
