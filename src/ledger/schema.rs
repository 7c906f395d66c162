//! Schema and migrations, keyed by `PRAGMA user_version`; `PRAGMA application_id` marks the file
//! as ours so that another application's SQLite file is refused instead of "migrated".
//!
//! Rules for whoever adds a version: never edit a migration that has shipped; add the next one
//! to [`MIGRATIONS`]; each runs in one transaction together with the `user_version` bump, so a
//! crash or a full disk mid-migration leaves the previous version intact.

use std::path::Path;

use rusqlite::Connection;

use super::error::{LedgerError, classify};

/// `PRAGMA application_id` of a dps-station ledger: ASCII "DPST".
pub const APPLICATION_ID: i32 = 0x4450_5354;

/// The schema version this build writes and reads.
pub const CURRENT_VERSION: i64 = MIGRATIONS.len() as i64;

/// Migration `i` takes the schema from version `i` to `i + 1`.
pub const MIGRATIONS: &[&str] = &[
    V1_FOUNDATION,
    V2_HSM,
    V3_REPROVISIONING,
    V4_KEY_EVIDENCE,
    V5_BROWSE_INDEXES,
    V6_DEVICE_RUNS,
    V7_MANIFEST_ENTRIES,
    super::outbox::V8_OUTBOX,
    super::leases::MIGRATION,
];

/// Steps written in Rust that a migration runs after its SQL, in the same transaction, by the
/// version it starts from: v7 → v8 back-fills the outbox from the audit log.
const BACKFILLS: &[(i64, Backfill)] = &[(7, super::outbox::backfill)];

/// A migration step in Rust: fills a table the step's SQL created from the rows already there.
type Backfill = fn(&Connection) -> rusqlite::Result<()>;

/// Tables a migration rebuilds (create new, copy, drop, rename), by the version it starts from.
/// Dropping a table drops its triggers, so [`migrate`] saves the triggers of these tables and
/// re-creates them afterwards: a trigger a site added with the `sqlite3` shell survives.
const REBUILDS: &[(i64, &str)] = &[(2, "identities")];

