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
