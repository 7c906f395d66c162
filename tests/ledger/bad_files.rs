//! Files that are not (or no longer, or not yet) ledgers this build can use: each is refused with
//! a message naming the file and what to do, and left exactly as it was.

use std::path::Path;

use dps_station::ledger::schema::CURRENT_VERSION;
use dps_station::ledger::*;
use rusqlite::Connection;

use crate::common::*;

/// Every file in the directory with a digest of its bytes: the state an error must leave.
fn snapshot(dir: &Path) -> Vec<(String, String)> {
    use sha2::Digest;
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !p.to_string_lossy().ends_with(".lock"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (
                name,
                hex::encode(sha2::Sha256::digest(std::fs::read(&p).unwrap())),
            )
        })
        .collect();
    files.sort();
    files
}

/// The files of `before` are unchanged; a read-only SQLite connection may have added an empty
/// `-wal` and its `-shm` index (it cannot remove them as a writer would), nothing else.
fn unchanged(before: &[(String, String)], after: &[(String, String)]) {
    let empty = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b""));
    for (name, digest) in after {
        match before.iter().find(|(n, _)| n == name) {
            Some((_, d)) => assert_eq!(d, digest, "{name} changed"),
            None if name.ends_with("-shm") => {}
            None if name.ends_with("-wal") => assert_eq!(digest, &empty, "{name} has content"),
            None => panic!("{name} was created"),
        }
    }
    for (name, _) in before {
        assert!(after.iter().any(|(n, _)| n == name), "{name} was removed");
    }
}

/// Opening for writing and read-only both fail with `check`, and nothing changes on disk.
fn refused_both_ways(path: &Path, check: impl Fn(&LedgerError)) {
    let dir = path.parent().unwrap();
    let before = snapshot(dir);
    let err = Ledger::open(path, &writer()).unwrap_err();
    check(&err);
    let msg = err.to_string();
    assert!(
        msg.contains(&path.display().to_string()),
        "names the file: {msg}"
    );
    assert_eq!(
        snapshot(dir),
        before,
        "the writer left the files as they were"
    );
    let err = Ledger::open_read_only(path).unwrap_err();
    check(&err);
    unchanged(&before, &snapshot(dir));
}

#[test]
fn a_text_file_is_not_a_ledger() {
    let t = test_dir();
    std::fs::write(&t.ledger, "name,serial\nsensor,1\n".repeat(300)).unwrap();
    refused_both_ways(&t.ledger, |e| {
        assert!(matches!(e, LedgerError::NotALedger { .. }), "{e}");
        assert!(e.to_string().contains("--ledger"), "{e}");
    });
}

#[test]
fn another_applications_sqlite_file_is_refused_untouched() {
    let t = test_dir();
    {
        let c = Connection::open(&t.ledger).unwrap();
        c.execute_batch("CREATE TABLE moz_places (id INTEGER PRIMARY KEY, url TEXT); INSERT INTO moz_places VALUES (1, 'x');")
            .unwrap();
    }
    refused_both_ways(&t.ledger, |e| {
        assert!(matches!(e, LedgerError::NotALedger { .. }), "{e}");
        assert!(e.to_string().contains("another application"), "{e}");
    });
    // Not switched to WAL, no dps-station marker written.
    let c = Connection::open(&t.ledger).unwrap();
    let mode: String = c
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "delete");
}

#[test]
fn a_foreign_file_with_an_application_id_is_refused() {
    let t = test_dir();
    {
        let c = Connection::open(&t.ledger).unwrap();
        c.execute_batch(
            "PRAGMA application_id = 1234; PRAGMA user_version = 7; CREATE TABLE t (x);",
        )
        .unwrap();
    }
    refused_both_ways(&t.ledger, |e| {
        assert!(matches!(e, LedgerError::NotALedger { .. }), "{e}");
    });
}

