//! The ledger: one SQLite file that is the station's source of truth.
//!
//! - One file, WAL, `synchronous=FULL`: a committed change survives a power cut.
//! - Schema migrations keyed by `PRAGMA user_version` ([`schema`]).
//! - The identity state machine `issued → written → enrolled` (+ `failed`, `revoked`) is enforced
//!   ([`state`]); an illegal change is [`LedgerError::IllegalTransition`] and writes nothing.
//! - Every change is one transaction and writes its audit row in it; the audit log is
//!   append-only and hash-chained ([`audit`]).
//! - One writer per ledger, held by `<ledger>.lock` ([`lock`]); readers open read-only.
//! - No field of the API can carry a private key, a PIN or a DPS key ([`types`]).
//!
//! `Ledger` owns one `rusqlite::Connection`: it is `Send`, not `Sync`. The station keeps it on
//! its one ledger thread.
//!
//! How the station uses it (one device, X.509):
//!
//! ```ignore
//! let mut ledger = Ledger::open(&path, &WriterIdentity { station: "line-1".into(), operator: "ann".into() })?;
//! let batch = ledger.create_batch(&NewBatch { name: "b1".into(), /* … */ })?;
//! let device = ledger.upsert_device(&NewDevice { model, serial_number, hardware_id, firmware: None, batch: Some(batch) })?;
//! // Write-ahead: recorded before the device is touched.
//! ledger.record_issued(&NewIdentity { registration_id, batch: Some(batch), device: Some(device),
//!     attestation: Attestation::X509 { certificate_der } })?;
//! // … write to the device, read back …
//! ledger.transition(&registration_id, &Transition::Written)?;       // or Failed { stage: Write, reason }
//! let e = ledger.queue_enrollment(&registration_id, &NewEnrollment { dps_target, kind, group_name: None })?;
//! // The enrollment worker:
//! for p in ledger.pending_enrollments(&dps_target, 500)? { /* bulk POST */ }
//! ledger.record_enrollment_result(e, &EnrollmentOutcome::Enrolled { etag })?; // identity → enrolled
//! // Several writes in one transaction:
//! ledger.transaction(|w| { let d = w.upsert_device(&dev)?; w.record_issued(&id) })?;
//! ```

pub mod audit;
pub mod audit_query;
pub mod bench;
pub mod browse;

mod certificate;
mod error;
mod export;
pub mod key_evidence;
pub mod leases;
pub mod lock;
pub mod manifest_entries;
mod open;
pub mod outbox;
mod queries;
pub mod report_queries;
pub mod schema;
pub mod state;
pub mod types;
mod writer;
mod writer_enrollment;
mod writer_keys;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, TransactionBehavior};

pub use audit::{BrokenRow, VerifyProgress, VerifyReport};
pub use audit_query::{AuditFilter, AuditPage, TimeRange};
pub use error::LedgerError;
pub use key_evidence::KeyEvidence;
pub use lock::{LockHolder, WriterLock};
pub use manifest_entries::{ManifestEntryRecord, NewManifestEntry};
pub use outbox::{CentralReceiptRecord, NewCentralReceipt, OutboxEntry, OutboxStatus};
pub use report_queries::{DeviceRunRecord, EnrollmentAnswer, NewDeviceRun, QueueCount, RunScope};
pub use types::*;
pub use writer::LedgerWriter;

use error::classify;
use writer::WriterContext;

/// The file name of the default ledger, under `$XDG_DATA_HOME/dps-station/`.
pub const DEFAULT_FILE_NAME: &str = "ledger.db";

/// The default ledger path: `$XDG_DATA_HOME/dps-station/ledger.db`, with `XDG_DATA_HOME`
/// defaulting to `~/.local/share` as the XDG spec says. `None` when neither it nor `HOME` is set.
pub fn default_path() -> Option<PathBuf> {
    let data_home = std::env::var_os("XDG_DATA_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".local/share"))
        })?;
    Some(data_home.join("dps-station").join(DEFAULT_FILE_NAME))
}

/// An open ledger: the writer (holding the lock) or a read-only reader.
#[derive(Debug)]
pub struct Ledger {
    conn: Connection,
    path: PathBuf,
    schema_version: i64,
    writer: Option<Writer>,
}

#[derive(Debug)]
struct Writer {
    _lock: WriterLock,
    ctx: WriterContext,
}

