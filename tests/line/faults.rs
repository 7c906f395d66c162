//! Device faults (unplugged mid-write, corrupt frames) and DPS faults (5xx, unreachable) end in
//! defined states: nothing half-written is trusted, nothing is enrolled twice, nothing is lost.

use dps_station::device::simulator::{SimFaults, SimOptions};
use dps_station::emulator::Faults;
use dps_station::ledger::{FailureStage, IdentityFilter, IdentityState, Ledger};
use dps_station::station::config::Mode;
use dps_station::station::demo::{DemoWorkspace, KeyStoreChoice, RunOptions};
use dps_station::station::events::{Event, Stage};

fn states(ws: &DemoWorkspace, batch: &str) -> Vec<(String, IdentityState, Option<FailureStage>)> {
    let ledger = Ledger::open_read_only(&ws.station.ledger).unwrap();
    ledger
        .list_identities(&IdentityFilter {
            batch: Some(batch.into()),
            ..IdentityFilter::default()
        })
        .unwrap()
        .into_iter()
        .map(|i| (i.registration_id, i.state, i.failed_stage))
        .collect()
}

#[test]
fn a_device_unplugged_mid_write_fails_at_write_and_its_identity_is_voided() {
    let ws = DemoWorkspace::create(KeyStoreChoice::SoftHsm).unwrap();
    // HELLO, KEYGEN, CSR, then the cable goes during the chain's PUT.
    let sim = SimOptions {
        faults: SimFaults {
            disconnect_after: Some(4),
            ..SimFaults::default()
        },
        ..SimOptions::default()
    };
    let options = RunOptions {
        devices: 4,
        slots: 4,
        sim,
        timing: "immediately",
    };
    let run = ws
        .run_mode(Mode::X509Csr, "unplug", &options, &mut |_| {})
        .unwrap();
    assert_eq!(run.summary.failed(), 4);
    for o in &run.summary.outcomes {
        let (stage, reason) = o.failure.as_ref().unwrap();
        assert_eq!(*stage, Stage::Write, "{reason}");
    }
    let states = states(&ws, "unplug");
    assert_eq!(states.len(), 4);
    for (rid, state, stage) in states {
        assert_eq!(
            (state, stage),
            (IdentityState::Failed, Some(FailureStage::Write)),
            "{rid}"
        );
    }
    assert!(
        ws.emulator.enrollments_snapshot().is_empty(),
        "a voided identity was enrolled"
    );
}

#[test]
fn a_device_lost_during_its_csr_fails_at_key_and_the_identity_recorded_meanwhile_is_voided() {
    let ws = DemoWorkspace::create(KeyStoreChoice::SoftHsm).unwrap();
    // HELLO, KEYGEN, then the cable goes: the CSR never comes back, while the station has already
    // signed the certificate for KEYGEN's key and recorded the identity `issued`.
    let sim = SimOptions {
        faults: SimFaults {
            disconnect_after: Some(2),
            ..SimFaults::default()
        },
        ..SimOptions::default()
    };
    let options = RunOptions {
        devices: 3,
        slots: 3,
        sim,
        timing: "immediately",
    };
    let run = ws
        .run_mode(Mode::X509Csr, "lost-csr", &options, &mut |_| {})
        .unwrap();
    assert_eq!(run.summary.failed(), 3);
    for o in &run.summary.outcomes {
        let (stage, reason) = o.failure.as_ref().unwrap();
        assert_eq!(*stage, Stage::Key, "{reason}");
    }
    let states = states(&ws, "lost-csr");
    assert_eq!(
        states.len(),
        3,
        "every identity was recorded before the CSR failed"
    );
    for (rid, state, stage) in states {
        assert_eq!(
            (state, stage),
            (IdentityState::Failed, Some(FailureStage::Write)),
            "{rid}"
        );
    }
    // Nothing reached the devices, and nothing was enrolled.
    for device in &run.devices {
        assert!(device.flash.chain.is_none() && device.flash.config.is_none());
    }
    assert!(ws.emulator.enrollments_snapshot().is_empty());
}

#[test]
fn corrupt_frames_are_retried_or_fail_cleanly_and_every_passed_device_registers() {
    let ws = DemoWorkspace::create(KeyStoreChoice::SoftHsm).unwrap();
    let sim = SimOptions {
        faults: SimFaults {
            corrupt_rate: 0.0005,
            garbage: true,
            seed: 7,
            ..SimFaults::default()
        },
        ..SimOptions::default()
    };
    let options = RunOptions {
        devices: 6,
        slots: 6,
        sim,
        timing: "immediately",
    };
    let run = ws
        .run_mode(Mode::SymmetricIndividual, "corrupt", &options, &mut |_| {})
        .unwrap();
    assert!(run.summary.passed() >= 1, "{:?}", run.summary.outcomes);
    for (rid, state, stage) in states(&ws, "corrupt") {
        assert!(
            state == IdentityState::Enrolled
                || (state == IdentityState::Failed && stage == Some(FailureStage::Write)),
            "{rid} ended {state} {stage:?}"
        );
    }
    for device in run.devices.iter().filter(|d| d.passed) {
        ws.register_device(&device.flash).unwrap();
    }
}

