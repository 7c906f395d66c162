//! The checks ingest makes on a batch before it touches the database: rows in order, each row's hash
//! recomputed from its fields with the station's own canonical form (`ledger::audit::row_hash`), each
//! row chained to the one before it. Pure functions, so `central verify` uses them too.

use sha2::{Digest, Sha256};

use crate::central::wire::{MAX_INGEST_ROWS, OutboxRow};
use crate::ledger::audit::{AuditContent, row_hash};

/// What is wrong with a batch or a row, found without the database.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RowProblem {
    #[error("the batch has no rows: send at least one outbox row")]
    Empty,
    #[error(
        "the batch has {count} rows, more than the {MAX_INGEST_ROWS} allowed: send the outbox in smaller batches"
    )]
    TooMany { count: usize },
    #[error(
        "the rows are not in order: seq {found} came after seq {after} (expected {}); the station must send its outbox in seq order without gaps",
        after + 1
    )]
    NotInOrder { after: i64, found: i64 },
    #[error("row {seq} is malformed: {problem}")]
    Malformed { seq: i64, problem: String },
    #[error(
        "row {seq} was altered: its hash does not match its content; run `dps-station ledger verify` on the station and call the administrator"
    )]
    Altered { seq: i64 },
    #[error(
        "row {seq} does not chain to row {}: its prev_hash is not that row's hash; run `dps-station ledger verify` on the station",
        seq - 1
    )]
    Unchained { seq: i64 },
}

/// Checks the batch's shape: not empty, not too long, seq contiguous and increasing, every row's hash
/// matching its content, every row chained to the one before. Returns the first problem.
pub fn check_batch(rows: &[OutboxRow]) -> Result<(), RowProblem> {
    if rows.is_empty() {
        return Err(RowProblem::Empty);
    }
    if rows.len() > MAX_INGEST_ROWS {
        return Err(RowProblem::TooMany { count: rows.len() });
    }
    let mut previous: Option<&OutboxRow> = None;
    for row in rows {
        if let Some(prev) = previous
            && row.seq != prev.seq + 1
        {
            return Err(RowProblem::NotInOrder {
                after: prev.seq,
                found: row.seq,
            });
        }
        check_row(row)?;
        if let Some(prev) = previous
            && row.prev_hash != prev.hash
        {
            return Err(RowProblem::Unchained { seq: row.seq });
        }
        previous = Some(row);
    }
    Ok(())
}

/// Checks one row on its own: seq positive, hashes well-formed, `hash` recomputed from the fields.
pub fn check_row(row: &OutboxRow) -> Result<(), RowProblem> {
    if row.seq < 1 {
        return Err(RowProblem::Malformed {
            seq: row.seq,
            problem: "seq must be 1 or more".into(),
        });
    }
    let Some(prev) = decode_hash(&row.prev_hash) else {
        return Err(RowProblem::Malformed {
            seq: row.seq,
            problem: "prev_hash is not 64 lowercase hex digits".into(),
        });
    };
    if decode_hash(&row.hash).is_none() {
        return Err(RowProblem::Malformed {
            seq: row.seq,
            problem: "hash is not 64 lowercase hex digits".into(),
        });
    }
    if recompute_hash(&prev, row) != row.hash {
        return Err(RowProblem::Altered { seq: row.seq });
    }
    Ok(())
}

/// The row's hash as the station's chain defines it, from its fields and `prev`.
pub fn recompute_hash(prev: &[u8; 32], row: &OutboxRow) -> String {
    let content = AuditContent {
        at: &row.at,
        station: &row.station,
        actor: &row.actor,
        action: &row.action,
        subject: &row.subject,
        details: &row.details,
    };
    hex::encode(row_hash(prev, row.seq, &content))
}

/// 32 bytes from 64 lowercase hex digits, or `None`.
pub fn decode_hash(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 || text.bytes().any(|b| b.is_ascii_uppercase()) {
        return None;
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out).ok()?;
    Some(out)
}

/// The row as the service stores it (`ingested_rows.payload`) and its SHA-256 (hex): a re-sent row
/// with the same key and another digest is tampering.
pub fn payload(row: &OutboxRow) -> Result<(String, String), serde_json::Error> {
    let text = serde_json::to_string(row)?;
    let digest = hex::encode(Sha256::digest(text.as_bytes()));
    Ok((text, digest))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: i64) -> Vec<OutboxRow> {
        let mut prev = [0u8; 32];
        (1..=n)
            .map(|seq| {
                let mut row = OutboxRow {
                    seq,
                    prev_hash: hex::encode(prev),
                    hash: String::new(),
                    at: "2026-12-03T10:00:00.000Z".into(),
                    station: "st-1".into(),
                    actor: "op".into(),
                    action: "identity.issued".into(),
                    subject: format!("reg-{seq}"),
                    details: "{}".into(),
                    identity: None,
                };
                row.hash = recompute_hash(&prev, &row);
                prev = decode_hash(&row.hash).unwrap_or_default();
                row
            })
            .collect()
    }

    #[test]
    fn a_real_chain_passes_and_each_kind_of_damage_is_named() {
        let rows = chain(4);
        assert_eq!(check_batch(&rows), Ok(()));
        assert_eq!(check_batch(&[]), Err(RowProblem::Empty));

        let mut swapped = rows.clone();
        swapped.swap(1, 2);
        assert_eq!(
            check_batch(&swapped),
            Err(RowProblem::NotInOrder { after: 1, found: 3 })
        );

        let mut altered = rows.clone();
        altered[2].details = "{\"x\":1}".into();
        assert_eq!(check_batch(&altered), Err(RowProblem::Altered { seq: 3 }));

        // A row rehashed after its content changed no longer chains to the next one.
        let mut rehashed = rows.clone();
        rehashed[1].details = "{\"x\":1}".into();
        let prev = decode_hash(&rehashed[1].prev_hash).unwrap_or_default();
        rehashed[1].hash = recompute_hash(&prev, &rehashed[1]);
        assert_eq!(
            check_batch(&rehashed),
            Err(RowProblem::Unchained { seq: 3 })
        );

        let mut upper = rows;
        upper[0].hash = upper[0].hash.to_uppercase();
        assert!(matches!(
            check_batch(&upper),
            Err(RowProblem::Malformed { seq: 1, .. })
        ));
    }
}