/// What opening a ledger for writing did to its schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migration {
    /// The version found (0 for a new ledger).
    pub from: i64,
    /// The version now.
    pub to: i64,
}

impl Ledger {
    /// The ledger file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The schema version of the open file.
    pub fn schema_version(&self) -> i64 {
        self.schema_version
    }

    /// Whether this handle may write.
    pub fn is_writer(&self) -> bool {
        self.writer.is_some()
    }

    /// Runs `f` in one `BEGIN IMMEDIATE` transaction: all of its writes commit together, or,
    /// when it (or the commit) fails, none do and the ledger is as it was.
    pub fn transaction<T>(
        &mut self,
        f: impl FnOnce(&LedgerWriter<'_>) -> Result<T, LedgerError>,
    ) -> Result<T, LedgerError> {
        let Some(writer) = self.writer.as_ref() else {
            return Err(LedgerError::ReadOnly {
                path: self.path.clone(),
            });
        };
        let path = self.path.as_path();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| classify(path, "starting a transaction", e))?;
        let w = LedgerWriter {
            tx: &tx,
            ctx: &writer.ctx,
            path,
            now: now(),
        };
        let value = f(&w)?;
        drop(w);
        tx.commit()
            .map_err(|e| classify(path, "committing a transaction", e))?;
        Ok(value)
    }

    /// Changes the operator recorded on later rows (a new shift at a running station).
    pub fn set_operator(&mut self, operator: &str) -> Result<(), LedgerError> {
        let old = self
            .writer
            .as_ref()
            .map(|w| w.ctx.operator.clone())
            .unwrap_or_default();
        let id = self.transaction(|w| {
            let id = w.record_operator(operator)?;
            w.append_audit(
                operator,
                "operator.changed",
                &format!("station:{}", w.ctx.station),
                &serde_json::json!({ "previous": old }),
            )?;
            Ok(id)
        })?;
        if let Some(w) = self.writer.as_mut() {
            w.ctx.operator = operator.to_string();
            w.ctx.operator_id = id;
        }
        Ok(())
    }

    // --- writes, each its own transaction -------------------------------------------------

    /// Creates a batch. See [`LedgerWriter::create_batch`].
    pub fn create_batch(&mut self, batch: &NewBatch) -> Result<BatchId, LedgerError> {
        self.transaction(|w| w.create_batch(batch))
    }

    /// Records or refreshes a device. See [`LedgerWriter::upsert_device`].
    pub fn upsert_device(&mut self, device: &NewDevice) -> Result<DeviceId, LedgerError> {
        self.transaction(|w| w.upsert_device(device))
    }

    /// The write-ahead record of an issued identity. See [`LedgerWriter::record_issued`].
    pub fn record_issued(&mut self, identity: &NewIdentity) -> Result<IdentityId, LedgerError> {
        self.transaction(|w| w.record_issued(identity))
    }

    /// Re-provisions a device under its registration ID. See [`LedgerWriter::reprovision`].
    pub fn reprovision(
        &mut self,
        identity: &NewIdentity,
        why: &Reprovisioning,
    ) -> Result<IdentityId, LedgerError> {
        self.transaction(|w| w.reprovision(identity, why))
    }

    /// Replaces an identity's certificate or key. See [`LedgerWriter::reissue`].
    pub fn reissue(&mut self, identity: &NewIdentity) -> Result<IdentityId, LedgerError> {
        self.transaction(|w| w.reissue(identity))
    }

    /// Moves an identity through the state machine. See [`LedgerWriter::transition`].
    pub fn transition(
        &mut self,
        registration_id: &str,
        transition: &Transition,
    ) -> Result<IdentityState, LedgerError> {
        self.transaction(|w| w.transition(registration_id, transition))
    }

    /// Queues a written identity for enrollment. See [`LedgerWriter::queue_enrollment`].
    pub fn queue_enrollment(
        &mut self,
        registration_id: &str,
        enrollment: &NewEnrollment,
    ) -> Result<EnrollmentId, LedgerError> {
        self.transaction(|w| w.queue_enrollment(registration_id, enrollment))
    }

    /// Records what DPS answered. See [`LedgerWriter::record_enrollment_result`].
    pub fn record_enrollment_result(
        &mut self,
        id: EnrollmentId,
        outcome: &EnrollmentOutcome,
    ) -> Result<EnrollmentState, LedgerError> {
        self.transaction(|w| w.record_enrollment_result(id, outcome))
    }

