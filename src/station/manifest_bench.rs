//! `bench manifest`: a Trust&GO manifest of N entries (100,000 by default) made with a test
//! signer, then read, verified and imported into a fresh durable ledger (one transaction, each
//! identity queued for enrollment), timed, with the process's peak memory. Goal (issue 16):
//! 100,000 entries under 30 s and 300 MB.

use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::ledger::{Ledger, LedgerError, WriterIdentity};
use crate::manifest::build::{self, BuildError, DeviceCa, ReelSigner};
use crate::manifest::{ManifestError, ManifestSigner, read_manifest};
use crate::station::manifest_import::{ImportOptions, ManifestEnrollment, import_manifest};

/// Why the benchmark stopped.
#[derive(Debug, thiserror::Error)]
pub enum ManifestBenchError {
    /// Making the manifest failed.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// Writing it failed.
    #[error("writing the bench manifest in {dir}: {cause}; check the free space there")]
    Write {
        /// The directory.
        dir: String,
        /// What the OS said.
        cause: std::io::Error,
    },
    /// Reading it failed.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// The ledger refused.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// An entry did not verify: the benchmark would not measure a real import.
    #[error(
        "{0} entries of the bench manifest were refused; the manifest code or its builder is broken"
    )]
    Refused(usize),
}

/// What `bench manifest` measured.
#[derive(Debug, Clone)]
pub struct ManifestBenchReport {
    /// Entries in the manifest.
    pub entries: u64,
    /// Its size in bytes.
    pub file_bytes: u64,
    /// Making it (not part of the goal).
    pub generate: Duration,
    /// Reading and verifying every entry.
    pub verify: Duration,
    /// Recording them in the ledger (one transaction) with their enrollments queued.
    pub import: Duration,
    /// CPU time of the process while verifying (on a busy machine, wall time is not the work).
    pub verify_cpu: Duration,
    /// CPU time of the process while importing.
    pub import_cpu: Duration,
    /// Peak resident memory of the process (VmHWM), bytes.
    pub peak_rss: u64,
}

impl ManifestBenchReport {
    /// Verify + import: what the goal is about.
    pub fn total(&self) -> Duration {
        self.verify + self.import
    }
}

/// CPU time this process has used.
fn process_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_PROCESS_CPUTIME_ID exists on Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Peak resident memory of this process, from /proc (0 where there is none).
fn peak_rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// Runs the benchmark in `dir` (the manifest and the ledger are made there).
pub fn run(entries: u64, dir: &Path) -> Result<ManifestBenchReport, ManifestBenchError> {
    let write_err = |cause| ManifestBenchError::Write {
        dir: dir.display().to_string(),
        cause,
    };
    let started = Instant::now();
    let signer = ReelSigner::generate("Bench Manifest Signer")?;
    let ca = DeviceCa::generate("Bench Signer CA")?;
    let path = dir.join("bench-manifest.json");
    let file = std::fs::File::create(&path).map_err(write_err)?;
    let mut out = BufWriter::new(file);
    out.write_all(b"[").map_err(write_err)?;
    for n in 0..entries {
        let device = ca.device(&build::unique_id(n + 1))?;
        let entry = build::signed_entry(&build::payload(&device, ca.cert_der()), &signer);
        if n > 0 {
            out.write_all(b",\n").map_err(write_err)?;
        }
        serde_json::to_writer(&mut out, &entry).map_err(|e| write_err(e.into()))?;
    }
    out.write_all(b"]\n").map_err(write_err)?;
    out.flush().map_err(write_err)?;
    drop(out);
    let generate = started.elapsed();
    let file_bytes = std::fs::metadata(&path).map_err(write_err)?.len();

    let started = Instant::now();
    let cpu = process_cpu_time();
    let manifest_signer =
        ManifestSigner::from_der(signer.cert_der()).map_err(|reason| ManifestError::Signer {
            path: path.clone(),
            reason,
        })?;
    let report = read_manifest(&path, &manifest_signer)?;
    let verify = started.elapsed();
    let verify_cpu = process_cpu_time().saturating_sub(cpu);
    if !report.refused.is_empty() {
        return Err(ManifestBenchError::Refused(report.refused.len()));
    }

    let started = Instant::now();
    let cpu = process_cpu_time();
    let mut ledger = Ledger::open(
        &dir.join("bench-ledger.db"),
        &WriterIdentity {
            station: "bench".into(),
            operator: "bench".into(),
        },
    )?;
    let outcome = import_manifest(
        &mut ledger,
        &report,
        &ImportOptions {
            batch: "bench-reel".into(),
            dps_target: Some("bench.azure-devices-provisioning.net".into()),
            enrollment: ManifestEnrollment::Individual,
        },
    )?;
    let import = started.elapsed();
    let import_cpu = process_cpu_time().saturating_sub(cpu);
    if outcome.recorded.len() as u64 != entries {
        return Err(ManifestBenchError::Refused(
            entries as usize - outcome.recorded.len(),
        ));
    }
    Ok(ManifestBenchReport {
        entries,
        file_bytes,
        generate,
        verify,
        import,
        verify_cpu,
        import_cpu,
        peak_rss: peak_rss(),
    })
}
