//! The measurements behind `dps-station bench central`: how fast the central service takes
//! identities from several stations at once, and how long a station's backlog (an hour offline at
//! a busy line) takes to drain. Both go through [`super::ingest::ingest_and_commit`] over the
//! service's connection pool, with rows hashed exactly as a station's ledger hashes them, so the
//! figures are the service's real work (minus TLS and HTTP, which the lead may add after the merge).

use std::time::{Duration, Instant};

use serde::Serialize;

use super::db;
use super::ingest;
use super::migrations;
use super::state::AuthedStation;
use crate::central::signing::ServiceSigner;
use crate::central::wire::{IdentitySnapshot, IngestBatch, OutboxRow};
use crate::ledger::audit::{AuditContent, GENESIS, row_hash};

/// What to measure.
#[derive(Debug, Clone)]
pub struct CentralBenchOptions {
    /// Stations sending at once.
    pub stations: usize,
    /// Identities each station sends in the rate phase (two rows each: issued, written).
    pub identities_per_station: u64,
    /// Rows in the backlog one station drains.
    pub backlog_rows: u64,
    /// Rows per ingest request (at most `wire::MAX_INGEST_ROWS`).
    pub batch_rows: usize,
}

/// The figures.
#[derive(Debug, Clone, Serialize)]
pub struct CentralBenchReport {
    pub stations: usize,
    pub batch_rows: usize,
    /// Rate phase: identities and rows stored from all stations together, and the wall time.
    pub identities: u64,
    pub rows: u64,
    pub ingest_seconds: f64,
    pub identities_per_second: f64,
    pub rows_per_second: f64,
    /// Time per ingest request in the rate phase (receipt signed and committed), in ms.
    pub request_ms_p50: f64,
    pub request_ms_p99: f64,
    /// Backlog phase: one station drains `backlog_rows` rows in batches, one request at a time.
    pub backlog_rows: u64,
    pub backlog_seconds: f64,
    pub backlog_rows_per_second: f64,
    // LEASES: the lease engineer adds `pub leases: LeaseFigures` here (p50/p99 allocation
    // latency from `service::leases::measure_leases(pool)`), filled in `measure` below.
}

/// Why the benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum CentralBenchError {
    #[error("the database: {0}")]
    Database(String),
    #[error("an ingest was refused: {0}")]
    Refused(String),
    #[error("the benchmark's signing key: {0}")]
    Key(String),
}

impl From<tokio_postgres::Error> for CentralBenchError {
    fn from(e: tokio_postgres::Error) -> Self {
        CentralBenchError::Database(db::describe(&e))
    }
}

/// Migrates the database as its owner (`owner_url`), registers the benchmark's stations, then
/// measures through a pool on `service_url` (the service's role, or the owner again).
pub async fn measure(
    owner_url: &str,
    service_url: &str,
    options: &CentralBenchOptions,
    progress: &mut dyn FnMut(&str),
) -> Result<CentralBenchReport, CentralBenchError> {
    let batch_rows = options
        .batch_rows
        .clamp(1, crate::central::wire::MAX_INGEST_ROWS);
    let (mut owner, connection) = tokio_postgres::connect(owner_url, tokio_postgres::NoTls).await?;
    let connection = tokio::spawn(connection);
    migrations::run(&mut owner)
        .await
        .map_err(|e| CentralBenchError::Database(e.to_string()))?;
    // Unique names, so a real database can be measured more than once.
    let tag = format!("bench-{}-{}", std::process::id(), crate::ledger::now());
    let names: Vec<String> = (1..=options.stations + 1)
        .map(|n| format!("{tag}-st{n}"))
        .collect();
    for name in &names {
        owner
            .execute(
                "INSERT INTO stations (station_id, certificate_sha256, certificate_pem)
                 VALUES ($1, $2, 'benchmark station')",
                &[name, &format!("sha-{name}")],
            )
            .await?;
    }
    drop(owner);
    let _ = connection.await;

    let pool = db::pool(service_url, options.stations + 1)
        .map_err(|e| CentralBenchError::Database(e.to_string()))?;
    let signer = std::sync::Arc::new(bench_signer()?);

    progress(&format!(
        "ingest: {} stations × {} identities, {} rows per request",
        options.stations, options.identities_per_station, batch_rows
    ));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for name in names.iter().take(options.stations) {
        let (pool, signer, name) = (pool.clone(), signer.clone(), name.clone());
        let rows = options.identities_per_station * 2;
        tasks.push(tokio::spawn(async move {
            send(&pool, &signer, &name, rows, batch_rows).await
        }));
    }
    let mut request_ms = Vec::new();
    for task in tasks {
        let times = task
            .await
            .map_err(|e| CentralBenchError::Refused(e.to_string()))??;
        request_ms.extend(times.iter().map(|d| d.as_secs_f64() * 1000.0));
    }
    let ingest_seconds = started.elapsed().as_secs_f64();
    let identities = options.identities_per_station * options.stations as u64;
    request_ms.sort_by(f64::total_cmp);

    let backlog_station = names.last().cloned().unwrap_or_default();
    progress(&format!(
        "backlog: {} rows from one station",
        options.backlog_rows
    ));
    let started = Instant::now();
    send(
        &pool,
        &signer,
        &backlog_station,
        options.backlog_rows,
        batch_rows,
    )
    .await?;
    let backlog_seconds = started.elapsed().as_secs_f64();

    Ok(CentralBenchReport {
        stations: options.stations,
        batch_rows,
        identities,
        rows: identities * 2,
        ingest_seconds,
        identities_per_second: identities as f64 / ingest_seconds.max(1e-9),
        rows_per_second: (identities * 2) as f64 / ingest_seconds.max(1e-9),
        request_ms_p50: percentile(&request_ms, 0.50),
        request_ms_p99: percentile(&request_ms, 0.99),
        backlog_rows: options.backlog_rows,
        backlog_seconds,
        backlog_rows_per_second: options.backlog_rows as f64 / backlog_seconds.max(1e-9),
    })
}