/// v1: stations, operators, batches, devices, identities, enrollments, the audit log.
const V1_FOUNDATION: &str = r#"
CREATE TABLE stations (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    host        TEXT NOT NULL,
    first_seen  TEXT NOT NULL,
    last_seen   TEXT NOT NULL
);
CREATE TABLE operators (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    first_seen  TEXT NOT NULL
);
CREATE TABLE batches (
    id                        INTEGER PRIMARY KEY,
    name                      TEXT NOT NULL UNIQUE,
    product                   TEXT NOT NULL,
    attestation               TEXT NOT NULL CHECK (attestation IN ('x509', 'symmetric-key', 'tpm')),
    enrollment_kind           TEXT NOT NULL CHECK (enrollment_kind IN ('individual', 'group')),
    dps_target                TEXT NOT NULL,
    registration_id_template  TEXT NOT NULL,
    station_id                INTEGER REFERENCES stations(id),
    operator_id               INTEGER REFERENCES operators(id),
    created_at                TEXT NOT NULL
);
CREATE TABLE devices (
    id             INTEGER PRIMARY KEY,
    model          TEXT NOT NULL,
    serial_number  TEXT NOT NULL,
    hardware_id    TEXT,
    firmware       TEXT,
    batch_id       INTEGER REFERENCES batches(id),
    first_seen     TEXT NOT NULL,
    UNIQUE (model, serial_number)
);
CREATE TABLE identities (
    id                 INTEGER PRIMARY KEY,
    -- DPS compares registration IDs case-insensitively; so does this UNIQUE index.
    registration_id    TEXT NOT NULL COLLATE NOCASE UNIQUE,
    batch_id           INTEGER REFERENCES batches(id),
    device_id          INTEGER REFERENCES devices(id),
    attestation        TEXT NOT NULL CHECK (attestation IN ('x509', 'symmetric-key', 'tpm')),
    certificate_der    BLOB,
    sha1_thumbprint    TEXT,
    sha256_thumbprint  TEXT,
    subject            TEXT,
    issuer             TEXT,
    cert_serial        TEXT,
    not_before         TEXT,
    not_after          TEXT,
    key_fingerprint    TEXT,
    endorsement_key    BLOB,
    state              TEXT NOT NULL
                       CHECK (state IN ('issued', 'written', 'enrolled', 'failed', 'revoked')),
    failed_stage       TEXT CHECK (failed_stage IS NULL OR failed_stage IN ('write', 'enroll')),
    failed_reason      TEXT,
    revoked_reason     TEXT,
    station_id         INTEGER REFERENCES stations(id),
    operator_id        INTEGER REFERENCES operators(id),
    created_at         TEXT NOT NULL,
    updated_at         TEXT NOT NULL,
    CHECK ((attestation = 'x509') = (certificate_der IS NOT NULL AND sha256_thumbprint IS NOT NULL)),
    CHECK ((attestation = 'symmetric-key') = (key_fingerprint IS NOT NULL)),
    CHECK ((attestation = 'tpm') = (endorsement_key IS NOT NULL)),
    CHECK ((state = 'failed') = (failed_stage IS NOT NULL))
);
CREATE INDEX identities_by_state ON identities (state);
CREATE INDEX identities_by_batch ON identities (batch_id, state);
CREATE INDEX identities_by_sha256 ON identities (sha256_thumbprint) WHERE sha256_thumbprint IS NOT NULL;
CREATE INDEX identities_by_device ON identities (device_id) WHERE device_id IS NOT NULL;
CREATE TABLE enrollments (
    id           INTEGER PRIMARY KEY,
    identity_id  INTEGER NOT NULL REFERENCES identities(id),
    dps_target   TEXT NOT NULL,
    kind         TEXT NOT NULL CHECK (kind IN ('individual', 'group')),
    group_name   TEXT,
    state        TEXT NOT NULL CHECK (state IN ('pending', 'enrolled', 'failed')),
    attempts     INTEGER NOT NULL DEFAULT 0,
    last_error   TEXT,
    etag         TEXT,
    queued_at    TEXT NOT NULL,
    updated_at   TEXT NOT NULL,
    enrolled_at  TEXT,
    UNIQUE (identity_id, dps_target)
);
CREATE INDEX enrollments_queue ON enrollments (dps_target, state, id);
CREATE TABLE audit_log (
    id         INTEGER PRIMARY KEY,
    at         TEXT NOT NULL,
    station    TEXT NOT NULL,
    actor      TEXT NOT NULL,
    action     TEXT NOT NULL,
    subject    TEXT NOT NULL,
    details    TEXT NOT NULL,
    prev_hash  TEXT NOT NULL,
    hash       TEXT NOT NULL
);
CREATE INDEX audit_by_subject ON audit_log (subject);
-- Append-only. Whoever drops these triggers with the sqlite3 shell is still caught by
-- `ledger verify`, which recomputes the hash chain.
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
"#;

/// v2: what HSM key-injection sessions record.
const V2_HSM: &str = r#"
CREATE TABLE key_sessions (
    id            INTEGER PRIMARY KEY,
    operator      TEXT NOT NULL,
    token_label   TEXT NOT NULL,
    token_serial  TEXT NOT NULL,
    token_model   TEXT NOT NULL,
    station_id    INTEGER REFERENCES stations(id),
    opened_at     TEXT NOT NULL,
    closed_at     TEXT
);
CREATE TABLE ca_certificates (
    id                 INTEGER PRIMARY KEY,
    name               TEXT NOT NULL UNIQUE,
    role               TEXT NOT NULL CHECK (role IN ('root', 'intermediate')),
    key_uri            TEXT NOT NULL,
    certificate_der    BLOB NOT NULL,
    sha1_thumbprint    TEXT NOT NULL,
    sha256_thumbprint  TEXT NOT NULL,
    subject            TEXT NOT NULL,
    issuer             TEXT NOT NULL,
    cert_serial        TEXT NOT NULL,
    not_before         TEXT NOT NULL,
    not_after          TEXT NOT NULL,
    key_session_id     INTEGER REFERENCES key_sessions(id),
    created_at         TEXT NOT NULL
);
"#;

/// v4 (devices, issue 15): what a device said about a key it made, kept with its identity.
///
/// A modem that makes its key with the CSR (nRF91 `%KEYGEN`) also signs an attestation of that
/// CSR (COSE_Sign1 with the modem's identity key, checkable only by the vendor's identity
/// service). Both are kept, one row per identity, written in the same commit as the `issued`
/// record, so that an identity can later be proven to hold a key the modem made.
const V4_KEY_EVIDENCE: &str = r#"
CREATE TABLE key_evidence (
    identity_id  INTEGER PRIMARY KEY REFERENCES identities(id),
    csr_der      BLOB NOT NULL,
    attestation  BLOB,
    created_at   TEXT NOT NULL
);
"#;