#[test]
fn a_ledger_from_a_newer_dps_station_is_refused_with_its_version() {
    let t = test_dir();
    drop(open(&t.ledger));
    {
        let c = Connection::open(&t.ledger).unwrap();
        c.execute_batch("PRAGMA user_version = 10;").unwrap();
    }
    refused_both_ways(&t.ledger, |e| {
        assert!(
            matches!(
                e,
                LedgerError::TooNew {
                    found: 10,
                    supported: CURRENT_VERSION,
                    ..
                }
            ),
            "{e}"
        );
        let msg = e.to_string();
        assert!(
            msg.contains("version 10") && msg.contains("upgrade dps-station"),
            "{msg}"
        );
    });
}

#[test]
fn a_damaged_ledger_is_refused_untouched() {
    let t = test_dir();
    {
        let mut l = open(&t.ledger);
        for i in 0..20 {
            l.record_issued(&x509_identity(&format!("d-{i}"))).unwrap();
        }
    }
    // Garbage over the schema page, after the 100-byte header.
    let mut bytes = std::fs::read(&t.ledger).unwrap();
    assert!(bytes.len() > 8192);
    for b in &mut bytes[100..4096] {
        *b = 0xA5;
    }
    std::fs::write(&t.ledger, &bytes).unwrap();
    refused_both_ways(&t.ledger, |e| {
        assert!(matches!(e, LedgerError::Corrupt { .. }), "{e}");
        assert!(e.to_string().contains("backup"), "{e}");
    });
}

#[test]
fn read_only_of_a_missing_file_says_how_to_create_one() {
    let t = test_dir();
    let err = Ledger::open_read_only(&t.ledger).unwrap_err();
    assert!(matches!(err, LedgerError::NotFound { .. }), "{err}");
    assert!(err.to_string().contains("ledger init"), "{err}");
    assert!(!t.ledger.exists());
}

#[test]
fn a_full_disk_rolls_the_transaction_back_and_says_so() {
    let t = test_dir();
    let mut l = open(&t.ledger);
    l.record_issued(&x509_identity("kept")).unwrap();
    let before = l.stats().unwrap();
    let pages: i64 = {
        let c = Connection::open(&t.ledger).unwrap();
        c.query_row("PRAGMA page_count", [], |r| r.get(0)).unwrap()
    };
    assert_eq!(l.limit_pages(pages).unwrap(), pages);
    // Far more than fits in the pages the file has.
    let certs: Vec<_> = (0..200)
        .map(|i| x509_identity(&format!("full-{i}")))
        .collect();
    let err = l
        .transaction(|w| {
            for c in &certs {
                w.record_issued(c)?;
            }
            Ok(())
        })
        .unwrap_err();
    assert!(matches!(err, LedgerError::DiskFull { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("full") && msg.contains("rolled back"), "{msg}");
    assert!(msg.contains(&t.ledger.display().to_string()), "{msg}");
    // Nothing of the failed transaction is there; what was there still is.
    let after = l.stats().unwrap();
    assert_eq!(after.identities, before.identities);
    assert_eq!(after.audit_rows, before.audit_rows);
    assert!(l.find_identity("full-0").unwrap().is_none());
    assert!(l.find_identity("kept").unwrap().is_some());
    assert!(l.verify_audit_chain().unwrap().is_intact());
    // Space again: the ledger works on.
    l.limit_pages(1 << 30).unwrap();
    l.record_issued(&x509_identity("full-0")).unwrap();
    assert!(l.verify_audit_chain().unwrap().is_intact());
}

#[test]
fn a_truncated_ledger_is_refused_untouched() {
    let t = test_dir();
    {
        let mut l = open(&t.ledger);
        l.transaction(|w| {
            for i in 0..300 {
                w.record_issued(&x509_identity(&format!("t-{i}")))?;
            }
            Ok(())
        })
        .unwrap();
        l.checkpoint().unwrap();
    }
    let len = std::fs::metadata(&t.ledger).unwrap().len();
    assert!(len > 200_000, "{len}");
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&t.ledger)
        .unwrap();
    f.set_len(len / 2).unwrap();
    drop(f);
    refused_both_ways(&t.ledger, |e| {
        assert!(matches!(e, LedgerError::Corrupt { .. }), "{e}");
    });
}
