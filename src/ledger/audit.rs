//! The append-only, hash-chained audit log.
//!
//! # Canonical form (version 1)
//!
//! Every row `n` stores `hash_n = SHA-256(prev_n ‖ canonical_n)`, where
//!
//! - `prev_n` is the 32 raw bytes of `hash_{n-1}`, and 32 zero bytes for the first row (id 1);
//! - `canonical_n` is the ASCII line `dps-station audit v1` followed by `\n`, then these seven
//!   fields in this order: `id` (decimal, no sign, no leading zeros), `at` (RFC 3339 UTC as stored),
//!   `station`, `actor`, `action`, `subject`, `details` (the JSON text exactly as stored), each
//!   encoded as its length in bytes (decimal ASCII), `:`, its UTF-8 bytes, `\n`.
//!
//! The length prefixes make the encoding unambiguous (no field can imitate a separator), and the id
//! inside the hashed content means a row cannot be moved. Both hashes are stored as 64 lowercase
//! hex digits (`prev_hash`, `hash`). Ids are contiguous from 1; `verify` also checks that.
//!
//! Triggers refuse `UPDATE` and `DELETE` on the table, but anyone with the `sqlite3` shell can drop
//! them: [`verify_chain`] recomputes every hash and names the first row that does not match.
//! A chain cannot show that rows were cut off its *end*; compare `audit_rows` with an earlier
//! `ledger stats` (or a copy of the last hash) for that.

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::types::{AuditId, AuditRecord};

/// The hash that the first row chains from.
pub const GENESIS: [u8; 32] = [0; 32];

const DOMAIN: &[u8] = b"dps-station audit v1\n";

/// The content of one audit row, before it has an id and hashes.
#[derive(Debug, Clone, Copy)]
pub struct AuditContent<'a> {
    pub at: &'a str,
    pub station: &'a str,
    pub actor: &'a str,
    pub action: &'a str,
    pub subject: &'a str,
    pub details: &'a str,
}

/// The canonical bytes of a row (see the module docs).
pub fn canonical(id: i64, content: &AuditContent<'_>) -> Vec<u8> {
    let id = id.to_string();
    let fields: [&str; 7] = [
        &id,
        content.at,
        content.station,
        content.actor,
        content.action,
        content.subject,
        content.details,
    ];
    length_prefixed(DOMAIN, &fields)
}

/// `domain`, then each field as its byte length in decimal, `:`, its bytes, `\n`: the encoding
/// both hash chains use (this one and the central service's), so no field can imitate a separator.
pub fn length_prefixed(domain: &[u8], fields: &[&str]) -> Vec<u8> {
    let mut out =
        Vec::with_capacity(domain.len() + fields.iter().map(|f| f.len() + 8).sum::<usize>());
    out.extend_from_slice(domain);
    for field in fields {
        out.extend_from_slice(field.len().to_string().as_bytes());
        out.push(b':');
        out.extend_from_slice(field.as_bytes());
        out.push(b'\n');
    }
    out
}

/// `SHA-256(prev ‖ canonical(id, content))`.
pub fn row_hash(prev: &[u8; 32], id: i64, content: &AuditContent<'_>) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(canonical(id, content));
    h.finalize().into()
}

/// Appends one row inside the caller's transaction, chained to the current last row, and (with
/// `outbox`, schema v8 on) its outbox row for the central ledger in the same transaction.
pub(crate) fn append(
    conn: &Connection,
    content: &AuditContent<'_>,
    outbox: bool,
) -> Result<AuditId, rusqlite::Error> {
    let last: Option<(i64, String)> = conn
        .prepare_cached("SELECT id, hash FROM audit_log ORDER BY id DESC LIMIT 1")?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let (id, prev) = match last {
        Some((last_id, hash)) => (last_id + 1, decode_hash(&hash).unwrap_or(GENESIS)),
        None => (1, GENESIS),
    };
    let hash = row_hash(&prev, id, content);
    let (prev_hex, hash_hex) = (hex::encode(prev), hex::encode(hash));
    conn.prepare_cached(
        "INSERT INTO audit_log (id, at, station, actor, action, subject, details, prev_hash, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        id,
        content.at,
        content.station,
        content.actor,
        content.action,
        content.subject,
        content.details,
        prev_hex,
        hash_hex,
    ])?;
    if outbox {
        super::outbox::record(conn, id, content, &prev_hex, &hash_hex)?;
    }
    Ok(AuditId(id))
}