/// v5 (ledger browser, issue 11): indexes that let the engineer's ledger screen page a million
/// identities by time and search them by a prefix of the registration ID or serial number,
/// case-insensitively (see `browse`). `id` is the rowid, so each time index also orders ties.
const V5_BROWSE_INDEXES: &str = r#"
CREATE INDEX identities_by_time ON identities (created_at);
CREATE INDEX identities_by_state_time ON identities (state, created_at);
CREATE INDEX identities_by_batch_time ON identities (batch_id, created_at);
CREATE INDEX identities_by_registration_id_nocase ON identities (registration_id COLLATE NOCASE);
CREATE INDEX devices_by_serial_nocase ON devices (serial_number COLLATE NOCASE);
"#;

/// v6 (reports, issue 11): one row per device a slot took, passed or failed, so that reports per
/// batch and per day (yield, throughput per hour, time per device, failures by stage and by slot)
/// come from the ledger and cover every run of a batch. A device that failed before it had an
/// identity (no answer, a bad serial) is here and nowhere else. Report data, not evidence: it is
/// not in the audit chain. The audit log gets an index by action and time for the enrollment
/// screen's DPS answers over time.
const V6_DEVICE_RUNS: &str = r#"
CREATE TABLE device_runs (
    id               INTEGER PRIMARY KEY,
    batch_id         INTEGER NOT NULL REFERENCES batches(id),
    slot             TEXT NOT NULL,
    serial_number    TEXT,
    registration_id  TEXT,
    failed_stage     TEXT,
    failed_reason    TEXT,
    elapsed_ms       INTEGER NOT NULL CHECK (elapsed_ms >= 0),
    finished_at      TEXT NOT NULL,
    station_id       INTEGER REFERENCES stations(id),
    CHECK ((failed_stage IS NULL) = (failed_reason IS NULL))
);
CREATE INDEX device_runs_by_batch ON device_runs (batch_id, finished_at);
CREATE INDEX device_runs_by_time ON device_runs (finished_at);
-- DPS answers over time (the enrollment screen) without walking the whole audit log.
CREATE INDEX audit_by_action ON audit_log (action, at);
"#;

/// v7 (Trust&GO manifests, issue 16): the manifest entry an identity came from.
///
/// A secure element provisioned at Microchip is recorded `written` from its verified manifest
/// entry; this row keeps where that came from (the file, its SHA-256, the signer certificate's
/// thumbprint), the element's unique ID (its serial: once per ledger) and the device key, which a
/// device on the line must report to pass.
const V7_MANIFEST_ENTRIES: &str = r#"
CREATE TABLE manifest_entries (
    identity_id        INTEGER PRIMARY KEY REFERENCES identities(id),
    unique_id          TEXT NOT NULL UNIQUE,
    public_key         BLOB NOT NULL,
    manifest_file      TEXT NOT NULL,
    manifest_sha256    TEXT NOT NULL,
    signer_thumbprint  TEXT NOT NULL,
    imported_at        TEXT NOT NULL
);
"#;

