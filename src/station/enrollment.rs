//! The enrollment queue between the ledger and DPS: sends the pending enrollments of one DPS
//! target, exports them as enrollment files, and imports results enrolled elsewhere.
//!
//! The ledger is the truth: an identity becomes `enrolled` only when DPS confirmed it (created
//! now, or found already holding the same attestation, or its enrollment group exists), and each
//! chunk of results is recorded in one ledger transaction. What DPS did not judge (a failed call,
//! throttling that outlasted the retries) stays pending with its error, for the next run.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use base64::Engine as _;
use base64::prelude::BASE64_STANDARD;

use super::config::BatchConfig;
use super::individual_keys::{IndividualKeys, KEY_SOURCE_OPTIONS};
use crate::dps::export::import::{ImportError, ImportedStatus, import_results};
use crate::dps::export::{
    ExportError, ExportInput, ExportSummary, GroupRecord, IndividualRecord, RecordAttestation,
    export,
};
use crate::dps::model::{BulkMode, IndividualEnrollment, ProvisioningStatus};
use crate::dps::payload::{self, EnrollmentSettings};
use crate::dps::{DpsClient, ItemOutcome, ItemResult};
use crate::ledger::{
    AttestationKind, EnrollmentId, EnrollmentKind, EnrollmentOutcome, Ledger, LedgerError,
    PendingEnrollment,
};

/// Most pending enrollments one run reads from the ledger (a ledger holds up to a million).
const MAX_PENDING: u32 = 1_000_000;

