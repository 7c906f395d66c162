//! Device families on one fixture: station-protocol, nRF91 modem and Zephyr SMP slots in the same
//! x509-csr batch at once, every identity enrolled in the emulator and every device registering
//! with the credentials it stored; a mode a slot's family cannot do is refused before the batch.

use std::collections::HashSet;

use dps_station::device::nrf91::Nrf91Options;
use dps_station::device::nrf91::cose::check_keygen_attestation;
use dps_station::device::simulator::ModemFaults;
use dps_station::station::config::Mode;
use dps_station::station::demo::RunOptions;
use dps_station::station::demo::{DemoWorkspace, KeyStoreChoice};
use dps_station::station::demo_families::{
    MixedOptions, modem_registration, register_modem, register_smp, run_mixed,
};
use dps_station::station::engine::{Engine, EngineError};
use dps_station::station::events::BatchState;
use dps_station::station::sim_fixture::ModemFixture;
use dps_station::station::source::DeviceSource;

use dps_station::ledger::{IdentityFilter, IdentityState, Ledger};

use super::common::{ledger_verify, max_in_flight, openssl_verify};

#[test]
fn eight_devices_of_each_family_in_one_fixture_all_enroll_and_register() {
    let ws = DemoWorkspace::create(KeyStoreChoice::SoftHsm).unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let run = run_mixed(&ws, "t-mixed", &MixedOptions::default(), &mut |_| {}).unwrap();
    let failures: Vec<_> = run
        .summary
        .outcomes
        .iter()
        .filter_map(|o| o.failure.clone())
        .collect();
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(run.summary.passed(), 24);
    assert_eq!(run.summary.state, BatchState::Closed);
    assert_eq!(
        run.summary.enrollment.enrolled, 24,
        "every identity confirmed by DPS"
    );
    assert!(max_in_flight(&run.events) >= 4, "slots did not run at once");
    assert_eq!(run.modems.len(), 8);
    // The batch report says where each family's registration data is.
    let report = dps_station::station::report::markdown("t-mixed", "s", "k", &run.summary);
    assert!(
        report.contains("- Family station: 8 devices, registration data written")
            && report.contains("- Family nrf91: 8 devices, ID scope and global endpoint carried by the product firmware")
            && report.contains("- Family zephyr-smp: 8 devices, registration data written"),
        "{report}"
    );
    assert_eq!(run.station_devices.len(), 8);
    assert_eq!(run.zephyr.len(), 8);
    for device in &run.zephyr {
        assert!(device.passed);
        let [regid, scope, endpoint] = &device.settings;
        assert_eq!(
            scope.as_deref(),
            Some(ws.emulator.id_scope()),
            "saved setting"
        );
        assert!(regid.is_some() && endpoint.is_some());
        let chain = format!(
            "{}{}",
            String::from_utf8_lossy(device.certificate.as_deref().unwrap()),
            String::from_utf8_lossy(device.ca_chain.as_deref().unwrap())
        );
        openssl_verify(scratch.path(), &chain, ws.root_pem())
            .unwrap_or_else(|e| panic!("zephyr {}: {e}", device.serial));
        register_smp(&ws, device).unwrap_or_else(|e| panic!("zephyr {}: {e}", device.serial));
    }

    let mut ids = HashSet::new();
    for modem in &run.modems {
        assert!(modem.passed);
        // An nRF91 is done once verified: it cannot lock, and the station does not void it.
        let cert = modem.credential(1).expect("client certificate written");
        let chain = modem.credential(0).expect("CA chain written");
        assert!(modem.credential(2).is_some(), "the modem's own key");
        openssl_verify(scratch.path(), &format!("{cert}\n{chain}\n"), ws.root_pem())
            .unwrap_or_else(|e| panic!("modem {}: {e}", modem.imei));
        register_modem(&ws, modem).unwrap_or_else(|e| panic!("modem {}: {e}", modem.imei));
        assert!(ids.insert(modem.imei.clone()));
    }
    for device in &run.station_devices {
        assert!(device.flash.locked, "a station-protocol device still locks");
        ws.register_device(&device.flash).unwrap();
    }
    // The ledger holds all sixteen enrolled, and its chain verifies.
    let ledger = Ledger::open_read_only(&ws.station.ledger).unwrap();
    let written = ledger
        .list_identities(&IdentityFilter {
            batch: Some("t-mixed".into()),
            state: Some(IdentityState::Enrolled),
            ..IdentityFilter::default()
        })
        .unwrap()
        .len();
    // Each modem's identity keeps the CSR it made and the modem's attestation naming it.
    for modem in &run.modems {
        let rid = modem_registration(&ws, modem).unwrap().registration_id;
        let record = ledger.live_or_last_revoked(&rid).unwrap().unwrap();
        let evidence = ledger
            .key_evidence(record.id)
            .unwrap()
            .expect("key evidence kept");
        let attestation = evidence.attestation.expect("the modem's attestation kept");
        check_keygen_attestation(&attestation, &evidence.csr_der).unwrap();
    }
    for device in &run.station_devices {
        let rid = &device
            .flash
            .config
            .as_ref()
            .unwrap()
            .iter()
            .find(|(k, _)| k == "regid")
            .unwrap()
            .1;
        let record = ledger.live_or_last_revoked(rid).unwrap().unwrap();
        assert_eq!(
            ledger.key_evidence(record.id).unwrap(),
            None,
            "KEYGEN + CSR keep none"
        );
    }
    drop(ledger);
    let (ok, out) = ledger_verify(&ws.station.ledger);
    assert!(ok, "{out}");
    assert_eq!(written, 24);
}