/// One station sending `rows` rows of its chain in requests of `batch_rows`, one at a time, as
/// its sync worker does; returns the time of each request.
async fn send(
    pool: &deadpool_postgres::Pool,
    signer: &ServiceSigner,
    station: &str,
    rows: u64,
    batch_rows: usize,
) -> Result<Vec<Duration>, CentralBenchError> {
    let authed = AuthedStation {
        station_id: station.to_string(),
        certificate_sha256: format!("sha-{station}"),
    };
    let mut chain = BenchChain::new(station);
    let mut times = Vec::new();
    let mut sent = 0u64;
    while sent < rows {
        let n = usize::try_from((rows - sent).min(batch_rows as u64)).unwrap_or(batch_rows);
        let batch = IngestBatch {
            station_id: station.to_string(),
            station_time: crate::ledger::now(),
            rows: (0..n).map(|_| chain.next_row()).collect(),
        };
        let started = Instant::now();
        let mut client = pool
            .get()
            .await
            .map_err(|e| CentralBenchError::Database(e.to_string()))?;
        let client: &mut tokio_postgres::Client = &mut client;
        ingest::ingest_and_commit(client, &authed, &batch, signer)
            .await
            .map_err(|r| CentralBenchError::Refused(r.body.message))?;
        times.push(started.elapsed());
        sent += n as u64;
    }
    Ok(times)
}

/// A station's chain as its ledger would write it: for each identity an `identity.issued` row and
/// an `identity.written` row, each with its snapshot (an X.509 certificate of typical size).
struct BenchChain {
    station: String,
    seq: i64,
    prev: [u8; 32],
}

/// About the size of a real device certificate in PEM.
const CERTIFICATE_BODY_BYTES: usize = 560;

impl BenchChain {
    fn new(station: &str) -> BenchChain {
        BenchChain {
            station: station.to_string(),
            seq: 0,
            prev: GENESIS,
        }
    }

    fn next_row(&mut self) -> OutboxRow {
        self.seq += 1;
        let device = (self.seq + 1) / 2;
        let written = self.seq % 2 == 0;
        let registration_id = format!("{}-dev-{device}", self.station);
        let (action, state) = if written {
            ("identity.written", "written")
        } else {
            ("identity.issued", "issued")
        };
        let at = crate::ledger::now();
        let details =
            format!("{{\"registration_id\":\"{registration_id}\",\"state\":\"{state}\"}}");
        let content = AuditContent {
            at: &at,
            station: &self.station,
            actor: "operator",
            action,
            subject: &registration_id,
            details: &details,
        };
        let hash = row_hash(&self.prev, self.seq, &content);
        let identity = Some(IdentitySnapshot {
            registration_id: registration_id.clone(),
            device_model: "bench-model".into(),
            device_serial: format!("{}-SN{device:08}", self.station),
            batch: "bench".into(),
            state: state.into(),
            attestation: "x509".into(),
            certificate_pem: Some(format!(
                "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
                "A".repeat(CERTIFICATE_BODY_BYTES)
            )),
            endorsement_key: None,
            lease_id: None,
            central_enrollment: false,
        });
        let row = OutboxRow {
            seq: self.seq,
            prev_hash: hex::encode(self.prev),
            hash: hex::encode(hash),
            at,
            station: self.station.clone(),
            actor: "operator".into(),
            action: action.into(),
            subject: registration_id,
            details,
            identity,
        };
        self.prev = hash;
        row
    }
}

/// A throwaway P-256 signer (the benchmark's receipts are signed like the service's).
fn bench_signer() -> Result<ServiceSigner, CentralBenchError> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|e| CentralBenchError::Key(e.to_string()))?;
    let cert = rcgen::CertificateParams::new(vec!["bench central signer".into()])
        .and_then(|p| p.self_signed(&key))
        .map_err(|e| CentralBenchError::Key(e.to_string()))?;
    ServiceSigner::from_pkcs8_pem(&key.serialize_pem(), cert.der())
        .map_err(|e| CentralBenchError::Key(e.to_string()))
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}
