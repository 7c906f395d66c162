//! The outbox (schema v8, issue 18): every audit row, copied for the central ledger in the same
//! transaction that wrote it.
//!
//! One outbox row per audit row, `seq` = the audit row's id. Its `payload` is the JSON of the
//! central ledger's `OutboxRow` (`central::wire`): the audit row's fields exactly as hashed, its
//! `prev_hash` and `hash`, and, when the row records an identity change (`identity.*`), a snapshot
//! of that identity after the change (registration ID, device, batch, state, attestation,
//! certificate or endorsement key: never a key or a secret, which the ledger does not hold). The
//! ledger builds the JSON itself (it imports no other module); `central::station_side` parses it
//! as `wire::OutboxRow`, and a test there checks the two agree.
//!
//! A station that is not joined to a central service writes the outbox too (one small insert per
//! audit row), so joining later uploads its whole history. Ledgers older than v8 back-fill every
//! existing audit row once, in the migration. Rows stay after upload (`uploaded_at`, `receipt_id`):
//! they are the station's record of what the service acknowledged.

use std::collections::HashMap;

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::{Map, Value, json};

use super::audit::AuditContent;
use super::error::classify;
use super::{Ledger, LedgerError, LedgerWriter};

/// The schema version that added the outbox; writers at older versions (tests that migrate step
/// by step) write no outbox row.
pub const OUTBOX_VERSION: i64 = 8;

/// The audit action of a receipt appended to the chain (decision 2 of issue 18).
pub const RECEIPT_ACTION: &str = "central.receipt";

/// v8: the outbox and the receipts the central service signed.
pub(super) const V8_OUTBOX: &str = r#"
CREATE TABLE central_receipts (
    id                INTEGER PRIMARY KEY,
    first_seq         INTEGER NOT NULL,
    last_seq          INTEGER NOT NULL,
    head_seq          INTEGER NOT NULL,
    head_hash         TEXT NOT NULL,
    central_position  INTEGER NOT NULL,
    -- The receipt as the service signed it (`Signed<Receipt>` JSON): proof a station can show.
    signed            TEXT NOT NULL,
    received_at       TEXT NOT NULL,
    -- The `central.receipt` audit row that records it; NULL for a receipt that covers only
    -- receipt rows (appending it would never converge).
    audit_id          INTEGER REFERENCES audit_log(id),
    CHECK (first_seq <= last_seq)
);
CREATE TABLE outbox (
    seq          INTEGER PRIMARY KEY REFERENCES audit_log(id),
    payload      TEXT NOT NULL,
    uploaded_at  TEXT,
    receipt_id   INTEGER REFERENCES central_receipts(id),
    CHECK ((uploaded_at IS NULL) = (receipt_id IS NULL))
);
CREATE INDEX outbox_pending ON outbox (seq) WHERE uploaded_at IS NULL;
-- Who enrolls this station's identities in DPS ([central] enrollment): 1 = the central service.
-- Copied into every identity snapshot written while it holds.
CREATE TABLE central_settings (
    id                  INTEGER PRIMARY KEY CHECK (id = 1),
    central_enrollment  INTEGER NOT NULL CHECK (central_enrollment IN (0, 1))
);
INSERT INTO central_settings (id, central_enrollment) VALUES (1, 0);
"#;

/// Writes the outbox row of the audit row just inserted (inside the caller's transaction).
pub(super) fn record(
    conn: &Connection,
    id: i64,
    content: &AuditContent<'_>,
    prev_hash: &str,
    hash: &str,
) -> rusqlite::Result<()> {
    let identity = if content.action.starts_with("identity.") {
        snapshot(conn, content.subject, None)?
    } else {
        None
    };
    let payload = payload(id, content, prev_hash, hash, identity);
    conn.prepare_cached("INSERT INTO outbox (seq, payload) VALUES (?1, ?2)")?
        .execute(params![id, payload])?;
    Ok(())
}

fn payload(
    seq: i64,
    content: &AuditContent<'_>,
    prev_hash: &str,
    hash: &str,
    identity: Option<Value>,
) -> String {
    let mut row = Map::new();
    row.insert("seq".into(), json!(seq));
    row.insert("prev_hash".into(), json!(prev_hash));
    row.insert("hash".into(), json!(hash));
    row.insert("at".into(), json!(content.at));
    row.insert("station".into(), json!(content.station));
    row.insert("actor".into(), json!(content.actor));
    row.insert("action".into(), json!(content.action));
    row.insert("subject".into(), json!(content.subject));
    row.insert("details".into(), json!(content.details));
    if let Some(identity) = identity {
        row.insert("identity".into(), identity);
    }
    Value::Object(row).to_string()
}