/// v3: re-provisioning and random per-identity keys.
///
/// - A registration ID is unique only among identities that are not `revoked`: a re-provisioned
///   device gets a new identity under its registration ID, and the revoked one stays as history.
///   SQLite cannot change a UNIQUE column constraint in place, so the table is rebuilt (the
///   documented create-copy-drop-rename procedure; [`migrate`] turns foreign keys off around it,
///   checks them before the commit, and keeps the table's triggers).
/// - `key_nonce`: 16 random bytes per `symmetric-key` identity of a `symmetric-individual` batch.
///   Not secret: the key is an HMAC computed inside the HSM over the registration ID and this
///   nonce, so the station can recompute it (after a crash, to enroll it) and the ledger never
///   holds it. NULL for identities made before v3 and for group-derived keys.
const V3_REPROVISIONING: &str = r#"
CREATE TABLE identities_v3 (
    id                 INTEGER PRIMARY KEY,
    -- DPS compares registration IDs case-insensitively; so does the partial UNIQUE index below,
    -- which allows one live (not revoked) identity per registration ID.
    registration_id    TEXT NOT NULL COLLATE NOCASE,
    batch_id           INTEGER REFERENCES batches(id),
    device_id          INTEGER REFERENCES devices(id),
    attestation        TEXT NOT NULL CHECK (attestation IN ('x509', 'symmetric-key', 'tpm')),
    certificate_der    BLOB,
    sha1_thumbprint    TEXT,
    sha256_thumbprint  TEXT,
    subject            TEXT,
    issuer             TEXT,
    cert_serial        TEXT,
    not_before         TEXT,
    not_after          TEXT,
    key_fingerprint    TEXT,
    endorsement_key    BLOB,
    state              TEXT NOT NULL
                       CHECK (state IN ('issued', 'written', 'enrolled', 'failed', 'revoked')),
    failed_stage       TEXT CHECK (failed_stage IS NULL OR failed_stage IN ('write', 'enroll')),
    failed_reason      TEXT,
    revoked_reason     TEXT,
    station_id         INTEGER REFERENCES stations(id),
    operator_id        INTEGER REFERENCES operators(id),
    created_at         TEXT NOT NULL,
    updated_at         TEXT NOT NULL,
    key_nonce          BLOB,
    CHECK ((attestation = 'x509') = (certificate_der IS NOT NULL AND sha256_thumbprint IS NOT NULL)),
    CHECK ((attestation = 'symmetric-key') = (key_fingerprint IS NOT NULL)),
    CHECK ((attestation = 'tpm') = (endorsement_key IS NOT NULL)),
    CHECK ((state = 'failed') = (failed_stage IS NOT NULL)),
    CHECK (key_nonce IS NULL OR (attestation = 'symmetric-key' AND length(key_nonce) = 16))
);
INSERT INTO identities_v3 (id, registration_id, batch_id, device_id, attestation, certificate_der,
    sha1_thumbprint, sha256_thumbprint, subject, issuer, cert_serial, not_before, not_after,
    key_fingerprint, endorsement_key, state, failed_stage, failed_reason, revoked_reason,
    station_id, operator_id, created_at, updated_at)
SELECT id, registration_id, batch_id, device_id, attestation, certificate_der,
    sha1_thumbprint, sha256_thumbprint, subject, issuer, cert_serial, not_before, not_after,
    key_fingerprint, endorsement_key, state, failed_stage, failed_reason, revoked_reason,
    station_id, operator_id, created_at, updated_at
FROM identities ORDER BY id;
DROP TABLE identities;
ALTER TABLE identities_v3 RENAME TO identities;
CREATE UNIQUE INDEX identities_live_registration_id ON identities (registration_id COLLATE NOCASE)
    WHERE state <> 'revoked';
-- Revoked identities only: the history of a re-provisioned device. Partial, so a normal insert
-- maintains one registration-ID index (the live one), not two. `state` is in it so that, with no
-- statistics, the planner prefers it (two equalities) to walking every revoked row by state.
CREATE INDEX identities_revoked_by_registration_id
    ON identities (registration_id COLLATE NOCASE, state, id) WHERE state = 'revoked';
CREATE INDEX identities_by_state ON identities (state);
CREATE INDEX identities_by_batch ON identities (batch_id, state);
CREATE INDEX identities_by_sha256 ON identities (sha256_thumbprint) WHERE sha256_thumbprint IS NOT NULL;
CREATE INDEX identities_by_device ON identities (device_id) WHERE device_id IS NOT NULL;
"#;

/// What a file is, read without writing anything to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileState {
    /// Zero-length or no tables: a new ledger may be created here.
    Empty,
    /// Ours, at this schema version.
    Ledger(i64),
}

/// Reads `application_id`, `user_version` and whether any table exists, and refuses files that
/// are not ours or are newer than this build. Reads only: safe on a foreign file.
pub fn inspect(conn: &Connection, path: &Path) -> Result<FileState, LedgerError> {
    let read = |sql: &str| -> Result<i64, LedgerError> {
        conn.query_row(sql, [], |r| r.get::<_, i64>(0))
            .map_err(|e| classify(path, "reading the schema header", e))
    };
    let app_id = read("PRAGMA application_id")?;
    let version = read("PRAGMA user_version")?;
    let objects = read("SELECT count(*) FROM sqlite_master")?;
    if app_id != i64::from(APPLICATION_ID) {
        if app_id == 0 && objects == 0 && version == 0 {
            return Ok(FileState::Empty);
        }
        return Err(LedgerError::NotALedger {
            path: path.to_path_buf(),
            reason: if app_id == 0 {
                format!(
                    "a SQLite database of another application: {objects} schema objects, no dps-station marker"
                )
            } else {
                format!("a SQLite database of another application (application_id {app_id:#x})")
            },
        });
    }
    if version > CURRENT_VERSION {
        return Err(LedgerError::TooNew {
            path: path.to_path_buf(),
            found: version,
            supported: CURRENT_VERSION,
        });
    }
    Ok(FileState::Ledger(version))
}

