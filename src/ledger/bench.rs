//! `dps-station bench ledger`: measures the ledger on this machine's disk with the station's real
//! write path (device + identity + audit row per identity, `synchronous=FULL`), so the figures in
//! `docs/PERFORMANCE.md` are what a production line gets.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rand::RngExt;
use serde::Serialize;

use super::{Attestation, Ledger, LedgerError, NewDevice, NewIdentity, WriterIdentity};

/// What to measure.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// A fresh directory for the ledger and the export (must not hold a ledger yet).
    pub dir: PathBuf,
    /// Identities inserted in large transactions.
    pub identities: u64,
    /// Identities per transaction in the batched phase.
    pub batch_size: u64,
    /// Identities inserted one transaction each (a bounded sample: each waits for fsync).
    pub single: u64,
    /// Random lookups by registration ID.
    pub lookups: u64,
}

/// One timed phase.
#[derive(Debug, Clone, Serialize)]
pub struct Rate {
    pub count: u64,
    pub seconds: f64,
    pub per_second: f64,
}

impl Rate {
    fn new(count: u64, elapsed: Duration) -> Self {
        let seconds = elapsed.as_secs_f64();
        Rate {
            count,
            seconds,
            per_second: if seconds > 0.0 {
                count as f64 / seconds
            } else {
                0.0
            },
        }
    }
}

/// Lookup latency, microseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub count: u64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
}

/// Everything `bench ledger` measured.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub ledger: String,
    pub batch_size: u64,
    /// Bare `fdatasync` of a 4 KiB overwrite in the same directory: the ceiling for durable
    /// transactions on this disk, measured just before them.
    pub disk_syncs: Rate,
    pub batched_insert: Rate,
    pub single_transaction_insert: Rate,
    pub lookup: Latency,
    pub export: Rate,
    pub export_bytes: u64,
    /// Recomputing the whole audit hash chain (`ledger verify`).
    pub verify_audit_chain: Rate,
    pub identities_total: u64,
    pub ledger_bytes: u64,
    pub bytes_per_identity: f64,
}

/// Errors of the benchmark: the ledger's own, or making its sample certificates.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("bench: {0}")]
    Setup(String),
}

/// Distinct sample certificates (real P-256, self-signed) reused round-robin: issuing a million
/// would measure ECDSA, not the ledger.
const CERT_POOL: usize = 256;

fn certificate_pool() -> Result<Vec<Vec<u8>>, BenchError> {
    (0..CERT_POOL)
        .map(|i| {
            let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
                .map_err(|e| BenchError::Setup(e.to_string()))?;
            let mut params = rcgen::CertificateParams::new(Vec::<String>::new())
                .map_err(|e| BenchError::Setup(e.to_string()))?;
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, format!("bench-{i:07}"));
            params
                .distinguished_name
                .push(rcgen::DnType::OrganizationName, "dps-station bench");
            let cert = params
                .self_signed(&key)
                .map_err(|e| BenchError::Setup(e.to_string()))?;
            Ok(cert.der().to_vec())
        })
        .collect()
}

fn registration_id(i: u64) -> String {
    format!("bench-sensor-{i:08}")
}

fn sample(i: u64, pool: &[Vec<u8>]) -> (NewDevice, NewIdentity) {
    let device = NewDevice {
        model: "bench-sensor".into(),
        serial_number: format!("{i:08}"),
        hardware_id: Some(format!("hw-{i:012x}")),
        firmware: Some("1.0.0".into()),
        batch: None,
    };
    let identity = NewIdentity {
        registration_id: registration_id(i),
        batch: None,
        device: None,
        attestation: Attestation::X509 {
            certificate_der: pool[(i as usize) % pool.len()].clone(),
        },
    };
    (device, identity)
}

/// Fills `ledger` with the sample identities `range` (registration IDs `bench-sensor-NNNNNNNN`,
/// serials `NNNNNNNN`, X.509 from a pool of real certificates), `per_transaction` to a commit:
/// the million-identity ledger of `bench gui --ledger` and the browser's tests, made through the
/// ledger's own write path.
pub fn fill(
    ledger: &mut Ledger,
    range: std::ops::Range<u64>,
    per_transaction: u64,
    mut progress: impl FnMut(u64),
) -> Result<(), BenchError> {
    let pool = certificate_pool()?;
    let per_transaction = per_transaction.max(1);
    let mut next = range.start;
    while next < range.end {
        let end = (next + per_transaction).min(range.end);
        ledger.transaction(|w| {
            for i in next..end {
                let (device, mut identity) = sample(i, &pool);
                identity.device = Some(w.upsert_device(&device)?);
                w.record_issued(&identity)?;
            }
            Ok(())
        })?;
        next = end;
        progress(next - range.start);
    }
    Ok(())
}

/// The registration ID [`fill`] gives sample `i`.
pub fn sample_registration_id(i: u64) -> String {
    registration_id(i)
}

