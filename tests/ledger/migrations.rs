//! Schema migrations from every earlier version: an empty file (v0), a missing file, v1 and v2.

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

/// Every identity row, every column of `columns`, as SQLite holds it (read with rusqlite, so that
/// it works on any schema version).
fn identity_rows(path: &std::path::Path, columns: &str) -> Vec<Vec<rusqlite::types::Value>> {
    let c = Connection::open(path).unwrap();
    let mut s = c
        .prepare(&format!("SELECT {columns} FROM identities ORDER BY id"))
        .unwrap();
    let n = s.column_count();
    s.query_map([], |r| {
        (0..n)
            .map(|i| r.get::<_, rusqlite::types::Value>(i))
            .collect::<Result<Vec<_>, _>>()
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

/// The columns every schema version has.
const V1_COLUMNS: &str = "id, registration_id, batch_id, device_id, attestation, certificate_der, \
    sha1_thumbprint, sha256_thumbprint, subject, issuer, cert_serial, not_before, not_after, \
    key_fingerprint, endorsement_key, state, failed_stage, failed_reason, revoked_reason, \
    station_id, operator_id, created_at, updated_at";

#[test]
fn current_version_is_nine() {
    assert_eq!(
        CURRENT_VERSION, 9,
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
        (i64::from(APPLICATION_ID), CURRENT_VERSION, "wal".into())
    );
}

#[test]
fn an_empty_file_is_version_zero_and_migrates_to_current() {
    let t = test_dir();
    std::fs::write(&t.ledger, b"").unwrap();
    let (mut l, m) = Ledger::open_reporting(&t.ledger, &writer()).unwrap();
    assert_eq!((m.from, m.to), (0, CURRENT_VERSION));
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
    assert_eq!((m.from, m.to), (CURRENT_VERSION, CURRENT_VERSION));
}

#[test]
fn v1_migrates_to_current_keeping_every_row_and_the_audit_chain() {
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
        r.verify_audit_chain().unwrap()
    };
    assert!(before.is_intact());
    let rows_before = identity_rows(&t.ledger, V1_COLUMNS);
    assert_eq!(rows_before.len(), 3);

    let (mut l, m) = Ledger::open_reporting(&t.ledger, &writer()).unwrap();
    assert_eq!((m.from, m.to), (1, CURRENT_VERSION));
    assert_eq!(
        identity_rows(&t.ledger, V1_COLUMNS),
        rows_before,
        "identities unchanged by the migration"
    );
    let chain = l.verify_audit_chain().unwrap();
    assert!(chain.is_intact());
    assert!(
        chain.rows_checked > before.rows_checked,
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
                supported: CURRENT_VERSION,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("ledger init"), "{err}");
}

#[test]
fn v2_migrates_to_v3_keeping_ids_rows_references_triggers_and_the_chain() {
    let t = test_dir();
    // A real v2 ledger, written by the v2 code path: every identity state, an enrollment that
    // references an identity, a key session, and a trigger a site added on `identities`.
    {
        let (mut l, m) = Ledger::open_migrating_to(&t.ledger, &writer(), 2).unwrap();
        assert_eq!((m.from, m.to), (0, 2));
        let batch = l
            .create_batch(&NewBatch {
                name: "b2".into(),
                product: "sensor".into(),
                attestation: AttestationKind::X509,
                enrollment_kind: EnrollmentKind::Individual,
                dps_target: "dps".into(),
                registration_id_template: "{product}-{serial}".into(),
            })
            .unwrap();
        let mut a = x509_identity("sensor-1");
        a.batch = Some(batch);
        l.record_issued(&a).unwrap();
        l.transition("sensor-1", &Transition::Written).unwrap();
        // (Queued, not answered: reading an enrollment back uses the current schema's columns.)
        l.queue_enrollment(
            "sensor-1",
            &NewEnrollment {
                dps_target: "dps".into(),
                kind: EnrollmentKind::Individual,
                group_name: None,
            },
        )
        .unwrap();
        l.record_issued(&symmetric_identity("sensor-2", &[7; 32]))
            .unwrap();
        l.record_issued(&tpm_identity("sensor-3", &[1, 2, 3]))
            .unwrap();
        l.record_issued(&x509_identity("sensor-4")).unwrap();
        l.transition(
            "sensor-4",
            &Transition::Revoked {
                reason: "lost".into(),
            },
        )
        .unwrap();
        l.open_key_session(&NewKeySession {
            operator: "sam".into(),
            token_label: "t".into(),
            token_serial: "1".into(),
            token_model: "m".into(),
        })
        .unwrap();
    }
    {
        let c = Connection::open(&t.ledger).unwrap();
        c.execute_batch(
            "CREATE TABLE site_log (what TEXT);
             CREATE TRIGGER site_identity_log AFTER UPDATE OF state ON identities
             BEGIN INSERT INTO site_log VALUES (new.registration_id || ' ' || new.state); END;",
        )
        .unwrap();
    }
    assert_eq!(header(&t.ledger).1, 2);
    let rows_before = identity_rows(&t.ledger, V1_COLUMNS);
    assert_eq!(rows_before.len(), 4);

    let (mut l, m) = Ledger::open_reporting(&t.ledger, &writer()).unwrap();
    assert_eq!((m.from, m.to), (2, CURRENT_VERSION));
    assert_eq!(
        identity_rows(&t.ledger, V1_COLUMNS),
        rows_before,
        "ids and rows unchanged"
    );
    assert!(
        identity_rows(&t.ledger, "key_nonce")
            .iter()
            .all(|r| r[0] == rusqlite::types::Value::Null),
        "identities from before v3 have no key nonce"
    );
    // Enrollments still reference their identity, and the reference is enforced.
    assert_eq!(l.enrollments_for("sensor-1").unwrap().len(), 1);
    {
        let c = Connection::open(&t.ledger).unwrap();
        c.execute_batch("PRAGMA foreign_keys = ON").unwrap();
        let fk: i64 = c
            .query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(fk, 0);
        let err = c
            .execute(
                "INSERT INTO enrollments (identity_id, dps_target, kind, state, queued_at, updated_at)
                 VALUES (999, 'dps', 'individual', 'pending', 'x', 'x')",
                [],
            )
            .unwrap_err();
        assert!(err.to_string().contains("FOREIGN KEY"), "{err}");
        let trigger: i64 = c
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND name = 'site_identity_log'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(trigger, 1, "the site's trigger survived the table rebuild");
    }
    // The writer's connection enforces foreign keys again after migrating.
    let err = l
        .record_issued(&NewIdentity {
            batch: Some(BatchId(4242)),
            ..x509_identity("sensor-9")
        })
        .unwrap_err();
    assert!(err.to_string().to_lowercase().contains("foreign"), "{err}");
    // The trigger fires on the rebuilt table.
    l.transition("sensor-2", &Transition::Written).unwrap();
    let logged: i64 = Connection::open(&t.ledger)
        .unwrap()
        .query_row(
            "SELECT count(*) FROM site_log WHERE what = 'sensor-2 written'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(logged, 1);
    // `ledger verify`: the chain and the file.
    assert!(l.verify_audit_chain().unwrap().is_intact());
    assert!(l.file_problems().unwrap().is_empty());
    drop(l);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dps-station"))
        .args(["ledger", "verify", "--ledger"])
        .arg(&t.ledger)
        .env_remove("DPS_STATION_LEDGER")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // A migrated ledger has exactly the schema of a new one (the site's trigger and table aside).
    let fresh = test_dir();
    drop(open(&fresh.ledger));
    let migrated: Vec<String> = schema_sql(&t.ledger)
        .into_iter()
        .filter(|s| !s.contains("site_"))
        .collect();
    assert_eq!(migrated, schema_sql(&fresh.ledger));
    assert!(
        migrated
            .iter()
            .any(|s| s.contains("identities_live_registration_id")
                && s.contains("WHERE state <> 'revoked'")),
        "{migrated:#?}"
    );
}

#[test]
fn a_key_nonce_on_a_ledger_without_the_nonce_column_is_an_error_not_dropped() {
    let t = test_dir();
    let (mut l, _) = Ledger::open_migrating_to(&t.ledger, &writer(), 2).unwrap();
    let mut n = symmetric_identity("sensor-1", &[7; 32]);
    n.attestation = Attestation::SymmetricKey {
        key_fingerprint: KeyFingerprint::of_key(&[7; 32]),
        key_nonce: Some(KeyNonce([9; 16])),
    };
    let err = l.record_issued(&n).unwrap_err();
    assert!(
        matches!(
            err,
            LedgerError::KeyNonceNeedsSchemaV3 {
                schema_version: 2,
                ..
            }
        ),
        "{err}"
    );
    // Nothing was recorded: the same identity without a nonce is not a duplicate.
    l.record_issued(&symmetric_identity("sensor-1", &[7; 32]))
        .unwrap();
}

#[test]
fn v3_migrates_to_v4_keeping_identities_and_adding_key_evidence() {
    let t = test_dir();
    let id = {
        let (mut l, m) = Ledger::open_migrating_to(&t.ledger, &writer(), 3).unwrap();
        assert_eq!((m.from, m.to), (0, 3));
        l.record_issued(&x509_identity("modem-1")).unwrap()
    };
    assert_eq!(header(&t.ledger).1, 3);
    let rows_before = identity_rows(&t.ledger, V1_COLUMNS);
    let (mut l, m) = Ledger::open_migrating_to(&t.ledger, &writer(), 4).unwrap();
    assert_eq!((m.from, m.to), (3, 4));
    assert_eq!(identity_rows(&t.ledger, V1_COLUMNS), rows_before);
    assert_eq!(l.key_evidence(id).unwrap(), None, "nothing kept before v4");
    // The evidence is written in the identity's own commit and read back as written.
    let evidence = dps_station::ledger::KeyEvidence {
        csr_der: vec![0x30, 0x01, 0x02],
        attestation: Some(vec![0xd2, 0x84]),
    };
    let second = l
        .transaction(|w| {
            let id = w.record_issued(&x509_identity("modem-2"))?;
            w.record_key_evidence(id, &evidence)?;
            Ok(id)
        })
        .unwrap();
    assert_eq!(l.key_evidence(second).unwrap(), Some(evidence));
    // A reissue of the same identity (a new key) replaces its evidence.
    let newer = dps_station::ledger::KeyEvidence {
        csr_der: vec![0x30, 0x02],
        attestation: None,
    };
    l.transaction(|w| w.record_key_evidence(second, &newer))
        .unwrap();
    assert_eq!(l.key_evidence(second).unwrap(), Some(newer));
}

#[test]
fn v4_migrates_to_v5_adding_the_browser_indexes_and_keeping_identities() {
    let t = test_dir();
    {
        let (mut l, m) = Ledger::open_migrating_to(&t.ledger, &writer(), 4).unwrap();
        assert_eq!((m.from, m.to), (0, 4));
        l.record_issued(&x509_identity("Modem-1")).unwrap();
    }
    let rows_before = identity_rows(&t.ledger, V1_COLUMNS);
    let (_l, m) = Ledger::open_migrating_to(&t.ledger, &writer(), 5).unwrap();
    assert_eq!((m.from, m.to), (4, 5));
    assert_eq!(identity_rows(&t.ledger, V1_COLUMNS), rows_before);
    let conn = rusqlite::Connection::open(&t.ledger).unwrap();
    for index in [
        "identities_by_time",
        "identities_by_state_time",
        "identities_by_batch_time",
        "identities_by_registration_id_nocase",
        "devices_by_serial_nocase",
    ] {
        let n: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name = ?1",
                [index],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(n, 1, "{index}");
    }
    // Browsing reads a ledger of the current version: take it there, then search.
    drop(_l);
    drop(Ledger::open_reporting(&t.ledger, &writer()).unwrap());
    let reader = Ledger::open_read_only(&t.ledger).unwrap();
    let query = dps_station::ledger::browse::BrowseQuery {
        search: "modem".into(),
        ..Default::default()
    };
    let rows = reader.browse_page(&query, None, 10).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].registration_id, "Modem-1");
}

#[test]
fn v5_migrates_to_v6_keeping_identities_and_adding_device_runs() {
    let t = test_dir();
    {
        let (mut l, m) = Ledger::open_migrating_to(&t.ledger, &writer(), 5).unwrap();
        assert_eq!((m.from, m.to), (0, 5));
        l.record_issued(&x509_identity("modem-1")).unwrap();
    }
    let rows_before = identity_rows(&t.ledger, V1_COLUMNS);
    let (mut l, m) = Ledger::open_migrating_to(&t.ledger, &writer(), 6).unwrap();
    assert_eq!((m.from, m.to), (5, 6));
    assert_eq!(identity_rows(&t.ledger, V1_COLUMNS), rows_before);
    let batch = l
        .create_batch(&dps_station::ledger::NewBatch {
            name: "night".into(),
            product: "modem".into(),
            attestation: dps_station::ledger::AttestationKind::X509,
            enrollment_kind: dps_station::ledger::EnrollmentKind::Individual,
            dps_target: "dps".into(),
            registration_id_template: "modem-{serial}".into(),
        })
        .unwrap();
    l.transaction(|w| {
        w.record_device_run(&dps_station::ledger::NewDeviceRun {
            batch,
            slot: "S1".into(),
            serial_number: Some("1".into()),
            registration_id: Some("modem-1".into()),
            failure: None,
            elapsed_ms: 900,
        })
    })
    .unwrap();
    let runs = l
        .device_runs(&dps_station::ledger::RunScope::Batch("night".into()))
        .unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].slot, "S1");
}

