//! The measurements behind `dps-station bench central` (issue 18 point 8), taken the way a site
//! runs: the real service (`central serve`, HTTPS with mutual TLS, on 127.0.0.1) in front of the
//! database, and stations that joined it with a token, each on its own thread and connection,
//! sending rows hashed exactly as a station's ledger hashes them and verifying every signed receipt
//! and lease they get back.
//!
//! Three phases, one after the other:
//! - **ingest**: several stations upload at once, one request at a time each (as a sync worker
//!   does), while one more station asks for one-identity leases back to back: the ingest rate, and
//!   lease latency under that load;
//! - **backlog**: one station drains a long outbox (an hour offline at a busy line), while the
//!   lease station asks for leases beside it;
//! - **leases**: lease latency on an otherwise idle service.
//!
//! Stations and service share this machine's cores, and the service's database too: on a site the
//! stations are other PCs, so these figures are a floor.

mod chain;
mod fleet;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::central::service::db;
use fleet::{BenchStation, Service};

/// What to measure.
#[derive(Debug, Clone)]
pub struct CentralBenchOptions {
    /// Stations uploading at once in the ingest phase.
    pub stations: usize,
    /// Identities each station sends in the ingest phase (two rows each: issued, written).
    pub identities_per_station: u64,
    /// Rows in the backlog one station drains.
    pub backlog_rows: u64,
    /// Rows per ingest request (at most `wire::MAX_INGEST_ROWS`).
    pub batch_rows: usize,
    /// Leases granted one after the other on the idle service (and at most this many during the
    /// ingest phase).
    pub leases: usize,
}

/// Latency of one kind of request.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Latency {
    pub requests: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

impl Latency {
    fn of(mut times: Vec<Duration>) -> Latency {
        times.sort();
        let at = |q: f64| {
            times
                .get(((times.len().saturating_sub(1)) as f64 * q).round() as usize)
                .map(|d| d.as_secs_f64() * 1000.0)
                .unwrap_or_default()
        };
        Latency {
            requests: times.len(),
            p50_ms: at(0.50),
            p99_ms: at(0.99),
        }
    }
}

/// The figures.
#[derive(Debug, Clone, Serialize)]
pub struct CentralBenchReport {
    pub stations: usize,
    pub batch_rows: usize,
    /// Ingest phase: identities and rows stored from all stations together, and the wall time.
    pub identities: u64,
    pub rows: u64,
    pub ingest_seconds: f64,
    pub identities_per_second: f64,
    pub rows_per_second: f64,
    /// One ingest request in the ingest phase (sent, checked, stored, receipt signed, committed,
    /// answered and verified).
    pub ingest_request: Latency,
    /// Lease requests made while the stations upload.
    pub leases_under_ingest: Latency,
    /// Backlog phase: one station drains `backlog_rows` rows, one request at a time.
    pub backlog_rows: u64,
    pub backlog_seconds: f64,
    pub backlog_rows_per_second: f64,
    /// Lease requests made while that station drains its backlog (a station back online after
    /// an hour away, as others go on).
    pub leases_during_backlog: Latency,
    /// Lease requests on the idle service.
    pub leases_idle: Latency,
}

/// Why the benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum CentralBenchError {
    #[error("the database: {0}")]
    Database(String),
    #[error("a request was refused or its answer did not verify: {0}")]
    Refused(String),
    #[error("setting up the benchmark's service and stations failed at {0}")]
    Setup(String),
}

impl From<tokio_postgres::Error> for CentralBenchError {
    fn from(e: tokio_postgres::Error) -> Self {
        CentralBenchError::Database(db::describe(&e))
    }
}