/// Why a run stopped.
#[derive(Debug, thiserror::Error)]
pub enum EnrollmentError {
    /// The ledger refused a read or write.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// Writing enrollment files failed.
    #[error(transparent)]
    Export(#[from] ExportError),
    /// Reading results failed.
    #[error(transparent)]
    Import(#[from] ImportError),
}

/// How to enroll.
#[derive(Debug, Clone)]
pub struct EnrollOptions {
    /// The DPS target the ledger queued the enrollments for.
    pub dps_target: String,
    /// Hubs, allocation, twin, status for the enrollments.
    pub settings: EnrollmentSettings,
    /// Replace enrollments that exist with other content (the user chose re-provisioning);
    /// otherwise they are never overwritten.
    pub reprovision: bool,
    /// Where the keys of `symmetric-individual` identities are recomputed (the batch that made
    /// them, in its key store); without it they are left pending.
    pub individual_keys: Option<IndividualKeys>,
    /// Only the identities of this batch (by name): its settings are then theirs alone.
    pub batch: Option<String>,
}

/// One registration ID and why it did not end enrolled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unfinished {
    /// The registration ID.
    pub registration_id: String,
    /// What DPS or the station said.
    pub reason: String,
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnrollSummary {
    /// Pending enrollments found.
    pub pending: usize,
    /// Created in DPS now.
    pub created: usize,
    /// Already in DPS with the same attestation (confirmed, unchanged).
    pub already_present: usize,
    /// Replaced (re-provisioning).
    pub replaced: usize,
    /// Covered by an enrollment group that DPS holds.
    pub by_group: usize,
    /// Refused for good: enrollment `failed`, identity `failed{enroll}`.
    pub failed: Vec<Unfinished>,
    /// Not judged by DPS: still pending, error recorded.
    pub retry_later: Vec<Unfinished>,
    /// Cannot be sent by this command: left pending untouched.
    pub not_sendable: Vec<Unfinished>,
}

impl EnrollSummary {
    /// Identities now enrolled.
    pub fn enrolled(&self) -> usize {
        self.created + self.already_present + self.replaced + self.by_group
    }

    /// True when every pending enrollment ended enrolled.
    pub fn all_enrolled(&self) -> bool {
        self.failed.is_empty() && self.retry_later.is_empty() && self.not_sendable.is_empty()
    }
}

/// What the run is doing, for a progress bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Enrollments handled so far.
    pub done: usize,
    /// Of how many.
    pub total: usize,
}

/// What can go into an individual enrollment, from the ledger's public material.
enum Prepared {
    Individual(Box<IndividualEnrollment>),
    Group(String),
    NotSendable(String),
    Refused(String),
}

fn prepare(
    p: &PendingEnrollment,
    settings: &EnrollmentSettings,
    keys: Option<&IndividualKeys>,
) -> Prepared {
    let id = &p.enrollment.registration_id;
    if p.enrollment.kind == EnrollmentKind::Group {
        return match &p.enrollment.group_name {
            Some(g) if !g.is_empty() => Prepared::Group(g.clone()),
            _ => Prepared::Refused(format!(
                "'{id}' is queued for an enrollment group but the ledger names none"
            )),
        };
    }
    let built = match p.attestation {
        AttestationKind::X509 => match &p.certificate_der {
            Some(der) => payload::x509_individual(id, &pem_certificate(der), settings),
            None => return Prepared::Refused(format!("'{id}' has no certificate in the ledger")),
        },
        AttestationKind::Tpm => match &p.endorsement_key {
            Some(ek) => payload::tpm_individual(id, &BASE64_STANDARD.encode(ek), None, settings),
            None => {
                return Prepared::Refused(format!("'{id}' has no endorsement key in the ledger"));
            }
        },
        // The ledger never holds a symmetric key, only its fingerprint and nonce: the key is
        // recomputed in the key store of the batch that made it, and verified.
        AttestationKind::SymmetricKey => match keys {
            Some(keys) => match keys.key_for(p) {
                Ok(key) => payload::symmetric_key_individual(id, Some(key), None, settings),
                Err(reason) => return Prepared::NotSendable(reason.to_string()),
            },
            None => return Prepared::NotSendable(no_key_source(id, "enroll")),
        },
    };
    match built {
        Ok(e) => Prepared::Individual(Box::new(e)),
        Err(e) => Prepared::Refused(e.to_string()),
    }
}

/// Why an individual symmetric-key identity waits, and the option that sends it.
fn no_key_source(id: &str, command: &str) -> String {
    format!(
        "'{id}' is an individual symmetric-key enrollment: the ledger holds only its key's \
         fingerprint and nonce; add {KEY_SOURCE_OPTIONS} (the station and the batch that made it) \
         to `dps-station {command}` to recompute the key in that key store"
    )
}

/// A DER certificate as PEM text.
pub fn pem_certificate(der: &[u8]) -> String {
    let body = BASE64_STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in body.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}

/// The pending enrollments of `dps_target`: of one batch's identities when `batch` names one
/// (what `enroll` and `export` take with `--batch`), else all of them.
fn pending_of(
    ledger: &Ledger,
    dps_target: &str,
    batch: Option<&str>,
) -> Result<Vec<PendingEnrollment>, EnrollmentError> {
    Ok(match batch {
        Some(batch) => ledger.pending_enrollments_of_batch(dps_target, batch, MAX_PENDING)?,
        None => ledger.pending_enrollments(dps_target, MAX_PENDING)?,
    })
}

/// Sends the pending enrollments of `options.dps_target`, 10 per bulk call, recording each
/// chunk's results in the ledger as they come.
pub fn enroll_pending(
    ledger: &mut Ledger,
    client: &DpsClient,
    options: &EnrollOptions,
    mut progress: impl FnMut(Progress),
) -> Result<EnrollSummary, EnrollmentError> {
    let pending = pending_of(ledger, &options.dps_target, options.batch.as_deref())?;
    let total = pending.len();
    let mut summary = EnrollSummary {
        pending: total,
        ..EnrollSummary::default()
    };
    let mut done = 0;
    progress(Progress { done, total });

    let mut ids: HashMap<String, EnrollmentId> = HashMap::new();
    let mut individuals = Vec::new();
    // Identities that replaced a revoked one by explicit re-provisioning: DPS may hold the old
    // credential under their registration ID, which they replace (bulk `update`).
    let mut replacing = Vec::new();
    let mut groups: BTreeMap<String, Vec<(EnrollmentId, String)>> = BTreeMap::new();
    let mut refused = Vec::new();
    for p in &pending {
        let reg = p.enrollment.registration_id.clone();
        match prepare(p, &options.settings, options.individual_keys.as_ref()) {
            Prepared::Individual(e) => {
                ids.insert(reg.to_ascii_lowercase(), p.enrollment.id);
                if p.replaces.is_some() {
                    replacing.push(*e);
                } else {
                    individuals.push(*e);
                }
            }
            Prepared::Group(g) => groups.entry(g).or_default().push((p.enrollment.id, reg)),
            Prepared::NotSendable(reason) => {
                done += 1;
                summary.not_sendable.push(Unfinished {
                    registration_id: reg,
                    reason,
                });
            }
            Prepared::Refused(reason) => refused.push((p.enrollment.id, reg, reason)),
        }
    }

    // Identities the station cannot turn into a valid enrollment: failed for good.
    if !refused.is_empty() {
        ledger.transaction(|w| {
            for (id, _, reason) in &refused {
                w.record_enrollment_result(
                    *id,
                    &EnrollmentOutcome::Failed {
                        error: reason.clone(),
                    },
                )?;
            }
            Ok(())
        })?;
        done += refused.len();
        summary
            .failed
            .extend(refused.into_iter().map(|(_, reg, reason)| Unfinished {
                registration_id: reg,
                reason,
            }));
        progress(Progress { done, total });
    }

    // Group enrollments: one check per group.
    for (group, members) in &groups {
        let verdict = match client.find_group(group) {
            Ok(Some(g)) if g.provisioning_status == Some(ProvisioningStatus::Disabled) => {
                Err(format!(
                    "enrollment group '{group}' is disabled in DPS: enable it, then enroll again"
                ))
            }
            Ok(Some(_)) => Ok(()),
            Ok(None) => Err(format!(
                "enrollment group '{group}' does not exist in DPS: create it, then enroll again"
            )),
            Err(e) => Err(e.to_string()),
        };
        ledger.transaction(|w| {
            for (id, _) in members {
                let outcome = match &verdict {
                    Ok(()) => EnrollmentOutcome::Enrolled { etag: None },
                    Err(error) => EnrollmentOutcome::RetryLater {
                        error: error.clone(),
                    },
                };
                w.record_enrollment_result(*id, &outcome)?;
            }
            Ok(())
        })?;
        for (_, reg) in members {
            match &verdict {
                Ok(()) => summary.by_group += 1,
                Err(reason) => summary.retry_later.push(Unfinished {
                    registration_id: reg.clone(),
                    reason: reason.clone(),
                }),
            }
        }
        done += members.len();
        progress(Progress { done, total });
    }

    // Individual enrollments, 10 per call; each chunk recorded as it comes back. Without
    // `reprovision`, only re-provisioned identities replace what DPS holds.
    let mode = if options.reprovision {
        BulkMode::Update
    } else {
        BulkMode::Create
    };
    let mut ledger_error: Option<LedgerError> = None;
    for (items, mode) in [(&individuals, mode), (&replacing, BulkMode::Update)] {
        if items.is_empty() {
            continue;
        }
        client.bulk_enrollments_with_progress(items, mode, |results: &[ItemResult]| {
            done += results.len();
            if ledger_error.is_none()
                && let Err(e) = record_chunk(ledger, &ids, results)
            {
                ledger_error = Some(e);
            }
            for r in results {
                match &r.result {
                    Ok(ItemOutcome::Created) => summary.created += 1,
                    Ok(ItemOutcome::AlreadyPresent) => summary.already_present += 1,
                    Ok(ItemOutcome::Updated | ItemOutcome::Deleted) => summary.replaced += 1,
                    Err(f) => {
                        let u = Unfinished {
                            registration_id: r.id.clone(),
                            reason: f.to_string(),
                        };
                        if f.retry_later {
                            summary.retry_later.push(u);
                        } else {
                            summary.failed.push(u);
                        }
                    }
                }
            }
            progress(Progress { done, total });
        });
    }
    if let Some(e) = ledger_error {
        // DPS holds what it confirmed; the ledger still says pending, and the next run confirms
        // those as already present.
        return Err(e.into());
    }
    Ok(summary)
}

fn record_chunk(
    ledger: &mut Ledger,
    ids: &HashMap<String, EnrollmentId>,
    results: &[ItemResult],
) -> Result<(), LedgerError> {
    ledger.transaction(|w| {
        for r in results {
            let Some(id) = ids.get(&r.id.to_ascii_lowercase()) else {
                continue;
            };
            let outcome = match &r.result {
                Ok(_) => EnrollmentOutcome::Enrolled { etag: None },
                Err(f) if f.retry_later => EnrollmentOutcome::RetryLater {
                    error: f.to_string(),
                },
                Err(f) => EnrollmentOutcome::Failed {
                    error: f.to_string(),
                },
            };
            w.record_enrollment_result(*id, &outcome)?;
        }
        Ok(())
    })
}

/// The enrollment settings a batch.toml sets (hubs, allocation, initial twin): one mapping for
/// the enrollment worker and for `export`, so that an offline batch's files carry exactly what
/// an immediately enrolled batch sends.
pub fn batch_settings(batch: &BatchConfig) -> EnrollmentSettings {
    EnrollmentSettings {
        iot_hubs: batch.iot_hubs.clone(),
        allocation_policy: batch.allocation_policy,
        tags: batch.twin_tags.clone(),
        desired_properties: batch.twin_desired.clone(),
        ..EnrollmentSettings::default()
    }
}

/// The enrollment group of an `x509-group` batch over its issuing CA certificate (the first of
/// `keys.ca_chain`): what an export writes so that the batch's devices enroll through it, for the
/// CLI's `export` and the desk's export wizard alike. `None` for other modes, or when the chain
/// holds no certificate.
pub fn x509_group_record(batch: &BatchConfig) -> Option<GroupRecord> {
    if batch.mode != super::config::Mode::X509Group {
        return None;
    }
    let group_id = batch.enrollment_group.clone()?;
    let issuer = crate::identity::pem::decode_all(batch.ca_chain_pem.as_deref()?)
        .ok()?
        .into_iter()
        .find(|b| b.label == crate::identity::pem::label::CERTIFICATE)?;
    Some(GroupRecord {
        group_id,
        attestation: crate::dps::export::GroupAttestation::SigningCertificate {
            certificate_pem: crate::identity::pem::encode(
                crate::identity::pem::label::CERTIFICATE,
                &issuer.der,
            ),
        },
    })
}

/// What an export left out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportReport {
    /// What was written.
    pub written: ExportSummary,
    /// Pending enrollments that could not go into the files.
    pub left_out: Vec<Unfinished>,
}

