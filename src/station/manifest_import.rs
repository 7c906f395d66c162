//! A verified Trust&GO manifest into the ledger and DPS (issue 16): where `manifest` (the format,
//! the checks) meets `ledger` (identities `written` with their provenance) and `dps` (the group
//! over the device certificates' CA).
//!
//! **One transaction per import**: every verified entry that is new to the ledger is recorded,
//! with its enrollment queued and the import's audit row, or none is. A reel is one delivery:
//! half a reel in the ledger after a crash would leave the engineer guessing which entries to
//! import again, while a failed import is simply run again. Refused entries (bad signature,
//! duplicates, already in the ledger) never enter the transaction, so they cannot stop the others.
//! Enrollment then goes through `station::enrollment::enroll_pending`, the path `dps enroll`
//! takes, for this import's ledger batch.

use crate::dps::DpsClient;
use crate::dps::model::ProvisioningStatus;
use crate::dps::payload::{self, EnrollmentSettings};
use sha2::Digest as _;

use crate::identity::pem;
use crate::ledger::{
    AttestationKind, BatchId, EnrollmentKind, Ledger, LedgerError, NewBatch, NewEnrollment,
    NewManifestEntry,
};
use crate::manifest::{EntryError, EntryProblem, ManifestReport, VerifiedEntry};

/// How the imported identities are enrolled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManifestEnrollment {
    /// One individual X.509 enrollment per device certificate.
    Individual,
    /// One X.509 enrollment group over the CA that issued the device certificates (`x5c[1]`).
    Group {
        /// The group's ID in DPS.
        group_id: String,
        /// `None`: the CA is the group's signing certificate. `Some(name)`: the CA is uploaded
        /// to DPS's CA registry under this name, verified, and the group refers to it
        /// (`caReferences.primary`), as DPS's "verified CA" groups do.
        ca_name: Option<String>,
    },
}

/// What to do with a verified manifest.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// The ledger batch the identities go into (made if new; a name already used is reused).
    pub batch: String,
    /// The DPS target their enrollments are queued for; `None` records them without queueing.
    pub dps_target: Option<String>,
    /// Individual or group.
    pub enrollment: ManifestEnrollment,
}

/// What an import recorded and refused.
#[derive(Debug, Clone, Default)]
pub struct ImportOutcome {
    /// Registration IDs recorded `written` (and queued, with a target).
    pub recorded: Vec<String>,
    /// Entries refused: by the manifest's checks, as duplicates in the ledger, or for the group.
    pub refused: Vec<EntryError>,
    /// The CA certificate (DER) the group enrolls through, in group mode.
    pub group_ca_der: Option<Vec<u8>>,
}

/// The default ledger batch of a manifest: `manifest-` and the first 12 hex digits of its SHA-256.
pub fn default_batch_name(report: &ManifestReport) -> String {
    let sha = &report.provenance.file_sha256;
    format!("manifest-{}", &sha[..sha.len().min(12)])
}

