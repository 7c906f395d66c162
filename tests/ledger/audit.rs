//! The audit chain against an attacker with the `sqlite3` shell, checked by the real binary.

use std::path::Path;
use std::process::{Command, Output};

use dps_station::ledger::*;
use serde_json::json;

use crate::common::*;

const BIN: &str = env!("CARGO_BIN_EXE_dps-station");

fn sqlite3(path: &Path, sql: &str) -> Output {
    Command::new("sqlite3").arg(path).arg(sql).output().unwrap()
}

fn verify(path: &Path) -> (bool, serde_json::Value) {
    let out = Command::new(BIN)
        .args(["ledger", "verify", "--json", "--ledger"])
        .arg(path)
        .output()
        .unwrap();
    let report = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    (out.status.success(), report)
}

/// A closed ledger with a few identities and so a few audit rows.
fn filled(path: &Path) -> i64 {
    let mut l = open(path);
    for i in 0..5 {
        let reg = format!("dev-{i}");
        l.record_issued(&x509_identity(&reg)).unwrap();
        l.transition(&reg, &Transition::Written).unwrap();
    }
    l.stats().unwrap().audit_rows
}

#[test]
fn an_untouched_ledger_verifies() {
    let t = test_dir();
    let rows = filled(&t.ledger);
    let (ok, report) = verify(&t.ledger);
    assert!(ok, "{report}");
    assert_eq!(report["audit"]["rows_checked"], rows);
    assert_eq!(report["audit"]["first_broken"], serde_json::Value::Null);
}

#[test]
fn the_triggers_refuse_update_and_delete() {
    let t = test_dir();
    filled(&t.ledger);
    let out = sqlite3(
        &t.ledger,
        "UPDATE audit_log SET actor = 'mallory' WHERE id = 3;",
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("append-only"));
    let out = sqlite3(&t.ledger, "DELETE FROM audit_log WHERE id = 3;");
    assert!(!out.status.success());
    assert!(verify(&t.ledger).0);
}

#[test]
fn a_row_edited_with_sqlite3_is_named_by_verify() {
    let t = test_dir();
    filled(&t.ledger);
    let out = sqlite3(
        &t.ledger,
        "DROP TRIGGER audit_log_no_update; UPDATE audit_log SET actor = 'mallory' WHERE id = 4;",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (ok, report) = verify(&t.ledger);
    assert!(!ok, "verify must fail: {report}");
    assert_eq!(report["audit"]["first_broken"]["id"], 4);
    assert_eq!(report["audit"]["rows_checked"], 3);
    let problems = report["file_problems"].to_string();
    assert!(
        problems.contains("audit_log_no_update is missing"),
        "{problems}"
    );
    let problem = report["audit"]["first_broken"]["problem"].as_str().unwrap();
    assert!(problem.contains("does not match its hash"), "{problem}");
    // The text output names the row too.
    let out = Command::new(BIN)
        .args(["ledger", "verify", "--ledger"])
        .arg(&t.ledger)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("BROKEN at row 4"), "{text}");
}

#[test]
fn dropping_a_trigger_alone_fails_verify() {
    let t = test_dir();
    filled(&t.ledger);
    sqlite3(&t.ledger, "DROP TRIGGER audit_log_no_delete;");
    let (ok, report) = verify(&t.ledger);
    assert!(!ok, "{report}");
    assert_eq!(
        report["audit"]["first_broken"],
        serde_json::Value::Null,
        "the chain is intact"
    );
    assert!(
        report["file_problems"]
            .to_string()
            .contains("audit_log_no_delete")
    );
}

#[test]
fn a_row_whose_hash_was_recomputed_breaks_the_next_link() {
    let t = test_dir();
    filled(&t.ledger);
    // An attacker who edits row 2 and writes any new hash still breaks row 3's prev_hash.
    sqlite3(
        &t.ledger,
        "DROP TRIGGER audit_log_no_update; UPDATE audit_log SET details = '{}', hash = lower(hex(randomblob(32))) WHERE id = 2;",
    );
    let (ok, report) = verify(&t.ledger);
    assert!(!ok);
    assert_eq!(report["audit"]["first_broken"]["id"], 2);
}

#[test]
fn a_deleted_row_is_named_by_verify() {
    let t = test_dir();
    filled(&t.ledger);
    let out = sqlite3(
        &t.ledger,
        "DROP TRIGGER audit_log_no_delete; DELETE FROM audit_log WHERE id = 5;",
    );
    assert!(out.status.success());
    let (ok, report) = verify(&t.ledger);
    assert!(!ok);
    assert_eq!(report["audit"]["first_broken"]["id"], 6);
    let problem = report["audit"]["first_broken"]["problem"].as_str().unwrap();
    assert!(problem.contains("missing"), "{problem}");
}

#[test]
fn audit_details_that_name_a_secret_are_refused() {
    let t = test_dir();
    let mut l = open(&t.ledger);
    let rows = l.stats().unwrap().audit_rows;
    let err = l
        .append_audit(
            "sam",
            "hsm.login",
            "token:ca",
            &json!({"token": "ca", "user_pin": "123456"}),
        )
        .unwrap_err();
    assert!(matches!(err, LedgerError::Refused { .. }), "{err}");
    assert!(!err.to_string().contains("123456"));
    assert_eq!(l.stats().unwrap().audit_rows, rows);
    l.append_audit("sam", "hsm.login", "token:ca", &json!({"token": "ca"}))
        .unwrap();
}
