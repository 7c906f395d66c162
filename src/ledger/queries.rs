//! Read queries, shared by readers and by the writer inside its transactions.

use std::str::FromStr;

use rusqlite::types::Type;
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::types::*;

/// Parses an enum stored as text; a value no build of ours writes becomes a conversion error.
pub(crate) fn parse_col<T>(r: &Row<'_>, i: usize) -> rusqlite::Result<T>
where
    T: FromStr<Err = ParseNameError>,
{
    let text: String = r.get(i)?;
    text.parse()
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(i, Type::Text, Box::new(e)))
}

fn parse_opt_col<T>(r: &Row<'_>, i: usize) -> rusqlite::Result<Option<T>>
where
    T: FromStr<Err = ParseNameError>,
{
    let text: Option<String> = r.get(i)?;
    text.map(|t| {
        t.parse()
            .map_err(|e| rusqlite::Error::FromSqlConversionFailure(i, Type::Text, Box::new(e)))
    })
    .transpose()
}

/// Every identity of registration ID `?1`, live and revoked, found through the two partial
/// indexes (live ones unique, revoked ones for history): a plain `registration_id = ?1` can use
/// neither and would scan the table.
const EVERY_IDENTITY_OF: &str = "i.id IN (SELECT id FROM identities WHERE registration_id = ?1 AND state <> 'revoked' UNION ALL SELECT id FROM identities WHERE registration_id = ?1 AND state = 'revoked')";

const IDENTITY_SELECT: &str = "
SELECT i.id, i.registration_id, i.state, i.failed_stage, i.failed_reason, i.revoked_reason,
       i.attestation, b.name,
       d.id, d.model, d.serial_number, d.hardware_id, d.firmware, d.batch_id, d.first_seen,
       i.certificate_der, i.sha1_thumbprint, i.sha256_thumbprint, i.subject, i.issuer,
       i.cert_serial, i.not_before, i.not_after,
       i.key_fingerprint, i.endorsement_key, s.name, o.name, i.created_at, i.updated_at, i.key_nonce
FROM identities i
LEFT JOIN batches b ON b.id = i.batch_id
LEFT JOIN devices d ON d.id = i.device_id
LEFT JOIN stations s ON s.id = i.station_id
LEFT JOIN operators o ON o.id = i.operator_id";

fn identity_from_row(r: &Row<'_>) -> rusqlite::Result<IdentityRecord> {
    let device = match r.get::<_, Option<i64>>(8)? {
        Some(id) => Some(DeviceRecord {
            id: DeviceId(id),
            model: r.get(9)?,
            serial_number: r.get(10)?,
            hardware_id: r.get(11)?,
            firmware: r.get(12)?,
            batch_id: r.get::<_, Option<i64>>(13)?.map(BatchId),
            first_seen: r.get(14)?,
        }),
        None => None,
    };
    let certificate = match r.get::<_, Option<String>>(17)? {
        Some(sha256) => Some(CertificateFacts {
            sha1_thumbprint: r.get::<_, Option<String>>(16)?.unwrap_or_default(),
            sha256_thumbprint: sha256,
            subject: r.get::<_, Option<String>>(18)?.unwrap_or_default(),
            issuer: r.get::<_, Option<String>>(19)?.unwrap_or_default(),
            serial: r.get::<_, Option<String>>(20)?.unwrap_or_default(),
            not_before: r.get::<_, Option<String>>(21)?.unwrap_or_default(),
            not_after: r.get::<_, Option<String>>(22)?.unwrap_or_default(),
        }),
        None => None,
    };
    let key_fingerprint = fingerprint_col(r, 23)?;
    Ok(IdentityRecord {
        id: IdentityId(r.get(0)?),
        registration_id: r.get(1)?,
        state: parse_col(r, 2)?,
        failed_stage: parse_opt_col(r, 3)?,
        failed_reason: r.get(4)?,
        revoked_reason: r.get(5)?,
        attestation: parse_col(r, 6)?,
        batch: r.get(7)?,
        device,
        certificate_der: r.get(15)?,
        certificate,
        key_fingerprint,
        endorsement_key: r.get(24)?,
        key_nonce: nonce_col(r, 29)?,
        station: r.get(25)?,
        operator: r.get(26)?,
        created_at: r.get(27)?,
        updated_at: r.get(28)?,
    })
}

/// A stored key nonce; a value of another length is a conversion error, never a guess.
fn fingerprint_col(r: &Row<'_>, i: usize) -> rusqlite::Result<Option<KeyFingerprint>> {
    match r.get::<_, Option<String>>(i)? {
        Some(text) => Ok(Some(KeyFingerprint::parse(&text).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(i, Type::Text, Box::new(e))
        })?)),
        None => Ok(None),
    }
}

