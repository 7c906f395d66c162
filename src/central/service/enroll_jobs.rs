//! The `enrollment_jobs` table as the enroll worker sees it: take the due jobs under a row lock
//! (`FOR UPDATE SKIP LOCKED`, so replicas never take the same job) and record what DPS said.
//! Ingest inserts the jobs and carries finished outcomes to the station (`receipts`).
//!
//! All functions run inside the caller's transaction; the worker holds the lock from [`take_due`]
//! to its commit, around exactly one bulk call.

use std::time::Duration;

/// One due job with what DPS needs of its identity.
#[derive(Debug, Clone, PartialEq)]
pub struct DueJob {
    pub registration_id: String,
    pub station_id: String,
    /// Sends already tried (0 for a new job).
    pub attempts: i32,
    /// What the service holds of the identity; `None` when it holds no such identity.
    pub identity: Option<JobIdentity>,
}

/// The identity a job enrolls, as ingest stored it.
#[derive(Debug, Clone, PartialEq)]
pub struct JobIdentity {
    /// `x509`, `symmetric` or `tpm`.
    pub attestation: String,
    pub certificate_pem: Option<String>,
    /// Base64 EKpub.
    pub endorsement_key: Option<String>,
    /// False once quarantined or revoked: such an identity is not enrolled.
    pub live: bool,
}

/// Takes up to `limit` pending jobs whose time has come, locked until the transaction ends;
/// jobs another replica holds are skipped, not waited for.
pub async fn take_due(
    tx: &tokio_postgres::Transaction<'_>,
    limit: i64,
) -> Result<Vec<DueJob>, tokio_postgres::Error> {
    // LEFT JOIN: a job whose identity the service does not hold must still come out (and fail
    // with a message) rather than sit pending forever. `FOR UPDATE OF j` locks only the job.
    let rows = tx
        .query(
            "SELECT j.registration_id, j.station_id, j.attempts,
                    i.attestation, i.certificate_pem, i.endorsement_key, i.live
             FROM enrollment_jobs j
             LEFT JOIN identities i
               ON i.station_id = j.station_id AND i.registration_id = j.registration_id
             WHERE j.state = 'pending' AND j.next_attempt_at <= now()
             ORDER BY j.next_attempt_at, j.registration_id
             LIMIT $1
             FOR UPDATE OF j SKIP LOCKED",
            &[&limit],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| DueJob {
            registration_id: r.get(0),
            station_id: r.get(1),
            attempts: r.get(2),
            identity: r
                .get::<_, Option<String>>(3)
                .map(|attestation| JobIdentity {
                    attestation,
                    certificate_pem: r.get(4),
                    endorsement_key: r.get(5),
                    live: r.get::<_, Option<bool>>(6).unwrap_or(false),
                }),
        })
        .collect())
}

/// DPS holds the enrollment: the job is done.
pub async fn mark_enrolled(
    tx: &tokio_postgres::Transaction<'_>,
    registration_id: &str,
    etag: Option<&str>,
) -> Result<(), tokio_postgres::Error> {
    tx.execute(
        "UPDATE enrollment_jobs
         SET state = 'enrolled', attempts = attempts + 1, etag = $2, error = NULL, done_at = now()
         WHERE registration_id = $1",
        &[&registration_id, &etag],
    )
    .await?;
    Ok(())
}

/// The job will never succeed as it stands (DPS refused it, or the service cannot enroll it).
pub async fn mark_failed(
    tx: &tokio_postgres::Transaction<'_>,
    registration_id: &str,
    error: &str,
) -> Result<(), tokio_postgres::Error> {
    tx.execute(
        "UPDATE enrollment_jobs
         SET state = 'failed', attempts = attempts + 1, error = $2, done_at = now()
         WHERE registration_id = $1",
        &[&registration_id, &error],
    )
    .await?;
    Ok(())
}

/// DPS did not judge the job (unreachable, throttling, 5xx): it stays pending and is tried again
/// after `wait`.
pub async fn mark_retry(
    tx: &tokio_postgres::Transaction<'_>,
    registration_id: &str,
    error: &str,
    wait: Duration,
) -> Result<(), tokio_postgres::Error> {
    let wait_ms = i64::try_from(wait.as_millis()).unwrap_or(i64::MAX);
    tx.execute(
        "UPDATE enrollment_jobs
         SET attempts = attempts + 1, error = $2,
             next_attempt_at = now() + make_interval(secs => $3::bigint / 1000.0)
         WHERE registration_id = $1",
        &[&registration_id, &error, &wait_ms],
    )
    .await?;
    Ok(())
}