/// The identity a row about `registration_id` changed: the newest one under that ID (after a
/// re-provisioning the new identity has the higher id). `state` overrides the current state
/// (the back-fill knows what the state was at the time of the row).
fn snapshot(
    conn: &Connection,
    registration_id: &str,
    state: Option<&str>,
) -> rusqlite::Result<Option<Value>> {
    type Row = (
        String,
        String,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<Vec<u8>>,
        Option<Vec<u8>>,
    );
    let row: Option<Row> = conn
        .prepare_cached(
            "SELECT i.registration_id, i.state, i.attestation, d.model, d.serial_number,
                    i.certificate_der, i.endorsement_key
             FROM identities i LEFT JOIN devices d ON d.id = i.device_id
             WHERE i.registration_id = ?1 ORDER BY i.id DESC LIMIT 1",
        )?
        .query_row([registration_id], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
            ))
        })
        .optional()?;
    let Some((rid, current, attestation, model, serial, cert, ek)) = row else {
        return Ok(None);
    };
    let batch: Option<String> = conn
        .prepare_cached(
            "SELECT b.name FROM identities i JOIN batches b ON b.id = i.batch_id
             WHERE i.registration_id = ?1 ORDER BY i.id DESC LIMIT 1",
        )?
        .query_row([registration_id], |r| r.get(0))
        .optional()?;
    let attestation = attestation.unwrap_or_default();
    let mut snap = Map::new();
    snap.insert("registration_id".into(), json!(rid));
    snap.insert("device_model".into(), json!(model.unwrap_or_default()));
    snap.insert("device_serial".into(), json!(serial.unwrap_or_default()));
    snap.insert("batch".into(), json!(batch.unwrap_or_default()));
    snap.insert("state".into(), json!(state.unwrap_or(&current)));
    snap.insert(
        "attestation".into(),
        json!(match attestation.as_str() {
            "symmetric-key" => "symmetric",
            other => other,
        }),
    );
    if let Some(der) = cert {
        snap.insert("certificate_pem".into(), json!(pem("CERTIFICATE", &der)));
    }
    if let Some(ek) = ek {
        use base64::Engine as _;
        snap.insert(
            "endorsement_key".into(),
            json!(base64::engine::general_purpose::STANDARD.encode(ek)),
        );
    }
    // The lease it was issued from (schema v9). The v8 back-fill runs before that column exists;
    // identities of that time had no lease.
    let lease: Option<String> = match conn.prepare_cached(
        "SELECT lease_id FROM identities WHERE registration_id = ?1 ORDER BY id DESC LIMIT 1",
    ) {
        Ok(mut statement) => statement
            .query_row([registration_id], |r| r.get(0))
            .optional()?
            .flatten(),
        Err(_) => None,
    };
    if let Some(lease) = lease {
        snap.insert("lease_id".into(), json!(lease));
    }
    let central: i64 = conn
        .prepare_cached("SELECT central_enrollment FROM central_settings WHERE id = 1")?
        .query_row([], |r| r.get(0))
        .optional()?
        .unwrap_or(0);
    snap.insert("central_enrollment".into(), json!(central == 1));
    Ok(Some(Value::Object(snap)))
}

fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Back-fills every audit row of an older ledger into the outbox, in the migration's transaction.
///
/// The identity snapshot of a historical row carries the state that row recorded (replayed from
/// the row's action, as the rows are read in order), with the identity's data as it stands now.
pub(super) fn backfill(conn: &Connection) -> rusqlite::Result<()> {
    let mut states: HashMap<String, (&'static str, Option<String>)> = HashMap::new();
    let mut stmt = conn.prepare(
        "SELECT id, at, station, actor, action, subject, details, prev_hash, hash
         FROM audit_log ORDER BY id",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let record = super::audit::record_from_row(r)?;
        let content = AuditContent {
            at: &record.at,
            station: &record.station,
            actor: &record.actor,
            action: &record.action,
            subject: &record.subject,
            details: &record.details,
        };
        let identity = match record.action.strip_prefix("identity.") {
            Some(change) => {
                let key = record.subject.to_lowercase();
                let before = states.get(&key).cloned();
                let state = replay(change, before.as_ref(), &record.details);
                if let Some(state) = &state {
                    states.insert(key, state.clone());
                }
                snapshot(conn, &record.subject, state.as_ref().map(|s| s.0))?
            }
            None => None,
        };
        let payload = payload(
            record.id.0,
            &content,
            &record.prev_hash,
            &record.hash,
            identity,
        );
        conn.prepare_cached("INSERT INTO outbox (seq, payload) VALUES (?1, ?2)")?
            .execute(params![record.id.0, payload])?;
    }
    Ok(())
}

/// The state after an `identity.<change>` row, from the state before it (and for `failed`, the
/// stage the row names, which decides where `retry` goes back to).
fn replay(
    change: &str,
    before: Option<&(&'static str, Option<String>)>,
    details: &str,
) -> Option<(&'static str, Option<String>)> {
    Some(match change {
        "issued" | "reissued" => ("issued", None),
        "written" => ("written", None),
        "enrolled" => ("enrolled", None),
        "revoked" => ("revoked", None),
        "failed" => {
            let stage = serde_json::from_str::<Value>(details)
                .ok()
                .and_then(|v| v.get("stage").and_then(Value::as_str).map(str::to_string));
            ("failed", stage)
        }
        "retry" => match before {
            Some((_, Some(stage))) if stage == "enroll" => ("written", None),
            Some(_) => ("issued", None),
            None => return None,
        },
        _ => return None,
    })
}

/// One outbox row waiting for upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    /// The audit row's id.
    pub seq: i64,
    /// `wire::OutboxRow` JSON.
    pub payload: String,
}

/// A receipt as the station stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CentralReceiptRecord {
    /// Its row in `central_receipts`.
    pub id: i64,
    pub first_seq: i64,
    pub last_seq: i64,
    pub head_seq: i64,
    pub head_hash: String,
    pub central_position: i64,
    /// The signed receipt, JSON.
    pub signed: String,
    pub received_at: String,
    /// The `central.receipt` audit row, if it was appended.
    pub audit_id: Option<i64>,
}

/// A verified receipt to store (the caller checked the signature).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCentralReceipt {
    pub first_seq: i64,
    pub last_seq: i64,
    pub head_seq: i64,
    pub head_hash: String,
    pub central_position: i64,
    /// The signed receipt, JSON (`Signed<Receipt>`).
    pub signed: String,
}

/// How much is waiting and what the service last acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxStatus {
    /// Rows not yet acknowledged by a receipt.
    pub depth: u64,
    /// The highest seq in the outbox.
    pub last_seq: i64,
    /// The newest receipt, if any.
    pub last_receipt: Option<CentralReceiptRecord>,
}

impl LedgerWriter<'_> {
    /// Stores a verified receipt, marks the rows it covers as uploaded and, unless it covers only
    /// `central.receipt` rows, appends it to the audit chain as a `central.receipt` row (which is
    /// itself an outbox row, acknowledged by the next receipt). Returns the receipt's row id.
    pub fn record_central_receipt(&self, receipt: &NewCentralReceipt) -> Result<i64, LedgerError> {
        let sql = |op| move |e| classify(self.path, op, e);
        let other_rows: i64 = self
            .tx
            .query_row(
                "SELECT count(*) FROM audit_log WHERE id BETWEEN ?1 AND ?2 AND action <> ?3",
                params![receipt.first_seq, receipt.last_seq, RECEIPT_ACTION],
                |r| r.get(0),
            )
            .map_err(sql("reading the rows a receipt covers"))?;
        let audit_id = if other_rows > 0 {
            let signed: Value = serde_json::from_str(&receipt.signed).unwrap_or(Value::Null);
            Some(
                self.append_audit(
                    &self.ctx.station.clone(),
                    RECEIPT_ACTION,
                    &format!("station:{}", self.ctx.station),
                    &json!({
                        "first_seq": receipt.first_seq,
                        "last_seq": receipt.last_seq,
                        "head_seq": receipt.head_seq,
                        "head_hash": receipt.head_hash,
                        "central_position": receipt.central_position,
                        "signed": signed,
                    }),
                )?
                .0,
            )
        } else {
            None
        };
        self.tx
            .execute(
                "INSERT INTO central_receipts (first_seq, last_seq, head_seq, head_hash,
                   central_position, signed, received_at, audit_id)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    receipt.first_seq,
                    receipt.last_seq,
                    receipt.head_seq,
                    receipt.head_hash,
                    receipt.central_position,
                    receipt.signed,
                    self.now,
                    audit_id,
                ],
            )
            .map_err(sql("storing a central receipt"))?;
        let id = self.tx.last_insert_rowid();
        self.tx
            .execute(
                "UPDATE outbox SET uploaded_at = ?1, receipt_id = ?2
                 WHERE seq BETWEEN ?3 AND ?4 AND uploaded_at IS NULL",
                params![self.now, id, receipt.first_seq, receipt.last_seq],
            )
            .map_err(sql("marking outbox rows uploaded"))?;
        Ok(id)
    }

    /// Records who enrolls this station's identities from now on (`[central] enrollment`): with
    /// `true`, identity snapshots say `central_enrollment` and the service enrolls them. A change
    /// is audited (`central.enrollment_site`); setting what holds already writes nothing.
    pub fn set_central_enrollment(&self, central: bool) -> Result<(), LedgerError> {
        let sql = |op| move |e| classify(self.path, op, e);
        let now: i64 = self
            .tx
            .query_row(
                "SELECT central_enrollment FROM central_settings WHERE id = 1",
                [],
                |r| r.get(0),
            )
            .map_err(sql("reading the central settings"))?;
        if (now == 1) == central {
            return Ok(());
        }
        self.tx
            .execute(
                "UPDATE central_settings SET central_enrollment = ?1 WHERE id = 1",
                [i64::from(central)],
            )
            .map_err(sql("recording the central settings"))?;
        self.append_audit(
            &self.ctx.operator.clone(),
            "central.enrollment_site",
            &format!("station:{}", self.ctx.station),
            &json!({ "enrollment": if central { "central" } else { "station" } }),
        )?;
        Ok(())
    }

    /// Marks every outbox row from `seq` on as not uploaded, so they are sent again (the service
    /// said it holds the chain only up to `seq - 1`). Returns how many rows will be re-sent.
    pub fn resend_outbox_from(&self, seq: i64) -> Result<u64, LedgerError> {
        let n = self
            .tx
            .execute(
                "UPDATE outbox SET uploaded_at = NULL, receipt_id = NULL WHERE seq >= ?1",
                [seq],
            )
            .map_err(|e| classify(self.path, "marking outbox rows for re-sending", e))?;
        Ok(n as u64)
    }
}