    /// Appends an audit row. See [`LedgerWriter::append_audit`].
    pub fn append_audit(
        &mut self,
        actor: &str,
        action: &str,
        subject: &str,
        details: &serde_json::Value,
    ) -> Result<AuditId, LedgerError> {
        self.transaction(|w| w.append_audit(actor, action, subject, details))
    }

    /// Opens a key-injection session. See [`LedgerWriter::open_key_session`].
    pub fn open_key_session(
        &mut self,
        session: &NewKeySession,
    ) -> Result<KeySessionId, LedgerError> {
        self.transaction(|w| w.open_key_session(session))
    }

    /// Closes a key-injection session. See [`LedgerWriter::close_key_session`].
    pub fn close_key_session(&mut self, id: KeySessionId) -> Result<(), LedgerError> {
        self.transaction(|w| w.close_key_session(id))
    }

    /// Records a CA certificate. See [`LedgerWriter::record_ca_certificate`].
    pub fn record_ca_certificate(
        &mut self,
        ca: &NewCaCertificate,
        session: Option<KeySessionId>,
    ) -> Result<CaCertificateId, LedgerError> {
        self.transaction(|w| w.record_ca_certificate(ca, session))
    }

    // --- reads ---------------------------------------------------------------------------

    fn read<T>(
        &self,
        operation: &'static str,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, LedgerError> {
        f(&self.conn).map_err(|e| classify(&self.path, operation, e))
    }

    /// The live (not revoked) identity with this registration ID (case-insensitive), if any.
    pub fn find_identity(
        &self,
        registration_id: &str,
    ) -> Result<Option<IdentityRecord>, LedgerError> {
        self.read("looking up an identity", |c| {
            queries::find_identity(c, registration_id)
        })
    }

    /// The live identity of a registration ID, or else its newest revoked one (what
    /// re-provisioning would replace), without reading the whole history.
    pub fn live_or_last_revoked(
        &self,
        registration_id: &str,
    ) -> Result<Option<IdentityRecord>, LedgerError> {
        self.read("looking up an identity", |c| {
            queries::live_or_last_revoked_record(c, registration_id)
        })
    }

    /// Every identity a registration ID ever had (revoked ones too: re-provisioning history),
    /// oldest first.
    pub fn identity_history(
        &self,
        registration_id: &str,
    ) -> Result<Vec<IdentityRecord>, LedgerError> {
        self.read("reading an identity's history", |c| {
            queries::identity_history(c, registration_id)
        })
    }

    /// Identities matching `filter`, oldest first.
    pub fn list_identities(
        &self,
        filter: &IdentityFilter,
    ) -> Result<Vec<IdentityRecord>, LedgerError> {
        self.read("listing identities", |c| {
            queries::list_identities(c, filter)
        })
    }

    /// The enrollments of one identity.
    pub fn enrollments_for(
        &self,
        registration_id: &str,
    ) -> Result<Vec<EnrollmentRecord>, LedgerError> {
        self.read("listing enrollments", |c| {
            queries::enrollments_for(c, registration_id)
        })
    }

    /// Up to `limit` pending enrollments of one DPS target, oldest first.
    pub fn pending_enrollments(
        &self,
        dps_target: &str,
        limit: u32,
    ) -> Result<Vec<PendingEnrollment>, LedgerError> {
        self.read("listing pending enrollments", |c| {
            queries::pending_enrollments(c, dps_target, limit)
        })
    }

    /// Up to `limit` pending enrollments of one DPS target made by the batch named `batch`.
    pub fn pending_enrollments_of_batch(
        &self,
        dps_target: &str,
        batch: &str,
        limit: u32,
    ) -> Result<Vec<PendingEnrollment>, LedgerError> {
        self.read("listing a batch's pending enrollments", |c| {
            queries::pending_enrollments_of_batch(c, dps_target, batch, limit)
        })
    }

    /// A batch by name.
    pub fn find_batch(&self, name: &str) -> Result<Option<BatchRecord>, LedgerError> {
        self.read("looking up a batch", |c| queries::find_batch(c, name))
    }

    /// All batches.
    pub fn list_batches(&self) -> Result<Vec<BatchRecord>, LedgerError> {
        self.read("listing batches", queries::list_batches)
    }

