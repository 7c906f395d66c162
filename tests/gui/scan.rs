//! Barcode scans routed by shape wherever focus is: a badge signs in, a work order opens the
//! picker on its batch, a device label finds its slot, anything else is refused with a message.

use std::time::Duration;

use dps_station::station::demo_desk::DemoDeskOptions;
use dps_station::station::operator::settings::RolesSection;

use super::common::desk;

#[test]
fn scans_sign_in_open_work_orders_and_refuse_what_matches_nothing() {
    let mut roles = RolesSection::default();
    roles.badges.insert("B0042".into(), "ann".into());
    let mut d = desk(
        DemoDeskOptions {
            roles,
            devices: 2,
            slots: 2,
            pace: Duration::from_secs(30),
            ..DemoDeskOptions::default()
        },
        None,
    );
    d.scan("B0042");
    assert_eq!(d.harness.state().view().operator.as_deref(), Some("ann"));

    d.scan("WO:demo-tpm");
    assert!(d.shows("Start this batch"), "the picker is open");
    assert!(d.shows("demo-tpm"), "on the scanned work order");
    d.click("Start this batch");
    d.wait_until(
        "the batch to hold its devices",
        Duration::from_secs(60),
        |a| a.view().passed == 2,
    );
    // The batch's end (its report written) is a notice too: let it come before the scans below,
    // whose answers are read from the notice line.
    d.wait_until("the batch to end", Duration::from_secs(60), |a| {
        !a.view().running
    });

    // A device label finds the slot that holds it.
    let (slot, serial) = {
        let s = &d.harness.state().view().slots[1];
        (s.name.clone(), s.serial.clone().expect("serial"))
    };
    d.scan(&serial);
    assert_eq!(d.harness.state().highlight(), Some(slot.as_str()));

    d.scan("???-nothing");
    let n = d.harness.state().notice().unwrap().clone();
    assert!(n.error && n.text.contains("not a badge"), "{n:?}");
}

/// A batch whose serials come from the devices' labels: each seated device waits with "SCAN
/// LABEL" until the operator scans one, the label goes to the slot that has waited longest and
/// becomes the serial the ledger records; a label already used makes its device fail, not a
/// second identity. (A double scan while the first device is still in its slot is refused: the
/// headless test and `station::labels` check that without racing the pipeline.)
#[test]
fn scanned_labels_become_the_serials_of_devices_that_wait_for_them() {
    let mut d = desk(
        DemoDeskOptions {
            devices: 3,
            slots: 2,
            pace: Duration::ZERO,
            ..DemoDeskOptions::default()
        },
        None,
    );
    let batches = d.harness.state().station().config().desk.batches.clone();
    let demo = std::fs::read_to_string(batches.join("demo-x509-csr.toml")).expect("demo batch");
    let labelled = format!(
        "serial_from = \"label\"\n{}",
        demo.replace("name = \"demo-x509-csr\"", "name = \"labelled\"")
    );
    assert_ne!(
        labelled,
        format!("serial_from = \"label\"\n{demo}"),
        "renamed"
    );
    std::fs::write(batches.join("labelled.toml"), labelled).expect("write batch");
    d.sign_in("ann");
    d.start_batch("labelled");

    d.wait_until(
        "both slots to wait for a label",
        Duration::from_secs(60),
        |a| {
            a.view()
                .slots
                .iter()
                .filter(|s| {
                    matches!(
                        s.state,
                        dps_station::station::operator::line_view::SlotState::NeedsLabel { .. }
                    )
                })
                .count()
                == 2
        },
    );
    assert!(d.shows("SCAN LABEL"), "the tiles ask for the label");
    assert_eq!(
        d.harness.state().view().passed,
        0,
        "nothing runs without a label"
    );

    d.scan("LBL-0001");
    d.wait_until("the label to be taken", Duration::from_secs(10), |a| {
        a.notice().is_some_and(|n| n.text.contains("LBL-0001"))
    });
    let n = d.harness.state().notice().cloned().expect("notice");
    assert!(!n.error && n.text.contains("is the serial"), "{n:?}");
    d.scan("LBL-0002");
    d.wait_until(
        "the first two devices to pass",
        Duration::from_secs(60),
        |a| a.view().passed == 2,
    );
    d.wait_until("the third device to wait", Duration::from_secs(60), |a| {
        a.view().slots.iter().any(|s| {
            matches!(
                s.state,
                dps_station::station::operator::line_view::SlotState::NeedsLabel { .. }
            )
        })
    });
    // A label already used (the operator picked up the wrong sticker): taken as scanned, and
    // the station refuses to give a second device that serial.
    d.scan("LBL-0001");
    d.wait_until("the batch to finish", Duration::from_secs(60), |a| {
        a.view().passed + a.view().failed == 3 && !a.view().running
    });
    assert_eq!(d.harness.state().view().failed, 1);
    let failure = d
        .harness
        .state()
        .view()
        .slots
        .iter()
        .find_map(|s| match &s.state {
            dps_station::station::operator::line_view::SlotState::Failed { detail, .. } => {
                Some(detail.clone())
            }
            _ => None,
        })
        .expect("a failed tile");
    assert!(
        failure.contains("LBL-0001") && failure.contains("seen before"),
        "{failure}"
    );

    // The ledger holds the labels as the devices' serials.
    let ledger_path = d.harness.state().station().config().ledger.clone();
    let ledger = dps_station::ledger::Ledger::open_read_only(&ledger_path).expect("ledger");
    let filter = dps_station::ledger::IdentityFilter {
        batch: Some("labelled".into()),
        ..Default::default()
    };
    let identities = ledger.list_identities(&filter).expect("identities");
    let mut serials: Vec<String> = identities
        .iter()
        .filter_map(|i| i.device.as_ref().map(|d| d.serial_number.clone()))
        .collect();
    // What the devices reported of themselves is kept as their hardware id.
    assert!(
        identities.iter().all(|i| i
            .device
            .as_ref()
            .and_then(|d| d.hardware_id.as_deref())
            .is_some_and(|h| !h.is_empty())),
        "hardware ids kept"
    );
    serials.sort();
    assert_eq!(serials, ["LBL-0001", "LBL-0002"]);
}