impl Ledger {
    /// Up to `limit` outbox rows not yet acknowledged, in seq order.
    pub fn outbox_pending(&self, limit: usize) -> Result<Vec<OutboxEntry>, LedgerError> {
        self.read("reading the outbox", |c| {
            let mut stmt = c.prepare_cached(
                "SELECT seq, payload FROM outbox WHERE uploaded_at IS NULL ORDER BY seq LIMIT ?1",
            )?;
            let rows = stmt.query_map([i64::try_from(limit).unwrap_or(i64::MAX)], |r| {
                Ok(OutboxEntry {
                    seq: r.get(0)?,
                    payload: r.get(1)?,
                })
            })?;
            rows.collect()
        })
    }

    /// Outbox depth, last seq and the newest receipt (for `central status` and the sync worker).
    pub fn outbox_status(&self) -> Result<OutboxStatus, LedgerError> {
        self.read("reading the outbox", |c| {
            let (depth, last_seq): (i64, i64) = c.query_row(
                "SELECT (SELECT count(*) FROM outbox WHERE uploaded_at IS NULL),
                        (SELECT coalesce(max(seq), 0) FROM outbox)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            let last_receipt = c
                .query_row(
                    "SELECT id, first_seq, last_seq, head_seq, head_hash, central_position, signed,
                            received_at, audit_id
                     FROM central_receipts ORDER BY id DESC LIMIT 1",
                    [],
                    receipt_from_row,
                )
                .optional()?;
            Ok(OutboxStatus {
                depth: u64::try_from(depth).unwrap_or(0),
                last_seq,
                last_receipt,
            })
        })
    }

    /// Every stored receipt, oldest first.
    pub fn central_receipts(&self) -> Result<Vec<CentralReceiptRecord>, LedgerError> {
        self.read("reading the central receipts", |c| {
            let mut stmt = c.prepare(
                "SELECT id, first_seq, last_seq, head_seq, head_hash, central_position, signed,
                        received_at, audit_id
                 FROM central_receipts ORDER BY id",
            )?;
            let rows = stmt.query_map([], receipt_from_row)?;
            rows.collect()
        })
    }
}

fn receipt_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<CentralReceiptRecord> {
    Ok(CentralReceiptRecord {
        id: r.get(0)?,
        first_seq: r.get(1)?,
        last_seq: r.get(2)?,
        head_seq: r.get(3)?,
        head_hash: r.get(4)?,
        central_position: r.get(5)?,
        signed: r.get(6)?,
        received_at: r.get(7)?,
        audit_id: r.get(8)?,
    })
}