    /// All key-injection sessions.
    pub fn key_sessions(&self) -> Result<Vec<KeySessionRecord>, LedgerError> {
        self.read("listing key sessions", queries::key_sessions)
    }

    /// All CA certificates.
    pub fn ca_certificates(&self) -> Result<Vec<CaCertificateRecord>, LedgerError> {
        self.read("listing CA certificates", queries::ca_certificates)
    }

    /// A CA certificate by name.
    pub fn find_ca_certificate(
        &self,
        name: &str,
    ) -> Result<Option<CaCertificateRecord>, LedgerError> {
        self.read("looking up a CA certificate", |c| {
            queries::find_ca_certificate(c, name)
        })
    }

    /// The audit rows about one subject (a registration ID, `station:NAME`, `ca:NAME`, `token:LABEL`).
    pub fn audit_for(&self, subject: &str) -> Result<Vec<AuditRecord>, LedgerError> {
        self.read("reading the audit log", |c| {
            audit::rows_for_subject(c, subject)
        })
    }

    /// The audit rows of one key-injection session (the officer's screen lists them as they happen).
    pub fn audit_of_key_session(&self, id: KeySessionId) -> Result<Vec<AuditRecord>, LedgerError> {
        self.read("reading the key session's audit rows", |c| {
            audit::rows_for_key_session(c, id.0)
        })
    }

    /// Up to `limit` identities for the ledger browser, in `query`'s time order, after `after`
    /// (the previous page's last row). See [`browse`].
    pub fn browse_page(
        &self,
        query: &browse::BrowseQuery,
        after: Option<&browse::PageKey>,
        limit: u32,
    ) -> Result<Vec<browse::BrowseRow>, LedgerError> {
        self.browse_page_skipping(query, after, 0, limit)
    }

    /// [`Ledger::browse_page`] after skipping `skip` rows past `after` (a short jump ahead).
    pub fn browse_page_skipping(
        &self,
        query: &browse::BrowseQuery,
        after: Option<&browse::PageKey>,
        skip: u32,
        limit: u32,
    ) -> Result<Vec<browse::BrowseRow>, LedgerError> {
        self.read("reading a page of identities", |c| {
            browse::page(c, query, after, skip, limit)
        })
    }

    /// How many identities match `query`, exact up to `cap`. See [`browse`].
    pub fn browse_count(
        &self,
        query: &browse::BrowseQuery,
        cap: u64,
    ) -> Result<browse::MatchCount, LedgerError> {
        self.read("counting identities", |c| browse::count(c, query, cap))
    }

    /// Recomputes the audit hash chain; names the first broken row.
    pub fn verify_audit_chain(&self) -> Result<VerifyReport, LedgerError> {
        self.read("verifying the audit log", audit::verify_chain)
    }

    /// [`Ledger::verify_audit_chain`], calling `progress` every few thousand rows (the screens'
    /// progress bar).
    pub fn verify_audit_chain_with_progress(
        &self,
        mut progress: impl FnMut(VerifyProgress),
    ) -> Result<VerifyReport, LedgerError> {
        self.read("verifying the audit log", |c| {
            audit::verify_chain_with_progress(c, &mut progress)
        })
    }

    /// One page of audit rows matching `filter` older than `before` (from the newest when
    /// `None`), newest first: the audit screen's table, a page at a time.
    pub fn audit_page(
        &self,
        filter: &AuditFilter,
        before: Option<AuditId>,
        limit: u32,
    ) -> Result<AuditPage, LedgerError> {
        self.read("reading the audit log", |c| {
            audit_query::page(c, filter, before, limit)
        })
    }

    /// Writes the audit rows of `range` as CSV (columns in [`audit_query`]), oldest first, with
    /// both chain hashes; returns the row count. `progress` gets the rows written so far.
    pub fn export_audit_csv(
        &self,
        range: &TimeRange,
        out: impl std::io::Write,
        mut progress: impl FnMut(u64),
    ) -> Result<u64, LedgerError> {
        audit_query::export_csv(&self.conn, &self.path, range, out, &mut progress)
    }

    /// [`Ledger::export_audit_csv`] into the file `out` (written under a temporary name, synced,
    /// then renamed into place).
    pub fn export_audit_csv_file(
        &self,
        range: &TimeRange,
        out: &Path,
        mut progress: impl FnMut(u64),
    ) -> Result<u64, LedgerError> {
        audit_query::export_csv_file(&self.conn, &self.path, range, out, &mut progress)
    }

