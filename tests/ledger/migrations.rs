//! Schema migrations from every earlier version: an empty file (v0), a missing file, and v1.

use dps_station::ledger::schema::{APPLICATION_ID, CURRENT_VERSION};
use dps_station::ledger::*;
use rusqlite::Connection;

use crate::common::*;

fn header(path: &std::path::Path) -> (i64, i64, String) {
    let c = Connection::open(path).unwrap();
    let app: i64 = c
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .unwrap();
    let ver: i64 = c
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    let mode: String = c
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    (app, ver, mode)
}

/// The schema as SQLite reports it, sorted: a migrated ledger must equal a new one exactly.
fn schema_sql(path: &std::path::Path) -> Vec<String> {
    let c = Connection::open(path).unwrap();
    let mut s = c
        .prepare(
            "SELECT type || ' ' || name || ': ' || coalesce(sql, '') FROM sqlite_master ORDER BY 1",
        )
        .unwrap();
    s.query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn current_version_is_two() {
    assert_eq!(
        CURRENT_VERSION, 2,
        "add a migration test for the new version"
    );
}

#[test]
fn a_missing_file_becomes_a_current_ledger_in_wal_mode() {
    let t = test_dir();
    let nested = t.dir.path().join("a/b/ledger.db");
    let (l, m) = Ledger::open_reporting(&nested, &writer()).unwrap();
    assert_eq!((m.from, m.to), (0, CURRENT_VERSION));
    drop(l);
    assert_eq!(
        header(&nested),
        (i64::from(APPLICATION_ID), 2, "wal".into())
    );
}

#[test]
fn an_empty_file_is_version_zero_and_migrates_to_current() {
    let t = test_dir();
    std::fs::write(&t.ledger, b"").unwrap();
    let (mut l, m) = Ledger::open_reporting(&t.ledger, &writer()).unwrap();
    assert_eq!((m.from, m.to), (0, 2));
    // v2 tables work.
    let s = l
        .open_key_session(&NewKeySession {
            operator: "sam".into(),
            token_label: "ca-token".into(),
            token_serial: "0001".into(),
            token_model: "SoftHSM v2".into(),
        })
        .unwrap();
    l.close_key_session(s).unwrap();
    assert_eq!(l.key_sessions().unwrap().len(), 1);
}

#[test]
fn reopening_a_current_ledger_migrates_nothing() {
    let t = test_dir();
    drop(open(&t.ledger));
    let (_l, m) = Ledger::open_reporting(&t.ledger, &writer()).unwrap();
    assert_eq!((m.from, m.to), (2, 2));
}

#[test]
fn v1_migrates_to_v2_keeping_every_row_and_the_audit_chain() {
    let t = test_dir();
    // Build a real v1 ledger with the v1 code path and fill it.
    {
        let (mut l, m) = Ledger::open_migrating_to(&t.ledger, &writer(), 1).unwrap();
        assert_eq!((m.from, m.to), (0, 1));
        assert_eq!(l.schema_version(), 1);
        let batch = l
            .create_batch(&NewBatch {
                name: "b1".into(),
                product: "sensor".into(),
                attestation: AttestationKind::X509,
                enrollment_kind: EnrollmentKind::Group,
                dps_target: "dps".into(),
                registration_id_template: "{product}-{serial}".into(),
            })
            .unwrap();
        let mut a = x509_identity("sensor-1");
        a.batch = Some(batch);
        l.record_issued(&a).unwrap();
        l.transition("sensor-1", &Transition::Written).unwrap();
        l.record_issued(&symmetric_identity("sensor-2", &[7; 32]))
            .unwrap();
        l.record_issued(&tpm_identity("sensor-3", &[1, 2, 3]))
            .unwrap();
        // The v2 tables do not exist yet.
        let err = l
            .open_key_session(&NewKeySession {
                operator: "sam".into(),
                token_label: "t".into(),
                token_serial: "1".into(),
                token_model: "m".into(),
            })
            .unwrap_err();
        assert!(err.to_string().contains("key_sessions"), "{err}");
    }
    assert_eq!(header(&t.ledger).1, 1);
    let before = {
        let r = Ledger::open_migrating_to(&t.ledger, &writer(), 1)
            .unwrap()
            .0;
        (
            r.list_identities(&IdentityFilter::default()).unwrap(),
            r.verify_audit_chain().unwrap(),
        )
    };
    assert!(before.1.is_intact());

    let (mut l, m) = Ledger::open_reporting(&t.ledger, &writer()).unwrap();
    assert_eq!((m.from, m.to), (1, 2));
    let after = l.list_identities(&IdentityFilter::default()).unwrap();
    assert_eq!(after, before.0, "identities unchanged by the migration");
    let chain = l.verify_audit_chain().unwrap();
    assert!(chain.is_intact());
    assert!(
        chain.rows_checked > before.1.rows_checked,
        "the migration's open is audited"
    );
    let audit = l.audit_for("station:line-1").unwrap();
    let last = audit.last().unwrap();
    assert!(
        last.details.contains("\"migrated_from\":1"),
        "{}",
        last.details
    );
    // v2 works on the migrated file, and so does the v1 data.
    l.open_key_session(&NewKeySession {
        operator: "sam".into(),
        token_label: "t".into(),
        token_serial: "1".into(),
        token_model: "m".into(),
    })
    .unwrap();
    l.transition("sensor-1", &Transition::Enrolled).unwrap();
    drop(l);

    // A migrated ledger has exactly the schema of a new one.
    let fresh = test_dir();
    drop(open(&fresh.ledger));
    assert_eq!(schema_sql(&t.ledger), schema_sql(&fresh.ledger));
}

#[test]
fn read_only_refuses_a_ledger_that_needs_migrating() {
    let t = test_dir();
    drop(Ledger::open_migrating_to(&t.ledger, &writer(), 1).unwrap());
    let err = Ledger::open_read_only(&t.ledger).unwrap_err();
    assert!(
        matches!(
            err,
            LedgerError::NeedsMigration {
                found: 1,
                supported: 2,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("ledger init"), "{err}");
}
