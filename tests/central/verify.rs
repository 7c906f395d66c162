//! `central verify` against a real PostgreSQL and real station ledgers: an intact history verifies;
//! a byte flipped in a central audit row (the trigger disabled, as an attacker with the owner's
//! password would), an altered ingested row, a removed receipt, a forged receipt signature, a row
//! deleted from or changed in a station's SQLite ledger (its triggers dropped with the `sqlite3`
//! shell): each is named with its chain and seq.

use std::path::{Path, PathBuf};
use std::process::Command;

use dps_station::central::service::verify::{self, LedgerToCompare, VerifyReport};
use dps_station::central::wire::{IngestBatch, OutboxRow};
use dps_station::ledger::{Ledger, WriterIdentity};

use crate::ingest_support::{Central, connect, runtime};

/// A real station ledger with `rows` audit rows in all; returns its path.
fn station_ledger(dir: &Path, station: &str, rows: i64) -> PathBuf {
    let path = dir.join(format!("{station}.sqlite"));
    let mut ledger = Ledger::open(
        &path,
        &WriterIdentity {
            station: station.into(),
            operator: "operator".into(),
        },
    )
    .unwrap();
    let mut n = 0;
    while local_rows(&path).len() < rows as usize {
        n += 1;
        ledger
            .append_audit(
                "operator",
                "station.note",
                &format!("note-{n}"),
                &serde_json::json!({"n": n}),
            )
            .unwrap();
    }
    path
}

/// The ledger's audit rows as the outbox sends them.
fn local_rows(path: &Path) -> Vec<OutboxRow> {
    let conn = rusqlite::Connection::open(path).unwrap();
    let mut stmt = conn
        .prepare("SELECT id, at, station, actor, action, subject, details, prev_hash, hash FROM audit_log ORDER BY id")
        .unwrap();
    stmt.query_map([], |r| {
        Ok(OutboxRow {
            seq: r.get(0)?,
            at: r.get(1)?,
            station: r.get(2)?,
            actor: r.get(3)?,
            action: r.get(4)?,
            subject: r.get(5)?,
            details: r.get(6)?,
            prev_hash: r.get(7)?,
            hash: r.get(8)?,
            identity: None,
        })
    })
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}

/// Uploads the ledger's rows in batches of `per`, as the sync worker would.
fn upload(rt: &tokio::runtime::Runtime, central: &Central, station: &str, path: &Path, per: usize) {
    let rows = local_rows(path);
    rt.block_on(async {
        for chunk in rows.chunks(per) {
            let batch = IngestBatch {
                station_id: station.into(),
                station_time: dps_station::ledger::now(),
                rows: chunk.to_vec(),
            };
            central.ingest(&batch).await.unwrap();
        }
    });
}

fn run_verify(
    rt: &tokio::runtime::Runtime,
    central: &Central,
    ledgers: &[PathBuf],
) -> VerifyReport {
    let ledgers: Vec<LedgerToCompare> = ledgers
        .iter()
        .map(|p| LedgerToCompare {
            station_id: None,
            path: p.clone(),
        })
        .collect();
    rt.block_on(async {
        let client = connect(&central.pg.admin_url()).await;
        verify::verify(&client, std::slice::from_ref(&central.verifier), &ledgers)
            .await
            .unwrap()
    })
}

