//! The audit view as an officer and an engineer use it: who reaches it, filters, verify on a
//! ledger with a flipped byte, and the CSV export of a time range, over the demo's real ledger.

use std::path::Path;
use std::time::{Duration, Instant};

use dps_station::gui::officer::audit::AUDIT;
use dps_station::ledger::audit_query::AUDIT_CSV_HEADER;
use dps_station::ledger::{AuditFilter, AuditId, Ledger, NewKeySession, WriterIdentity};
use dps_station::station::demo_desk::DemoDeskOptions;
use dps_station::station::operator::roles::hash_password;
use dps_station::station::operator::settings::RolesSection;
use serde_json::json;

use super::common::{TestDesk, desk, fill, take_role};

const OFFICER_PW: &str = "officer-of-line-3";
const ENGINEER_PW: &str = "engineer-of-line-3";

fn audit_desk() -> TestDesk {
    let roles = RolesSection {
        engineers: vec!["kim".into()],
        officers: vec!["olga".into()],
        engineer_password: Some(hash_password(ENGINEER_PW).unwrap()),
        officer_password: Some(hash_password(OFFICER_PW).unwrap()),
        ..RolesSection::default()
    };
    desk(
        DemoDeskOptions {
            roles,
            ..DemoDeskOptions::default()
        },
        None,
    )
}

fn ledger_path(d: &TestDesk) -> std::path::PathBuf {
    d._workspace.station.ledger.clone()
}

/// Rows by an officer in a key session and by an operator, a few ms apart; the row whose details
/// hold `flip-me-0123456789` is returned.
fn seed(path: &Path) -> AuditId {
    let mut l = Ledger::open(
        path,
        &WriterIdentity {
            station: "line-3".into(),
            operator: "ann".into(),
        },
    )
    .unwrap();
    let pause = || std::thread::sleep(Duration::from_millis(3));
    let s = l
        .open_key_session(&NewKeySession {
            operator: "olga".into(),
            token_label: "ca-token".into(),
            token_serial: "42".into(),
            token_model: "SoftHSM v2".into(),
        })
        .unwrap();
    pause();
    let flip = l
        .append_audit(
            "olga",
            "key.generated",
            "key:root-ca",
            &json!({ "key_session": s.0, "note": "flip-me-0123456789" }),
        )
        .unwrap();
    pause();
    for i in 0..4 {
        l.append_audit(
            "ann",
            "identity.checked",
            &format!("sensor-000{i}"),
            &json!({}),
        )
        .unwrap();
        pause();
    }
    l.close_key_session(s).unwrap();
    flip
}

/// Steps frames until `done` holds; fails naming `what` after 30 s.
fn wait_for(d: &mut TestDesk, what: &str, done: impl Fn(&TestDesk) -> bool) {
    let start = Instant::now();
    while !done(d) {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "timed out waiting for {what}"
        );
        d.harness.step();
        std::thread::sleep(Duration::from_millis(20));
    }
    d.steps(2);
}

fn open_audit(d: &mut TestDesk) {
    d.click("Audit log");
    assert_eq!(d.harness.state().current(), AUDIT);
    wait_for(d, "the first page", |d| d.shows("newest first"));
}

#[test]
fn an_officer_and_an_engineer_reach_the_audit_view_an_operator_does_not() {
    let mut d = audit_desk();
    seed(&ledger_path(&d));
    d.sign_in("ann");
    assert!(!d.harness.state().allowed().contains(&AUDIT));
    assert!(!d.shows("Audit log"), "no navigation for an operator");

    d.click("Sign out");
    d.sign_in("olga");
    take_role(&mut d, "security officer", OFFICER_PW);
    open_audit(&mut d);
    assert!(d.shows("key:root-ca"));
    wait_for(&mut d, "the counts", |d| d.shows("Audit rows"));

    d.click("Sign out");
    d.steps(2);
    assert_ne!(d.harness.state().current(), AUDIT);
    d.sign_in("kim");
    take_role(&mut d, "engineer", ENGINEER_PW);
    open_audit(&mut d);
    assert!(d.shows("sensor-0003"));
}