fn decode_hash(text: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out).ok()?;
    Some(out)
}

/// The first row where the chain breaks, and how.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BrokenRow {
    /// The row's id (for a missing row: the id of the row after the gap).
    pub id: i64,
    /// What is wrong, in words.
    pub problem: String,
}

/// The result of checking the whole chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// Rows checked before the first break (all rows when intact).
    pub rows_checked: u64,
    /// Hash of the last good row (hex); compare with an earlier copy to detect a cut-off end.
    pub last_hash: String,
    /// `None` when the chain is intact.
    pub first_broken: Option<BrokenRow>,
}

impl VerifyReport {
    /// True when every row checked out.
    pub fn is_intact(&self) -> bool {
        self.first_broken.is_none()
    }
}

/// How far a verify has got: rows checked of about how many (the highest id when it started).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifyProgress {
    /// Rows checked so far.
    pub checked: u64,
    /// Rows to check (the log's highest id when the verify started; rows appended while it runs
    /// are checked too, so `checked` may end above it).
    pub total: u64,
}

/// How many rows between two progress calls: often enough for a smooth bar, rare enough to cost
/// nothing next to the hashing.
const PROGRESS_EVERY: u64 = 8192;

/// Recomputes the chain from row 1 and stops at the first row that does not match.
pub(crate) fn verify_chain(conn: &Connection) -> Result<VerifyReport, rusqlite::Error> {
    verify_chain_with_progress(conn, &mut |_| {})
}

/// [`verify_chain`], calling `progress` before the first row, every few thousand rows and at
/// the end (a progress bar over a million rows).
pub(crate) fn verify_chain_with_progress(
    conn: &Connection,
    progress: &mut dyn FnMut(VerifyProgress),
) -> Result<VerifyReport, rusqlite::Error> {
    let total: i64 = conn.query_row("SELECT coalesce(max(id), 0) FROM audit_log", [], |r| {
        r.get(0)
    })?;
    let total = u64::try_from(total).unwrap_or(0);
    progress(VerifyProgress { checked: 0, total });
    let report = verify_rows(conn, &mut |checked| {
        if checked.is_multiple_of(PROGRESS_EVERY) {
            progress(VerifyProgress { checked, total });
        }
    })?;
    progress(VerifyProgress {
        checked: report.rows_checked,
        total,
    });
    Ok(report)
}

fn verify_rows(
    conn: &Connection,
    on_row: &mut dyn FnMut(u64),
) -> Result<VerifyReport, rusqlite::Error> {
    let mut stmt = conn.prepare(
        "SELECT id, at, station, actor, action, subject, details, prev_hash, hash
         FROM audit_log ORDER BY id",
    )?;
    let mut rows = stmt.query([])?;
    let mut prev = GENESIS;
    let mut expected_id: i64 = 1;
    let mut checked: u64 = 0;
    let broken = |id, problem: String| Some(BrokenRow { id, problem });
    while let Some(r) = rows.next()? {
        let record = record_from_row(r)?;
        let id = record.id.0;
        let first_broken = if id != expected_id {
            if id > expected_id {
                broken(
                    id,
                    format!(
                        "row(s) {expected_id}..{} are missing: the ids jump from {} to {id}",
                        id - 1,
                        expected_id - 1
                    ),
                )
            } else {
                broken(id, format!("unexpected id {id} (expected {expected_id})"))
            }
        } else if decode_hash(&record.prev_hash) != Some(prev) {
            broken(
                id,
                format!(
                    "prev_hash {} does not match the hash of the row before ({})",
                    record.prev_hash,
                    hex::encode(prev)
                ),
            )
        } else {
            let content = AuditContent {
                at: &record.at,
                station: &record.station,
                actor: &record.actor,
                action: &record.action,
                subject: &record.subject,
                details: &record.details,
            };
            let computed = row_hash(&prev, id, &content);
            if decode_hash(&record.hash) != Some(computed) {
                broken(
                    id,
                    format!(
                        "the row's content does not match its hash (stored {}, computed {}): it was changed after it was written",
                        record.hash,
                        hex::encode(computed)
                    ),
                )
            } else {
                prev = computed;
                None
            }
        };
        if first_broken.is_some() {
            return Ok(VerifyReport {
                rows_checked: checked,
                last_hash: hex::encode(prev),
                first_broken,
            });
        }
        checked += 1;
        expected_id += 1;
        on_row(checked);
    }
    Ok(VerifyReport {
        rows_checked: checked,
        last_hash: hex::encode(prev),
        first_broken: None,
    })
}

