//! Trust&GO on the line (issue 16): a batch of devices whose secure elements arrive provisioned
//! (`[manifest] require = true` in batch.toml). The station writes no key and issues no
//! certificate: it asks each device for its secure element's serial and public key (`SE-INFO`),
//! finds the element among the imported manifests' entries (ledger `manifest_entries`) and
//! passes the slot only if it is there with that key. The identity is then the manifest's,
//! recorded `written` at import; if the import did not queue it for this batch's DPS target, it
//! is queued here, so the line's enrollment worker enrolls it like any other.
//!
//! ```toml
//! mode = "x509-csr"        # the enrollment: x509-csr → individual, x509-group → enrollment_group
//! [manifest]
//! require = true           # no keys.ca_key / keys.ca_chain needed: nothing is issued here
//! ```

use std::path::Path;

use serde::Deserialize;

use super::config::{BatchConfig, ConfigError, Mode};
use super::events::Stage;
use super::manifest_import::{LineMatchError, match_element};
use super::pipeline::BatchContext;
use crate::device::driver::{DeviceDriver, DeviceInfo};
use crate::ledger::{EnrollmentKind, NewEnrollment};

/// `[manifest]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawManifest {
    #[serde(default)]
    require: bool,
}

/// Checks `[manifest]` of the batch at `path` against its `mode`; whether the batch takes only
/// devices of imported manifests.
pub fn validate(path: &Path, raw: Option<&RawManifest>, mode: Mode) -> Result<bool, ConfigError> {
    let require = raw.is_some_and(|r| r.require);
    if require && !mode.is_x509() {
        return Err(ConfigError::Invalid {
            path: path.to_path_buf(),
            key: "manifest.require".into(),
            message: format!(
                "a manifest batch enrolls the secure elements' X.509 certificates, so mode '{mode}' does not fit: use mode x509-csr (individual enrollments) or x509-group (through enrollment_group)"
            ),
        });
    }
    Ok(require)
}

/// The enrollment a manifest identity is queued for on this batch's line.
fn enrollment_of(batch: &BatchConfig) -> NewEnrollment {
    NewEnrollment {
        dps_target: batch.dps_target.clone(),
        kind: if batch.mode.is_group() {
            EnrollmentKind::Group
        } else {
            EnrollmentKind::Individual
        },
        group_name: batch
            .mode
            .is_group()
            .then(|| batch.enrollment_group.clone())
            .flatten(),
    }
}

/// The audit action of a device that passed the manifest check on a line.
pub const LINE_PASS: &str = "manifest.line_pass";

/// How a device of a manifest batch passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinePass {
    /// Matched now (audited, its enrollment queued if it was not).
    Passed(String),
    /// Matched before in this batch (a board seated again): not counted twice.
    AlreadyPassed(String),
}

/// The line check of a manifest batch for the device on `driver`: its secure element must be in
/// an imported manifest with the key it reports. The first pass in this batch is audited
/// (`manifest.line_pass`: batch, device serial, port, manifest) and queues the identity for the
/// batch's DPS target if it was not; otherwise the failing stage and the operator's message
/// (what the device is and what to do with it).
pub fn pass(
    ctx: &BatchContext,
    driver: &mut dyn DeviceDriver,
    info: &DeviceInfo,
) -> Result<LinePass, (Stage, String)> {
    let refuse = |e: LineMatchError| (Stage::Check, format!("device {}: {e}", info.serial));
    let se = driver.secure_element().map_err(|e| {
        (
            Stage::Check,
            format!(
                "device {} cannot report its secure element ({e}): this batch takes only devices whose secure element is in an imported Trust&GO manifest; set it aside",
                info.serial
            ),
        )
    })?;
    let serial = se.serial.clone();
    let entry = ctx
        .ledger
        .call(move |l| l.manifest_entry(&serial))
        .map_err(|e| (Stage::Check, e.to_string()))?;
    let port = driver.port().to_string();
    let entry = match_element(&port, se, entry).map_err(refuse)?;
    let rid = entry.registration_id.clone();
    if !matches!(entry.state.as_str(), "written" | "enrolled") {
        return Err((
            Stage::Check,
            format!(
                "device {}: its secure element {} is in manifest {} but its identity {rid} is '{}' in the ledger; set the device aside and look at the identity in the ledger",
                info.serial, entry.unique_id, entry.manifest_file, entry.state
            ),
        ));
    }
    let enrollment = enrollment_of(&ctx.batch);
    let written = entry.state == "written";
    let batch = ctx.batch.name.clone();
    let details = serde_json::json!({
        "batch": batch,
        "device_serial": info.serial,
        "port": port,
        "unique_id": entry.unique_id,
        "manifest": entry.manifest_file,
    });
    let queued_rid = rid.clone();
    let first = ctx
        .ledger
        .call(move |l| {
            let seen = l.audit_for(&queued_rid)?.iter().any(|a| {
                a.action == LINE_PASS
                    && serde_json::from_str::<serde_json::Value>(&a.details)
                        .is_ok_and(|d| d["batch"] == batch.as_str())
            });
            if seen {
                return Ok(false);
            }
            let queued = l
                .enrollments_for(&queued_rid)?
                .iter()
                .any(|e| e.dps_target == enrollment.dps_target);
            l.transaction(|w| {
                if written && !queued {
                    w.queue_enrollment(&queued_rid, &enrollment)?;
                }
                w.append_audit("station", LINE_PASS, &queued_rid, &details)?;
                Ok(true)
            })
        })
        .map_err(|e| (Stage::Record, e.to_string()))?;
    if !first {
        tracing::info!(serial = %info.serial, registration_id = %rid, "device passed the manifest check before in this batch");
        return Ok(LinePass::AlreadyPassed(rid));
    }
    tracing::info!(serial = %info.serial, registration_id = %rid, manifest = %entry.manifest_file, "device passed the manifest check");
    Ok(LinePass::Passed(rid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn require_fits_only_x509_modes_and_is_off_unless_said() {
        let path = Path::new("batch.toml");
        let on = RawManifest { require: true };
        assert!(!validate(path, None, Mode::X509Csr).unwrap());
        assert!(validate(path, Some(&on), Mode::X509Group).unwrap());
        let err = validate(path, Some(&on), Mode::SymmetricGroup).unwrap_err();
        assert!(err.to_string().contains("x509-csr"), "{err}");
    }
}
