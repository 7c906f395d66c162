//! The background enrollment worker: takes `written` identities off the ledger's queue and
//! bulk-enrolls them (at most 10 per call), or, for an enrollment group, makes sure the group is
//! there once per batch. DPS trouble never stops the line: identities stay queued and are tried
//! again with backoff; only a definite refusal marks one `failed{enroll}`.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::time::Duration;

use base64::Engine as _;
use base64::prelude::BASE64_STANDARD;

use super::config::{BatchConfig, Mode};
use super::events::Event;
use super::individual_keys::checked_key;
use super::keys::StationKeys;
use super::ledger_thread::LedgerHandle;
use crate::dps::model::{BulkMode, IndividualEnrollment};
use crate::dps::payload::{self, EnrollmentSettings};
use crate::dps::{DpsClient, bulk::MAX_BULK_ITEMS};
use crate::identity::pem;
use crate::ledger::{
    AttestationKind, EnrollmentId, EnrollmentKind, EnrollmentOutcome, PendingEnrollment,
};

/// How many queued items are looked at per round (others' batches may sit in the same queue).
const SCAN: u32 = 200;

/// What the worker needs.
pub struct EnrollWorker {
    /// The DPS client.
    pub client: Arc<DpsClient>,
    /// The ledger.
    pub ledger: LedgerHandle,
    /// The batch (settings, group, mode).
    pub batch: BatchConfig,
    /// The key store (to recompute symmetric-individual keys; never stored).
    pub keys: StationKeys,
    /// The batch CA certificate (x509-group: the group's signing certificate), DER.
    pub group_ca_der: Option<Vec<u8>>,
    /// Events out.
    pub events: Sender<Event>,
}

/// What the worker did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EnrollStats {
    /// Confirmed by DPS.
    pub enrolled: u64,
    /// Refused for good.
    pub failed: u64,
}

impl EnrollWorker {
    fn settings(&self) -> EnrollmentSettings {
        super::enrollment::batch_settings(&self.batch)
    }

    /// Runs until `closing` is set and the queue holds nothing more it can do, or `abort` is set.
    pub fn run(self, closing: &AtomicBool, abort: &AtomicBool) -> EnrollStats {
        let mut stats = EnrollStats::default();
        let mut groups_ok: HashSet<String> = HashSet::new();
        let mut backoff = Duration::from_millis(100);
        loop {
            if abort.load(Ordering::Relaxed) {
                break;
            }
            let target = self.batch.dps_target.clone();
            let pending = match self
                .ledger
                .call(move |l| l.pending_enrollments(&target, SCAN))
            {
                Ok(p) => p,
                Err(e) => {
                    let _ = self.events.send(Event::EnrollmentProblem {
                        message: e.to_string(),
                    });
                    break;
                }
            };
            let workable: Vec<PendingEnrollment> =
                pending.into_iter().filter(|p| self.can_enroll(p)).collect();
            if workable.is_empty() {
                if closing.load(Ordering::Relaxed) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
            let before = stats;
            let (group, individual): (Vec<_>, Vec<_>) = workable
                .into_iter()
                .partition(|p| p.enrollment.kind == EnrollmentKind::Group);
            self.enroll_groups(group, &mut groups_ok, &mut stats);
            // An identity that replaced a revoked one by explicit re-provisioning replaces its
            // DPS enrollment (bulk `update`); every other one is created, and a conflict with an
            // enrollment DPS holds with other content stays an error, never an overwrite.
            let (replacing, creating): (Vec<_>, Vec<_>) =
                individual.into_iter().partition(|p| p.replaces.is_some());
            for chunk in creating.chunks(MAX_BULK_ITEMS) {
                self.enroll_chunk(chunk, BulkMode::Create, &mut stats);
            }
            for chunk in replacing.chunks(MAX_BULK_ITEMS) {
                self.enroll_chunk(chunk, BulkMode::Update, &mut stats);
            }
            let _ = self.events.send(Event::Enrollment {
                enrolled: stats.enrolled,
                failed: stats.failed,
                pending: 0,
            });
            if stats == before {
                // Nothing moved (DPS unreachable or throttling): back off, the line goes on. Once
                // the batch is closed, give up: the identities stay queued in the ledger for the
                // next run (or `dps-station enroll`), nothing is lost.
                if closing.load(Ordering::Relaxed) {
                    break;
                }
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(30));
            } else {
                backoff = Duration::from_millis(100);
            }
        }
        stats
    }

