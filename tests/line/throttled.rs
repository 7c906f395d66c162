//! DPS throttling (429 with `Retry-After`) during a batch: the line waits it out; every device
//! passes and is enrolled exactly once, none lost, none duplicated.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use dps_station::emulator::EmulatorConfig;
use dps_station::ledger::{IdentityFilter, IdentityState, Ledger};
use dps_station::station::config::Mode;
use dps_station::station::demo::{DemoWorkspace, KeyStoreChoice, RunOptions};

use crate::common::ledger_verify;

#[test]
fn a_batch_throttled_by_dps_waits_out_the_429s_and_enrolls_every_device_once() {
    // 15 operations a minute and a bucket of one: one call every 4 s, `Retry-After` up to 4 s,
    // long enough that the batch's first call surely comes before the bucket refills.
    let mut config = EmulatorConfig::loopback();
    config.limits.operations_per_minute = Some(15);
    config.limits.operations_burst = Some(1);
    let ws = DemoWorkspace::create_with_emulator(KeyStoreChoice::SoftHsm, config).unwrap();
    let client = ws.client();
    // Take the bucket's token now, so the batch's first call to DPS finds it empty.
    assert!(
        client
            .find_enrollment("drain-the-bucket")
            .unwrap()
            .is_none()
    );
    let throttled_before = client.stats().throttled;

    let started = Instant::now();
    let options = RunOptions {
        devices: 8,
        slots: 4,
        ..RunOptions::default()
    };
    let run = ws
        .run_mode(Mode::X509Csr, "throttled", &options, &mut |_| {})
        .unwrap();
    let took = started.elapsed();
    let throttled = client.stats().throttled - throttled_before;
    assert!(throttled > 0, "the batch met no 429: {:?}", client.stats());
    assert!(took < Duration::from_secs(40), "{took:?}");

    assert_eq!(run.summary.passed(), 8, "{:?}", run.summary.outcomes);
    assert_eq!(run.summary.enrollment.enrolled, 8, "{:?}", run.summary);
    assert_eq!(run.summary.pending_enrollments, 0);
    let ledger = Ledger::open_read_only(&ws.station.ledger).unwrap();
    let identities = ledger
        .list_identities(&IdentityFilter {
            batch: Some("throttled".into()),
            ..IdentityFilter::default()
        })
        .unwrap();
    assert_eq!(identities.len(), 8);
    assert!(
        identities
            .iter()
            .all(|i| i.state == IdentityState::Enrolled),
        "{:?}",
        identities
            .iter()
            .map(|i| (&i.registration_id, i.state))
            .collect::<Vec<_>>()
    );
    let in_ledger: BTreeSet<String> = identities
        .iter()
        .map(|i| i.registration_id.clone())
        .collect();
    let in_dps: Vec<String> = ws
        .emulator
        .enrollments_snapshot()
        .iter()
        .filter_map(|e| e["registrationId"].as_str().map(str::to_string))
        .collect();
    assert_eq!(
        in_dps.len(),
        8,
        "an enrollment is missing or doubled: {in_dps:?}"
    );
    assert_eq!(in_dps.into_iter().collect::<BTreeSet<_>>(), in_ledger);
    let passed: BTreeSet<String> = run
        .summary
        .outcomes
        .iter()
        .filter_map(|o| o.registration_id.clone())
        .collect();
    assert_eq!(passed, in_ledger);
    drop(ledger);
    let (ok, out) = ledger_verify(&ws.station.ledger);
    assert!(ok, "{out}");
}
