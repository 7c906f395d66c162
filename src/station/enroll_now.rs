//! "Enroll now" from the desk: the pending enrollments of one DPS target sent through the same
//! library path as `dps-station dps enroll` ([`super::enrollment::enroll_pending`]), after a
//! reachability probe so that an unreachable DPS leaves the queue exactly as it was (no attempt
//! counted, no error recorded): the engineer gets a message instead. Results of an enrollment
//! done at an offline site come back through [`import_results_now`], the path of
//! `dps-station dps import-results`.

use crate::ledger::{Ledger, LedgerError, WriterIdentity};

use super::config::StationConfig;
use super::enrollment::{
    EnrollOptions, EnrollSummary, EnrollmentError, ImportSummary, enroll_pending,
    import_pending_results,
};
use super::operator::handle::{StationError, connect_dps, connect_dps_tuned};
use crate::dps::retry::RetryPolicy;

/// A group name no DPS holds: asking for it costs one operation and proves an HTTP answer.
const PROBE_GROUP: &str = "dps-station-reachability-probe";
/// How long the probe waits for DPS.
const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Why enroll-now did nothing, or stopped.
#[derive(Debug, thiserror::Error)]
pub enum EnrollNowError {
    /// The target is not usable from station.toml (no connection string, bad CA file).
    #[error("{0}")]
    Target(Box<StationError>),
    /// DPS did not answer: nothing was sent and the queue is untouched.
    #[error(
        "DPS target {target} did not answer ({reason}); nothing was sent and the queue is untouched: check the network and try again"
    )]
    Unreachable {
        /// The target.
        target: String,
        /// What the client saw.
        reason: String,
    },
    /// The ledger could not be opened for writing (a batch is running: it holds the ledger).
    #[error("{0}; enroll once the running batch has ended (it enrolls its own devices)")]
    Ledger(Box<LedgerError>),
    /// Enrolling stopped part-way (what was answered is recorded).
    #[error("{0}")]
    Enrollment(Box<EnrollmentError>),
}

/// Sends the pending enrollments of `target` (a `[dps.<target>]` of station.toml) as
/// `dps-station dps enroll` does, recording the answers in the ledger as `operator`.
pub fn enroll_now(
    station: &StationConfig,
    operator: &str,
    target: &str,
) -> Result<EnrollSummary, EnrollNowError> {
    let target_err = |e| EnrollNowError::Target(Box::new(e));
    // One attempt, a short timeout: the probe says "unreachable" in seconds, not after the
    // enrollment client's minute of backoff.
    let probe = connect_dps_tuned(station, target, |c| {
        c.retry = RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        };
        c.timeout = PROBE_TIMEOUT;
        c.connect_timeout = PROBE_TIMEOUT;
    })
    .map_err(target_err)?;
    if let Err(e) = probe.find_group(PROBE_GROUP)
        && e.service().is_none()
    {
        return Err(EnrollNowError::Unreachable {
            target: target.to_string(),
            reason: e.to_string(),
        });
    }
    let client = connect_dps(station, target).map_err(target_err)?;
    let mut ledger = Ledger::open(
        &station.ledger,
        &WriterIdentity {
            station: station.name.clone(),
            operator: operator.to_string(),
        },
    )
    .map_err(|e| EnrollNowError::Ledger(Box::new(e)))?;
    let options = EnrollOptions {
        dps_target: target.to_string(),
        settings: Default::default(),
        reprovision: false,
        individual_keys: None,
        batch: None,
    };
    enroll_pending(&mut ledger, &client, &options, |_| {})
        .map_err(|e| EnrollNowError::Enrollment(Box::new(e)))
}

/// Records the results a remote site returned (an export folder with its `.result.json`
/// answers, `az-results.csv`, or `az iot dps enrollment list` output) against the pending
/// enrollments of `target`, as `dps-station dps import-results` does, as `operator`.
pub fn import_results_now(
    station: &StationConfig,
    operator: &str,
    target: &str,
    results: &std::path::Path,
) -> Result<ImportSummary, EnrollNowError> {
    let mut ledger = Ledger::open(
        &station.ledger,
        &WriterIdentity {
            station: station.name.clone(),
            operator: operator.to_string(),
        },
    )
    .map_err(|e| EnrollNowError::Ledger(Box::new(e)))?;
    import_pending_results(&mut ledger, target, results)
        .map_err(|e| EnrollNowError::Enrollment(Box::new(e)))
}