    /// Individual symmetric keys can only be recomputed for this batch (its master secret).
    fn can_enroll(&self, p: &PendingEnrollment) -> bool {
        match (p.enrollment.kind, p.attestation) {
            (EnrollmentKind::Group, _) => p.enrollment.group_name.is_some(),
            (EnrollmentKind::Individual, AttestationKind::SymmetricKey) => {
                self.batch.mode == Mode::SymmetricIndividual
                    && self.in_batch(&p.enrollment.registration_id)
            }
            _ => true,
        }
    }

    fn in_batch(&self, registration_id: &str) -> bool {
        let rid = registration_id.to_string();
        self.ledger
            .call(move |l| l.find_identity(&rid))
            .ok()
            .flatten()
            .and_then(|r| r.batch)
            .is_some_and(|b| b == self.batch.name)
    }

    fn record(&self, p: &PendingEnrollment, outcome: EnrollmentOutcome, stats: &mut EnrollStats) {
        let id = p.enrollment.id;
        let ok = matches!(outcome, EnrollmentOutcome::Enrolled { .. });
        let failed = matches!(outcome, EnrollmentOutcome::Failed { .. });
        match self
            .ledger
            .call(move |l| l.record_enrollment_result(id, &outcome))
        {
            Ok(_) if ok => stats.enrolled += 1,
            Ok(_) if failed => stats.failed += 1,
            Ok(_) => {}
            Err(e) => {
                let _ = self.events.send(Event::EnrollmentProblem {
                    message: e.to_string(),
                });
            }
        }
    }

    fn enroll_groups(
        &self,
        items: Vec<PendingEnrollment>,
        groups_ok: &mut HashSet<String>,
        stats: &mut EnrollStats,
    ) {
        let mut confirmed = Vec::new();
        for p in items {
            let Some(name) = p.enrollment.group_name.clone() else {
                continue;
            };
            if !groups_ok.contains(&name) {
                match self.ensure_group(&name) {
                    Ok(()) => {
                        groups_ok.insert(name.clone());
                    }
                    Err(message) => {
                        let _ = self.events.send(Event::EnrollmentProblem { message });
                        break;
                    }
                }
            }
            confirmed.push((p.enrollment.id, EnrollmentOutcome::Enrolled { etag: None }));
        }
        self.record_all(confirmed, stats);
    }

    /// Checks the group once per batch; creates an X.509 group from the batch CA if it is missing.
    fn ensure_group(&self, name: &str) -> Result<(), String> {
        match self.client.find_group(name) {
            Ok(Some(_)) => Ok(()),
            Ok(None) => match (&self.group_ca_der, self.batch.mode) {
                (Some(der), Mode::X509Group) => {
                    let ca_pem = pem::encode(pem::label::CERTIFICATE, der);
                    let group =
                        payload::x509_group_signing_certificate(name, &ca_pem, &self.settings())
                            .map_err(|e| e.to_string())?;
                    self.client
                        .create_group(&group)
                        .map(|_| ())
                        .map_err(|e| e.to_string())
                }
                _ => Err(format!(
                    "enrollment group '{name}' does not exist in DPS target '{}'; create it with the group key first (identities stay queued)",
                    self.batch.dps_target
                )),
            },
            Err(e) => Err(format!("checking enrollment group '{name}': {e}")),
        }
    }