#[test]
fn v6_migrates_to_v7_keeping_identities_and_adding_manifest_entries() {
    let t = test_dir();
    {
        let (mut l, m) = Ledger::open_migrating_to(&t.ledger, &writer(), 6).unwrap();
        assert_eq!((m.from, m.to), (0, 6));
        l.record_issued(&x509_identity("modem-1")).unwrap();
    }
    let rows_before = identity_rows(&t.ledger, V1_COLUMNS);
    let (mut l, m) = Ledger::open_migrating_to(&t.ledger, &writer(), 7).unwrap();
    assert_eq!((m.from, m.to), (6, 7));
    assert_eq!(identity_rows(&t.ledger, V1_COLUMNS), rows_before);
    assert_eq!(l.manifest_entry("0123000000000001ee").unwrap(), None);
    let Attestation::X509 { certificate_der } = x509_identity("sn0123000000000001ee").attestation
    else {
        unreachable!()
    };
    let entry = dps_station::ledger::NewManifestEntry {
        registration_id: "sn0123000000000001ee".into(),
        unique_id: "0123000000000001ee".into(),
        part_number: "ATECC608B-TNGTLS".into(),
        certificate_der,
        public_key: vec![4; 65],
        manifest_file: "reel.json".into(),
        manifest_sha256: "ab".repeat(32),
        signer_thumbprint: "CD".repeat(32),
        batch: None,
    };
    l.transaction(|w| w.record_manifest_entry(&entry)).unwrap();
    let got = l.manifest_entry("0123000000000001EE").unwrap().unwrap();
    assert_eq!(
        (
            got.registration_id.as_str(),
            got.state.as_str(),
            got.public_key.as_slice()
        ),
        ("sn0123000000000001ee", "written", &[4u8; 65][..])
    );
    assert_eq!(got.manifest_file, "reel.json");
    // The same secure element again is refused and writes nothing.
    let err = l
        .transaction(|w| w.record_manifest_entry(&entry))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("0123000000000001ee") && err.contains("already"),
        "{err}"
    );
}

