//! The one error type of the ledger. Every variant names the ledger file (or the identity, batch,
//! enrollment) it is about and says what the user can do, because these messages reach operators.

use std::path::PathBuf;

use super::lock::LockHolder;
use super::types::IdentityState;

/// Everything that can go wrong when opening, reading or writing a ledger.
///
/// Underlying SQLite and I/O errors are part of the message (field `cause`, not a `source`), so
/// that `{:#}` does not print them twice.
///
/// Errors from writes are returned after the transaction was rolled back: the ledger is as it was.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The file could not be opened or created at all (missing directory, permissions).
    #[error(
        "cannot open the ledger {path}: {cause}; check that the directory exists and is writable"
    )]
    Open {
        path: PathBuf,
        cause: rusqlite::Error,
    },

    /// The ledger's directory does not exist and cannot be created.
    #[error(
        "cannot create the directory {dir} for the ledger: {cause}; create it, or choose another path with --ledger"
    )]
    CreateDir { dir: PathBuf, cause: std::io::Error },

    /// A read-only open (reports) of a file that does not exist.
    #[error(
        "there is no ledger at {path}; create one with `dps-station ledger init --ledger {path}`"
    )]
    NotFound { path: PathBuf },

    /// The file is not a SQLite database, or a SQLite database of another application.
    #[error(
        "{path} is not a dps-station ledger ({reason}); point --ledger (or DPS_STATION_LEDGER) at a ledger file, or move this file away; it was not changed"
    )]
    NotALedger { path: PathBuf, reason: String },

    /// SQLite reports the file as malformed.
    #[error(
        "the ledger {path} is damaged ({detail}); stop the station, keep this file for inspection and restore the ledger from a backup; it was not changed"
    )]
    Corrupt { path: PathBuf, detail: String },

    /// Written by a later dps-station; we must not guess at its schema.
    #[error(
        "the ledger {path} has schema version {found}, but this dps-station knows versions up to {supported}; upgrade dps-station to open it (the file was not changed)"
    )]
    TooNew {
        path: PathBuf,
        found: i64,
        supported: i64,
    },

    /// A read-only open of a ledger that still needs a migration, which only a writer may run.
    #[error(
        "the ledger {path} has schema version {found} and needs migrating to {supported}; open it once for writing (`dps-station ledger init --ledger {path}`) and try again"
    )]
    NeedsMigration {
        path: PathBuf,
        found: i64,
        supported: i64,
    },

    /// Another station process holds the ledger for writing.
    #[error(
        "the ledger {path} is already open for writing by {holder}; stop that station first, or open the ledger read-only for reports"
    )]
    Locked {
        path: PathBuf,
        holder: Box<LockHolder>,
    },

    /// The lock file next to the ledger could not be created or locked.
    #[error("cannot use the lock file {path}: {cause}; check that its directory is writable")]
    LockFile {
        path: PathBuf,
        cause: std::io::Error,
    },

    /// SQLITE_FULL: the disk (or the size limit) is full.
    #[error(
        "the disk holding the ledger {path} is full; the transaction was rolled back and the ledger is as it was; free disk space and try again"
    )]
    DiskFull { path: PathBuf },

    /// A write on a ledger opened read-only.
    #[error(
        "the ledger {path} was opened read-only (for reports); writes need the station that owns it"
    )]
    ReadOnly { path: PathBuf },

    /// The identity state machine forbids this change.
    #[error(
        "identity {registration_id} is {from}: the change `{to}` is not allowed from there; the ledger was not changed"
    )]
    IllegalTransition {
        registration_id: String,
        from: IdentityState,
        /// The requested change: `written`, `enrolled`, `failed`, `retry`, `revoked` or `reissue`.
        to: &'static str,
    },

    /// No identity with this registration ID.
    #[error("no identity with registration ID {registration_id} in the ledger {path}")]
    UnknownIdentity {
        path: PathBuf,
        registration_id: String,
    },

    /// The registration ID is taken (compared case-insensitively, as DPS does).
    #[error(
        "registration ID {registration_id} is already in the ledger (as {existing}, state {state}); each device needs its own registration ID"
    )]
    DuplicateRegistrationId {
        registration_id: String,
        existing: String,
        state: IdentityState,
    },

    /// No batch with this name.
    #[error("no batch named {name} in the ledger {path}; create it first")]
    UnknownBatch { path: PathBuf, name: String },

    /// Batch names are unique.
    #[error("a batch named {name} already exists in the ledger {path}; choose another name")]
    DuplicateBatch { path: PathBuf, name: String },

    /// A CA certificate name is unique.
    #[error(
        "a CA certificate named {name} already exists in the ledger {path}; choose another name"
    )]
    DuplicateCaCertificate { path: PathBuf, name: String },

    /// No enrollment (or key session) with this id.
    #[error("no {what} with id {id} in the ledger {path}")]
    UnknownRecord {
        path: PathBuf,
        what: &'static str,
        id: i64,
    },

    /// The enrollment or key session is already finished.
    #[error("{what} {id} is already {state}; it cannot be changed again")]
    AlreadyFinished {
        what: &'static str,
        id: i64,
        state: String,
    },

    /// An identity cannot be queued for enrollment in its current state.
    #[error(
        "identity {registration_id} is {state}; only a written identity can be queued for enrollment"
    )]
    NotEnrollable {
        registration_id: String,
        state: IdentityState,
    },

    /// The certificate handed to the ledger does not parse as X.509 DER.
    #[error(
        "the certificate for {subject} is not valid X.509 DER ({detail}); nothing was recorded"
    )]
    InvalidCertificate { subject: String, detail: String },

    /// A `symmetric-individual` key nonce for a ledger whose schema predates the nonce column:
    /// storing the identity without it would lose the only way to recompute the key.
    #[error(
        "ledger {path} (schema v{schema_version}) has no column for the key nonce of {registration_id}; nothing was recorded: open the ledger with this version of dps-station to migrate it to schema v3"
    )]
    KeyNonceNeedsSchemaV3 {
        path: PathBuf,
        registration_id: String,
        schema_version: i64,
    },

    /// A joined station's batch has no lease unit to issue an identity from (central ledger).
    #[error(
        "batch {batch} may issue no more identities now: {reason}; the station waits for the central ledger to grant a new lease"
    )]
    LeaseUnavailable { batch: String, reason: String },

    /// A value the ledger refuses to store (a PKCS#11 URI carrying a PIN, an empty name).
    #[error("refusing to record {what}: {reason}")]
    Refused { what: String, reason: String },

    /// Any other SQLite error, with the operation that failed.
    #[error("ledger {path}: {operation} failed: {cause}")]
    Sqlite {
        path: PathBuf,
        operation: &'static str,
        cause: rusqlite::Error,
    },

    /// Writing an export (CSV) failed.
    #[error("ledger export: writing failed: {detail}; check the output file and free space")]
    Export { detail: String },
}

/// Maps a SQLite error to the variant a user can act on (full disk, damaged file), else `Sqlite`.
pub(crate) fn classify(
    path: &std::path::Path,
    operation: &'static str,
    err: rusqlite::Error,
) -> LedgerError {
    use rusqlite::ErrorCode;
    let path = path.to_path_buf();
    match err.sqlite_error_code() {
        Some(ErrorCode::DiskFull) => LedgerError::DiskFull { path },
        Some(ErrorCode::DatabaseCorrupt) => LedgerError::Corrupt {
            path,
            detail: err.to_string(),
        },
        Some(ErrorCode::NotADatabase) => LedgerError::NotALedger {
            path,
            reason: "not a SQLite database".into(),
        },
        _ => LedgerError::Sqlite {
            path,
            operation,
            cause: err,
        },
    }
}
