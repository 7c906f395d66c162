//! Central enrollment (issue 18 point 5): the service holds the DPS connection string and enrolls
//! the identities stations leave to it, so line PCs need no DPS secret.
//!
//! Ingest inserts an `enrollment_jobs` row when a live identity with `central_enrollment` reaches
//! `written`. The worker here drains them: in one transaction it takes up to 10 due jobs
//! `FOR UPDATE SKIP LOCKED`, sends one DPS bulk create for them, records each outcome (and a
//! `central_audit` row per job) and commits. The DPS call happens while the rows are locked, so two
//! replicas never send the same identity; a replica that dies after DPS answered but before its
//! commit leaves the job pending, and the next bulk create finds the enrollment already there with
//! the same attestation (`AlreadyPresent`): enrolled once, confirmed twice. Ingest carries finished
//! outcomes to the station in its next receipt (`receipts`).
//!
//! The worker is a thread of its own with a small tokio runtime for its database connections (the
//! DPS client is blocking): give it a pool of its own, not the HTTP server's.

use std::collections::BTreeMap;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::dps::{
    ConnectionString, DpsClient, DpsClientConfig, EnrollmentSettings, MAX_BULK_ITEMS,
};

use super::audit::{self, AuditEntry};
use super::enroll_jobs::{self, DueJob};
use super::enroll_round::{self, JobOutcome, JobRetry};

/// Everything the worker runs with. The connection string is only ever in memory (never logged,
/// never written to the database).
#[derive(Debug, Clone)]
pub struct EnrollSettings {
    /// The DPS service connection string (a shared access policy with enrollment write rights).
    pub connection: ConnectionString,
    /// Endpoint, trust, pace (`operations_per_minute`) and per-call retries of the DPS client.
    pub dps: DpsClientConfig,
    /// Hubs, allocation, twin: applied to every enrollment the service makes.
    pub enrollment: EnrollmentSettings,
    /// Jobs per bulk call (1 to 10, DPS's limit).
    pub bulk_size: usize,
    /// How long the worker sleeps when no job is due (or the database failed).
    pub poll_interval: Duration,
    /// Retries of a job DPS did not judge.
    pub retry: JobRetry,
    /// Who acts in `central_audit` rows (`service`, or a replica's name).
    pub actor: String,
}

/// Why the worker did not start.
#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    #[error(
        "cannot read the DPS connection string file {path}: {reason}; give an owner-only (chmod 600) file holding the service connection string of a DPS shared access policy"
    )]
    ConnectionStringFile { path: String, reason: String },
    #[error("the DPS connection string in {path} is not usable: {reason}")]
    ConnectionString { path: String, reason: String },
    #[error("cannot read the DPS CA certificate file {path}: {reason}")]
    CaFile { path: String, reason: String },
    #[error("the DPS client could not be set up: {0}")]
    Client(String),
    #[error("the enroll worker could not start: {0}")]
    Start(String),
}

/// The running worker; [`EnrollHandle::stop`] ends it (dropping the handle does too).
pub struct EnrollHandle {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl EnrollHandle {
    /// Asks the worker to stop and waits for it: at most one bulk call (bounded by the DPS
    /// client's timeout and retries) and one commit.
    pub fn stop(mut self) {
        self.shut_down();
    }

    fn shut_down(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the enroll worker panicked");
        }
    }
}

impl Drop for EnrollHandle {
    fn drop(&mut self) {
        self.shut_down();
    }
}

/// Starts the worker on its own thread; `pool` must be the worker's own (its connections are
/// driven by the worker's runtime). Returns once the DPS client is set up.
pub fn spawn(
    pool: deadpool_postgres::Pool,
    settings: EnrollSettings,
) -> Result<EnrollHandle, EnrollError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| EnrollError::Start(e.to_string()))?;
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let (ready_tx, ready_rx) = mpsc::channel::<Result<(), EnrollError>>();
    let thread = std::thread::Builder::new()
        .name("central-enroll".into())
        .spawn(move || {
            // The blocking DPS client is made (and dropped) on this thread, outside any runtime.
            let client = match DpsClient::new(settings.connection.clone(), settings.dps.clone()) {
                Ok(c) => c,
                Err(e) => {
                    let _ = ready_tx.send(Err(EnrollError::Client(e.to_string())));
                    return;
                }
            };
            let _ = ready_tx.send(Ok(()));
            let worker = Worker {
                runtime,
                pool,
                client,
                settings,
            };
            worker.run(&stop_rx);
        })
        .map_err(|e| EnrollError::Start(e.to_string()))?;
    let handle = EnrollHandle {
        stop: Some(stop_tx),
        thread: Some(thread),
    };
    match ready_rx.recv() {
        Ok(Ok(())) => Ok(handle),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(EnrollError::Start("the worker thread ended at once".into())),
    }
}

