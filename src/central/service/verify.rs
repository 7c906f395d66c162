//! `central verify`: replays everything the central ledger holds and names the first broken link of
//! each chain. The service's own chain (`central_audit`, [`super::audit::check_rows`]); each
//! station's ingested rows (every hash recomputed with the station's canonical form, seq contiguous
//! from 1, each row chained to the one before, the station's recorded head matching its last row);
//! every receipt (its signature, that it attests the hash the service holds, and that together the
//! receipts cover every stored row). With station ledgers ([`super::verify_ledger`]), each one is
//! compared with what the central holds of it.
//!
//! Reads in pages (keyset on the primary keys), so a chain of millions of rows needs little memory.
//! Runs as the database owner or the service role: it only reads.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::audit::{AuditRow, check_rows};
use super::ingest_rows::{self, recompute_hash};
use crate::central::signing::{Signed, SignerCertificate};
use crate::central::wire::{OutboxRow, Receipt};

/// Rows read per query.
const PAGE: i64 = 5000;

/// Why verification could not run at all (a broken chain is a [`Finding`], not an error).
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("reading the central database failed: {0}; check the URL and that the database is up")]
    Database(String),
    #[error(
        "reading the station ledger {path} failed: {reason}; give the path of its ledger.sqlite"
    )]
    Ledger { path: PathBuf, reason: String },
}

impl From<tokio_postgres::Error> for VerifyError {
    fn from(e: tokio_postgres::Error) -> Self {
        VerifyError::Database(super::db::describe(&e))
    }
}

/// One broken link: which chain, where, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// `central audit`, `station st-1`, `receipts of station st-1`, `ledger /path (station st-1)`.
    pub chain: String,
    /// The position or seq of the first broken link.
    pub at: i64,
    pub problem: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.chain, self.problem)
    }
}

/// What was checked, and the first broken link of each chain.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    pub audit_rows: u64,
    /// Per station: rows checked.
    pub stations: BTreeMap<String, u64>,
    pub receipts: u64,
    pub ledgers: Vec<(String, u64)>,
    pub findings: Vec<Finding>,
}

impl VerifyReport {
    /// True when nothing is broken.
    pub fn is_intact(&self) -> bool {
        self.findings.is_empty()
    }
}

/// A station ledger to compare, and the station id it has on the central service (`None`: the
/// `station` field of its audit rows).
#[derive(Debug, Clone)]
pub struct LedgerToCompare {
    pub station_id: Option<String>,
    pub path: PathBuf,
}

/// Verifies everything. `signers`: the service's signer certificate(s) (more than one after a key
/// change); receipts signed by none of them are findings.
pub async fn verify(
    client: &tokio_postgres::Client,
    signers: &[SignerCertificate],
    ledgers: &[LedgerToCompare],
) -> Result<VerifyReport, VerifyError> {
    let mut report = VerifyReport::default();
    verify_central_audit(client, &mut report).await?;
    let stations: Vec<(String, i64, String)> = client
        .query(
            "SELECT station_id, head_seq, head_hash FROM stations ORDER BY station_id",
            &[],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    for (station_id, head_seq, head_hash) in &stations {
        let intact_to =
            verify_station_rows(client, station_id, (*head_seq, head_hash), &mut report).await?;
        verify_receipts(client, station_id, intact_to, signers, &mut report).await?;
    }
    for ledger in ledgers {
        super::verify_ledger::compare(client, ledger, &mut report).await?;
    }
    Ok(report)
}

async fn verify_central_audit(
    client: &tokio_postgres::Client,
    report: &mut VerifyReport,
) -> Result<(), VerifyError> {
    let (mut position, mut prev) = (1i64, "0".repeat(64));
    loop {
        let rows: Vec<AuditRow> = client
            .query(
                "SELECT position, at, station_id, actor, action, subject, details, prev_hash, hash
                 FROM central_audit WHERE position >= $1 ORDER BY position LIMIT $2",
                &[&position, &PAGE],
            )
            .await?
            .iter()
            .map(|r| AuditRow {
                position: r.get(0),
                at: r.get(1),
                station_id: r.get(2),
                actor: r.get(3),
                action: r.get(4),
                subject: r.get(5),
                details: r.get(6),
                prev_hash: r.get(7),
                hash: r.get(8),
            })
            .collect();
        let before = position;
        if let Some(broken) = check_rows(&rows, &mut position, &mut prev) {
            report.findings.push(Finding {
                chain: "central audit".into(),
                at: broken.position,
                problem: broken.problem,
            });
            return Ok(());
        }
        report.audit_rows += u64::try_from(position - before).unwrap_or(0);
        if (rows.len() as i64) < PAGE {
            return Ok(());
        }
    }
}

/// Checks one station's rows; returns the last seq up to which its chain is intact.
async fn verify_station_rows(
    client: &tokio_postgres::Client,
    station_id: &str,
    head: (i64, &str),
    report: &mut VerifyReport,
) -> Result<i64, VerifyError> {
    let chain = format!("station {station_id}");
    let mut last_hash = "0".repeat(64);
    let mut expected = 1i64;
    let mut prev = [0u8; 32];
    let mut finding: Option<(i64, String)> = None;
    'pages: loop {
        let rows = client
            .query(
                "SELECT seq, payload_sha256, payload, prev_hash, hash FROM ingested_rows
                 WHERE station_id = $1 AND seq >= $2 ORDER BY seq LIMIT $3",
                &[&station_id, &expected, &PAGE],
            )
            .await?;
        for r in &rows {
            let seq: i64 = r.get(0);
            let (digest, payload): (&str, &str) = (r.get(1), r.get(2));
            let (prev_col, hash_col): (&str, &str) = (r.get(3), r.get(4));
            if let Some(problem) =
                check_stored_row(seq, expected, &prev, digest, payload, prev_col, hash_col)
            {
                finding = Some((seq.min(expected), problem));
                break 'pages;
            }
            prev = ingest_rows::decode_hash(hash_col).unwrap_or_default();
            hash_col.clone_into(&mut last_hash);
            expected = seq + 1;
        }
        if (rows.len() as i64) < PAGE {
            break;
        }
    }
    let last = expected - 1;
    report
        .stations
        .insert(station_id.to_string(), u64::try_from(last).unwrap_or(0));
    if finding.is_none() && (head.0 != last || head.1 != last_hash) {
        finding = Some((
            head.0,
            format!(
                "the service records its head at seq {} but its rows end at seq {last} with another hash: rows were removed from ingested_rows, or the head was changed",
                head.0
            ),
        ));
    }
    if let Some((at, problem)) = finding {
        report.findings.push(Finding { chain, at, problem });
    }
    Ok(last)
}

