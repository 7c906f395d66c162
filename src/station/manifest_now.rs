//! Trust&GO manifests from the desk (the engineer's Manifests screen): the import and the
//! enrollment the `manifest import` command does, as two calls a screen's worker makes, with the
//! station's own ledger and DPS targets. The screen stays a drawing; this is where files, the
//! ledger and DPS are touched.

use std::path::Path;
use std::sync::atomic::AtomicUsize;

use crate::dps::payload::EnrollmentSettings;
use crate::ledger::{Ledger, WriterIdentity};
use crate::manifest::{ManifestSigner, read_manifest_counting};

use super::config::StationConfig;
use super::enroll_now::enroll_now;
use super::enrollment::EnrollSummary;
use super::manifest_import::{
    ImportOptions, ManifestEnrollment, default_batch_name, ensure_group, ensure_verified_ca_group,
    import_manifest,
};
use super::operator::handle::connect_dps;

/// One row of what an import did: an entry recorded or refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportRow {
    /// Its position in the file (`#0` first), when known.
    pub index: Option<usize>,
    /// The secure element's unique ID, when known.
    pub unique_id: Option<String>,
    /// The registration ID it was recorded under (`None` when refused).
    pub registration_id: Option<String>,
    /// Why it was refused (`None` when recorded).
    pub reason: Option<String>,
}

/// What a desk import did.
#[derive(Debug, Clone)]
pub struct DeskImport {
    /// The manifest's file name.
    pub file: String,
    /// Entries in the file.
    pub total: usize,
    /// The ledger batch the identities went into.
    pub batch: String,
    /// Refused entries first (file order), then the recorded ones (file order).
    pub rows: Vec<ImportRow>,
    /// The device CA (DER) the group enrolls through, in group mode.
    pub group_ca_der: Option<Vec<u8>>,
}

impl DeskImport {
    /// How many entries were recorded.
    pub fn recorded(&self) -> usize {
        self.rows.iter().filter(|r| r.reason.is_none()).count()
    }

    /// How many were refused.
    pub fn refused(&self) -> usize {
        self.rows.len() - self.recorded()
    }
}

/// Why a desk import or enrollment did nothing, or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ManifestDeskError {
    /// The file is not a manifest (not JSON, empty, unreadable), or the signer certificate
    /// cannot be read: nothing was recorded.
    #[error(transparent)]
    Manifest(#[from] crate::manifest::ManifestError),
    /// The ledger refused (a running batch holds it, the disk is full): nothing was recorded.
    #[error("{0}; nothing was recorded: import once the running batch has ended")]
    Ledger(#[from] crate::ledger::LedgerError),
    /// The DPS target is not usable from station.toml.
    #[error("{0}")]
    Target(String),
    /// The enrollment group could not be made ready in DPS.
    #[error(transparent)]
    Group(#[from] super::manifest_import::GroupError),
    /// Enrolling failed.
    #[error("{0}")]
    Enroll(String),
}

/// Reads and verifies `manifest` against the signer certificate at `signer`, then records the
/// verified entries in the station's ledger (`written`, queued for `target`) as `operator`:
/// the `manifest import` path. `read` counts entries as they are reached (progress).
pub fn import_now(
    station: &StationConfig,
    operator: &str,
    manifest: &Path,
    signer: &Path,
    target: &str,
    enrollment: ManifestEnrollment,
    read: &AtomicUsize,
) -> Result<DeskImport, ManifestDeskError> {
    let signer = ManifestSigner::load(signer)?;
    let report = read_manifest_counting(manifest, &signer, Some(read))?;
    let mut ledger = Ledger::open(
        &station.ledger,
        &WriterIdentity {
            station: station.name.clone(),
            operator: operator.to_string(),
        },
    )?;
    let options = ImportOptions {
        batch: default_batch_name(&report),
        dps_target: Some(target.to_string()),
        enrollment,
    };
    let outcome = import_manifest(&mut ledger, &report, &options)?;
    let by_id: std::collections::HashMap<&str, (usize, &str)> = report
        .verified
        .iter()
        .map(|e| (e.registration_id.as_str(), (e.index, e.unique_id.as_str())))
        .collect();
    // Refused entries first: they are what the engineer must act on (a reel of thousands
    // scrolls; the few refused stay in view).
    let mut rows: Vec<ImportRow> = outcome
        .refused
        .iter()
        .map(|e| ImportRow {
            index: Some(e.index),
            unique_id: e.unique_id.clone(),
            registration_id: None,
            reason: Some(e.problem.to_string()),
        })
        .collect();
    let mut recorded: Vec<ImportRow> = outcome
        .recorded
        .iter()
        .map(|rid| {
            let found = by_id.get(rid.as_str());
            ImportRow {
                index: found.map(|f| f.0),
                unique_id: found.map(|f| f.1.to_string()),
                registration_id: Some(rid.clone()),
                reason: None,
            }
        })
        .collect();
    recorded.sort_by_key(|r| r.index);
    rows.extend(recorded);
    Ok(DeskImport {
        file: report.provenance.file_name.clone(),
        total: report.total(),
        batch: options.batch,
        rows,
        group_ca_der: outcome.group_ca_der,
    })
}

/// Enrolls what an import queued for `target`: for a group, the group (over the device CA, or
/// through the verified CA) is made ready first; then the queue goes through the desk's
/// enroll-now path (the `dps enroll` path, after a reachability probe).
pub fn enroll_imported_now(
    station: &StationConfig,
    operator: &str,
    target: &str,
    enrollment: &ManifestEnrollment,
    group_ca_der: Option<&[u8]>,
) -> Result<EnrollSummary, ManifestDeskError> {
    if let (ManifestEnrollment::Group { group_id, ca_name }, Some(ca)) = (enrollment, group_ca_der)
    {
        let client =
            connect_dps(station, target).map_err(|e| ManifestDeskError::Target(e.to_string()))?;
        let settings = EnrollmentSettings::default();
        match ca_name {
            Some(name) => ensure_verified_ca_group(&client, group_id, name, ca, &settings)?,
            None => ensure_group(&client, group_id, ca, &settings)?,
        }
    }
    enroll_now(station, operator, target).map_err(|e| ManifestDeskError::Enroll(e.to_string()))
}
