//! `central verify --ledger`: a station's own SQLite chain against what the central holds of it. A
//! row deleted from the station's ledger, or changed after it was uploaded (someone dropped the
//! triggers with the `sqlite3` shell), is named: station, seq, what differs. Rows the station has
//! not uploaded yet are not a problem (its outbox will send them).

use rusqlite::{Connection, OpenFlags, OptionalExtension};

use super::verify::{Finding, LedgerToCompare, VerifyError, VerifyReport};
use crate::central::wire::OutboxRow;

/// Seqs compared per round trip.
const WINDOW: i64 = 5000;

/// One row of the station's `audit_log`.
struct LocalRow {
    id: i64,
    fields: [String; 8],
}

const FIELD_NAMES: [&str; 8] = [
    "at",
    "station",
    "actor",
    "action",
    "subject",
    "details",
    "prev_hash",
    "hash",
];

/// Compares one station ledger with the central's rows of that station; adds at most one finding.
pub async fn compare(
    client: &tokio_postgres::Client,
    ledger: &LedgerToCompare,
    report: &mut VerifyReport,
) -> Result<(), VerifyError> {
    let fail = |reason: String| VerifyError::Ledger {
        path: ledger.path.clone(),
        reason,
    };
    let conn = Connection::open_with_flags(
        &ledger.path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| fail(e.to_string()))?;
    let (last_local, named) = local_head(&conn).map_err(|e| fail(e.to_string()))?;
    let station_id = match (&ledger.station_id, named) {
        (Some(id), _) => id.clone(),
        (None, Some(named)) => named,
        (None, None) => {
            report.ledgers.push((ledger.path.display().to_string(), 0));
            return Ok(());
        }
    };
    let chain = format!("ledger {} (station {station_id})", ledger.path.display());
    let Some(head) = client
        .query_opt(
            "SELECT head_seq FROM stations WHERE station_id = $1",
            &[&station_id],
        )
        .await?
    else {
        report.findings.push(Finding {
            chain,
            at: 0,
            problem: format!(
                "station {station_id} is not known to the central service: give its id as --ledger STATION=PATH"
            ),
        });
        return Ok(());
    };
    let central_head: i64 = head.get(0);
    let mut compared = 0u64;
    let mut lo = 1i64;
    while lo <= central_head.max(last_local) {
        let hi = lo + WINDOW - 1;
        let local = local_rows(&conn, lo, hi).map_err(|e| fail(e.to_string()))?;
        let central = central_rows(client, &station_id, lo, hi).await?;
        if let Some((seq, problem)) = first_difference(lo, hi, &local, &central, central_head) {
            report.findings.push(Finding {
                chain,
                at: seq,
                problem,
            });
            report
                .ledgers
                .push((ledger.path.display().to_string(), compared));
            return Ok(());
        }
        compared += central.len() as u64;
        lo = hi + 1;
    }
    report
        .ledgers
        .push((ledger.path.display().to_string(), compared));
    Ok(())
}

/// The ledger's highest id and the station named in its last row.
fn local_head(conn: &Connection) -> Result<(i64, Option<String>), rusqlite::Error> {
    let last = conn
        .query_row(
            "SELECT id, station FROM audit_log ORDER BY id DESC LIMIT 1",
            [],
            |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)),
        )
        .optional()?;
    Ok(match last {
        Some((id, station)) => (id, Some(station)),
        None => (0, None),
    })
}

fn local_rows(conn: &Connection, lo: i64, hi: i64) -> Result<Vec<LocalRow>, rusqlite::Error> {
    let mut stmt = conn.prepare(
        "SELECT id, at, station, actor, action, subject, details, prev_hash, hash
         FROM audit_log WHERE id BETWEEN ?1 AND ?2 ORDER BY id",
    )?;
    let rows = stmt.query_map([lo, hi], |r| {
        Ok(LocalRow {
            id: r.get(0)?,
            fields: [
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
                r.get(8)?,
            ],
        })
    })?;
    rows.collect()
}

async fn central_rows(
    client: &tokio_postgres::Client,
    station_id: &str,
    lo: i64,
    hi: i64,
) -> Result<Vec<(i64, Option<OutboxRow>)>, VerifyError> {
    Ok(client
        .query(
            "SELECT seq, payload FROM ingested_rows
             WHERE station_id = $1 AND seq BETWEEN $2 AND $3 ORDER BY seq",
            &[&station_id, &lo, &hi],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), serde_json::from_str(r.get(1)).ok()))
        .collect())
}

/// Walks seqs `lo..=hi` of both sides; the first seq where they disagree, and how.
fn first_difference(
    lo: i64,
    hi: i64,
    local: &[LocalRow],
    central: &[(i64, Option<OutboxRow>)],
    central_head: i64,
) -> Option<(i64, String)> {
    let (mut l, mut c) = (local.iter().peekable(), central.iter().peekable());
    for seq in lo..=hi {
        let here = l.next_if(|r| r.id == seq);
        let there = c.next_if(|(s, _)| *s == seq);
        match (here, there) {
            (None, None) => {}
            (None, Some((_, row))) => {
                let what = row
                    .as_ref()
                    .map(|r| format!(" ({} {} at {})", r.action, r.subject, r.at))
                    .unwrap_or_default();
                return Some((
                    seq,
                    format!(
                        "row {seq} was deleted from the station's ledger: the central holds it{what}"
                    ),
                ));
            }
            (Some(_), None) if seq <= central_head => {
                return Some((
                    seq,
                    format!(
                        "row {seq} is in the station's ledger but missing on the central service"
                    ),
                ));
            }
            // Not uploaded yet: the outbox sends it.
            (Some(_), None) => {}
            (Some(local), Some((_, None))) => {
                return Some((
                    local.id,
                    format!("row {seq} on the central service cannot be read"),
                ));
            }
            (Some(local), Some((_, Some(row)))) => {
                let theirs = [
                    &row.at,
                    &row.station,
                    &row.actor,
                    &row.action,
                    &row.subject,
                    &row.details,
                    &row.prev_hash,
                    &row.hash,
                ];
                let differ: Vec<&str> = FIELD_NAMES
                    .iter()
                    .zip(local.fields.iter().zip(theirs))
                    .filter(|(_, (a, b))| a != b)
                    .map(|(name, _)| *name)
                    .collect();
                if !differ.is_empty() {
                    return Some((
                        seq,
                        format!(
                            "row {seq} in the station's ledger differs from the one the central holds: {} changed",
                            differ.join(", ")
                        ),
                    ));
                }
            }
        }
    }
    None
}