#[test]
fn v7_migrates_to_v8_back_filling_every_audit_row_into_the_outbox_once() {
    let t = test_dir();
    {
        let (mut l, m) = Ledger::open_migrating_to(&t.ledger, &writer(), 7).unwrap();
        assert_eq!((m.from, m.to), (0, 7));
        l.record_issued(&x509_identity("modem-1")).unwrap();
        l.transition("modem-1", &Transition::Written).unwrap();
        l.transition(
            "modem-1",
            &Transition::Failed {
                stage: FailureStage::Enroll,
                reason: "DPS said no".into(),
            },
        )
        .unwrap();
        l.transition("modem-1", &Transition::Retry).unwrap();
    }
    let audit_before: i64 = Connection::open(&t.ledger)
        .unwrap()
        .query_row("SELECT count(*) FROM audit_log", [], |r| r.get(0))
        .unwrap();
    let (l, m) = Ledger::open_migrating_to(&t.ledger, &writer(), 8).unwrap();
    assert_eq!((m.from, m.to), (7, 8));
    drop(l);
    // Opening again migrates nothing and back-fills nothing twice.
    drop(open(&t.ledger));
    let c = Connection::open(&t.ledger).unwrap();
    let (audit, outbox, pending): (i64, i64, i64) = c
        .query_row(
            "SELECT (SELECT count(*) FROM audit_log), (SELECT count(*) FROM outbox),
                    (SELECT count(*) FROM outbox WHERE uploaded_at IS NULL)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(audit, audit_before + 2, "two ledger.opened rows after v7");
    assert_eq!((outbox, pending), (audit, audit));
    // Historical rows carry the state they recorded, replayed in order.
    let mut s = c
        .prepare(
            "SELECT json_extract(payload, '$.action'), json_extract(payload, '$.identity.state'),
                    json_extract(payload, '$.hash') = a.hash
             FROM outbox o JOIN audit_log a ON a.id = o.seq
             WHERE json_extract(payload, '$.identity') IS NOT NULL ORDER BY seq",
        )
        .unwrap();
    let rows: Vec<(String, String, bool)> = s
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let expect = |a: &str, s: &str| (a.to_string(), s.to_string(), true);
    assert_eq!(
        rows,
        [
            expect("identity.issued", "issued"),
            expect("identity.written", "written"),
            expect("identity.failed", "failed"),
            expect("identity.retry", "written"),
        ]
    );
}
