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

/// The line check of a manifest batch for the device on `driver`: `Ok` with the manifest's
/// registration ID when its secure element is in an imported manifest with the key it reports
/// (its enrollment queued for the batch's DPS target if it was not), else the failing stage and
/// the operator's message (what the device is and what to do with it).
pub fn pass(
    ctx: &BatchContext,
    driver: &mut dyn DeviceDriver,
    info: &DeviceInfo,
) -> Result<String, (Stage, String)> {
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
    let entry = match_element(driver.port(), se, entry).map_err(refuse)?;
    let rid = entry.registration_id.clone();
    match entry.state.as_str() {
        "written" => {}
        "enrolled" => return Ok(rid),
        other => {
            return Err((
                Stage::Check,
                format!(
                    "device {}: its secure element {} is in manifest {} but its identity {rid} is '{other}' in the ledger; set the device aside and look at the identity in the ledger",
                    info.serial, entry.unique_id, entry.manifest_file
                ),
            ));
        }
    }
    let enrollment = enrollment_of(&ctx.batch);
    let queued_rid = rid.clone();
    ctx.ledger
        .call(move |l| {
            let queued = l
                .enrollments_for(&queued_rid)?
                .iter()
                .any(|e| e.dps_target == enrollment.dps_target);
            if !queued {
                l.queue_enrollment(&queued_rid, &enrollment)?;
            }
            Ok(())
        })
        .map_err(|e| (Stage::Record, e.to_string()))?;
    tracing::info!(serial = %info.serial, registration_id = %rid, manifest = %entry.manifest_file, "device passed the manifest check");
    Ok(rid)
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