#[test]
fn a_filter_narrows_the_rows_and_the_export_writes_the_rows_of_the_range() {
    let mut d = audit_desk();
    let path = ledger_path(&d);
    seed(&path);
    d.sign_in("olga");
    take_role(&mut d, "security officer", OFFICER_PW);
    open_audit(&mut d);
    assert!(d.shows("sensor-0001") && d.shows("key:root-ca"));

    fill(&mut d, "Officer / actor", "olga");
    d.click("Apply filters");
    wait_for(&mut d, "the filtered page", |d| !d.shows("sensor-0001"));
    assert!(d.shows("key:root-ca"));
    assert!(d.shows("key_session.opened") && d.shows("key_session.closed"));

    fill(&mut d, "Identity / subject", "sensor-0002");
    d.click("Apply filters");
    wait_for(&mut d, "no rows", |d| d.shows("No audit rows match"));
    d.click("Clear filters");
    wait_for(&mut d, "every row again", |d| d.shows("sensor-0002"));

    // Export [row 3's time, row 6's time): rows 3, 4 and 5 of what was seeded.
    let all = Ledger::open_read_only(&path)
        .unwrap()
        .audit_page(&AuditFilter::default(), None, 1000)
        .unwrap()
        .rows;
    let mut oldest_first = all.clone();
    oldest_first.reverse();
    let n = oldest_first.len();
    let (from, to) = (&oldest_first[n - 5].at, &oldest_first[n - 2].at);
    let expected: Vec<String> = oldest_first
        .iter()
        .filter(|r| &r.at >= from && &r.at < to)
        .map(|r| r.id.0.to_string())
        .collect();
    assert!(!expected.is_empty() && expected.len() < n);
    std::fs::create_dir_all(&d._workspace.station.reports).unwrap();
    fill(&mut d, "Rows from", from);
    fill(&mut d, "Rows to", to);
    d.click("Export the range");
    wait_for(&mut d, "the export", |d| d.shows("audit rows to"));
    let file = std::fs::read_dir(&d._workspace.station.reports)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "csv"))
        .expect("a CSV in the reports folder");
    let text = std::fs::read_to_string(&file).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next().unwrap(), AUDIT_CSV_HEADER.join(","));
    let ids: Vec<String> = lines
        .map(|l| l.split(',').next().unwrap().to_string())
        .collect();
    assert_eq!(ids, expected);
    assert!(d.shows(&format!("Wrote {} audit rows", expected.len())));
}

#[test]
fn verify_names_the_row_with_a_flipped_byte_and_leaves_the_file_alone() {
    let mut d = audit_desk();
    let path = ledger_path(&d);
    let flipped = seed(&path);
    // The writer has closed: the WAL is checkpointed into the file. Flip one byte of that row's
    // details where it lies on disk, as a bad disk or an editor would.
    let mut bytes = std::fs::read(&path).unwrap();
    let needle = b"flip-me-0123456789";
    // The details are stored twice: in the audit row, and escaped inside its outbox copy
    // (`\"flip-me...`). The audit row's copy is the one not preceded by a backslash.
    let at: Vec<usize> = bytes
        .windows(needle.len())
        .enumerate()
        .filter(|(i, w)| *w == needle && *i >= 2 && bytes[i - 2] != b'\\')
        .map(|(i, _)| i)
        .collect();
    assert_eq!(
        at.len(),
        1,
        "the marked details are stored once in the audit log"
    );
    bytes[at[0] + needle.len() - 1] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();

    d.sign_in("olga");
    take_role(&mut d, "security officer", OFFICER_PW);
    open_audit(&mut d);
    d.click("Verify the ledger");
    let broken = format!("BROKEN at row {}", flipped.0);
    wait_for(&mut d, "verify's answer", |d| {
        d.shows("BROKEN at row") || d.shows("Intact")
    });
    assert!(d.shows(&broken), "verify names row {}", flipped.0);
    assert!(d.shows("does not match its hash"));
    assert!(d.shows("shown read-only"));
    d.click(&format!("Show row {}", flipped.0));
    wait_for(&mut d, "the broken row marked", |d| {
        d.shows(&format!("▲ {}", flipped.0))
    });
    assert_eq!(
        std::fs::read(&path).unwrap(),
        bytes,
        "the screen never writes to the ledger"
    );
}

#[test]
fn a_ledger_from_a_newer_version_is_shown_read_only_and_left_alone() {
    let mut d = audit_desk();
    let path = ledger_path(&d);
    seed(&path);
    let newer = dps_station::ledger::schema::CURRENT_VERSION + 1;
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.pragma_update(None, "user_version", newer).unwrap();
    drop(conn);
    let before = std::fs::read(&path).unwrap();

    d.sign_in("olga");
    take_role(&mut d, "security officer", OFFICER_PW);
    open_audit(&mut d);
    assert!(d.shows("key:root-ca"), "its rows are shown");
    wait_for(&mut d, "the schema warning", |d| {
        d.shows("written by a newer dps-station")
    });
    assert!(d.shows(&format!("schema {newer}")));
    d.click("Verify the ledger");
    wait_for(&mut d, "verify's answer", |d| d.shows("Intact"));
    assert_eq!(std::fs::read(&path).unwrap(), before, "never written");
}