/// Runs the three phases against the database at `owner_url` (migrated as its owner; the service
/// connects as `service_url`). Blocking: it runs its own service runtime and station threads.
pub fn measure(
    owner_url: &str,
    service_url: &str,
    options: &CentralBenchOptions,
    progress: &mut dyn FnMut(&str),
) -> Result<CentralBenchReport, CentralBenchError> {
    let batch_rows = options
        .batch_rows
        .clamp(1, crate::central::wire::MAX_INGEST_ROWS);
    let stations = options.stations.max(1);
    // Unique names, so a real database can be measured more than once.
    let tag = format!("bench-{}-{}", std::process::id(), unix_seconds());
    let lease_batch = format!("{tag}-leases");
    // Up to `leases` in each of the three phases.
    let lease_cap = (options.leases as u64).saturating_mul(3).max(1);
    progress("starting the central service and joining the benchmark's stations…");
    let service = Service::start(
        owner_url,
        service_url,
        stations + 2,
        &lease_batch,
        lease_cap,
    )?;
    let senders = (1..=stations)
        .map(|n| service.join(owner_url, &format!("{tag}-st{n}")))
        .collect::<Result<Vec<_>, _>>()?;
    let backlog_station = service.join(owner_url, &format!("{tag}-backlog"))?;
    let lease_station = service.join(owner_url, &format!("{tag}-lease"))?;

    progress(&format!(
        "ingest: {stations} stations × {} identities, {batch_rows} rows per request, leases asked beside them",
        options.identities_per_station
    ));
    let (ingest_seconds, request_times, lease_times) = uploads_with_leases(
        &senders,
        &lease_station,
        &lease_batch,
        options.identities_per_station * 2,
        batch_rows,
        options.leases,
    )?;
    let identities = options.identities_per_station * stations as u64;

    progress(&format!(
        "backlog: {} rows from one station, leases asked beside it",
        options.backlog_rows
    ));
    let (backlog_seconds, _, backlog_lease_times) = uploads_with_leases(
        std::slice::from_ref(&backlog_station),
        &lease_station,
        &lease_batch,
        options.backlog_rows,
        batch_rows,
        options.leases,
    )?;

    progress(&format!("leases: {} on the idle service", options.leases));
    let idle = (0..options.leases)
        .map(|_| lease_station.lease(&lease_batch))
        .collect::<Result<Vec<_>, _>>()?;
    drop(service);

    Ok(CentralBenchReport {
        stations,
        batch_rows,
        identities,
        rows: identities * 2,
        ingest_seconds,
        identities_per_second: identities as f64 / ingest_seconds.max(1e-9),
        rows_per_second: (identities * 2) as f64 / ingest_seconds.max(1e-9),
        ingest_request: Latency::of(request_times),
        leases_under_ingest: Latency::of(lease_times),
        backlog_rows: options.backlog_rows,
        backlog_seconds,
        backlog_rows_per_second: options.backlog_rows as f64 / backlog_seconds.max(1e-9),
        leases_during_backlog: Latency::of(backlog_lease_times),
        leases_idle: Latency::of(idle),
    })
}

/// The stations upload `rows` each at once (made before the clock starts); beside them one
/// station asks for leases back to back until they are done (at most `max_leases`). Returns the wall time of the uploads, every upload
/// request's time, and every lease request's time.
fn uploads_with_leases(
    senders: &[BenchStation],
    lease_station: &BenchStation,
    lease_batch: &str,
    rows: u64,
    batch_rows: usize,
    max_leases: usize,
) -> Result<(f64, Vec<Duration>, Vec<Duration>), CentralBenchError> {
    let mut batches: Vec<_> = senders
        .iter()
        .map(|station| station.batches(rows, batch_rows))
        .collect();
    let uploading = AtomicBool::new(true);
    let started = Instant::now();
    std::thread::scope(|scope| {
        let leases = scope.spawn(|| {
            let mut times = Vec::new();
            while uploading.load(Ordering::Relaxed) && times.len() < max_leases {
                times.push(lease_station.lease(lease_batch)?);
            }
            Ok::<_, CentralBenchError>(times)
        });
        let uploads: Vec<_> = senders
            .iter()
            .zip(batches.drain(..))
            .map(|(station, batches)| scope.spawn(move || station.send(batches)))
            .collect();
        let mut request_times = Vec::new();
        let mut failure = None;
        for upload in uploads {
            match upload.join() {
                Ok(Ok(times)) => request_times.extend(times),
                Ok(Err(e)) => failure = failure.or(Some(e)),
                Err(_) => {
                    failure = failure.or(Some(CentralBenchError::Refused(
                        "a station's thread stopped unexpectedly".into(),
                    )))
                }
            }
        }
        let seconds = started.elapsed().as_secs_f64();
        uploading.store(false, Ordering::Relaxed);
        let lease_times = leases.join().map_err(|_| {
            CentralBenchError::Refused("the lease station's thread stopped unexpectedly".into())
        })??;
        match failure {
            Some(e) => Err(e),
            None => Ok((seconds, request_times, lease_times)),
        }
    })
}

fn unix_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}