#[test]
fn a_mode_a_slots_family_cannot_do_is_refused_before_the_batch_starts() {
    let ws = DemoWorkspace::create(KeyStoreChoice::SoftHsm).unwrap();
    let modems = ModemFixture::new(1, 5000, ModemFaults::default(), Nrf91Options::default());
    let sources: Vec<(String, Box<dyn DeviceSource>)> =
        vec![("N1".into(), Box::new(modems.slot("N1")))];
    let text = ws.batch_toml(Mode::Tpm, "t-misfit", &RunOptions::default());
    let setup = ws.engine_setup("t-misfit", &text, sources).unwrap();
    let Err(err) = Engine::start(setup) else {
        panic!("a tpm batch on an nrf91 slot must be refused");
    };
    assert!(matches!(err, EngineError::FamilyMisfit { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("slot N1") && text.contains("nrf91") && text.contains("x509-csr"),
        "{text}"
    );
    assert_eq!(modems.started(), 0, "no device was touched");
}

#[test]
fn an_nrf91_takes_a_station_key_in_plain_only_when_the_batch_trusts_the_cable() {
    let ws = DemoWorkspace::create(KeyStoreChoice::SoftHsm).unwrap();
    let text = ws.batch_toml(Mode::X509Inject, "t-inject", &RunOptions::default());
    // Without the choice: refused before the batch starts, saying what to change.
    let modems = ModemFixture::new(2, 6000, ModemFaults::default(), Nrf91Options::default());
    let sources: Vec<(String, Box<dyn DeviceSource>)> =
        vec![("N1".into(), Box::new(modems.slot("N1")))];
    let setup = ws.engine_setup("t-inject", &text, sources).unwrap();
    let Err(err) = Engine::start(setup) else {
        panic!("plain injection needs the batch's explicit choice");
    };
    assert!(err.to_string().contains("plaintext_cable = true"), "{err}");
    assert_eq!(modems.started(), 0);

    // With it: the key crosses in plain, is read back by the modem's digest, and the modem
    // registers with the key and certificate it holds.
    let text = format!("plaintext_cable = true\n{text}");
    let sources: Vec<(String, Box<dyn DeviceSource>)> =
        vec![("N1".into(), Box::new(modems.slot("N1")))];
    let engine = Engine::start(ws.engine_setup("t-inject", &text, sources).unwrap()).unwrap();
    for _ in engine.events.iter() {}
    let summary = engine.join().unwrap();
    let failures: Vec<_> = summary
        .outcomes
        .iter()
        .filter_map(|o| o.failure.clone())
        .collect();
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(summary.passed(), 2);
    for modem in modems.records() {
        assert!(
            modem
                .credential(2)
                .unwrap()
                .starts_with("-----BEGIN PRIVATE KEY-----")
        );
        register_modem(&ws, &modem).unwrap_or_else(|e| panic!("modem {}: {e}", modem.imei));
    }
}

#[test]
fn a_modem_that_restarts_mid_write_is_voided_and_the_next_run_rewrites_it() {
    use dps_station::device::ClientOptions;
    use dps_station::device::Family;
    use dps_station::device::simulator::Nrf91Sim;
    use dps_station::station::source::PortSource;

    let ws = DemoWorkspace::create(KeyStoreChoice::SoftHsm).unwrap();
    // One modem that restarts on its first %CMNG write; it stays on its port across both runs.
    let sim = Nrf91Sim::on_pty(
        7000,
        ModemFaults {
            reboot_on_write: Some(1),
            ..ModemFaults::default()
        },
    )
    .unwrap();
    let text = ws.batch_toml(
        Mode::X509Csr,
        "t-restart",
        &RunOptions {
            devices: 1,
            ..RunOptions::default()
        },
    );
    let run = |ws: &DemoWorkspace| {
        let source =
            PortSource::for_family(sim.path().into(), Family::Nrf91, ClientOptions::default());
        let sources: Vec<(String, Box<dyn DeviceSource>)> = vec![("N1".into(), Box::new(source))];
        let engine = Engine::start(ws.engine_setup("t-restart", &text, sources).unwrap()).unwrap();
        for _ in engine.events.iter() {}
        engine.join().unwrap()
    };
    let first = run(&ws);
    assert_eq!(first.passed(), 0);
    let (stage, reason) = first.outcomes[0].failure.clone().unwrap();
    assert!(reason.contains("restarted"), "{stage}: {reason}");
    let rid = first.outcomes[0].registration_id.clone().unwrap();
    {
        let ledger = Ledger::open_read_only(&ws.station.ledger).unwrap();
        let rec = ledger.live_or_last_revoked(&rid).unwrap().unwrap();
        assert_eq!(
            rec.state,
            IdentityState::Failed,
            "voided, never reported written"
        );
    }
    // The modem still holds the key the first run made: the station's own unfinished write is
    // redone (key replaced), not refused as an occupied slot.
    assert!(sim.with_modem(|m| m.credential(Nrf91Options::default().sec_tag, 2).is_some()));
    let second = run(&ws);
    let failures: Vec<_> = second
        .outcomes
        .iter()
        .filter_map(|o| o.failure.clone())
        .collect();
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(second.passed(), 1);
    let ledger = Ledger::open_read_only(&ws.station.ledger).unwrap();
    let rec = ledger.live_or_last_revoked(&rid).unwrap().unwrap();
    assert!(
        matches!(rec.state, IdentityState::Written | IdentityState::Enrolled),
        "{:?}",
        rec.state
    );
}
