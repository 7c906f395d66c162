//! Leases a station joined to a central ledger holds (issue 18): the ledger keeps each lease the
//! service granted (with its signed text, for an auditor), and spends one unit of it in the very
//! transaction that records an issued identity, so a crash can neither spend twice nor issue
//! without spending. The identity row names the lease it was issued from.
//!
//! The ledger knows nothing of the network: the lease keeper (`central::station_side`) asks the
//! service, verifies the signature and hands the lease over as a [`NewLease`].

use rusqlite::{OptionalExtension, params};
use serde_json::json;

use super::error::classify;
use super::{IdentityId, Ledger, LedgerError, LedgerWriter};

/// Schema step: the held leases, and the lease each identity was issued from. Self-contained, so
/// the lead can renumber it at merge.
pub const MIGRATION: &str = r#"
CREATE TABLE central_leases (
    lease_id     TEXT PRIMARY KEY,
    batch        TEXT NOT NULL,
    count        INTEGER NOT NULL CHECK (count > 0),
    used         INTEGER NOT NULL DEFAULT 0 CHECK (used >= 0 AND used <= count),
    -- Same form as every ledger time (ledger::now), so text order is time order.
    expires_at   TEXT NOT NULL,
    -- The Signed<Lease> JSON exactly as received.
    signed       TEXT NOT NULL,
    received_at  TEXT NOT NULL,
    returned_at  TEXT,
    returned     INTEGER
);
CREATE INDEX central_leases_open ON central_leases (batch, expires_at) WHERE returned_at IS NULL;
ALTER TABLE identities ADD COLUMN lease_id TEXT REFERENCES central_leases(lease_id);
"#;

/// A lease the service granted, verified by the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewLease {
    pub lease_id: String,
    pub batch: String,
    pub count: u32,
    /// RFC 3339, as the service wrote it.
    pub expires_at: String,
    /// The signed JSON as received (kept for audit; no secret in it).
    pub signed: String,
}

/// A lease as the ledger holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldLease {
    pub lease_id: String,
    pub batch: String,
    pub count: u32,
    pub used: u32,
    /// In the ledger's time form (`2026-12-03T10:00:00.000Z`).
    pub expires_at: String,
    pub returned_at: Option<String>,
}

impl HeldLease {
    /// Units not yet spent.
    pub fn left(&self) -> u32 {
        self.count.saturating_sub(self.used)
    }

    /// Whether it has expired at `now` (a ledger time).
    pub fn expired_at(&self, now: &str) -> bool {
        self.expires_at.as_str() <= now
    }
}

/// `expires_at` from the wire (RFC 3339) in the ledger's own time form, so comparisons as text
/// are comparisons in time.
pub fn ledger_time(rfc3339: &str) -> Option<String> {
    let at = time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
        .ok()?;
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    at.to_offset(time::UtcOffset::UTC).format(&format).ok()
}

