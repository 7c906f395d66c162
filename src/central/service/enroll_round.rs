//! One round of the enroll worker: what to send DPS for each locked job, one bulk call, and what
//! each answer means for the job (enrolled, failed for good, or tried again later).
//!
//! Nothing here touches the database; `enroll` runs it between [`take_due`] and the commit.
//!
//! [`take_due`]: super::enroll_jobs::take_due

use std::time::Duration;

use crate::dps::model::{BulkMode, IndividualEnrollment};
use crate::dps::payload::{self, EnrollmentSettings};
use crate::dps::{DpsClient, ItemResult};

use super::enroll_jobs::DueJob;

/// What became of one job this round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobOutcome {
    /// DPS holds the enrollment (created now, or found identical from an earlier send).
    Enrolled { etag: Option<String> },
    /// It will not succeed as it stands; the station is told why.
    Failed { error: String },
    /// DPS did not judge it (unreachable, throttled, 5xx): pending, tried again after `wait`.
    Retry { error: String, wait: Duration },
}

/// How hard the worker tries a job across rounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobRetry {
    /// Sends per job before it is failed (at least 1).
    pub max_attempts: u32,
    /// Wait after the first failed send; doubles each time.
    pub backoff: Duration,
    /// Longest wait between two sends of a job.
    pub max_backoff: Duration,
}

impl JobRetry {
    /// The wait before the next send after `attempts` failed ones (attempts ≥ 1).
    pub fn wait(&self, attempts: u32) -> Duration {
        self.backoff
            .saturating_mul(1u32 << attempts.saturating_sub(1).min(20))
            .min(self.max_backoff)
    }
}

/// The enrollment to send for a job, or why it is not sent at all.
pub fn payload_for(
    job: &DueJob,
    settings: &EnrollmentSettings,
) -> Result<IndividualEnrollment, String> {
    let rid = job.registration_id.as_str();
    let station = job.station_id.as_str();
    let Some(identity) = &job.identity else {
        return Err(format!(
            "the central service holds no identity '{rid}' of station {station}: the job cannot be \
             enrolled; let the station's outbox drain and provision the device again"
        ));
    };
    if !identity.live {
        return Err(format!(
            "identity '{rid}' of station {station} is no longer live (quarantined or revoked) and \
             was not enrolled"
        ));
    }
    match identity.attestation.as_str() {
        "x509" => {
            let pem = identity.certificate_pem.as_deref().ok_or_else(|| {
                format!(
                    "station {station} reported X.509 identity '{rid}' without its certificate: \
                     update dps-station on the station and provision the device again"
                )
            })?;
            payload::x509_individual(rid, pem, settings).map_err(|e| e.to_string())
        }
        "tpm" => {
            let ek = identity.endorsement_key.as_deref().ok_or_else(|| {
                format!(
                    "station {station} reported TPM identity '{rid}' without its endorsement key: \
                     update dps-station on the station and provision the device again"
                )
            })?;
            payload::tpm_individual(rid, ek, None, settings).map_err(|e| e.to_string())
        }
        "symmetric" => Err(format!(
            "identity '{rid}' of station {station} uses symmetric-key attestation: its key derives \
             from the batch's group key, which the central service never holds; enroll it on the \
             station (set [central] enrollment = \"station\" for this batch)"
        )),
        other => Err(format!(
            "identity '{rid}' of station {station} has attestation '{other}', which central \
             enrollment does not know: enroll it on the station"
        )),
    }
}