/// Writes the pending individual enrollments of `dps_target` (and the given groups) as
/// enrollment files into `dir`: re-provisioned identities as replacements (bulk `update`), the
/// others as creations. Individual symmetric keys are written only when `keys` recomputes them
/// (and they match the ledger's fingerprints). Nothing is marked enrolled: that comes with
/// `import-results`.
///
/// With `batch`, only that batch's identities are exported (the settings are that batch's).
pub fn export_pending(
    ledger: &Ledger,
    dps_target: &str,
    batch: Option<&str>,
    settings: &EnrollmentSettings,
    groups: Vec<GroupRecord>,
    keys: Option<&IndividualKeys>,
    dir: &Path,
) -> Result<ExportReport, EnrollmentError> {
    let pending = pending_of(ledger, dps_target, batch)?;
    let mut individuals = Vec::new();
    let mut left_out = Vec::new();
    for p in &pending {
        let reg = p.enrollment.registration_id.clone();
        let attestation = match (p.enrollment.kind, p.attestation) {
            (EnrollmentKind::Group, attestation) => {
                let group = p.enrollment.group_name.as_deref().unwrap_or("?");
                left_out.push(Unfinished {
                    registration_id: reg,
                    reason: if attestation == AttestationKind::SymmetricKey {
                        format!(
                            "covered by symmetric-key enrollment group '{group}', which DPS must \
                             hold already: its key is not exported (the group is made at DPS and \
                             its key imported with `dps-station hsm group-key import`)"
                        )
                    } else {
                        format!(
                            "covered by enrollment group '{group}': `export --config \
                             <station.toml> --batch <its batch.toml>` writes the group"
                        )
                    },
                });
                continue;
            }
            (_, AttestationKind::X509) => {
                p.certificate_der
                    .as_ref()
                    .map(|der| RecordAttestation::X509 {
                        certificate_pem: pem_certificate(der),
                    })
            }
            (_, AttestationKind::Tpm) => {
                p.endorsement_key.as_ref().map(|ek| RecordAttestation::Tpm {
                    endorsement_key: BASE64_STANDARD.encode(ek),
                })
            }
            (_, AttestationKind::SymmetricKey) => {
                let key = match keys {
                    Some(keys) => keys.key_for(p).map_err(|e| e.to_string()),
                    None => Err(no_key_source(&reg, "export")),
                };
                match key {
                    Ok(primary_key) => Some(RecordAttestation::SymmetricKey {
                        primary_key,
                        secondary_key: None,
                    }),
                    Err(reason) => {
                        left_out.push(Unfinished {
                            registration_id: reg,
                            reason,
                        });
                        continue;
                    }
                }
            }
        };
        match attestation {
            Some(attestation) => individuals.push(IndividualRecord {
                registration_id: reg,
                attestation,
                device_id: None,
                // A re-provisioned identity replaces the enrollment DPS may hold for the
                // revoked one: a create would be refused as a conflict.
                replaces_existing: p.replaces.is_some(),
            }),
            None => left_out.push(Unfinished {
                registration_id: reg,
                reason: "the ledger holds no certificate or endorsement key for it".into(),
            }),
        }
    }
    if individuals.is_empty() && groups.is_empty() {
        // Nothing to write: say why each pending one was left out (no empty folder is made).
        return Ok(ExportReport {
            written: ExportSummary::default(),
            left_out,
        });
    }
    let written = export(
        dir,
        &ExportInput {
            dps_target: dps_target.to_string(),
            settings: settings.clone(),
            individuals,
            groups,
            mode: BulkMode::Create,
        },
    )?;
    Ok(ExportReport { written, left_out })
}

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportSummary {
    /// Results read.
    pub read: usize,
    /// Pending enrollments marked enrolled.
    pub enrolled: usize,
    /// Pending enrollments left pending with the reported error.
    pub reported_failed: Vec<Unfinished>,
    /// Results for registration IDs with no pending enrollment for this target.
    pub not_pending: Vec<String>,
}