/// Why a round did not complete; the jobs stay as they were (the transaction rolls back).
#[derive(Debug, thiserror::Error)]
enum RoundError {
    #[error("no database connection: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("{}", super::db::describe(.0))]
    Db(#[from] tokio_postgres::Error),
}

struct Worker {
    runtime: tokio::runtime::Runtime,
    pool: deadpool_postgres::Pool,
    client: DpsClient,
    settings: EnrollSettings,
}

impl Worker {
    fn run(&self, stop: &Receiver<()>) {
        tracing::info!(
            endpoint = self.client.endpoint(),
            bulk = self.bulk_size(),
            "central enrollment worker started"
        );
        let mut failing = false;
        loop {
            let round = self.round();
            if failing && round.is_ok() {
                tracing::info!("central enrollment resumed: the database answers again");
                failing = false;
            }
            let wait = match round {
                // Nothing due, or DPS judged nothing (unreachable, throttling): rest before the
                // next jobs rather than run through the whole queue against a DPS that is away.
                Ok(Progress::Idle | Progress::Deferred) => Some(self.settings.poll_interval),
                Ok(Progress::Moved) => None,
                Err(e) => {
                    // Log a database outage once, not every poll.
                    if !failing {
                        tracing::warn!("central enrollment paused: {e}; retrying");
                    }
                    failing = true;
                    Some(self.settings.poll_interval)
                }
            };
            let stopped = match wait {
                Some(d) => !matches!(stop.recv_timeout(d), Err(RecvTimeoutError::Timeout)),
                None => !matches!(stop.try_recv(), Err(mpsc::TryRecvError::Empty)),
            };
            if stopped {
                break;
            }
        }
        tracing::info!("central enrollment worker stopped");
    }

    fn bulk_size(&self) -> i64 {
        self.settings.bulk_size.clamp(1, MAX_BULK_ITEMS) as i64
    }

    /// One transaction: take, send, record, commit.
    fn round(&self) -> Result<Progress, RoundError> {
        let rt = &self.runtime;
        let mut conn = rt.block_on(self.pool.get())?;
        let tx = rt.block_on(conn.transaction())?;
        let jobs = rt.block_on(enroll_jobs::take_due(&tx, self.bulk_size()))?;
        if jobs.is_empty() {
            rt.block_on(tx.commit())?;
            return Ok(Progress::Idle);
        }
        // Outside the runtime: the DPS client blocks. The rows stay locked meanwhile.
        let outcomes = enroll_round::enroll(
            &self.client,
            &jobs,
            &self.settings.enrollment,
            &self.settings.retry,
        );
        rt.block_on(record(&tx, &self.settings.actor, &jobs, &outcomes))?;
        rt.block_on(tx.commit())?;
        let enrolled = outcomes
            .iter()
            .filter(|o| matches!(o, JobOutcome::Enrolled { .. }))
            .count();
        let deferred = outcomes
            .iter()
            .filter(|o| matches!(o, JobOutcome::Retry { .. }))
            .count();
        tracing::info!(
            jobs = jobs.len(),
            enrolled,
            deferred,
            "central enrollment round committed"
        );
        Ok(if deferred == jobs.len() {
            Progress::Deferred
        } else {
            Progress::Moved
        })
    }
}

/// What a round did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Progress {
    /// No job was due.
    Idle,
    /// Every job it took stays pending (DPS judged none).
    Deferred,
    /// Some job was enrolled or failed.
    Moved,
}

/// Writes each job's outcome with a `central_audit` row per enrolled or failed job, and one row per
/// station for the jobs deferred this round (so a long DPS outage does not flood the chain).
async fn record(
    tx: &tokio_postgres::Transaction<'_>,
    actor: &str,
    jobs: &[DueJob],
    outcomes: &[JobOutcome],
) -> Result<(), tokio_postgres::Error> {
    let mut deferred: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    let mut last_error = "";
    for (job, outcome) in jobs.iter().zip(outcomes) {
        let rid = job.registration_id.as_str();
        let attempts = job.attempts.saturating_add(1);
        let (action, details) = match outcome {
            JobOutcome::Enrolled { etag } => {
                enroll_jobs::mark_enrolled(tx, rid, etag.as_deref()).await?;
                (
                    "enrollment.enrolled",
                    serde_json::json!({ "etag": etag, "attempts": attempts }),
                )
            }
            JobOutcome::Failed { error } => {
                enroll_jobs::mark_failed(tx, rid, error).await?;
                tracing::warn!(registration_id = rid, station = %job.station_id, "central enrollment failed: {error}");
                (
                    "enrollment.failed",
                    serde_json::json!({ "error": error, "attempts": attempts }),
                )
            }
            JobOutcome::Retry { error, wait } => {
                enroll_jobs::mark_retry(tx, rid, error, *wait).await?;
                deferred.entry(&job.station_id).or_default().push(rid);
                last_error = error;
                continue;
            }
        };
        append(tx, &job.station_id, actor, action, rid, &details).await?;
    }
    for (station, ids) in deferred {
        let details = serde_json::json!({ "registration_ids": ids, "error": last_error });
        let subject = format!("{} enrollment(s)", ids.len());
        append(
            tx,
            station,
            actor,
            "enrollment.deferred",
            &subject,
            &details,
        )
        .await?;
    }
    Ok(())
}

async fn append(
    tx: &tokio_postgres::Transaction<'_>,
    station_id: &str,
    actor: &str,
    action: &str,
    subject: &str,
    details: &serde_json::Value,
) -> Result<i64, tokio_postgres::Error> {
    let details = details.to_string();
    audit::append(
        tx,
        &AuditEntry {
            station_id,
            actor,
            action,
            subject,
            details: &details,
        },
    )
    .await
}