/// Reads a text column; a row edited to hold a number or a blob still verifies (as broken).
/// One audit row, read from a `SELECT id, at, station, actor, action, subject, details, prev_hash,
/// hash` (the column order both readers use).
pub(super) fn record_from_row(r: &rusqlite::Row<'_>) -> Result<AuditRecord, rusqlite::Error> {
    Ok(AuditRecord {
        id: AuditId(r.get(0)?),
        at: text(r, 1)?,
        station: text(r, 2)?,
        actor: text(r, 3)?,
        action: text(r, 4)?,
        subject: text(r, 5)?,
        details: text(r, 6)?,
        prev_hash: text(r, 7)?,
        hash: text(r, 8)?,
    })
}

fn text(r: &rusqlite::Row<'_>, i: usize) -> Result<String, rusqlite::Error> {
    use rusqlite::types::ValueRef;
    Ok(match r.get_ref(i)? {
        ValueRef::Null => String::new(),
        ValueRef::Integer(v) => v.to_string(),
        ValueRef::Real(v) => v.to_string(),
        ValueRef::Text(t) | ValueRef::Blob(t) => String::from_utf8_lossy(t).into_owned(),
    })
}

/// The audit rows about one subject (a registration ID, a batch), oldest first.
pub(crate) fn rows_for_subject(
    conn: &Connection,
    subject: &str,
) -> Result<Vec<AuditRecord>, rusqlite::Error> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, at, station, actor, action, subject, details, prev_hash, hash
         FROM audit_log WHERE subject = ?1 ORDER BY id",
    )?;
    let rows = stmt.query_map([subject], record_from_row)?;
    rows.collect()
}

/// The audit rows one key-injection session wrote (their details name it), oldest first.
pub(crate) fn rows_for_key_session(
    conn: &Connection,
    session: i64,
) -> Result<Vec<AuditRecord>, rusqlite::Error> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, at, station, actor, action, subject, details, prev_hash, hash
         FROM audit_log WHERE json_extract(details, '$.key_session') = ?1 ORDER BY id",
    )?;
    let rows = stmt.query_map([session], record_from_row)?;
    rows.collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn content() -> AuditContent<'static> {
        AuditContent {
            at: "2026-11-24T15:00:00.000Z",
            station: "line-1",
            actor: "ann",
            action: "identity.issued",
            subject: "sensor-000001",
            details: "{}",
        }
    }

    #[test]
    fn canonical_form_is_length_prefixed_and_ordered() {
        let bytes = canonical(7, &content());
        let expected = "dps-station audit v1\n1:7\n24:2026-11-24T15:00:00.000Z\n6:line-1\n3:ann\n15:identity.issued\n13:sensor-000001\n2:{}\n";
        assert_eq!(String::from_utf8(bytes).unwrap(), expected);
    }

    #[test]
    fn a_field_cannot_imitate_a_separator() {
        // Moving a boundary between two fields changes the hash.
        let a = AuditContent {
            actor: "ann\n3:x",
            action: "y",
            ..content()
        };
        let b = AuditContent {
            actor: "ann",
            action: "x\n1:y",
            ..content()
        };
        assert_ne!(row_hash(&GENESIS, 1, &a), row_hash(&GENESIS, 1, &b));
    }

    #[test]
    fn hash_is_sha256_of_prev_and_canonical() {
        let c = content();
        let mut h = Sha256::new();
        h.update([0u8; 32]);
        h.update(canonical(1, &c));
        let expected: [u8; 32] = h.finalize().into();
        assert_eq!(row_hash(&GENESIS, 1, &c), expected);
        assert_ne!(row_hash(&GENESIS, 2, &c), expected, "the id is hashed");
    }
}
