//! The central service's own hash chain (`central_audit`), the same construction as the station's
//! (`ledger::audit`) with its own domain string, so a row cannot be passed off as the other kind.
//!
//! `hash_n = SHA-256(prev_n ‖ canonical_n)`; `canonical_n` is `dps-station central audit v1\n` then
//! `position`, `at`, `station_id`, `actor`, `action`, `subject`, `details`, each as its byte length in
//! decimal, `:`, the bytes, `\n`. Positions are contiguous from 1. Appends are serialised by a
//! transaction-scoped advisory lock, so replicas of the service never fork the chain; keep the
//! transactions that append short.

use sha2::{Digest, Sha256};

const DOMAIN: &[u8] = b"dps-station central audit v1\n";

/// The advisory lock key that serialises appends (any constant unique to this table).
const APPEND_LOCK: i64 = 0x6470_735f_6175_6469; // "dps_audi"

/// One row to append.
#[derive(Debug, Clone, Copy)]
pub struct AuditEntry<'a> {
    /// The station the row concerns ("" for the service's own acts).
    pub station_id: &'a str,
    /// Who acted: a station id, `service`, or an administrator's name.
    pub actor: &'a str,
    /// Dotted verb: `station.joined`, `ingest.refused`, `lease.granted`, ...
    pub action: &'a str,
    pub subject: &'a str,
    /// JSON text; never a key, token secret or connection string.
    pub details: &'a str,
}

/// A stored row, as `verify` reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRow {
    pub position: i64,
    pub at: String,
    pub station_id: String,
    pub actor: String,
    pub action: String,
    pub subject: String,
    pub details: String,
    pub prev_hash: String,
    pub hash: String,
}

/// The canonical bytes of a row (module docs).
pub fn canonical(position: i64, at: &str, entry: &AuditEntry<'_>) -> Vec<u8> {
    let position = position.to_string();
    let fields = [
        position.as_str(),
        at,
        entry.station_id,
        entry.actor,
        entry.action,
        entry.subject,
        entry.details,
    ];
    crate::ledger::audit::length_prefixed(DOMAIN, &fields)
}

/// `SHA-256(prev ‖ canonical)`, as 64 lowercase hex digits. `prev_hex` is the previous row's hash
/// (64 zeros for position 1); a malformed one hashes as given, so verification simply fails.
pub fn row_hash(prev_hex: &str, position: i64, at: &str, entry: &AuditEntry<'_>) -> String {
    let prev = hex::decode(prev_hex).unwrap_or_else(|_| prev_hex.as_bytes().to_vec());
    let mut h = Sha256::new();
    h.update(&prev);
    h.update(canonical(position, at, entry));
    hex::encode(h.finalize())
}

/// Appends one row inside the caller's transaction; returns its position.
pub async fn append(
    tx: &tokio_postgres::Transaction<'_>,
    entry: &AuditEntry<'_>,
) -> Result<i64, tokio_postgres::Error> {
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&APPEND_LOCK])
        .await?;
    let last = tx
        .query_opt(
            "SELECT position, hash FROM central_audit ORDER BY position DESC LIMIT 1",
            &[],
        )
        .await?;
    let (position, prev) = match last {
        Some(row) => (row.get::<_, i64>(0) + 1, row.get::<_, String>(1)),
        None => (1, "0".repeat(64)),
    };
    let at = crate::ledger::now();
    let hash = row_hash(&prev, position, &at, entry);
    tx.execute(
        "INSERT INTO central_audit (position, at, station_id, actor, action, subject, details, prev_hash, hash)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        &[
            &position,
            &at,
            &entry.station_id,
            &entry.actor,
            &entry.action,
            &entry.subject,
            &entry.details,
            &prev,
            &hash,
        ],
    )
    .await?;
    Ok(position)
}

/// The first row that does not hold, if any.
#[derive(Debug, Clone, PartialEq)]
pub struct BrokenLink {
    pub position: i64,
    /// What is wrong, in words ("hash does not match its content", "position 7 is missing").
    pub problem: String,
}

/// Checks a run of rows read in position order from 1 (call repeatedly with `expected_prev` and
/// `expected_position` carried over to stream a long chain). Returns the first broken link.
pub fn check_rows(
    rows: &[AuditRow],
    expected_position: &mut i64,
    expected_prev: &mut String,
) -> Option<BrokenLink> {
    for row in rows {
        if row.position != *expected_position {
            return Some(BrokenLink {
                position: *expected_position,
                problem: format!(
                    "central audit row {} is missing (the next row is {})",
                    expected_position, row.position
                ),
            });
        }
        if row.prev_hash != *expected_prev {
            return Some(BrokenLink {
                position: row.position,
                problem: format!(
                    "central audit row {} does not chain to row {}",
                    row.position,
                    row.position - 1
                ),
            });
        }
        let entry = AuditEntry {
            station_id: &row.station_id,
            actor: &row.actor,
            action: &row.action,
            subject: &row.subject,
            details: &row.details,
        };
        if row_hash(&row.prev_hash, row.position, &row.at, &entry) != row.hash {
            return Some(BrokenLink {
                position: row.position,
                problem: format!(
                    "central audit row {} was altered: its hash does not match its content",
                    row.position
                ),
            });
        }
        *expected_position += 1;
        expected_prev.clone_from(&row.hash);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(position: i64, prev: &str, details: &str) -> AuditRow {
        let entry = AuditEntry {
            station_id: "st-1",
            actor: "service",
            action: "station.joined",
            subject: "st-1",
            details,
        };
        let at = "2026-12-03T00:00:00Z";
        AuditRow {
            position,
            at: at.into(),
            station_id: "st-1".into(),
            actor: "service".into(),
            action: "station.joined".into(),
            subject: "st-1".into(),
            details: details.into(),
            prev_hash: prev.into(),
            hash: row_hash(prev, position, at, &entry),
        }
    }

    #[test]
    fn a_chain_verifies_and_an_altered_or_missing_row_is_named() {
        let first = row(1, &"0".repeat(64), "{}");
        let second = row(2, &first.hash, "{\"a\":1}");
        let third = row(3, &second.hash, "{}");
        let (mut pos, mut prev) = (1, "0".repeat(64));
        assert_eq!(
            check_rows(
                &[first.clone(), second.clone(), third.clone()],
                &mut pos,
                &mut prev
            ),
            None
        );

        let mut altered = second.clone();
        altered.details = "{\"a\":2}".into();
        let (mut pos, mut prev) = (1, "0".repeat(64));
        let broken = check_rows(
            &[first.clone(), altered, third.clone()],
            &mut pos,
            &mut prev,
        )
        .unwrap();
        assert_eq!(broken.position, 2);
        assert!(broken.problem.contains("altered"), "{}", broken.problem);

        let (mut pos, mut prev) = (1, "0".repeat(64));
        let broken = check_rows(&[first, third], &mut pos, &mut prev).unwrap();
        assert_eq!(broken.position, 2);
        assert!(broken.problem.contains("missing"), "{}", broken.problem);
    }
}