    /// The enrollment to send, or the outcome to record instead.
    fn payload(&self, p: &PendingEnrollment) -> Result<IndividualEnrollment, EnrollmentOutcome> {
        let failed = |error: String| EnrollmentOutcome::Failed { error };
        let rid = p.enrollment.registration_id.as_str();
        let settings = self.settings();
        match p.attestation {
            AttestationKind::X509 => {
                let der = p
                    .certificate_der
                    .as_ref()
                    .ok_or_else(|| failed("the ledger holds no certificate".into()))?;
                let pem = pem::encode(pem::label::CERTIFICATE, der);
                payload::x509_individual(rid, &pem, &settings).map_err(|e| failed(e.to_string()))
            }
            AttestationKind::SymmetricKey => {
                // The same checked path as `enroll`: a key that does not match the ledger's
                // fingerprint (a wrong master key) is never sent; the identity stays queued, and
                // the operator is told, until the right key store and batch are used.
                let key = checked_key(&self.keys, &self.batch, p).map_err(|e| {
                    let error = e.to_string();
                    let _ = self.events.send(Event::EnrollmentProblem {
                        message: error.clone(),
                    });
                    EnrollmentOutcome::RetryLater { error }
                })?;
                payload::symmetric_key_individual(rid, Some(key), None, &settings)
                    .map_err(|e| failed(e.to_string()))
            }
            AttestationKind::Tpm => {
                let ek = p
                    .endorsement_key
                    .as_ref()
                    .ok_or_else(|| failed("the ledger holds no endorsement key".into()))?;
                payload::tpm_individual(rid, &BASE64_STANDARD.encode(ek), None, &settings)
                    .map_err(|e| failed(e.to_string()))
            }
        }
    }

    fn enroll_chunk(&self, chunk: &[PendingEnrollment], mode: BulkMode, stats: &mut EnrollStats) {
        let mut sendable = Vec::new();
        let mut payloads = Vec::new();
        for p in chunk {
            match self.payload(p) {
                Ok(e) => {
                    sendable.push(p);
                    payloads.push(e);
                }
                Err(outcome) => self.record(p, outcome, stats),
            }
        }
        if payloads.is_empty() {
            return;
        }
        let report = self.client.bulk_enrollments(&payloads, mode);
        let mut results = Vec::new();
        for (p, item) in sendable.into_iter().zip(report.items) {
            let outcome = match item.result {
                Ok(_) => EnrollmentOutcome::Enrolled { etag: None },
                // Per-item refusals (a 4xx code) are final; anything else is tried again later.
                Err(f)
                    if f.error_code
                        .is_some_and(|c| (400_000..500_000).contains(&c) && c / 1000 != 429) =>
                {
                    EnrollmentOutcome::Failed {
                        error: f.to_string(),
                    }
                }
                Err(f) => {
                    let _ = self.events.send(Event::EnrollmentProblem {
                        message: f.to_string(),
                    });
                    EnrollmentOutcome::RetryLater {
                        error: f.to_string(),
                    }
                }
            };
            results.push((p.enrollment.id, outcome));
        }
        self.record_all(results, stats);
    }

    /// Records a whole bulk call's answers in one ledger transaction (one durable commit).
    fn record_all(&self, results: Vec<(EnrollmentId, EnrollmentOutcome)>, stats: &mut EnrollStats) {
        if results.is_empty() {
            return;
        }
        let count = |want: fn(&EnrollmentOutcome) -> bool| {
            results.iter().filter(|(_, o)| want(o)).count() as u64
        };
        let enrolled = count(|o| matches!(o, EnrollmentOutcome::Enrolled { .. }));
        let failed = count(|o| matches!(o, EnrollmentOutcome::Failed { .. }));
        let written = self.ledger.call(move |l| {
            l.transaction(|w| {
                for (id, outcome) in &results {
                    w.record_enrollment_result(*id, outcome)?;
                }
                Ok(())
            })
        });
        match written {
            Ok(()) => {
                stats.enrolled += enrolled;
                stats.failed += failed;
            }
            Err(e) => {
                let _ = self.events.send(Event::EnrollmentProblem {
                    message: e.to_string(),
                });
            }
        }
    }
}