fn nonce_col(r: &Row<'_>, i: usize) -> rusqlite::Result<Option<KeyNonce>> {
    let bytes: Option<Vec<u8>> = r.get(i)?;
    bytes
        .map(|b| {
            KeyNonce::from_slice(&b).ok_or_else(|| {
                rusqlite::Error::FromSqlConversionFailure(
                    i,
                    Type::Blob,
                    format!(
                        "a key nonce of {} bytes; expected {}",
                        b.len(),
                        KeyNonce::LEN
                    )
                    .into(),
                )
            })
        })
        .transpose()
}

/// The live (not revoked) identity with this registration ID (compared case-insensitively):
/// there is at most one. Revoked ones are history ([`identity_history`]).
pub(crate) fn find_identity(
    conn: &Connection,
    registration_id: &str,
) -> rusqlite::Result<Option<IdentityRecord>> {
    conn.prepare_cached(&format!(
        "{IDENTITY_SELECT} WHERE i.registration_id = ?1 AND i.state <> 'revoked'"
    ))?
    .query_row([registration_id], identity_from_row)
    .optional()
}

/// Every identity a registration ID ever had, revoked ones included, oldest first.
pub(crate) fn identity_history(
    conn: &Connection,
    registration_id: &str,
) -> rusqlite::Result<Vec<IdentityRecord>> {
    let mut stmt = conn.prepare_cached(&format!(
        "{IDENTITY_SELECT} WHERE {EVERY_IDENTITY_OF} ORDER BY i.id"
    ))?;
    let rows = stmt.query_map([registration_id], identity_from_row)?;
    rows.collect()
}

/// The newest revoked identity of a registration ID, if any (cheap: no certificate).
pub(crate) fn last_revoked(
    conn: &Connection,
    registration_id: &str,
) -> rusqlite::Result<Option<CurrentState>> {
    conn.prepare_cached(
        "SELECT id, registration_id, state, failed_stage, device_id
         FROM identities WHERE registration_id = ?1 AND state = 'revoked' ORDER BY id DESC LIMIT 1",
    )?
    .query_row([registration_id], current_state_from_row)
    .optional()
}

/// The few columns the state machine needs, without the certificate: cheap on the write path.
#[derive(Debug, Clone)]
pub(crate) struct CurrentState {
    pub id: IdentityId,
    pub registration_id: String,
    pub state: IdentityState,
    pub failed_stage: Option<FailureStage>,
    /// The device that holds (or held) the identity: re-provisioning refuses another device's.
    pub device: Option<DeviceId>,
}

fn current_state_from_row(r: &Row<'_>) -> rusqlite::Result<CurrentState> {
    Ok(CurrentState {
        id: IdentityId(r.get(0)?),
        registration_id: r.get(1)?,
        state: parse_col(r, 2)?,
        failed_stage: parse_opt_col(r, 3)?,
        device: r.get::<_, Option<i64>>(4)?.map(DeviceId),
    })
}

/// The live identity of a registration ID, or else its newest revoked one: one lookup for the
/// write path, which refuses or changes either.
pub(crate) fn live_or_last_revoked(
    conn: &Connection,
    registration_id: &str,
) -> rusqlite::Result<Option<CurrentState>> {
    match identity_state(conn, registration_id)? {
        Some(live) => Ok(Some(live)),
        None => last_revoked(conn, registration_id),
    }
}

