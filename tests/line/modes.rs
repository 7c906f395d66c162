//! Every mode (tpm included), 8 devices at once over pseudo-terminals, SoftHSM2 and the emulator.

use std::collections::HashSet;

use base64::Engine as _;
use base64::prelude::BASE64_STANDARD;
use dps_station::identity::tpm_ek;
use dps_station::ledger::{IdentityFilter, IdentityState, Ledger};
use dps_station::station::config::Mode;
use dps_station::station::demo::{DemoWorkspace, KeyStoreChoice, RunOptions};
use dps_station::station::events::BatchState;

use super::common::{ledger_verify, max_in_flight, openssl_verify};

#[test]
fn every_working_mode_provisions_eight_devices_at_once_and_each_registers_with_what_it_stored() {
    let ws = DemoWorkspace::create(KeyStoreChoice::SoftHsm).unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let mut all_ids = HashSet::new();
    for mode in Mode::WORKING {
        let run = ws
            .run_mode(
                mode,
                &format!("t-{mode}"),
                &RunOptions::default(),
                &mut |_| {},
            )
            .unwrap();
        let failures: Vec<_> = run
            .summary
            .outcomes
            .iter()
            .filter_map(|o| o.failure.clone())
            .collect();
        assert!(failures.is_empty(), "{mode}: {failures:?}");
        assert_eq!(run.summary.passed(), 8, "{mode}");
        assert_eq!(run.summary.state, BatchState::Closed, "{mode}");
        assert_eq!(
            run.summary.enrollment.enrolled, 8,
            "{mode}: every identity confirmed by DPS"
        );
        assert!(
            max_in_flight(&run.events) >= 4,
            "{mode}: slots did not run at once"
        );
        assert_eq!(run.devices.len(), 8);

        let enrollments = ws.emulator.enrollments_snapshot();
        let groups = ws.emulator.groups_snapshot();
        for device in &run.devices {
            let flash = &device.flash;
            assert!(flash.locked, "{mode}: {} not locked", flash.serial);
            let config = flash.config.as_ref().unwrap();
            let rid = config.iter().find(|(k, _)| k == "regid").unwrap().1.clone();
            let scope = config.iter().find(|(k, _)| k == "scope").unwrap().1.clone();
            assert_eq!(scope, ws.emulator.id_scope());
            assert!(
                all_ids.insert(rid.clone()),
                "registration ID {rid} issued twice"
            );
            if mode.is_x509() {
                let chain = String::from_utf8(
                    BASE64_STANDARD
                        .decode(flash.chain.as_ref().unwrap())
                        .unwrap(),
                )
                .unwrap();
                openssl_verify(scratch.path(), &chain, ws.root_pem())
                    .unwrap_or_else(|e| panic!("{mode} {rid}: {e}"));
            }
            if mode.is_group() {
                assert!(
                    groups
                        .iter()
                        .any(|g| g["enrollmentGroupId"].as_str().is_some()),
                    "{mode}: no group"
                );
            } else {
                let enrollment = enrollments
                    .iter()
                    .find(|e| e["registrationId"] == rid.as_str())
                    .unwrap_or_else(|| panic!("{mode}: {rid} is not enrolled in the emulator"));
                if mode == Mode::Tpm {
                    // DPS gets the EK as the TPM's TPM2B_PUBLIC of the default EK template.
                    let ek = BASE64_STANDARD
                        .decode(
                            enrollment["attestation"]["tpm"]["endorsementKey"]
                                .as_str()
                                .unwrap(),
                        )
                        .unwrap();
                    let public = tpm_ek::parse_tpm2b_public(&ek).unwrap();
                    assert!(public.is_default_template(), "{mode}: {rid}");
                }
            }
            ws.register_device(flash)
                .unwrap_or_else(|e| panic!("{mode}: {rid} could not register: {e}"));
        }
    }
    let registered: HashSet<String> = ws
        .emulator
        .registrations_snapshot()
        .iter()
        .filter_map(|r| r["registrationId"].as_str().map(str::to_string))
        .collect();
    assert!(
        all_ids.iter().all(|id| registered.contains(id)),
        "a device is missing from the emulator's registrations"
    );

    let ledger = Ledger::open_read_only(&ws.station.ledger).unwrap();
    let enrolled = ledger
        .list_identities(&IdentityFilter {
            state: Some(IdentityState::Enrolled),
            ..IdentityFilter::default()
        })
        .unwrap();
    assert_eq!(enrolled.len(), 8 * Mode::WORKING.len());
    drop(ledger);
    let (ok, out) = ledger_verify(&ws.station.ledger);
    assert!(ok, "{out}");
}
