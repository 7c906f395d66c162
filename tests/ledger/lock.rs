//! One writer per ledger, named to whoever else tries; readers work while it writes.

use std::process::Command;

use dps_station::ledger::*;

use crate::common::*;

const BIN: &str = env!("CARGO_BIN_EXE_dps-station");

#[test]
fn a_second_writer_in_the_same_process_is_refused_naming_the_holder() {
    let t = test_dir();
    let _first = open(&t.ledger);
    let err = Ledger::open(
        &t.ledger,
        &WriterIdentity {
            station: "line-2".into(),
            operator: "bob".into(),
        },
    )
    .unwrap_err();
    match &err {
        LedgerError::Locked { path, holder } => {
            assert_eq!(path, &t.ledger);
            assert_eq!(holder.station, "line-1");
            assert_eq!(holder.operator, "ann");
            assert_eq!(holder.pid, std::process::id());
            assert!(holder.since.ends_with('Z'));
        }
        other => panic!("{other:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains("line-1") && msg.contains(&std::process::id().to_string()),
        "{msg}"
    );
    assert!(msg.contains("read-only"), "{msg}");
}

#[test]
fn a_second_writer_process_is_refused_and_told_who_holds_it() {
    let t = test_dir();
    let _first = open(&t.ledger);
    let out = Command::new(BIN)
        .args(["ledger", "init", "--station", "line-2", "--ledger"])
        .arg(&t.ledger)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("already open for writing by station line-1"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("pid {}", std::process::id())),
        "{stderr}"
    );
    assert!(stderr.contains(&t.ledger.display().to_string()), "{stderr}");
}

#[test]
fn the_lock_is_released_when_the_writer_closes() {
    let t = test_dir();
    drop(open(&t.ledger));
    let mut again = open(&t.ledger);
    again.record_issued(&x509_identity("after-close")).unwrap();
}

#[test]
fn readers_work_while_a_writer_holds_the_ledger_and_see_its_commits() {
    let t = test_dir();
    let mut w = open(&t.ledger);
    w.record_issued(&x509_identity("before")).unwrap();
    let r = Ledger::open_read_only(&t.ledger).unwrap();
    assert!(!r.is_writer());
    assert!(r.find_identity("before").unwrap().is_some());
    w.record_issued(&x509_identity("after")).unwrap();
    assert!(
        r.find_identity("after").unwrap().is_some(),
        "a reader sees later commits"
    );
    // Writes through a read-only handle are refused.
    let mut r = r;
    let err = r.record_issued(&x509_identity("nope")).unwrap_err();
    assert!(matches!(err, LedgerError::ReadOnly { .. }), "{err}");
    // And the CLI's reports run while the writer holds the ledger.
    let out = Command::new(BIN)
        .args(["ledger", "stats", "--json", "--ledger"])
        .arg(&t.ledger)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(stats["identities"], 2);
}

#[test]
fn a_stale_lock_file_from_a_dead_process_does_not_block() {
    let t = test_dir();
    std::fs::write(
        WriterLock::path_for(&t.ledger),
        r#"{"station":"ghost","operator":"x","host":"h","pid":1,"since":"then"}"#,
    )
    .unwrap();
    let _l = open(&t.ledger);
    let text = std::fs::read_to_string(WriterLock::path_for(&t.ledger)).unwrap();
    assert!(text.contains("line-1") && !text.contains("ghost"), "{text}");
}