    /// What is wrong with the file apart from the audit chain: SQLite's own structural check
    /// (`PRAGMA quick_check`) and the append-only triggers, which only someone with the `sqlite3`
    /// shell can have dropped. Empty when all is well.
    pub fn file_problems(&self) -> Result<Vec<String>, LedgerError> {
        self.read("checking the file", |c| {
            let mut stmt = c.prepare("PRAGMA quick_check")?;
            let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
            let mut problems: Vec<String> = rows
                .collect::<rusqlite::Result<Vec<_>>>()?
                .into_iter()
                .filter(|s| s != "ok")
                .collect();
            for trigger in ["audit_log_no_update", "audit_log_no_delete"] {
                let present: i64 = c.query_row(
                    "SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND name = ?1",
                    [trigger],
                    |r| r.get(0),
                )?;
                if present == 0 {
                    problems.push(format!(
                        "the audit log's append-only trigger {trigger} is missing: someone removed it outside dps-station"
                    ));
                }
            }
            Ok(problems)
        })
    }

    /// Counts for reports.
    pub fn stats(&self) -> Result<LedgerStats, LedgerError> {
        let mut stats = self.read("counting", |c| queries::stats(c, self.schema_version))?;
        stats.path = self.path.display().to_string();
        stats.file_bytes = file_bytes(&self.path);
        Ok(stats)
    }

    /// Writes every identity as CSV (header + one row each, in id order); returns the row count.
    pub fn export_csv(&self, out: impl std::io::Write) -> Result<u64, LedgerError> {
        export::identities_csv(&self.conn, &self.path, out)
    }

    /// Writes the identities the browser's `query` shows as CSV (the columns of
    /// [`Ledger::export_csv`]); returns the row count.
    pub fn export_browse_csv(
        &self,
        query: &browse::BrowseQuery,
        out: impl std::io::Write,
    ) -> Result<u64, LedgerError> {
        export::browse_csv(&self.conn, &self.path, query, out)
    }

    /// Moves the WAL's content into the main file and empties the WAL (before a backup or a
    /// size measurement). Readers that are mid-query may keep part of the WAL alive; that is fine.
    pub fn checkpoint(&self) -> Result<(), LedgerError> {
        self.read("checkpointing the WAL", |c| {
            c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        })
    }

    /// Caps the file at `pages` pages for this connection, so that tests can make SQLite answer
    /// SQLITE_FULL as on a full disk.
    #[doc(hidden)]
    pub fn limit_pages(&self, pages: i64) -> Result<i64, LedgerError> {
        self.read("limiting the size", |c| {
            c.query_row(&format!("PRAGMA max_page_count = {pages}"), [], |r| {
                r.get(0)
            })
        })
    }
}

/// Bytes on disk: the ledger plus its WAL.
fn file_bytes(path: &Path) -> u64 {
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    [path.to_path_buf(), PathBuf::from(wal)]
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum()
}

/// Now, UTC, RFC 3339 with milliseconds: the form every timestamp in the ledger has.
pub fn now() -> String {
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    time::OffsetDateTime::now_utc()
        .format(&format)
        .unwrap_or_else(|_| "1970-01-01T00:00:00.000Z".to_string())
}

#[cfg(test)]
mod tests {
    /// The station moves the ledger onto its writer thread; it must stay `Send`.
    #[test]
    fn ledger_is_send() {
        fn assert_send<T: Send>() {}
        assert_send::<super::Ledger>();
    }

    /// Durability is the point of the ledger: WAL, and a sync on every commit.
    #[test]
    fn the_writer_connection_is_wal_with_synchronous_full() {
        let dir = tempfile::tempdir().unwrap();
        let writer = super::WriterIdentity {
            station: "s".into(),
            operator: "o".into(),
        };
        let l = super::Ledger::open(&dir.path().join("l.db"), &writer).unwrap();
        let sync: i64 = l
            .conn
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .unwrap();
        assert_eq!(sync, 2, "FULL");
        let mode: String = l
            .conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let fk: i64 = l
            .conn
            .query_row("PRAGMA foreign_keys", [], |r| r.get(0))
            .unwrap();
        assert_eq!(fk, 1);
    }
}