/// Sends the jobs' enrollments in one bulk call (the caller gives at most 10) and returns one
/// outcome per job, in order. Enrolled ones are read back for DPS's etag (one paced GET each); a
/// failed read leaves the etag unknown, the enrollment stands.
pub fn enroll(
    client: &DpsClient,
    jobs: &[DueJob],
    settings: &EnrollmentSettings,
    retry: &JobRetry,
) -> Vec<JobOutcome> {
    let mut outcomes: Vec<Option<JobOutcome>> = vec![None; jobs.len()];
    let mut sent = Vec::new();
    let mut payloads = Vec::new();
    for (i, job) in jobs.iter().enumerate() {
        match payload_for(job, settings) {
            Ok(p) => {
                sent.push(i);
                payloads.push(p);
            }
            Err(error) => outcomes[i] = Some(JobOutcome::Failed { error }),
        }
    }
    if !payloads.is_empty() {
        let report = client.bulk_enrollments(&payloads, BulkMode::Create);
        // Once one etag read fails, DPS is struggling: the rest are not read (the lock is held).
        let mut read_etags = true;
        for (&i, item) in sent.iter().zip(report.items) {
            outcomes[i] = Some(judge(client, &jobs[i], item, retry, &mut read_etags));
        }
    }
    // Every job has an outcome: a bulk report holds one item per payload; should DPS's client ever
    // return fewer, the rest are tried again rather than lost.
    outcomes
        .into_iter()
        .zip(jobs)
        .map(|(o, job)| {
            o.unwrap_or_else(|| JobOutcome::Retry {
                error: "DPS gave no answer for this enrollment".into(),
                wait: retry.wait(attempts_after(job)),
            })
        })
        .collect()
}

fn attempts_after(job: &DueJob) -> u32 {
    u32::try_from(job.attempts).unwrap_or(0).saturating_add(1)
}

fn judge(
    client: &DpsClient,
    job: &DueJob,
    item: ItemResult,
    retry: &JobRetry,
    read_etags: &mut bool,
) -> JobOutcome {
    match item.result {
        Ok(_) if *read_etags => {
            let etag = match client.get_enrollment(&job.registration_id) {
                Ok(e) => e.etag,
                Err(e) => {
                    *read_etags = false;
                    tracing::warn!(
                        registration_id = %job.registration_id,
                        "enrolled, but reading its etag back failed: {e}"
                    );
                    None
                }
            };
            JobOutcome::Enrolled { etag }
        }
        Ok(_) => JobOutcome::Enrolled { etag: None },
        Err(f) if f.retry_later => {
            let attempts = attempts_after(job);
            if attempts >= retry.max_attempts.max(1) {
                JobOutcome::Failed {
                    error: format!(
                        "DPS could not be reached or kept refusing for now after {attempts} attempts; \
                         the last answer: {f}. Check the DPS instance and its quota, then provision \
                         the device again"
                    ),
                }
            } else {
                JobOutcome::Retry {
                    error: f.to_string(),
                    wait: retry.wait(attempts),
                }
            }
        }
        Err(f) => JobOutcome::Failed {
            error: f.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::central::service::enroll_jobs::JobIdentity;

    fn job(attestation: &str, live: bool) -> DueJob {
        DueJob {
            registration_id: "dev-1".into(),
            station_id: "st-1".into(),
            attempts: 0,
            identity: Some(JobIdentity {
                attestation: attestation.into(),
                certificate_pem: None,
                endorsement_key: Some("AAECAwQ=".into()),
                live,
            }),
        }
    }

    #[test]
    fn what_the_service_cannot_enroll_is_refused_with_the_reason() {
        let settings = EnrollmentSettings::default();
        let symmetric = payload_for(&job("symmetric", true), &settings).unwrap_err();
        assert!(symmetric.contains("symmetric-key"), "{symmetric}");
        assert!(symmetric.contains("st-1") && symmetric.contains("dev-1"));
        let dead = payload_for(&job("tpm", false), &settings).unwrap_err();
        assert!(dead.contains("no longer live"), "{dead}");
        let no_cert = payload_for(&job("x509", true), &settings).unwrap_err();
        assert!(no_cert.contains("without its certificate"), "{no_cert}");
        let mut missing = job("tpm", true);
        missing.identity = None;
        assert!(
            payload_for(&missing, &settings)
                .unwrap_err()
                .contains("holds no identity")
        );
        assert!(payload_for(&job("tpm", true), &settings).is_ok());
    }

    #[test]
    fn job_backoff_doubles_and_is_capped() {
        let r = JobRetry {
            max_attempts: 5,
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(5),
        };
        assert_eq!(r.wait(1), Duration::from_secs(1));
        assert_eq!(r.wait(2), Duration::from_secs(2));
        assert_eq!(r.wait(3), Duration::from_secs(4));
        assert_eq!(r.wait(4), Duration::from_secs(5));
        assert_eq!(r.wait(60), Duration::from_secs(5));
    }
}