/// Reads results of an enrollment done elsewhere and records them against the pending
/// enrollments of `dps_target`. A reported failure keeps the enrollment pending (with the error),
/// since the remote site may simply try again.
pub fn import_pending_results(
    ledger: &mut Ledger,
    dps_target: &str,
    path: &Path,
) -> Result<ImportSummary, EnrollmentError> {
    let results = import_results(path)?;
    let pending = ledger.pending_enrollments(dps_target, MAX_PENDING)?;
    let by_id: HashMap<String, EnrollmentId> = pending
        .iter()
        .map(|p| {
            (
                p.enrollment.registration_id.to_ascii_lowercase(),
                p.enrollment.id,
            )
        })
        .collect();
    let mut summary = ImportSummary {
        read: results.len(),
        ..ImportSummary::default()
    };
    ledger.transaction(|w| {
        for r in &results {
            let Some(id) = by_id.get(&r.registration_id) else {
                continue;
            };
            let outcome = match &r.status {
                ImportedStatus::Enrolled => EnrollmentOutcome::Enrolled { etag: None },
                ImportedStatus::Failed {
                    error_code,
                    message,
                } => EnrollmentOutcome::RetryLater {
                    error: format!(
                        "reported failed in {}{}: {message}",
                        r.source.display(),
                        error_code
                            .map(|c| format!(" (errorCode {c})"))
                            .unwrap_or_default()
                    ),
                },
            };
            w.record_enrollment_result(*id, &outcome)?;
        }
        Ok(())
    })?;
    for r in results {
        if !by_id.contains_key(&r.registration_id) {
            summary.not_pending.push(r.registration_id);
            continue;
        }
        match r.status {
            ImportedStatus::Enrolled => summary.enrolled += 1,
            ImportedStatus::Failed { message, .. } => summary.reported_failed.push(Unfinished {
                registration_id: r.registration_id,
                reason: message,
            }),
        }
    }
    Ok(summary)
}