fn sqlite(path: &Path, sql: &str) {
    let out = Command::new("sqlite3").arg(path).arg(sql).output().unwrap();
    assert!(
        out.status.success(),
        "sqlite3: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn finding<'a>(report: &'a VerifyReport, chain_starts: &str) -> &'a verify::Finding {
    report
        .findings
        .iter()
        .find(|f| f.chain.starts_with(chain_starts))
        .unwrap_or_else(|| panic!("no finding for {chain_starts}: {:?}", report.findings))
}

#[test]
fn rows_deleted_or_changed_in_a_station_ledger_are_named_and_an_intact_one_verifies() {
    let rt = runtime();
    let central = Central::start(&rt, &["st-1", "st-2"]);
    let dir = tempfile::tempdir().unwrap();
    let one = station_ledger(dir.path(), "st-1", 12);
    let two = station_ledger(dir.path(), "st-2", 12);
    upload(&rt, &central, "st-1", &one, 5);
    upload(&rt, &central, "st-2", &two, 12);

    let report = run_verify(&rt, &central, &[one.clone(), two.clone()]);
    assert!(report.is_intact(), "{:?}", report.findings);
    assert_eq!(report.stations.get("st-1"), Some(&12));
    assert_eq!(report.receipts, 4);
    assert_eq!(report.ledgers.len(), 2);

    // Someone with the sqlite3 shell removes a row from one station and rewrites one on the other.
    sqlite(
        &one,
        "DROP TRIGGER audit_log_no_delete; DELETE FROM audit_log WHERE id = 5;",
    );
    sqlite(
        &two,
        "DROP TRIGGER audit_log_no_update; UPDATE audit_log SET details = '{\"n\":99}' WHERE id = 7;",
    );
    let report = run_verify(&rt, &central, &[one, two]);
    assert_eq!(report.findings.len(), 2, "{:?}", report.findings);
    let deleted = finding(&report, "ledger");
    assert!(deleted.chain.contains("station st-1"), "{deleted}");
    assert_eq!(deleted.at, 5);
    assert!(deleted.problem.contains("row 5 was deleted"), "{deleted}");
    let changed = report
        .findings
        .iter()
        .find(|f| f.chain.contains("st-2"))
        .unwrap();
    assert_eq!(changed.at, 7);
    assert!(changed.problem.contains("details changed"), "{changed}");
}

#[test]
fn a_flipped_audit_byte_an_altered_row_and_missing_or_forged_receipts_are_named() {
    let rt = runtime();
    let central = Central::start(&rt, &["st-1", "st-2", "st-3"]);
    let dir = tempfile::tempdir().unwrap();
    for station in ["st-1", "st-2", "st-3"] {
        let path = station_ledger(dir.path(), station, 9);
        upload(&rt, &central, station, &path, 3);
    }
    assert!(run_verify(&rt, &central, &[]).is_intact());

    // As the superuser, with the append-only triggers disabled.
    central.sql(
        "ALTER TABLE central_audit DISABLE TRIGGER central_audit_append_only;
         UPDATE central_audit SET details = replace(details, '\"stored\":3', '\"stored\":4') WHERE position = 2;
         ALTER TABLE central_audit ENABLE TRIGGER central_audit_append_only;",
    );
    central.sql(
        "ALTER TABLE ingested_rows DISABLE TRIGGER ingested_rows_append_only;
         UPDATE ingested_rows SET payload = replace(payload, 'note-', 'NOTE-') WHERE station_id = 'st-1' AND seq = 6;
         ALTER TABLE ingested_rows ENABLE TRIGGER ingested_rows_append_only;",
    );
    central.sql("DELETE FROM receipts WHERE station_id = 'st-2' AND first_seq = 4");
    // The signed payload is a JSON string inside the stored JSON: its quotes are escaped.
    central.sql(
        r#"UPDATE receipts SET signed = replace(signed, 'stored\":3', 'stored\":2') WHERE station_id = 'st-3' AND first_seq = 7"#,
    );

    let report = run_verify(&rt, &central, &[]);
    let audit = finding(&report, "central audit");
    assert_eq!(audit.at, 2);
    assert!(audit.problem.contains("altered"), "{audit}");
    let row = finding(&report, "station st-1");
    assert_eq!(row.at, 6);
    assert!(row.problem.contains("row 6 was altered"), "{row}");
    let uncovered = finding(&report, "receipts of station st-2");
    assert_eq!(uncovered.at, 4);
    assert!(
        uncovered.problem.contains("no receipt covers it"),
        "{uncovered}"
    );
    let forged = finding(&report, "receipts of station st-3");
    assert!(forged.problem.contains("does not verify"), "{forged}");
}