/// The problem with one stored row, if any.
fn check_stored_row(
    seq: i64,
    expected: i64,
    prev: &[u8; 32],
    digest: &str,
    payload: &str,
    prev_col: &str,
    hash_col: &str,
) -> Option<String> {
    if seq != expected {
        return Some(format!(
            "row {expected} is missing (the next row held is {seq})"
        ));
    }
    let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(payload.as_bytes()));
    if sha != digest {
        return Some(format!(
            "row {seq} was altered: its payload does not match the digest stored with it"
        ));
    }
    let row: OutboxRow = match serde_json::from_str(payload) {
        Ok(row) => row,
        Err(e) => return Some(format!("row {seq} cannot be read ({e})")),
    };
    if row.seq != seq || row.prev_hash != prev_col || row.hash != hash_col {
        return Some(format!(
            "row {seq} was altered: its seq or hashes differ from the columns stored with it"
        ));
    }
    if row.prev_hash != hex::encode(prev) {
        return Some(format!("row {seq} does not chain to row {}", seq - 1));
    }
    if recompute_hash(prev, &row) != row.hash {
        return Some(format!(
            "row {seq} was altered: its hash does not match its content"
        ));
    }
    None
}

async fn verify_receipts(
    client: &tokio_postgres::Client,
    station_id: &str,
    intact_to: i64,
    signers: &[SignerCertificate],
    report: &mut VerifyReport,
) -> Result<(), VerifyError> {
    let chain = format!("receipts of station {station_id}");
    // With the hash the service holds for the row each receipt attests.
    let rows = client
        .query(
            "SELECT r.receipt_id, r.first_seq, r.last_seq, r.head_seq, r.head_hash, r.signed, i.hash
             FROM receipts r
             LEFT JOIN ingested_rows i ON i.station_id = r.station_id AND i.seq = r.head_seq
             WHERE r.station_id = $1 ORDER BY r.receipt_id",
            &[&station_id],
        )
        .await?;
    let mut ranges = Vec::with_capacity(rows.len());
    for r in &rows {
        report.receipts += 1;
        let id: i64 = r.get(0);
        let (first, last, head_seq): (i64, i64, i64) = (r.get(1), r.get(2), r.get(3));
        let (head_hash, signed): (&str, &str) = (r.get(4), r.get(5));
        let held: Option<&str> = r.get(6);
        let columns = (first, last, head_seq, head_hash);
        let checked = check_receipt(station_id, signed, signers, columns)
            .and_then(|()| check_attested(head_seq, head_hash, held, intact_to));
        if let Err(problem) = checked {
            report.findings.push(Finding {
                chain,
                at: id,
                problem: format!("receipt {id} (rows {first}..{last}): {problem}"),
            });
            return Ok(());
        }
        ranges.push((first, last));
    }
    ranges.sort_unstable();
    let mut covered = 0i64;
    let top = intact_to;
    for (first, last) in ranges {
        if first > covered + 1 {
            break;
        }
        covered = covered.max(last);
    }
    if covered < top {
        report.findings.push(Finding {
            chain,
            at: covered + 1,
            problem: format!(
                "row {} is stored but no receipt covers it: a receipt was removed from the receipts table",
                covered + 1
            ),
        });
    }
    Ok(())
}

fn check_receipt(
    station_id: &str,
    signed: &str,
    signers: &[SignerCertificate],
    columns: (i64, i64, i64, &str),
) -> Result<(), String> {
    let signed: Signed<Receipt> =
        serde_json::from_str(signed).map_err(|e| format!("cannot be read ({e})"))?;
    let Some(signer) = signers
        .iter()
        .find(|s| s.sha256().eq_ignore_ascii_case(&signed.signer))
    else {
        return Err(format!(
            "signed by certificate {}, which is not the service's signer certificate given",
            signed.signer
        ));
    };
    let receipt = signer.verify(&signed).map_err(|e| e.to_string())?;
    let (first, last, head_seq, head_hash) = columns;
    if receipt.station_id != station_id
        || receipt.first_seq != first
        || receipt.last_seq != last
        || receipt.head_seq != head_seq
        || receipt.head_hash != head_hash
    {
        return Err("the signed receipt differs from the columns stored with it".into());
    }
    Ok(())
}

/// The receipt attests the hash the service holds for its head row, within the intact chain.
fn check_attested(
    head_seq: i64,
    head_hash: &str,
    held: Option<&str>,
    intact_to: i64,
) -> Result<(), String> {
    match held {
        Some(held) if held != head_hash => Err(format!(
            "it attests a hash for row {head_seq} other than the one the service holds"
        )),
        Some(_) if head_seq <= intact_to => Ok(()),
        None if head_seq == 0 => Ok(()),
        _ => Err(format!(
            "it attests row {head_seq}, which the service does not hold intact"
        )),
    }
}