/// The full record of the live identity of a registration ID, or else of its newest revoked one:
/// what the station's check needs (state, batch, device, material) in at most two indexed
/// lookups, without reading the whole history.
pub(crate) fn live_or_last_revoked_record(
    conn: &Connection,
    registration_id: &str,
) -> rusqlite::Result<Option<IdentityRecord>> {
    if let Some(live) = find_identity(conn, registration_id)? {
        return Ok(Some(live));
    }
    conn.prepare_cached(&format!(
        "{IDENTITY_SELECT} WHERE i.registration_id = ?1 AND i.state = 'revoked' ORDER BY i.id DESC LIMIT 1"
    ))?
    .query_row([registration_id], identity_from_row)
    .optional()
}

/// The state of the live (not revoked) identity with this registration ID (case-insensitive).
pub(crate) fn identity_state(
    conn: &Connection,
    registration_id: &str,
) -> rusqlite::Result<Option<CurrentState>> {
    conn.prepare_cached(
        "SELECT id, registration_id, state, failed_stage, device_id FROM identities
         WHERE registration_id = ?1 AND state <> 'revoked'",
    )?
    .query_row([registration_id], current_state_from_row)
    .optional()
}

/// Identities matching the filter, oldest first (with a limit: the newest `limit`, oldest first).
pub(crate) fn list_identities(
    conn: &Connection,
    filter: &IdentityFilter,
) -> rusqlite::Result<Vec<IdentityRecord>> {
    let limit = filter.limit.map(i64::from).unwrap_or(-1);
    let sql = format!(
        "{IDENTITY_SELECT}
         WHERE (?1 IS NULL OR b.name = ?1) AND (?2 IS NULL OR i.state = ?2)
           AND (?3 IS NULL OR i.attestation = ?3)
         ORDER BY i.id DESC LIMIT ?4"
    );
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(
        params![
            filter.batch,
            filter.state.map(IdentityState::as_str),
            filter.attestation.map(AttestationKind::as_str),
            limit
        ],
        identity_from_row,
    )?;
    let mut out = rows.collect::<rusqlite::Result<Vec<_>>>()?;
    out.reverse();
    Ok(out)
}

const ENROLLMENT_SELECT: &str = "
SELECT e.id, i.registration_id, e.dps_target, e.kind, e.group_name, e.state, e.attempts,
       e.last_error, e.etag, e.queued_at, e.updated_at, e.enrolled_at,
       i.attestation, i.certificate_der, i.endorsement_key, i.key_nonce,
       (SELECT max(r.id) FROM identities r
         WHERE r.registration_id = i.registration_id AND r.state = 'revoked' AND r.id < i.id),
       i.key_fingerprint
FROM enrollments e JOIN identities i ON i.id = e.identity_id";

fn enrollment_from_row(r: &Row<'_>) -> rusqlite::Result<EnrollmentRecord> {
    Ok(EnrollmentRecord {
        id: EnrollmentId(r.get(0)?),
        registration_id: r.get(1)?,
        dps_target: r.get(2)?,
        kind: parse_col(r, 3)?,
        group_name: r.get(4)?,
        state: parse_col(r, 5)?,
        attempts: r.get(6)?,
        last_error: r.get(7)?,
        etag: r.get(8)?,
        queued_at: r.get(9)?,
        updated_at: r.get(10)?,
        enrolled_at: r.get(11)?,
    })
}

/// One enrollment by id.
pub(crate) fn find_enrollment(
    conn: &Connection,
    id: EnrollmentId,
) -> rusqlite::Result<Option<EnrollmentRecord>> {
    conn.prepare_cached(&format!("{ENROLLMENT_SELECT} WHERE e.id = ?1"))?
        .query_row([id.0], enrollment_from_row)
        .optional()
}