#[test]
fn dps_errors_are_retried_and_an_unreachable_dps_leaves_identities_queued_for_the_next_run() {
    let ws = DemoWorkspace::create(KeyStoreChoice::SoftHsm).unwrap();
    // Half the requests answered 500: every identity still ends enrolled, once.
    ws.emulator
        .set_faults(Faults {
            error_rate: 0.5,
            ..Faults::default()
        })
        .unwrap();
    let run = ws
        .run_mode(
            Mode::X509Csr,
            "flaky",
            &RunOptions {
                devices: 4,
                slots: 4,
                ..RunOptions::default()
            },
            &mut |_| {},
        )
        .unwrap();
    assert_eq!(run.summary.passed(), 4);
    assert_eq!(
        run.summary.enrollment.enrolled + run.summary.pending_enrollments,
        4
    );

    // DPS down for the whole batch: devices pass, identities stay `written` and queued.
    ws.emulator
        .set_faults(Faults {
            error_rate: 1.0,
            ..Faults::default()
        })
        .unwrap();
    let options = RunOptions {
        devices: 4,
        slots: 4,
        timing: "batch-end",
        ..RunOptions::default()
    };
    let down = ws
        .run_mode(Mode::X509Inject, "down", &options, &mut |_| {})
        .unwrap();
    assert_eq!(down.summary.passed(), 4);
    assert_eq!(down.summary.enrollment.enrolled, 0);
    assert!(
        states(&ws, "down")
            .iter()
            .all(|(_, s, _)| *s == IdentityState::Written)
    );

    // DPS back: running the batch again takes no device and enrolls what was queued.
    ws.emulator.set_faults(Faults::default()).unwrap();
    let again = ws
        .run_mode(Mode::X509Inject, "down", &options, &mut |_| {})
        .unwrap();
    assert!(again.summary.outcomes.is_empty());
    assert_eq!(again.summary.resumed.requeued, 4);
    assert!(
        states(&ws, "down")
            .iter()
            .all(|(_, s, _)| *s == IdentityState::Enrolled)
    );
    for device in &down.devices {
        ws.register_device(&device.flash).unwrap();
    }
    let ids: Vec<String> = ws
        .emulator
        .enrollments_snapshot()
        .iter()
        .filter_map(|e| e["registrationId"].as_str().map(str::to_string))
        .collect();
    let unique: std::collections::HashSet<_> = ids.iter().collect();
    assert_eq!(ids.len(), unique.len(), "an enrollment exists twice");
}

#[test]
fn a_key_store_that_stops_signing_stops_the_batch_and_a_batch_does_not_start_without_it() {
    let ws = DemoWorkspace::create(KeyStoreChoice::SoftHsm).unwrap();
    let store = ws.key_store().unwrap();
    let options = RunOptions {
        devices: 6,
        slots: 1,
        ..RunOptions::default()
    };
    // The token is logged out after the first device (as when an HSM is unplugged): signing fails.
    let run = ws
        .run_mode(Mode::X509Csr, "no-hsm", &options, &mut |e| {
            if matches!(e, Event::Passed { .. }) {
                let _ = store.logout();
            }
        })
        .unwrap();
    assert_eq!(run.summary.passed(), 1);
    assert_eq!(
        run.summary.failed(),
        1,
        "the batch went on after the key store failed: {:?}",
        run.summary.outcomes
    );
    assert_eq!(
        run.summary.outcomes[1].failure.as_ref().unwrap().0,
        Stage::Issue
    );
    assert_eq!(
        states(&ws, "no-hsm").len(),
        1,
        "an identity was recorded without a certificate"
    );
    assert!(
        run.devices
            .iter()
            .filter(|d| !d.passed)
            .all(|d| !d.flash.locked && d.flash.chain.is_none())
    );
    assert!(
        run.events
            .iter()
            .any(|e| matches!(e, Event::SlotStopped { reason, .. } if reason.contains("HSM"))),
        "no stop message"
    );
    // A new batch refuses to start, naming the token.
    let err = ws
        .run_mode(Mode::X509Csr, "no-hsm-2", &options, &mut |_| {})
        .err()
        .unwrap();
    assert!(err.to_string().contains("logged out"), "{err}");
}