/// Runs every phase and reports; `progress` gets a line per phase.
pub fn run(
    options: &BenchOptions,
    mut progress: impl FnMut(&str),
) -> Result<BenchReport, BenchError> {
    std::fs::create_dir_all(&options.dir)
        .map_err(|e| BenchError::Setup(format!("cannot create {}: {e}", options.dir.display())))?;
    let path = options.dir.join("bench-ledger.db");
    if path.exists() {
        return Err(BenchError::Setup(format!(
            "{} exists; give a fresh --dir",
            path.display()
        )));
    }
    let writer = WriterIdentity {
        station: "bench".into(),
        operator: "bench".into(),
    };
    let mut ledger = Ledger::open(&path, &writer)?;
    progress("making sample certificates");
    let pool = certificate_pool()?;

    let batch_size = options.batch_size.max(1);
    progress(&format!(
        "batched insert: {} identities, {batch_size} per transaction",
        options.identities
    ));
    let start = Instant::now();
    let mut next = 0u64;
    while next < options.identities {
        let end = (next + batch_size).min(options.identities);
        ledger.transaction(|w| {
            for i in next..end {
                let (device, mut identity) = sample(i, &pool);
                identity.device = Some(w.upsert_device(&device)?);
                w.record_issued(&identity)?;
            }
            Ok(())
        })?;
        next = end;
        if next.is_multiple_of(batch_size * 20) {
            progress(&format!("  {next} identities"));
        }
    }
    let batched_insert = Rate::new(options.identities, start.elapsed());

    progress("disk: bare fdatasync rate");
    let disk_syncs = disk_sync_rate(&options.dir, 500)?;

    progress(&format!(
        "single-transaction insert: {} identities, one durable transaction each",
        options.single
    ));
    let start = Instant::now();
    for i in options.identities..options.identities + options.single {
        let (device, mut identity) = sample(i, &pool);
        ledger.transaction(|w| {
            identity.device = Some(w.upsert_device(&device)?);
            w.record_issued(&identity)
        })?;
    }
    let single_transaction_insert = Rate::new(options.single, start.elapsed());
    let total = options.identities + options.single;

    progress(&format!(
        "lookup: {} random registration IDs",
        options.lookups
    ));
    let mut rng = rand::rng();
    let mut times = Vec::with_capacity(options.lookups as usize);
    if total > 0 {
        for _ in 0..options.lookups {
            let id = registration_id(rng.random_range(0..total));
            let start = Instant::now();
            let found = ledger.find_identity(&id)?;
            times.push(start.elapsed());
            if found.is_none() {
                return Err(BenchError::Setup(format!("lookup of {id} found nothing")));
            }
        }
    }
    times.sort();
    let pct = |p: f64| -> f64 {
        if times.is_empty() {
            return 0.0;
        }
        let idx = ((times.len() as f64 - 1.0) * p).round() as usize;
        times[idx.min(times.len() - 1)].as_secs_f64() * 1e6
    };
    let lookup = Latency {
        count: times.len() as u64,
        p50_us: pct(0.50),
        p99_us: pct(0.99),
        max_us: times.last().map(|t| t.as_secs_f64() * 1e6).unwrap_or(0.0),
    };

    progress("export: all identities as CSV");
    let csv_path = options.dir.join("bench-export.csv");
    let start = Instant::now();
    let file = std::fs::File::create(&csv_path)
        .map_err(|e| BenchError::Setup(format!("cannot create {}: {e}", csv_path.display())))?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
    let rows = ledger.export_csv(&mut out)?;
    let file = out
        .into_inner()
        .map_err(|e| BenchError::Setup(format!("writing {}: {e}", csv_path.display())))?;
    file.sync_all()
        .map_err(|e| BenchError::Setup(format!("writing {}: {e}", csv_path.display())))?;
    let export = Rate::new(rows, start.elapsed());
    let export_bytes = std::fs::metadata(&csv_path).map(|m| m.len()).unwrap_or(0);

    progress("verify: the whole audit hash chain");
    let start = Instant::now();
    let report = ledger.verify_audit_chain()?;
    let verify_audit_chain = Rate::new(report.rows_checked, start.elapsed());
    if !report.is_intact() {
        return Err(BenchError::Setup(format!(
            "the audit chain is broken: {:?}",
            report.first_broken
        )));
    }

    ledger.checkpoint()?;
    let ledger_bytes = ledger.stats()?.file_bytes;
    Ok(BenchReport {
        ledger: path.display().to_string(),
        batch_size,
        disk_syncs,
        batched_insert,
        single_transaction_insert,
        lookup,
        export,
        export_bytes,
        verify_audit_chain,
        identities_total: total,
        ledger_bytes,
        bytes_per_identity: if total > 0 {
            ledger_bytes as f64 / total as f64
        } else {
            0.0
        },
    })
}

/// Overwrites one 4 KiB block of a scratch file and syncs it (`File::sync_data`, fdatasync on
/// Linux), `count` times: what one durable commit can at best cost on this disk.
fn disk_sync_rate(dir: &Path, count: u64) -> Result<Rate, BenchError> {
    use std::io::{Seek, SeekFrom, Write};
    let path = dir.join("bench-sync.bin");
    let err = |e: std::io::Error| BenchError::Setup(format!("{}: {e}", path.display()));
    let mut file = std::fs::File::create(&path).map_err(err)?;
    file.write_all(&vec![0u8; 1 << 20]).map_err(err)?;
    file.sync_all().map_err(err)?;
    let block = [0x5Au8; 4096];
    let start = Instant::now();
    for i in 0..count {
        file.seek(SeekFrom::Start((i % 256) * 4096)).map_err(err)?;
        file.write_all(&block).map_err(err)?;
        file.sync_data().map_err(err)?;
    }
    let rate = Rate::new(count, start.elapsed());
    drop(file);
    let _ = std::fs::remove_file(&path);
    Ok(rate)
}

/// Removes what [`run`] wrote in `dir` (the ledger, its WAL and lock, the export).
pub fn clean(dir: &Path) {
    for name in [
        "bench-ledger.db",
        "bench-ledger.db-wal",
        "bench-ledger.db-shm",
        "bench-ledger.db.lock",
        "bench-export.csv",
    ] {
        let _ = std::fs::remove_file(dir.join(name));
    }
    let _ = std::fs::remove_dir(dir);
}