/// The enrollments of one identity.
pub(crate) fn enrollments_for(
    conn: &Connection,
    registration_id: &str,
) -> rusqlite::Result<Vec<EnrollmentRecord>> {
    let mut stmt = conn.prepare_cached(&format!(
        "{ENROLLMENT_SELECT} WHERE {EVERY_IDENTITY_OF} ORDER BY e.id"
    ))?;
    let rows = stmt.query_map([registration_id], enrollment_from_row)?;
    rows.collect()
}

/// A [`PendingEnrollment`] from a row of `ENROLLMENT_SELECT`.
fn pending_from_row(r: &Row<'_>) -> rusqlite::Result<PendingEnrollment> {
    Ok(PendingEnrollment {
        enrollment: enrollment_from_row(r)?,
        attestation: parse_col(r, 12)?,
        certificate_der: r.get(13)?,
        endorsement_key: r.get(14)?,
        key_nonce: nonce_col(r, 15)?,
        replaces: r.get::<_, Option<i64>>(16)?.map(IdentityId),
        key_fingerprint: fingerprint_col(r, 17)?,
    })
}

/// Pending enrollments of one DPS target, oldest first.
pub(crate) fn pending_enrollments(
    conn: &Connection,
    dps_target: &str,
    limit: u32,
) -> rusqlite::Result<Vec<PendingEnrollment>> {
    let mut stmt = conn.prepare_cached(&format!(
        "{ENROLLMENT_SELECT} WHERE e.dps_target = ?1 AND e.state = 'pending' ORDER BY e.id LIMIT ?2"
    ))?;
    let rows = stmt.query_map(params![dps_target, i64::from(limit)], pending_from_row)?;
    rows.collect()
}

/// [`pending_enrollments`] of the identities of one batch (by name): an export for one batch
/// carries that batch's settings, so it must hold that batch's identities only.
pub(crate) fn pending_enrollments_of_batch(
    conn: &Connection,
    dps_target: &str,
    batch: &str,
    limit: u32,
) -> rusqlite::Result<Vec<PendingEnrollment>> {
    let mut stmt = conn.prepare_cached(&format!(
        "{ENROLLMENT_SELECT} WHERE e.dps_target = ?1 AND e.state = 'pending' \
         AND i.batch_id = (SELECT b.id FROM batches b WHERE b.name = ?2) ORDER BY e.id LIMIT ?3"
    ))?;
    let rows = stmt.query_map(
        params![dps_target, batch, i64::from(limit)],
        pending_from_row,
    )?;
    rows.collect()
}

fn batch_from_row(r: &Row<'_>) -> rusqlite::Result<BatchRecord> {
    Ok(BatchRecord {
        id: BatchId(r.get(0)?),
        name: r.get(1)?,
        product: r.get(2)?,
        attestation: parse_col(r, 3)?,
        enrollment_kind: parse_col(r, 4)?,
        dps_target: r.get(5)?,
        registration_id_template: r.get(6)?,
        created_at: r.get(7)?,
    })
}

const BATCH_SELECT: &str = "SELECT id, name, product, attestation, enrollment_kind, dps_target,
       registration_id_template, created_at FROM batches";

/// A batch by name.
pub(crate) fn find_batch(conn: &Connection, name: &str) -> rusqlite::Result<Option<BatchRecord>> {
    conn.prepare_cached(&format!("{BATCH_SELECT} WHERE name = ?1"))?
        .query_row([name], batch_from_row)
        .optional()
}

/// All batches, oldest first.
pub(crate) fn list_batches(conn: &Connection) -> rusqlite::Result<Vec<BatchRecord>> {
    let mut stmt = conn.prepare(&format!("{BATCH_SELECT} ORDER BY id"))?;
    let rows = stmt.query_map([], batch_from_row)?;
    rows.collect()
}

