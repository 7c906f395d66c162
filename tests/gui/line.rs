//! The line screen through a whole demo batch, a failing device, and pause/resume/close.

use std::time::Duration;

use dps_station::station::demo_desk::DemoDeskOptions;
use dps_station::station::events::BatchState;
use dps_station::station::operator::SlotState;

use egui_kittest::kittest::Queryable;

use super::common::desk;

fn quick(devices: u64) -> DemoDeskOptions {
    DemoDeskOptions {
        devices,
        pace: Duration::ZERO,
        ..DemoDeskOptions::default()
    }
}

#[test]
fn a_demo_batch_started_by_clicking_shows_eight_passes_and_counts_eight() {
    let mut d = desk(quick(8), None);
    d.sign_in("ann");
    d.start_batch("demo-x509-csr");
    d.wait_until("8 devices to pass", Duration::from_secs(90), |a| {
        a.view().passed == 8 && !a.view().running
    });
    assert_eq!(d.count(" PASS"), 8, "every tile shows PASS");
    // The counter shows 8 of a batch of 8, and nothing failed.
    assert!(d.shows("8 / 8"), "the passed counter reads 8 / 8");
    assert_eq!(d.harness.state().view().failed, 0);
    // The enrollment queue emptied into DPS.
    d.wait_until("enrollment confirmed", Duration::from_secs(30), |a| {
        a.view().enrolled == 8
    });
}

#[test]
fn a_device_that_vanishes_mid_write_shows_fail_with_advice_and_the_next_passes() {
    let mut d = desk(
        DemoDeskOptions {
            devices: 3,
            slots: 1,
            pace: Duration::from_millis(1500),
            faulty_first: true,
            ..DemoDeskOptions::default()
        },
        None,
    );
    d.sign_in("ann");
    d.start_batch("demo-symmetric-individual");
    d.wait_until("the first device to fail", Duration::from_secs(60), |a| {
        matches!(a.view().slots[0].state, SlotState::Failed { .. })
    });
    assert!(
        d.shows("S1 FAIL: Re-seat the device"),
        "the failure says what to do"
    );
    // The detail is one click away.
    d.harness.get_by_label_contains("S1 FAIL").click_accesskit();
    d.steps(2);
    d.wait_until("the next device to pass", Duration::from_secs(60), |a| {
        a.view().slots[0].state == SlotState::Passed
    });
    d.wait_until("the batch to end", Duration::from_secs(60), |a| {
        !a.view().running
    });
    let v = d.harness.state().view();
    assert_eq!((v.passed, v.failed), (2, 1));
}

#[test]
fn pause_resume_and_close_drive_the_batch() {
    let mut d = desk(
        DemoDeskOptions {
            devices: 8,
            slots: 2,
            pace: Duration::from_millis(700),
            ..DemoDeskOptions::default()
        },
        None,
    );
    d.sign_in("ann");
    d.start_batch("demo-symmetric-group");
    d.wait_until("a first pass", Duration::from_secs(60), |a| {
        a.view().passed >= 1
    });
    d.click("Pause (F5)");
    d.wait_until("paused", Duration::from_secs(10), |a| {
        a.view().state == Some(BatchState::Paused)
    });
    assert!(d.shows("PAUSED"));
    // F6 is Resume.
    d.harness.key_press(egui::Key::F6);
    d.wait_until("running again", Duration::from_secs(10), |a| {
        a.view().state == Some(BatchState::Running)
    });
    d.click("Close batch (F8)");
    // Close asks first.
    assert!(d.shows("Close the batch?"));
    d.click("Close the batch");
    d.wait_until("the batch to end", Duration::from_secs(60), |a| {
        !a.view().running
    });
    let v = d.harness.state().view();
    assert!(
        v.passed + v.failed < 8,
        "closing took no new device: {} done",
        v.passed + v.failed
    );
    assert!(
        d.harness
            .state()
            .notice()
            .is_some_and(|n| n.text.contains("report"))
    );
}

#[test]
fn a_shift_change_mid_batch_is_recorded_on_the_devices_that_follow() {
    let mut d = desk(
        DemoDeskOptions {
            devices: 4,
            slots: 1,
            pace: Duration::from_millis(400),
            ..DemoDeskOptions::default()
        },
        None,
    );
    d.sign_in("ann");
    d.start_batch("demo-symmetric-individual");
    d.wait_until("a first pass", Duration::from_secs(60), |a| {
        a.view().passed >= 1
    });
    d.click("Sign out");
    d.sign_in("bo");
    d.wait_until("the batch to end", Duration::from_secs(60), |a| {
        !a.view().running
    });
    let ledger_path = d.harness.state().station().config().ledger.clone();
    let ledger = dps_station::ledger::Ledger::open_read_only(&ledger_path).unwrap();
    let operators: Vec<String> = ledger
        .list_identities(&dps_station::ledger::IdentityFilter::default())
        .unwrap()
        .into_iter()
        .filter_map(|i| i.operator)
        .collect();
    assert_eq!(operators.len(), 4, "{operators:?}");
    assert_eq!(
        operators.first().map(String::as_str),
        Some("ann"),
        "{operators:?}"
    );
    assert_eq!(
        operators.last().map(String::as_str),
        Some("bo"),
        "{operators:?}"
    );
}

#[test]
fn a_broken_batch_file_is_explained_in_the_picker_and_cannot_start() {
    let mut d = desk(quick(2), None);
    let batches = d.harness.state().station().config().desk.batches.clone();
    std::fs::write(
        batches.join("broken.toml"),
        "name = \"broken\"\ncount = \"many\"\n",
    )
    .unwrap();
    d.sign_in("ann");
    d.click("Start batch (F2)");
    d.steps(10);
    d.click("broken");
    assert!(d.shows("This batch file cannot be used"));
    assert!(d.shows("broken.toml"), "the error names the file");
    // Start stays off: clicking it does nothing.
    d.click("Start this batch");
    d.steps(5);
    assert!(!d.harness.state().view().running);
}

#[test]
fn the_light_theme_and_silence_are_one_click_each() {
    let mut d = desk(quick(8), None);
    d.sign_in("ann");
    d.click("Light");
    assert!(d.shows("Dark"), "the switch now offers the dark theme back");
    // The harness starts silent; one click turns sounds on, another off again.
    d.click("Sound on");
    assert!(d.shows("Sound off"));
    d.click("Sound off");
    assert!(d.shows("Sound on"));
    d.start_batch("demo-x509-csr");
    d.wait_until("8 passes", Duration::from_secs(60), |a| {
        a.view().passed == 8 && !a.view().running
    });
    if let Ok(path) = std::env::var("DPS_STATION_LIGHT_PNG") {
        d.harness.render().unwrap().save(path).unwrap();
    }
}
