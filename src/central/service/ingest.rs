//! `POST /v1/ingest`: a station's outbox rows into PostgreSQL, idempotently, its hash chain checked,
//! answered with a signed receipt.
//!
//! Two transactions per request. The first stores: the station's row is locked (`FOR UPDATE`, so two
//! requests of one station never interleave), the rows are inserted `ON CONFLICT DO NOTHING`, rows
//! the service already held are compared by payload digest (the same key with other content is
//! tampering: refused, alerted), the first new row must chain to the head the service holds, and
//! identity snapshots are applied ([`super::ingest_identities`]). The second, short, issues the
//! receipt ([`super::receipts`]): signed, stored, and appended to the service's own chain, whose
//! lock every lease and receipt waits for. Keeping the thousand-row commit out from under that lock
//! is what keeps lease latency low while stations upload (`bench central`). A service that dies
//! between the two has stored rows and issued no receipt; the station, having none, sends the rows
//! again and gets it (nothing is stored twice; quarantines are read back from the table).
//!
//! A refusal rolls the first transaction back and is then recorded in the service's own chain in a
//! transaction of its own (`ingest.refused`): every refusal is in both chains.

use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use tokio_postgres::Transaction;

use super::audit::{self, AuditEntry};
use super::clock;
use super::db;
use super::ingest_identities;
use super::ingest_rows::{self, RowProblem};
use super::receipts::{self, ReceiptError, ReceiptFacts};
use super::state::{ApiRefusal, AuthedStation, SharedCentral, refuse};
use crate::central::signing::{ServiceSigner, Signed};
use crate::central::wire::{IngestBatch, Receipt, paths};

/// A request body may carry [`crate::central::wire::MAX_INGEST_ROWS`] rows with certificates.
const BODY_LIMIT: usize = 16 * 1024 * 1024;

/// Why an ingest was refused. The station shows the message to its engineer; [`Self::to_api`] adds
/// the station's name and the HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum IngestRefusal {
    #[error(
        "its certificate is for station {certified} but the batch says {claimed}: the station's station.toml id must match the one it joined with; join again"
    )]
    StationMismatch { certified: String, claimed: String },
    #[error("{message}")]
    Clock { code: String, message: String },
    #[error(
        "the station is not known to the central service: join it with `dps-station central join`"
    )]
    UnknownStation,
    #[error("the station's certificate was revoked: an administrator must let it join again")]
    Revoked,
    #[error("{0}")]
    Rows(RowProblem),
    #[error(
        "the service holds rows up to seq {head_seq} but the batch starts at seq {first_seq}: re-send the outbox from seq {}",
        head_seq + 1
    )]
    ChainGap { head_seq: i64, first_seq: i64 },
    #[error(
        "row {seq} differs from the row {seq} the service already holds: the station's ledger was changed after it was sent; nothing was stored; run `dps-station ledger verify` on the station and call the administrator"
    )]
    Tampered { seq: i64 },
    #[error(
        "row {seq} does not chain to row {} the service holds: the station's chain was rewritten after it was sent; nothing was stored; run `dps-station ledger verify` on the station and call the administrator",
        seq - 1
    )]
    Fork { seq: i64 },
    #[error("the central database failed ({0}); the station keeps its data and retries")]
    Database(String),
    #[error("the receipt could not be made ({0}); the station keeps its data and retries")]
    Receipt(String),
}

impl From<tokio_postgres::Error> for IngestRefusal {
    fn from(error: tokio_postgres::Error) -> Self {
        IngestRefusal::Database(db::describe(&error))
    }
}

impl From<ReceiptError> for IngestRefusal {
    fn from(error: ReceiptError) -> Self {
        match error {
            ReceiptError::Database(e) => e.into(),
            other => IngestRefusal::Receipt(other.to_string()),
        }
    }
}

impl IngestRefusal {
    /// The stable code stations act on (`wire::Refusal::code`).
    pub fn code(&self) -> &str {
        match self {
            IngestRefusal::StationMismatch { .. } => "station_mismatch",
            IngestRefusal::Clock { code, .. } => code,
            IngestRefusal::UnknownStation => "unknown_station",
            IngestRefusal::Revoked => "revoked",
            IngestRefusal::Rows(RowProblem::NotInOrder { .. }) => "not_in_order",
            IngestRefusal::Rows(RowProblem::Altered { .. } | RowProblem::Unchained { .. }) => {
                "tampered"
            }
            IngestRefusal::Rows(_) => "bad_batch",
            IngestRefusal::ChainGap { .. } => "chain_gap",
            IngestRefusal::Tampered { .. } | IngestRefusal::Fork { .. } => "tampered",
            IngestRefusal::Database(_) | IngestRefusal::Receipt(_) => "database_unavailable",
        }
    }