/// Records the verified entries of `report` that are new to the ledger, in one transaction.
pub fn import_manifest(
    ledger: &mut Ledger,
    report: &ManifestReport,
    options: &ImportOptions,
) -> Result<ImportOutcome, LedgerError> {
    let mut outcome = ImportOutcome {
        refused: report.refused.clone(),
        ..ImportOutcome::default()
    };
    let mut fresh: Vec<&VerifiedEntry> = Vec::new();
    for entry in &report.verified {
        let known = match ledger.manifest_entry(&entry.unique_id)? {
            Some(m) => Some((m.registration_id, m.state)),
            None => ledger
                .live_or_last_revoked(&entry.registration_id)?
                .map(|i| (i.registration_id, i.state.as_str().to_string())),
        };
        match known {
            Some((registration_id, state)) => outcome.refused.push(EntryError {
                index: entry.index,
                unique_id: Some(entry.unique_id.clone()),
                problem: EntryProblem::AlreadyRecorded {
                    registration_id,
                    state,
                },
            }),
            None => fresh.push(entry),
        }
    }
    if let ManifestEnrollment::Group { group_id, .. } = &options.enrollment {
        let ca = fresh.iter().find_map(|e| e.issuer_der.clone());
        fresh.retain(|e| {
            let same = e.issuer_der.is_some() && e.issuer_der == ca;
            if !same {
                outcome.refused.push(EntryError {
                    index: e.index,
                    unique_id: Some(e.unique_id.clone()),
                    problem: EntryProblem::OtherIssuer {
                        group: group_id.clone(),
                    },
                });
            }
            same
        });
        outcome.group_ca_der = ca.map(|c| c.to_vec());
    }
    outcome.refused.sort_by_key(|e| e.index);
    if fresh.is_empty() {
        return Ok(outcome);
    }
    let (kind, group_name) = match &options.enrollment {
        ManifestEnrollment::Individual => (EnrollmentKind::Individual, None),
        ManifestEnrollment::Group { group_id, .. } => {
            (EnrollmentKind::Group, Some(group_id.clone()))
        }
    };
    let existing_batch = ledger.find_batch(&options.batch)?.map(|b| BatchId(b.id.0));
    let p = &report.provenance;
    outcome.recorded = ledger.transaction(|w| {
        let batch = match existing_batch {
            Some(b) => b,
            None => w.create_batch(&NewBatch {
                name: options.batch.clone(),
                product: fresh[0].part_number.clone(),
                attestation: AttestationKind::X509,
                enrollment_kind: kind,
                dps_target: options.dps_target.clone().unwrap_or_default(),
                registration_id_template: "sn{uniqueId}".into(),
            })?,
        };
        let mut recorded = Vec::with_capacity(fresh.len());
        for e in &fresh {
            w.record_manifest_entry(&NewManifestEntry {
                registration_id: e.registration_id.clone(),
                unique_id: e.unique_id.clone(),
                part_number: e.part_number.clone(),
                certificate_der: e.certificate_der.clone(),
                public_key: e.public_key.clone(),
                manifest_file: p.file_name.clone(),
                manifest_sha256: p.file_sha256.clone(),
                signer_thumbprint: p.signer_thumbprint.clone(),
                batch: Some(batch),
            })?;
            if let Some(target) = &options.dps_target {
                w.queue_enrollment(
                    &e.registration_id,
                    &NewEnrollment {
                        dps_target: target.clone(),
                        kind,
                        group_name: group_name.clone(),
                    },
                )?;
            }
            recorded.push(e.registration_id.clone());
        }
        w.audit_manifest_import(
            &p.file_name,
            &p.file_sha256,
            &p.signer_thumbprint,
            recorded.len(),
            outcome.refused.len(),
        )?;
        Ok(recorded)
    })?;
    tracing::info!(
        manifest = %p.file_name,
        recorded = outcome.recorded.len(),
        refused = outcome.refused.len(),
        "manifest imported"
    );
    Ok(outcome)
}

/// Why the enrollment group could not be made ready.
#[derive(Debug, thiserror::Error)]
pub enum GroupError {
    /// DPS refused or could not be reached.
    #[error("enrollment group '{group}': {message}")]
    Dps {
        /// The group.
        group: String,
        /// What went wrong and what to do.
        message: String,
    },
}

/// Makes sure DPS holds the X.509 enrollment group `group_id` over `ca_der` (the CA that issued
/// the manifest's device certificates): created if missing; an existing group is left as it is
/// (a disabled one is reported).
pub fn ensure_group(
    client: &DpsClient,
    group_id: &str,
    ca_der: &[u8],
    settings: &EnrollmentSettings,
) -> Result<(), GroupError> {
    let fail = |message: String| GroupError::Dps {
        group: group_id.to_string(),
        message,
    };
    match client.find_group(group_id) {
        Ok(Some(g)) if g.provisioning_status == Some(ProvisioningStatus::Disabled) => Err(fail(
            "it is disabled in DPS: enable it, then import or enroll again".into(),
        )),
        Ok(Some(_)) => Ok(()),
        Ok(None) => {
            let group = payload::x509_group_signing_certificate(
                group_id,
                &pem::encode("CERTIFICATE", ca_der),
                settings,
            )
            .map_err(|e| fail(e.to_string()))?;
            client
                .create_group(&group)
                .map(|_| ())
                .map_err(|e| fail(format!("creating it failed: {e}")))
        }
        Err(e) => Err(fail(format!("checking it failed: {e}"))),
    }
}

