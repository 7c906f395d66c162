//! A full disk during a batch: the ledger answers SQLITE_FULL (simulated by capping the engine's
//! ledger at its size with `PRAGMA max_page_count`, as `tests/ledger/bad_files.rs` does). The
//! batch stops and says what to do; what was done stays done; nothing passes unrecorded; once
//! there is space again the next run resumes and completes the batch.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use dps_station::device::ClientOptions;
use dps_station::device::simulator::SimOptions;
use dps_station::ledger::{IdentityFilter, IdentityState, Ledger};
use dps_station::station::config::Mode;
use dps_station::station::demo::{DemoWorkspace, KeyStoreChoice, RunOptions};
use dps_station::station::engine::Engine;
use dps_station::station::events::{Event, Stage};
use dps_station::station::source::{DeviceSource, VirtualFixture};

use crate::common::ledger_verify;

const BATCH: &str = "full";

fn identities(ws: &DemoWorkspace) -> Vec<(String, IdentityState)> {
    let ledger = Ledger::open_read_only(&ws.station.ledger).unwrap();
    ledger
        .list_identities(&IdentityFilter {
            batch: Some(BATCH.into()),
            ..IdentityFilter::default()
        })
        .unwrap()
        .into_iter()
        .map(|i| (i.registration_id, i.state))
        .collect()
}

#[test]
fn a_full_ledger_stops_the_batch_keeps_what_was_done_and_the_batch_resumes_after() {
    let ws = DemoWorkspace::create(KeyStoreChoice::SoftHsm).unwrap();
    let options = RunOptions {
        devices: 8,
        slots: 1,
        ..RunOptions::default()
    };
    let text = ws.batch_toml(Mode::X509Csr, BATCH, &options);
    let fixture = VirtualFixture::new(8, SimOptions::default(), ClientOptions::default());
    let sources: Vec<(String, Box<dyn DeviceSource>)> =
        vec![("S1".into(), Box::new(fixture.slot("S1")))];
    let setup = ws.engine_setup(BATCH, &text, sources).unwrap();
    let engine = Engine::start_preparing_ledger(setup, |ledger| {
        // A cap below the file's size leaves it at its size (SQLite answers the size): the
        // ledger may fill the free room of the pages it has, then the "disk" is full.
        let pages = ledger.limit_pages(1)?;
        ledger.limit_pages(pages + 2).map(|_| ())
    })
    .unwrap();
    let started = Instant::now();
    let mut events = Vec::new();
    while let Ok(event) = engine.events.recv_timeout(Duration::from_secs(30)) {
        events.push(event);
        assert!(started.elapsed() < Duration::from_secs(60), "{events:?}");
    }
    let summary = engine.join().unwrap();

    // Some devices were done before the disk filled, and the batch stopped before its end.
    let passed = summary.passed();
    assert!(
        (1..8).contains(&passed),
        "the ledger did not fill mid-batch: {:?}",
        summary.outcomes
    );
    assert!(!summary.complete);
    assert_eq!(summary.failed(), 1, "{:?}", summary.outcomes);
    let (stage, reason) = summary
        .outcomes
        .iter()
        .find_map(|o| o.failure.clone())
        .unwrap();
    assert_eq!(stage, Stage::Record, "{reason}");
    assert!(
        reason.contains("is full") && reason.contains("free disk space"),
        "{reason}"
    );
    assert!(
        events.iter().any(|e| matches!(
            e,
            Event::SlotStopped { reason, .. } if reason.contains("ledger") && reason.contains("disk")
        )),
        "no stop message: {events:?}"
    );
    // Every device reported passed has its identity recorded, and it stays done.
    let first = identities(&ws);
    let done: BTreeSet<String> = first
        .iter()
        .filter(|(_, s)| matches!(s, IdentityState::Written | IdentityState::Enrolled))
        .map(|(rid, _)| rid.clone())
        .collect();
    let passed_ids: BTreeSet<String> = summary
        .outcomes
        .iter()
        .filter(|o| o.failure.is_none())
        .filter_map(|o| o.registration_id.clone())
        .collect();
    assert_eq!(passed_ids.len(), passed);
    assert_eq!(done, passed_ids, "{first:?}");

    // Space is back (a new run opens the ledger without the cap): the batch resumes.
    let again = ws
        .run_mode(Mode::X509Csr, BATCH, &options, &mut |_| {})
        .unwrap();
    assert_eq!(again.summary.resumed.already_done, passed as u64);
    assert_eq!(again.summary.passed(), 8 - passed, "{:?}", again.summary);
    assert!(again.summary.complete);
    assert_eq!(again.summary.pending_enrollments, 0);
    let last = identities(&ws);
    let enrolled: BTreeSet<String> = last
        .iter()
        .filter(|(_, s)| *s == IdentityState::Enrolled)
        .map(|(rid, _)| rid.clone())
        .collect();
    assert_eq!(enrolled.len(), 8, "{last:?}");
    assert!(
        passed_ids.is_subset(&enrolled),
        "a device done before was lost"
    );
    let in_dps: Vec<String> = ws
        .emulator
        .enrollments_snapshot()
        .iter()
        .filter_map(|e| e["registrationId"].as_str().map(str::to_string))
        .collect();
    assert_eq!(in_dps.len(), 8, "{in_dps:?}");
    assert_eq!(in_dps.into_iter().collect::<BTreeSet<_>>(), enrolled);
    let (ok, out) = ledger_verify(&ws.station.ledger);
    assert!(ok, "{out}");
}
