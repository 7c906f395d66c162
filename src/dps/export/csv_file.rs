//! `enrollments.csv`: one row per enrollment for spreadsheets and people, with the certificate's
//! file and SHA-256 thumbprint (what the Azure portal shows) and, for symmetric keys, the keys.
//! The last column, `operation`, says `create` or `update` (the enrollment replaces one DPS may
//! hold for a re-provisioned device). `initial_twin` is the enrollment's `initialTwin` as DPS
//! takes it (JSON: tags and desired properties), empty when the batch sets none.

use std::path::Path;

use super::{ExportError, ExportInput, GroupAttestation, Prepared, RecordAttestation, write_file};
use crate::dps::model::InitialTwin;
use crate::dps::same_content::sha256_thumbprint;

/// The header row; `import-results` reads `registration_id` + `status` from a copy of this file.
pub const HEADER: [&str; 15] = [
    "kind",
    "registration_id",
    "attestation",
    "device_id",
    "certificate_file",
    "sha256_thumbprint",
    "ca_name",
    "primary_key",
    "secondary_key",
    "endorsement_key",
    "iot_hubs",
    "allocation_policy",
    "provisioning_status",
    "operation",
    "initial_twin",
];

pub(super) fn write(
    dir: &Path,
    input: &ExportInput,
    prepared: &Prepared,
    secret_dir: bool,
) -> Result<(), ExportError> {
    let csv_err = |e: csv::Error| ExportError::Io {
        path: dir.join("enrollments.csv"),
        source: std::io::Error::other(e),
    };
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(HEADER).map_err(csv_err)?;
    let s = &input.settings;
    let hubs = s.iot_hubs.join(" ");
    let policy = s
        .allocation_policy
        .map(|p| enum_text(&p))
        .unwrap_or_default();
    let status = s
        .provisioning_status
        .map(|p| enum_text(&p))
        .unwrap_or_default();
    for (record, (enrollment, cert_file)) in input.individuals.iter().zip(&prepared.individuals) {
        let twin = twin_text(enrollment.initial_twin.as_ref());
        let (att, thumb, pk, sk, ek) = match &record.attestation {
            RecordAttestation::X509 { certificate_pem } => (
                "x509",
                sha256_thumbprint(certificate_pem).unwrap_or_default(),
                String::new(),
                String::new(),
                String::new(),
            ),
            RecordAttestation::SymmetricKey {
                primary_key,
                secondary_key,
            } => (
                "symmetricKey",
                String::new(),
                primary_key.expose().to_string(),
                secondary_key
                    .as_ref()
                    .map(|k| k.expose().to_string())
                    .unwrap_or_default(),
                String::new(),
            ),
            RecordAttestation::Tpm { endorsement_key } => (
                "tpm",
                String::new(),
                String::new(),
                String::new(),
                endorsement_key.clone(),
            ),
        };
        w.write_record([
            "individual",
            record.registration_id.as_str(),
            att,
            record.device_id.as_deref().unwrap_or_default(),
            cert_file.as_deref().unwrap_or_default(),
            &thumb,
            "",
            &pk,
            &sk,
            &ek,
            &hubs,
            &policy,
            &status,
            if record.replaces_existing {
                "update"
            } else {
                "create"
            },
            &twin,
        ])
        .map_err(csv_err)?;
    }
    for (group, (enrollment, cert_file)) in input.groups.iter().zip(&prepared.groups) {
        let twin = twin_text(enrollment.initial_twin.as_ref());
        let (att, thumb, ca, pk, sk) = match &group.attestation {
            GroupAttestation::SigningCertificate { certificate_pem } => (
                "x509",
                sha256_thumbprint(certificate_pem).unwrap_or_default(),
                String::new(),
                String::new(),
                String::new(),
            ),
            GroupAttestation::CaReference { primary, .. } => (
                "x509",
                String::new(),
                primary.clone(),
                String::new(),
                String::new(),
            ),
            GroupAttestation::SymmetricKey {
                primary_key,
                secondary_key,
            } => (
                "symmetricKey",
                String::new(),
                String::new(),
                primary_key.expose().to_string(),
                secondary_key
                    .as_ref()
                    .map(|k| k.expose().to_string())
                    .unwrap_or_default(),
            ),
        };
        w.write_record([
            "group",
            group.group_id.as_str(),
            att,
            "",
            cert_file.as_deref().unwrap_or_default(),
            &thumb,
            &ca,
            &pk,
            &sk,
            "",
            &hubs,
            &policy,
            &status,
            "create",
            &twin,
        ])
        .map_err(csv_err)?;
    }
    let bytes = w.into_inner().map_err(|e| ExportError::Io {
        path: dir.join("enrollments.csv"),
        source: std::io::Error::other(e.to_string()),
    })?;
    let secret = input
        .individuals
        .iter()
        .any(|r| matches!(r.attestation, RecordAttestation::SymmetricKey { .. }))
        || input
            .groups
            .iter()
            .any(|g| matches!(g.attestation, GroupAttestation::SymmetricKey { .. }));
    write_file(dir, "enrollments.csv", &bytes, secret, secret_dir)?;
    Ok(())
}

/// The initial twin as the JSON DPS takes (`{"tags":...,"properties":{"desired":...}}`).
fn twin_text(twin: Option<&InitialTwin>) -> String {
    twin.and_then(|t| serde_json::to_string(t).ok())
        .unwrap_or_default()
}

/// The JSON spelling of a serde enum (`geoLatency`, `enabled`).
pub(super) fn enum_text<T: serde::Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        _ => String::new(),
    }
}