/// Makes sure DPS holds the X.509 enrollment group `group_id` over the **verified CA** `ca_name`
/// (DPS's `caReferences`): the CA that issued the manifest's device certificates (`ca_der`,
/// authenticated by the manifest's signature over every entry) is uploaded under `ca_name`
/// verified on upload if DPS does not hold it verified yet (the station cannot prove possession
/// of Microchip's key; the engineer vouches for it by choosing this), then the group is created
/// if missing. A CA of that name that is another certificate is refused, never replaced.
pub fn ensure_verified_ca_group(
    client: &DpsClient,
    group_id: &str,
    ca_name: &str,
    ca_der: &[u8],
    settings: &EnrollmentSettings,
) -> Result<(), GroupError> {
    let fail = |message: String| GroupError::Dps {
        group: group_id.to_string(),
        message,
    };
    let thumbprint = hex::encode(sha2::Sha256::digest(ca_der));
    let ca_pem = pem::encode("CERTIFICATE", ca_der);
    match client.find_ca_certificate(ca_name) {
        Ok(Some(held)) if !held.properties.thumbprint.eq_ignore_ascii_case(&thumbprint) => {
            return Err(fail(format!(
                "DPS holds another certificate as CA '{ca_name}' (SHA-256 {}), not the manifest's device CA (SHA-256 {thumbprint}); choose another CA name",
                held.properties.thumbprint
            )));
        }
        Ok(Some(held)) if held.properties.is_verified => {}
        Ok(_) => match client.upload_ca_certificate(ca_name, &ca_pem, true) {
            Ok(_) => {
                tracing::info!(ca = %ca_name, %thumbprint, "manifest device CA uploaded to DPS, verified");
            }
            // A real DPS has no CA-certificate calls on its service endpoint (they are on Azure
            // Resource Manager): the group is made anyway and DPS checks the reference.
            Err(e) if e.is_not_found() => tracing::warn!(
                ca = %ca_name,
                %thumbprint,
                "this DPS endpoint has no CA-certificate registry: upload CA '{ca_name}' and verify it in Azure (az iot dps certificate create --verified), or its devices will not register"
            ),
            Err(e) => return Err(fail(format!("uploading CA '{ca_name}' failed: {e}"))),
        },
        Err(e) => return Err(fail(format!("checking CA '{ca_name}' failed: {e}"))),
    }
    match client.find_group(group_id) {
        Ok(Some(g)) if g.provisioning_status == Some(ProvisioningStatus::Disabled) => Err(fail(
            "it is disabled in DPS: enable it, then import or enroll again".into(),
        )),
        Ok(Some(_)) => Ok(()),
        Ok(None) => {
            let group = payload::x509_group_ca_reference(group_id, ca_name, None, settings)
                .map_err(|e| fail(e.to_string()))?;
            client
                .create_group(&group)
                .map(|_| ())
                .map_err(|e| fail(format!("creating it failed: {e}")))
        }
        Err(e) => Err(fail(format!("checking it failed: {e}"))),
    }
}

/// Why a device on the line does not pass the manifest check.
#[derive(Debug, thiserror::Error)]
pub enum LineMatchError {
    /// Its secure element is in no imported manifest.
    #[error(
        "the secure element {serial} of the device on {port} is in no imported manifest: set the device aside, or import its reel's manifest first (`dps-station manifest import`)"
    )]
    NotInManifest {
        /// The port.
        port: String,
        /// The element's serial.
        serial: String,
    },
    /// Its secure element reports another key than the manifest lists for its serial.
    #[error(
        "the secure element {serial} of the device on {port} reports another public key than manifest {manifest} lists for it: it is not the element Microchip shipped; set the device aside and do not enroll it"
    )]
    KeyMismatch {
        /// The port.
        port: String,
        /// The element's serial.
        serial: String,
        /// The manifest file it was imported from.
        manifest: String,
    },
    /// The ledger could not be read.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// The device did not answer as it should (or has no secure element).
    #[error(transparent)]
    Device(#[from] crate::device::DeviceError),
}

/// Checks the device on `driver` against the imported manifests: its secure element's serial
/// must be in one and its public key must be the one listed. Returns the ledger's entry (its
/// registration ID, its state) for the device that passes.
pub fn check_on_line(
    ledger: &Ledger,
    driver: &mut dyn crate::device::DeviceDriver,
) -> Result<crate::ledger::ManifestEntryRecord, LineMatchError> {
    let se = driver.secure_element()?;
    let entry = ledger.manifest_entry(&se.serial)?;
    match_element(driver.port(), se, entry)
}

/// The rule of [`check_on_line`], apart from where the entry was read (the line's ledger
/// thread reads it for the batch engine): `entry` is what the ledger holds for the element's
/// serial, if anything; the device passes only if it is there with the same public key.
pub fn match_element(
    port: &str,
    se: crate::device::SecureElementInfo,
    entry: Option<crate::ledger::ManifestEntryRecord>,
) -> Result<crate::ledger::ManifestEntryRecord, LineMatchError> {
    let port = port.to_string();
    let Some(entry) = entry else {
        return Err(LineMatchError::NotInManifest {
            port,
            serial: se.serial,
        });
    };
    if entry.public_key != se.public_key {
        return Err(LineMatchError::KeyMismatch {
            port,
            serial: se.serial,
            manifest: entry.manifest_file,
        });
    }
    tracing::info!(port = %port, serial = %se.serial, registration_id = %entry.registration_id, "secure element matches its manifest");
    Ok(entry)
}
