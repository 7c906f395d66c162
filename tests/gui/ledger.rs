//! The engineer's ledger browser, driven as an engineer drives it: search a large ledger, open a
//! device's details, narrow the table with a filter, revoke with a reason.

use std::time::Duration;

use dps_station::gui::engineer::ledger::LEDGER;
use dps_station::ledger::bench::{fill, sample_registration_id};
use dps_station::ledger::{FailureStage, IdentityState, Ledger, Transition, WriterIdentity};

use egui_kittest::kittest::{NodeT, Queryable};

use super::common::{TestDesk, engineer_desk};

const WAIT: Duration = Duration::from_secs(60);

fn ledger_path(d: &TestDesk) -> std::path::PathBuf {
    d.harness.state().station().config().ledger.clone()
}

/// `count` sample identities in one transaction, through the ledger's own write functions.
fn filled(d: &TestDesk, count: u64) -> Ledger {
    let mut ledger = Ledger::open(
        &ledger_path(d),
        &WriterIdentity {
            station: "test".into(),
            operator: "kim".into(),
        },
    )
    .unwrap();
    fill(&mut ledger, 0..count, count, |_| {}).unwrap();
    ledger
}

fn open_ledger_screen(d: &mut TestDesk) {
    d.click("Ledger");
    assert_eq!(d.harness.state().current(), LEDGER);
}

#[test]
fn search_finds_a_device_among_100000_identities_and_its_details_show_its_thumbprint() {
    let mut d = engineer_desk();
    drop(filled(&d, 100_000));
    let wanted = sample_registration_id(42_424);
    let reader = Ledger::open_read_only(&ledger_path(&d)).unwrap();
    let cert = reader
        .find_identity(&wanted)
        .unwrap()
        .unwrap()
        .certificate
        .unwrap();
    open_ledger_screen(&mut d);
    // Newest first: the last sample is on top.
    d.wait_to_show(&sample_registration_id(99_999), WAIT);
    assert!(
        !d.shows(&wanted),
        "not on the first screen before the search"
    );
    d.type_into("Search", &wanted.to_uppercase());
    d.wait_to_show(&wanted, WAIT);
    d.wait_to_show("1 identities", WAIT);
    assert_eq!(d.count("bench-sensor-"), 1, "only the match is listed");
    d.click(&wanted);
    d.wait_to_show(&cert.sha256_thumbprint, WAIT);
    assert!(d.shows(&cert.sha1_thumbprint));
    assert!(d.shows("Copy PEM"));
    assert!(d.shows("identity.issued"), "its audit trail");
}

#[test]
fn a_filter_narrows_the_table() {
    let mut d = engineer_desk();
    let mut ledger = filled(&d, 300);
    let failed = sample_registration_id(7);
    ledger
        .transition(
            &failed,
            &Transition::Failed {
                stage: FailureStage::Write,
                reason: "no answer".into(),
            },
        )
        .unwrap();
    drop(ledger);
    open_ledger_screen(&mut d);
    d.wait_to_show("300 identities", WAIT);
    assert!(d.count("bench-sensor-") > 5, "a screenful of rows");
    // The filter's combo box, not the column header of the same name.
    d.harness
        .get_by_role_and_label(egui::accesskit::Role::ComboBox, "State")
        .click_accesskit();
    d.steps(6);
    d.click(IdentityState::Failed.as_str());
    d.wait_to_show("1 identities", WAIT);
    d.steps(4);
    assert_eq!(d.count("bench-sensor-"), 1);
    assert!(d.shows(&failed));
}

#[test]
fn revoke_asks_for_a_reason_and_adds_one_audit_row_that_verify_accepts() {
    let mut d = engineer_desk();
    drop(filled(&d, 50));
    let victim = sample_registration_id(49);
    let path = ledger_path(&d);
    let rows_about = |path: &std::path::Path| {
        Ledger::open_read_only(path)
            .unwrap()
            .audit_for(&victim)
            .unwrap()
    };
    let before = rows_about(&path);
    open_ledger_screen(&mut d);
    d.wait_to_show(&victim, WAIT);
    d.click(&victim);
    d.wait_to_show("Revoke…", WAIT);
    // Actions wait for the audit chain check.
    let start = std::time::Instant::now();
    while d
        .harness
        .get_by_label("Revoke…")
        .accesskit_node()
        .is_disabled()
    {
        assert!(start.elapsed() < WAIT, "the chain check never finished");
        d.steps(1);
        std::thread::sleep(Duration::from_millis(20));
    }
    d.click("Revoke…");
    assert!(d.shows("cannot be undone"));
    assert!(
        d.harness
            .get_by_label("Confirm")
            .accesskit_node()
            .is_disabled(),
        "no revoke without a reason"
    );
    d.type_into("Reason (goes into the audit log)", "RMA 1234");
    d.click("Confirm");
    d.wait_to_show(&format!("{victim} is revoked."), WAIT);

    let after = rows_about(&path);
    assert_eq!(after.len(), before.len() + 1, "{after:?}");
    let row = after.last().unwrap();
    assert_eq!(row.action, "identity.revoked");
    assert_eq!(row.actor, "kim");
    assert!(row.details.contains("RMA 1234"), "{}", row.details);
    let reader = Ledger::open_read_only(&path).unwrap();
    assert!(reader.verify_audit_chain().unwrap().is_intact());
    assert_eq!(
        reader.live_or_last_revoked(&victim).unwrap().unwrap().state,
        IdentityState::Revoked
    );
    // The table shows it as it is now.
    d.wait_to_show("■ revoked", WAIT);
}