/// Brings the schema from `from` to `target`, one transaction per step. Returns the new version.
///
/// Foreign-key enforcement is off while migrating (SQLite ignores the pragma inside a
/// transaction, and a table rebuild would otherwise trip over its own references); each step
/// runs `PRAGMA foreign_key_check` before it commits instead, and the setting is restored after.
pub fn migrate(
    conn: &mut Connection,
    path: &Path,
    from: i64,
    target: i64,
) -> Result<i64, LedgerError> {
    let target = target.clamp(0, CURRENT_VERSION);
    if from >= target {
        return Ok(from);
    }
    let foreign_keys: i64 = conn
        .query_row("PRAGMA foreign_keys", [], |r| r.get(0))
        .map_err(|e| classify(path, "reading the foreign-key setting", e))?;
    conn.execute_batch("PRAGMA foreign_keys = OFF;")
        .map_err(|e| classify(path, "preparing a migration", e))?;
    let result = migrate_steps(conn, path, from, target);
    let restored = conn
        .execute_batch(&format!("PRAGMA foreign_keys = {foreign_keys};"))
        .map_err(|e| classify(path, "restoring the foreign-key setting", e));
    let version = result?;
    restored?;
    Ok(version)
}

fn migrate_steps(
    conn: &mut Connection,
    path: &Path,
    from: i64,
    target: i64,
) -> Result<i64, LedgerError> {
    let mut version = from;
    while version < target {
        let sql = MIGRATIONS[version as usize];
        let next = version + 1;
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Exclusive)
            .map_err(|e| classify(path, "starting a migration", e))?;
        if version == 0 {
            tx.execute_batch(&format!("PRAGMA application_id = {APPLICATION_ID};"))
                .map_err(|e| classify(path, "marking the file as a ledger", e))?;
        }
        let triggers = triggers_of_rebuilt_tables(&tx, version)
            .map_err(|e| classify(path, "reading the triggers of a rebuilt table", e))?;
        tx.execute_batch(sql)
            .map_err(|e| classify(path, "migrating the schema", e))?;
        for (_, backfill) in BACKFILLS.iter().filter(|(v, _)| *v == version) {
            backfill(&tx).map_err(|e| classify(path, "back-filling a new table", e))?;
        }
        for trigger in &triggers {
            tx.execute_batch(trigger)
                .map_err(|e| classify(path, "re-creating a trigger of a rebuilt table", e))?;
        }
        let broken: i64 = tx
            .query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| {
                r.get(0)
            })
            .map_err(|e| classify(path, "checking foreign keys after a migration", e))?;
        if broken > 0 {
            return Err(LedgerError::Refused {
                what: format!("migrating the ledger {} to schema {next}", path.display()),
                reason: format!(
                    "{broken} rows would reference rows that do not exist; the file was left at schema {version}: restore it from a backup or report it"
                ),
            });
        }
        tx.execute_batch(&format!("PRAGMA user_version = {next};"))
            .map_err(|e| classify(path, "recording the schema version", e))?;
        tx.commit()
            .map_err(|e| classify(path, "committing a migration", e))?;
        tracing::info!(ledger = %path.display(), from = version, to = next, "ledger schema migrated");
        version = next;
    }
    Ok(version)
}

/// The `CREATE TRIGGER` statements of the tables the migration from `version` rebuilds.
fn triggers_of_rebuilt_tables(conn: &Connection, version: i64) -> rusqlite::Result<Vec<String>> {
    let mut out = Vec::new();
    for (_, table) in REBUILDS.iter().filter(|(v, _)| *v == version) {
        let mut stmt = conn.prepare(
            "SELECT sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = ?1 AND sql IS NOT NULL ORDER BY name",
        )?;
        let rows = stmt.query_map([table], |r| r.get::<_, String>(0))?;
        for sql in rows {
            out.push(sql?);
        }
    }
    Ok(out)
}