impl LedgerWriter<'_> {
    /// Keeps a lease the service granted, with an audit row `central.lease` (so the service sees
    /// in the station's chain which leases it holds).
    pub fn record_lease(&self, lease: &NewLease) -> Result<(), LedgerError> {
        let expires_at = ledger_time(&lease.expires_at).ok_or_else(|| LedgerError::Refused {
            what: format!("lease {}", lease.lease_id),
            reason: format!(
                "its expiry `{}` is not a time; the central service's answer is faulty",
                lease.expires_at
            ),
        })?;
        self.tx
            .execute(
                "INSERT INTO central_leases (lease_id, batch, count, expires_at, signed, received_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (lease_id) DO NOTHING",
                params![
                    lease.lease_id,
                    lease.batch,
                    lease.count,
                    expires_at,
                    lease.signed,
                    self.now
                ],
            )
            .map_err(self.sql_error("keeping a lease"))?;
        self.append_audit(
            "central",
            "central.lease",
            &lease.lease_id,
            &json!({ "batch": lease.batch, "count": lease.count, "expires_at": lease.expires_at }),
        )?;
        Ok(())
    }

    /// Spends one unit of the batch's open, unexpired lease that expires first, and records on
    /// identity `identity` that it was issued from it. Call it in the transaction that records the
    /// identity. Returns the lease id; [`LedgerError::LeaseUnavailable`] when nothing is left.
    pub fn spend_lease_unit(
        &self,
        batch: &str,
        identity: IdentityId,
    ) -> Result<String, LedgerError> {
        let spent: Option<String> = self
            .tx
            .query_row(
                "UPDATE central_leases SET used = used + 1 WHERE lease_id = (
                   SELECT lease_id FROM central_leases
                   WHERE batch = ?1 AND returned_at IS NULL AND used < count AND expires_at > ?2
                   ORDER BY expires_at, lease_id LIMIT 1)
                 RETURNING lease_id",
                params![batch, self.now],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.sql_error("spending a lease unit"))?;
        let Some(lease_id) = spent else {
            let expired: i64 = self
                .tx
                .query_row(
                    "SELECT count(*) FROM central_leases
                     WHERE batch = ?1 AND returned_at IS NULL AND used < count AND expires_at <= ?2",
                    params![batch, self.now],
                    |r| r.get(0),
                )
                .map_err(self.sql_error("looking at held leases"))?;
            return Err(LedgerError::LeaseUnavailable {
                batch: batch.to_string(),
                reason: if expired > 0 {
                    "its lease expired".into()
                } else {
                    "its lease is used up".into()
                },
            });
        };
        self.tx
            .execute(
                "UPDATE identities SET lease_id = ?1 WHERE id = ?2",
                params![lease_id, identity.0],
            )
            .map_err(self.sql_error("recording an identity's lease"))?;
        Ok(lease_id)
    }

    /// Records that the service took back the unused part of a lease (audit row
    /// `central.lease_returned`); the lease is spent no more.
    pub fn record_lease_returned(
        &self,
        lease_id: &str,
        used: u32,
        returned: u32,
    ) -> Result<(), LedgerError> {
        self.tx
            .execute(
                "UPDATE central_leases SET returned_at = ?2, returned = ?3 WHERE lease_id = ?1",
                params![lease_id, self.now, returned],
            )
            .map_err(self.sql_error("recording a returned lease"))?;
        self.append_audit(
            "central",
            "central.lease_returned",
            lease_id,
            &json!({ "used": used, "returned": returned }),
        )?;
        Ok(())
    }

    fn sql_error(&self, operation: &'static str) -> impl Fn(rusqlite::Error) -> LedgerError + '_ {
        move |e| classify(self.path, operation, e)
    }
}

impl Ledger {
    /// The leases of `batch` (every batch if `None`) not yet returned, oldest expiry first.
    pub fn held_leases(&self, batch: Option<&str>) -> Result<Vec<HeldLease>, LedgerError> {
        let read = || -> rusqlite::Result<Vec<HeldLease>> {
            let mut stmt = self.conn.prepare_cached(
                "SELECT lease_id, batch, count, used, expires_at, returned_at FROM central_leases
                 WHERE returned_at IS NULL AND (?1 IS NULL OR batch = ?1)
                 ORDER BY expires_at, lease_id",
            )?;
            let rows = stmt.query_map([batch], |r| {
                Ok(HeldLease {
                    lease_id: r.get(0)?,
                    batch: r.get(1)?,
                    count: r.get(2)?,
                    used: r.get(3)?,
                    expires_at: r.get(4)?,
                    returned_at: r.get(5)?,
                })
            })?;
            rows.collect()
        };
        read().map_err(|e| classify(&self.path, "reading held leases", e))
    }

    /// The lease identity `identity` was issued from (joined stations), for its snapshot.
    pub fn lease_of_identity(&self, identity: IdentityId) -> Result<Option<String>, LedgerError> {
        self.conn
            .query_row(
                "SELECT lease_id FROM identities WHERE id = ?1",
                [identity.0],
                |r| r.get(0),
            )
            .optional()
            .map(Option::flatten)
            .map_err(|e| classify(&self.path, "reading an identity's lease", e))
    }
}
