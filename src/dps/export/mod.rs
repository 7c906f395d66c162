//! Enrollment files, for sites that enroll from another network: bulk-operation JSON bodies
//! exactly as `POST /enrollments` takes them (≤ 10 per file; replacements of existing
//! enrollments in their own `update` files), a CSV for spreadsheets, a shell script of
//! `az iot dps enrollment create` / `update` commands, a folder of certificates, and a README
//! that says whether the files hold secrets. [`import`] reads back what was enrolled elsewhere.
//!
//! The input is plain records (no ledger types): the station layer maps its identities to them.

mod az_script;
mod bulk_files;
mod csv_file;
pub mod import;
mod readme;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::model::{BulkMode, EnrollmentGroup, IndividualEnrollment};
use super::payload::{self, EnrollmentSettings, PayloadError};
use crate::secret::SecretString;

/// One device to enroll individually.
#[derive(Debug, Clone)]
pub struct IndividualRecord {
    /// The registration ID (the certificate CN for X.509).
    pub registration_id: String,
    /// How it attests.
    pub attestation: RecordAttestation,
    /// IoT Hub device id, when it differs from the registration ID.
    pub device_id: Option<String>,
    /// It replaces an enrollment DPS may already hold under its registration ID (a
    /// re-provisioned device): written as a replacement (bulk `update`, `az ... update`), apart
    /// from the creations.
    pub replaces_existing: bool,
}

/// The attestation of an individual record.
#[derive(Debug, Clone)]
pub enum RecordAttestation {
    /// The device (leaf) certificate, PEM.
    X509 {
        /// PEM text.
        certificate_pem: String,
    },
    /// Individual symmetric keys (secrets: the export says so).
    SymmetricKey {
        /// Primary key, base64.
        primary_key: SecretString,
        /// Secondary key, base64.
        secondary_key: Option<SecretString>,
    },
    /// TPM endorsement key, base64.
    Tpm {
        /// EKpub.
        endorsement_key: String,
    },
}

/// One enrollment group.
#[derive(Debug, Clone)]
pub struct GroupRecord {
    /// The group ID.
    pub group_id: String,
    /// How its devices attest.
    pub attestation: GroupAttestation,
}

/// The attestation of a group.
#[derive(Debug, Clone)]
pub enum GroupAttestation {
    /// A root or intermediate CA certificate, PEM.
    SigningCertificate {
        /// PEM text.
        certificate_pem: String,
    },
    /// Names of CA certificates verified in the DPS instance.
    CaReference {
        /// Primary CA name.
        primary: String,
        /// Secondary CA name.
        secondary: Option<String>,
    },
    /// The group key (a secret: devices' keys derive from it).
    SymmetricKey {
        /// Primary group key, base64.
        primary_key: SecretString,
        /// Secondary group key, base64.
        secondary_key: Option<SecretString>,
    },
}

/// Everything to export.
#[derive(Debug, Clone)]
pub struct ExportInput {
    /// The station's name of the DPS target the enrollments are queued for (the README's
    /// `import-results --dps-target` names it).
    pub dps_target: String,
    /// Hubs, allocation, twin, status shared by all.
    pub settings: EnrollmentSettings,
    /// Individual enrollments.
    pub individuals: Vec<IndividualRecord>,
    /// Enrollment groups.
    pub groups: Vec<GroupRecord>,
    /// Bulk mode written in the bodies of the records that do not replace an enrollment
    /// (`create` unless the user chose to overwrite); replacements are always `update`.
    pub mode: BulkMode,
}

/// Why an export failed; names the file or the record.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The output directory exists and is not empty: nothing is overwritten.
    #[error(
        "the export directory {0} is not empty: give a new or empty directory (nothing was overwritten)"
    )]
    NotEmpty(PathBuf),
    /// Writing failed.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A record could not become an enrollment.
    #[error(transparent)]
    Payload(#[from] PayloadError),
    /// Nothing to export.
    #[error("nothing to export: no individual enrollment and no enrollment group was given")]
    Nothing,
}

/// What was written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportSummary {
    /// Individual enrollments exported.
    pub individuals: usize,
    /// Groups exported.
    pub groups: usize,
    /// Bulk body files written.
    pub bulk_files: Vec<PathBuf>,
    /// Certificate files written.
    pub certificate_files: usize,
    /// Whether any file holds a symmetric key.
    pub holds_secrets: bool,
}

/// The payloads built from the records, with their certificate file names.
pub(crate) struct Prepared {
    pub individuals: Vec<(IndividualEnrollment, Option<String>)>,
    pub groups: Vec<(EnrollmentGroup, Option<String>)>,
}