    /// The HTTP status: 503 for what passes (the station retries), 4xx for what it must fix.
    pub fn status(&self) -> StatusCode {
        match self {
            IngestRefusal::StationMismatch { .. }
            | IngestRefusal::UnknownStation
            | IngestRefusal::Revoked => StatusCode::FORBIDDEN,
            IngestRefusal::ChainGap { .. }
            | IngestRefusal::Tampered { .. }
            | IngestRefusal::Fork { .. } => StatusCode::CONFLICT,
            IngestRefusal::Clock { .. } | IngestRefusal::Rows(_) => StatusCode::BAD_REQUEST,
            IngestRefusal::Database(_) | IngestRefusal::Receipt(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        }
    }

    /// Whether the station should simply retry later.
    pub fn is_transient(&self) -> bool {
        self.status() == StatusCode::SERVICE_UNAVAILABLE
    }

    /// The refusal as the API sends it, naming the station.
    pub fn to_api(&self, station_id: &str) -> ApiRefusal {
        refuse(
            self.status(),
            self.code(),
            format!("ingest from station {station_id} refused: {self}"),
        )
    }
}

/// Checks and stores `batch` inside `tx` and returns what its receipt will say. The caller commits
/// on `Ok`, then issues the receipt, and rolls back on `Err` (see [`ingest_and_commit`], which also
/// records refusals).
pub async fn ingest(
    tx: &Transaction<'_>,
    station: &AuthedStation,
    batch: &IngestBatch,
) -> Result<ReceiptFacts, IngestRefusal> {
    let station_id = station.station_id.as_str();
    if batch.station_id != station_id {
        return Err(IngestRefusal::StationMismatch {
            certified: station_id.to_string(),
            claimed: batch.station_id.clone(),
        });
    }
    clock::check(station_id, &batch.station_time).map_err(|r| IngestRefusal::Clock {
        code: r.body.code,
        message: r.body.message,
    })?;
    ingest_rows::check_batch(&batch.rows).map_err(IngestRefusal::Rows)?;
    let (Some(first), Some(last)) = (batch.rows.first(), batch.rows.last()) else {
        return Err(IngestRefusal::Rows(RowProblem::Empty));
    };

    let head = tx
        .query_opt(
            "SELECT head_seq, head_hash, revoked_at IS NOT NULL FROM stations
             WHERE station_id = $1 FOR UPDATE",
            &[&station_id],
        )
        .await?
        .ok_or(IngestRefusal::UnknownStation)?;
    let (head_seq, head_hash, revoked): (i64, String, bool) =
        (head.get(0), head.get(1), head.get(2));
    if revoked {
        return Err(IngestRefusal::Revoked);
    }
    if first.seq > head_seq + 1 {
        return Err(IngestRefusal::ChainGap {
            head_seq,
            first_seq: first.seq,
        });
    }

    let mut seqs = Vec::with_capacity(batch.rows.len());
    let mut digests = Vec::with_capacity(batch.rows.len());
    let mut payloads = Vec::with_capacity(batch.rows.len());
    let mut prevs = Vec::with_capacity(batch.rows.len());
    let mut hashes = Vec::with_capacity(batch.rows.len());
    for row in &batch.rows {
        let (payload, digest) = ingest_rows::payload(row).map_err(|e| {
            IngestRefusal::Rows(RowProblem::Malformed {
                seq: row.seq,
                problem: e.to_string(),
            })
        })?;
        seqs.push(row.seq);
        digests.push(digest);
        payloads.push(payload);
        prevs.push(row.prev_hash.as_str());
        hashes.push(row.hash.as_str());
    }
    let inserted: Vec<i64> = tx
        .query(
            "INSERT INTO ingested_rows (station_id, seq, position, payload_sha256, payload, prev_hash, hash)
             SELECT $1, s, nextval('central_position'), d, p, v, h
             FROM unnest($2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[]) AS r(s, d, p, v, h)
             ORDER BY s
             ON CONFLICT DO NOTHING
             RETURNING seq",
            &[&station_id, &seqs, &digests, &payloads, &prevs, &hashes],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let stored = inserted.len();

    if stored < batch.rows.len() {
        let held: Vec<i64> = seqs
            .iter()
            .copied()
            .filter(|s| !inserted.contains(s))
            .collect();
        compare_held(tx, station_id, &held, &seqs, &digests).await?;
    }

    // The first new row must continue the chain the service holds.
    let new_head = if last.seq > head_seq {
        let offset = usize::try_from(head_seq + 1 - first.seq).unwrap_or(0);
        if let Some(next) = batch.rows.get(offset)
            && next.prev_hash != head_hash
        {
            return Err(IngestRefusal::Fork { seq: next.seq });
        }
        tx.execute(
            "UPDATE stations SET head_seq = $2, head_hash = $3, last_seen = now() WHERE station_id = $1",
            &[&station_id, &last.seq, &last.hash],
        )
        .await?;
        (last.seq, last.hash.clone())
    } else {
        tx.execute(
            "UPDATE stations SET last_seen = now() WHERE station_id = $1",
            &[&station_id],
        )
        .await?;
        (head_seq, head_hash)
    };

    let new_rows: Vec<_> = batch.rows.iter().filter(|r| r.seq > head_seq).collect();
    ingest_identities::apply(tx, station_id, &new_rows).await?;

    let central_position: i64 = tx
        .query_one(
            "SELECT position FROM ingested_rows WHERE station_id = $1 AND seq = $2",
            &[&station_id, &last.seq],
        )
        .await?
        .get(0);
    Ok(ReceiptFacts {
        first_seq: first.seq,
        last_seq: last.seq,
        head_seq: new_head.0,
        head_hash: new_head.1,
        central_position,
        stored: u32::try_from(stored).unwrap_or(u32::MAX),
    })
}

/// Rows the insert skipped must be the very rows the service holds.
async fn compare_held(
    tx: &Transaction<'_>,
    station_id: &str,
    held: &[i64],
    seqs: &[i64],
    digests: &[String],
) -> Result<(), IngestRefusal> {
    let stored = tx
        .query(
            "SELECT seq, payload_sha256 FROM ingested_rows
             WHERE station_id = $1 AND seq = ANY($2) ORDER BY seq",
            &[&station_id, &held],
        )
        .await?;
    for row in &stored {
        let seq: i64 = row.get(0);
        let digest: &str = row.get(1);
        // `seqs` is contiguous (checked), so a row's index is its distance from the first.
        let sent = seqs
            .first()
            .and_then(|first| usize::try_from(seq - first).ok())
            .and_then(|i| digests.get(i))
            .map(String::as_str);
        if sent != Some(digest) {
            return Err(IngestRefusal::Tampered { seq });
        }
    }
    Ok(())
}

/// Runs [`ingest`] in its own transaction on `client` and commits it, then issues the receipt in a
/// second one (module docs); or rolls back and records the refusal in the service's chain
/// (`ingest.refused`; a tampering refusal also raises an error-level alert). What the route calls.
pub async fn ingest_and_commit(
    client: &mut tokio_postgres::Client,
    station: &AuthedStation,
    batch: &IngestBatch,
    signer: &ServiceSigner,
) -> Result<Signed<Receipt>, ApiRefusal> {
    let station_id = station.station_id.as_str();
    let outcome = async {
        let tx = client.transaction().await?;
        let facts = match ingest(&tx, station, batch).await {
            Ok(facts) => facts,
            Err(refusal) => {
                // Dropping the transaction would roll back too; saying so keeps the order plain.
                tx.rollback().await?;
                return Err(refusal);
            }
        };
        tx.commit().await?;
        let tx = client.transaction().await?;
        let receipt = receipts::issue(&tx, station_id, facts, signer).await?;
        tx.commit().await?;
        Ok(receipt)
    }
    .await;
    let refusal = match outcome {
        Ok(receipt) => return Ok(receipt),
        Err(refusal) => refusal,
    };
    let api = refusal.to_api(station_id);
    if refusal.code() == "tampered" {
        tracing::error!(
            station = station_id,
            code = %api.body.code,
            "ALERT: tampering refused: {}",
            api.body.message
        );
    } else if refusal.is_transient() {
        tracing::warn!(station = station_id, "ingest failed: {}", api.body.message);
    } else {
        tracing::info!(station = station_id, "ingest refused: {}", api.body.message);
    }
    if let Err(e) = record_refusal(client, station_id, batch, &api).await {
        tracing::warn!(
            station = station_id,
            "the refusal could not be recorded in the central audit chain: {}",
            db::describe(&e)
        );
    }
    Err(api)
}

/// `ingest.refused` in the service's chain, in a transaction of its own.
async fn record_refusal(
    client: &mut tokio_postgres::Client,
    station_id: &str,
    batch: &IngestBatch,
    refusal: &ApiRefusal,
) -> Result<(), tokio_postgres::Error> {
    let details = serde_json::json!({
        "code": refusal.body.code,
        "message": refusal.body.message,
        "first_seq": batch.rows.first().map(|r| r.seq),
        "last_seq": batch.rows.last().map(|r| r.seq),
        "rows": batch.rows.len(),
    })
    .to_string();
    let tx = client.transaction().await?;
    audit::append(
        &tx,
        &AuditEntry {
            station_id,
            actor: station_id,
            action: "ingest.refused",
            subject: &refusal.body.code,
            details: &details,
        },
    )
    .await?;
    tx.commit().await
}

/// The ingest route, for `service::router` to merge.
pub fn routes() -> Router<SharedCentral> {
    Router::new()
        .route(paths::INGEST, post(handle))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
}

async fn handle(
    State(central): State<SharedCentral>,
    station: AuthedStation,
    Json(batch): Json<IngestBatch>,
) -> Result<Json<Signed<Receipt>>, ApiRefusal> {
    let mut client = central.db.get().await.map_err(|e| {
        db::pool_unavailable(&format!("ingest from station {}", station.station_id), &e)
    })?;
    let client: &mut tokio_postgres::Client = &mut client;
    ingest_and_commit(client, &station, &batch, &central.signer)
        .await
        .map(Json)
}