/// Key-injection sessions, oldest first.
pub(crate) fn key_sessions(conn: &Connection) -> rusqlite::Result<Vec<KeySessionRecord>> {
    let mut stmt = conn.prepare(
        "SELECT id, operator, token_label, token_serial, token_model, opened_at, closed_at
         FROM key_sessions ORDER BY id",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(KeySessionRecord {
            id: KeySessionId(r.get(0)?),
            operator: r.get(1)?,
            token_label: r.get(2)?,
            token_serial: r.get(3)?,
            token_model: r.get(4)?,
            opened_at: r.get(5)?,
            closed_at: r.get(6)?,
        })
    })?;
    rows.collect()
}

const CA_SELECT: &str = "SELECT id, name, role, key_uri, certificate_der, sha1_thumbprint,
       sha256_thumbprint, subject, issuer, cert_serial, not_before, not_after, created_at
       FROM ca_certificates";

fn ca_from_row(r: &Row<'_>) -> rusqlite::Result<CaCertificateRecord> {
    Ok(CaCertificateRecord {
        id: CaCertificateId(r.get(0)?),
        name: r.get(1)?,
        role: parse_col(r, 2)?,
        key_uri: r.get(3)?,
        certificate_der: r.get(4)?,
        certificate: CertificateFacts {
            sha1_thumbprint: r.get(5)?,
            sha256_thumbprint: r.get(6)?,
            subject: r.get(7)?,
            issuer: r.get(8)?,
            serial: r.get(9)?,
            not_before: r.get(10)?,
            not_after: r.get(11)?,
        },
        created_at: r.get(12)?,
    })
}

/// All CA certificates, oldest first.
pub(crate) fn ca_certificates(conn: &Connection) -> rusqlite::Result<Vec<CaCertificateRecord>> {
    let mut stmt = conn.prepare(&format!("{CA_SELECT} ORDER BY id"))?;
    let rows = stmt.query_map([], ca_from_row)?;
    rows.collect()
}

/// A CA certificate by name.
pub(crate) fn find_ca_certificate(
    conn: &Connection,
    name: &str,
) -> rusqlite::Result<Option<CaCertificateRecord>> {
    conn.prepare_cached(&format!("{CA_SELECT} WHERE name = ?1"))?
        .query_row([name], ca_from_row)
        .optional()
}

fn count(conn: &Connection, sql: &str) -> rusqlite::Result<i64> {
    conn.query_row(sql, [], |r| r.get(0))
}

fn grouped(
    conn: &Connection,
    sql: &str,
) -> rusqlite::Result<std::collections::BTreeMap<String, i64>> {
    let mut stmt = conn.prepare(sql)?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    rows.collect()
}

/// Counts for `ledger stats`; `path`, `file_bytes` and `schema_version` are filled by the caller.
pub(crate) fn stats(conn: &Connection, schema_version: i64) -> rusqlite::Result<LedgerStats> {
    let has_v2 = schema_version >= 2;
    Ok(LedgerStats {
        path: String::new(),
        schema_version,
        file_bytes: 0,
        stations: count(conn, "SELECT count(*) FROM stations")?,
        operators: count(conn, "SELECT count(*) FROM operators")?,
        batches: count(conn, "SELECT count(*) FROM batches")?,
        devices: count(conn, "SELECT count(*) FROM devices")?,
        identities: count(conn, "SELECT count(*) FROM identities")?,
        identities_by_state: grouped(
            conn,
            "SELECT state, count(*) FROM identities GROUP BY state ORDER BY state",
        )?,
        identities_by_attestation: grouped(
            conn,
            "SELECT attestation, count(*) FROM identities GROUP BY attestation ORDER BY attestation",
        )?,
        enrollments_by_state: grouped(
            conn,
            "SELECT state, count(*) FROM enrollments GROUP BY state ORDER BY state",
        )?,
        key_sessions: if has_v2 {
            count(conn, "SELECT count(*) FROM key_sessions")?
        } else {
            0
        },
        ca_certificates: if has_v2 {
            count(conn, "SELECT count(*) FROM ca_certificates")?
        } else {
            0
        },
        audit_rows: count(conn, "SELECT count(*) FROM audit_log")?,
    })
}