/// Writes the enrollment files into `dir` (created if absent; must be empty if present).
pub fn export(dir: &Path, input: &ExportInput) -> Result<ExportSummary, ExportError> {
    if input.individuals.is_empty() && input.groups.is_empty() {
        return Err(ExportError::Nothing);
    }
    // Build every payload first: a bad record fails the export before any file is written.
    let prepared = prepare(input)?;
    let holds_secrets = input
        .individuals
        .iter()
        .any(|r| matches!(r.attestation, RecordAttestation::SymmetricKey { .. }))
        || input
            .groups
            .iter()
            .any(|g| matches!(g.attestation, GroupAttestation::SymmetricKey { .. }));
    create_empty_dir(dir, holds_secrets)?;

    let certs_written = write_certificates(dir, input, holds_secrets)?;
    let bulk_files = bulk_files::write(dir, input, &prepared, holds_secrets)?;
    csv_file::write(dir, input, &prepared, holds_secrets)?;
    az_script::write(dir, input, &prepared, holds_secrets)?;
    readme::write(dir, input, holds_secrets)?;
    Ok(ExportSummary {
        individuals: input.individuals.len(),
        groups: input.groups.len(),
        bulk_files,
        certificate_files: certs_written,
        holds_secrets,
    })
}

fn prepare(input: &ExportInput) -> Result<Prepared, ExportError> {
    let s = &input.settings;
    let mut individuals = Vec::with_capacity(input.individuals.len());
    for r in &input.individuals {
        let (mut e, cert) = match &r.attestation {
            RecordAttestation::X509 { certificate_pem } => (
                payload::x509_individual(&r.registration_id, certificate_pem, s)?,
                Some(cert_file_name("devices", &r.registration_id)),
            ),
            RecordAttestation::SymmetricKey {
                primary_key,
                secondary_key,
            } => (
                payload::symmetric_key_individual(
                    &r.registration_id,
                    Some(primary_key.clone()),
                    secondary_key.clone(),
                    s,
                )?,
                None,
            ),
            RecordAttestation::Tpm { endorsement_key } => (
                payload::tpm_individual(&r.registration_id, endorsement_key, None, s)?,
                None,
            ),
        };
        if let Some(device_id) = &r.device_id {
            e = payload::with_device_id(e, device_id)?;
        }
        individuals.push((e, cert));
    }
    let mut groups = Vec::with_capacity(input.groups.len());
    for g in &input.groups {
        let built = match &g.attestation {
            GroupAttestation::SigningCertificate { certificate_pem } => (
                payload::x509_group_signing_certificate(&g.group_id, certificate_pem, s)?,
                Some(cert_file_name("groups", &g.group_id)),
            ),
            GroupAttestation::CaReference { primary, secondary } => (
                payload::x509_group_ca_reference(&g.group_id, primary, secondary.as_deref(), s)?,
                None,
            ),
            GroupAttestation::SymmetricKey {
                primary_key,
                secondary_key,
            } => (
                payload::symmetric_key_group(
                    &g.group_id,
                    Some(primary_key.clone()),
                    secondary_key.clone(),
                    s,
                )?,
                None,
            ),
        };
        groups.push(built);
    }
    Ok(Prepared {
        individuals,
        groups,
    })
}

/// `certs/devices/<id>.pem`: IDs are validated (`[a-z0-9-._:]`), `:` is replaced for Windows.
pub(crate) fn cert_file_name(kind: &str, id: &str) -> String {
    format!("certs/{kind}/{}.pem", id.replace(':', "_"))
}

fn write_certificates(
    dir: &Path,
    input: &ExportInput,
    secret_dir: bool,
) -> Result<usize, ExportError> {
    let mut n = 0;
    for r in &input.individuals {
        if let RecordAttestation::X509 { certificate_pem } = &r.attestation {
            let rel = cert_file_name("devices", &r.registration_id);
            write_file(
                dir,
                &rel,
                certificate_pem.trim().as_bytes(),
                false,
                secret_dir,
            )?;
            n += 1;
        }
    }
    for g in &input.groups {
        if let GroupAttestation::SigningCertificate { certificate_pem } = &g.attestation {
            let rel = cert_file_name("groups", &g.group_id);
            write_file(
                dir,
                &rel,
                certificate_pem.trim().as_bytes(),
                false,
                secret_dir,
            )?;
            n += 1;
        }
    }
    Ok(n)
}

fn create_empty_dir(dir: &Path, secret: bool) -> Result<(), ExportError> {
    let io = |source| ExportError::Io {
        path: dir.to_path_buf(),
        source,
    };
    if dir.exists() {
        if fs::read_dir(dir).map_err(io)?.next().is_some() {
            return Err(ExportError::NotEmpty(dir.to_path_buf()));
        }
    } else {
        fs::create_dir_all(dir).map_err(io)?;
    }
    if secret {
        set_mode(dir, 0o700).map_err(io)?;
    }
    Ok(())
}

/// Writes `rel` under `dir`; files holding secrets are created owner-only (0600) on Unix.
pub(crate) fn write_file(
    dir: &Path,
    rel: &str,
    contents: &[u8],
    secret: bool,
    secret_dir: bool,
) -> Result<PathBuf, ExportError> {
    let path = dir.join(rel);
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |source| ExportError::Io { path: p, source }
    };
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(io(parent))?;
        if secret_dir {
            set_mode(parent, 0o700).map_err(io(parent))?;
        }
    }
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if secret { 0o600 } else { 0o644 });
    }
    let mut file = options.open(&path).map_err(io(&path))?;
    file.write_all(contents).map_err(io(&path))?;
    file.sync_all().map_err(io(&path))?;
    Ok(path)
}

fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(mode))
    }
    #[cfg(not(unix))]
    {
        let _ = (path, mode);
        Ok(())
    }
}
