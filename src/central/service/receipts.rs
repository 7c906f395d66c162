//! Receipts: what the service tells a station it holds of its chain, signed, stored in `receipts`
//! (so `central verify` can show every stored row is covered by one) and recorded in the service's
//! own chain (`ingest.receipt`). The identities of the batch's rows that were quarantined are read
//! from `quarantine`, so a receipt for a re-sent batch names them again (the station that sends
//! again never applied the first). Central enrollment outcomes not yet reported to the station ride
//! along, and are marked reported with the receipt's range in the same transaction: if it rolls back
//! they go in the next, and if the station never gets it, the re-send of that range carries them
//! again.

use tokio_postgres::Transaction;

use super::audit::{self, AuditEntry};
use crate::central::signing::{ServiceSigner, Signed, SigningError};
use crate::central::wire::{EnrollmentOutcome, Quarantined, Receipt};

/// Why a receipt could not be issued.
#[derive(Debug, thiserror::Error)]
pub enum ReceiptError {
    #[error(transparent)]
    Database(#[from] tokio_postgres::Error),
    #[error("the receipt could not be signed: {0}")]
    Signing(#[from] SigningError),
    #[error("the receipt could not be written as JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// What the ingest found, for the receipt.
#[derive(Debug, Clone)]
pub struct ReceiptFacts {
    pub first_seq: i64,
    pub last_seq: i64,
    pub head_seq: i64,
    pub head_hash: String,
    pub central_position: i64,
    pub stored: u32,
}

/// Takes the station's unreported enrollment outcomes, signs the receipt, stores it and appends
/// `ingest.receipt` to the service's chain, all inside `tx`.
pub async fn issue(
    tx: &Transaction<'_>,
    station_id: &str,
    facts: ReceiptFacts,
    signer: &ServiceSigner,
) -> Result<Signed<Receipt>, ReceiptError> {
    let quarantined = quarantined_in(tx, station_id, facts.first_seq, facts.last_seq).await?;
    let enrollments =
        take_unreported_enrollments(tx, station_id, facts.first_seq, facts.last_seq).await?;
    let receipt = Receipt {
        station_id: station_id.to_string(),
        first_seq: facts.first_seq,
        last_seq: facts.last_seq,
        head_seq: facts.head_seq,
        head_hash: facts.head_hash,
        central_position: facts.central_position,
        stored: facts.stored,
        quarantined,
        enrollments,
        issued_at: crate::ledger::now(),
    };
    let signed = signer.sign(&receipt)?;
    let signed_json = serde_json::to_string(&signed)?;
    let receipt_id: i64 = tx
        .query_one(
            "INSERT INTO receipts (station_id, first_seq, last_seq, head_seq, head_hash, central_position, signed)
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING receipt_id",
            &[
                &station_id,
                &receipt.first_seq,
                &receipt.last_seq,
                &receipt.head_seq,
                &receipt.head_hash,
                &receipt.central_position,
                &signed_json,
            ],
        )
        .await?
        .get(0);
    let details = serde_json::json!({
        "receipt_id": receipt_id,
        "first_seq": receipt.first_seq,
        "last_seq": receipt.last_seq,
        "head_seq": receipt.head_seq,
        "head_hash": receipt.head_hash,
        "central_position": receipt.central_position,
        "stored": receipt.stored,
        "quarantined": receipt.quarantined.len(),
        "enrollments": receipt.enrollments.len(),
        "signature": signed.signature,
    })
    .to_string();
    let subject = format!("{}..{}", receipt.first_seq, receipt.last_seq);
    audit::append(
        tx,
        &AuditEntry {
            station_id,
            actor: "service",
            action: "ingest.receipt",
            subject: &subject,
            details: &details,
        },
    )
    .await?;
    Ok(signed)
}

/// The station's identities quarantined by rows `first..=last`.
async fn quarantined_in(
    tx: &Transaction<'_>,
    station_id: &str,
    first: i64,
    last: i64,
) -> Result<Vec<Quarantined>, tokio_postgres::Error> {
    let rows = tx
        .query(
            "SELECT seq, registration_id, device_model, device_serial, reason, held_by
             FROM quarantine WHERE station_id = $1 AND seq BETWEEN $2 AND $3
             ORDER BY seq, registration_id",
            &[&station_id, &first, &last],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| Quarantined {
            seq: r.get(0),
            registration_id: r.get(1),
            device_model: r.get(2),
            device_serial: r.get(3),
            reason: r.get(4),
            held_by: r.get(5),
        })
        .collect())
}

/// Outcomes of this station's central enrollments for this receipt: those no receipt carried yet,
/// and those a receipt for an overlapping range carried (the station sends rows again only when it
/// never applied their receipt; applying an outcome twice changes nothing). Marks them reported
/// with this receipt's range.
async fn take_unreported_enrollments(
    tx: &Transaction<'_>,
    station_id: &str,
    first_seq: i64,
    last_seq: i64,
) -> Result<Vec<EnrollmentOutcome>, tokio_postgres::Error> {
    const RETURNING: &str = "RETURNING registration_id, state, etag, error,
        to_char(coalesce(done_at, now()) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')";
    let mut rows = tx
        .query(
            &format!(
                "UPDATE enrollment_jobs
                 SET reported_first_seq = $2, reported_last_seq = $3
                 WHERE station_id = $1 AND reported_at IS NOT NULL
                   AND reported_last_seq >= $2 AND reported_first_seq <= $3
                 {RETURNING}"
            ),
            &[&station_id, &first_seq, &last_seq],
        )
        .await?;
    rows.extend(
        tx.query(
            &format!(
                "UPDATE enrollment_jobs
                 SET reported_at = now(), reported_first_seq = $2, reported_last_seq = $3
                 WHERE station_id = $1 AND state <> 'pending' AND reported_at IS NULL
                 {RETURNING}"
            ),
            &[&station_id, &first_seq, &last_seq],
        )
        .await?,
    );
    let mut outcomes: Vec<EnrollmentOutcome> = rows
        .iter()
        .map(|r| EnrollmentOutcome {
            registration_id: r.get(0),
            status: r.get(1),
            etag: r.get(2),
            error: r.get(3),
            at: r.get(4),
        })
        .collect();
    outcomes.sort_by(|a, b| a.registration_id.cmp(&b.registration_id));
    Ok(outcomes)
}
