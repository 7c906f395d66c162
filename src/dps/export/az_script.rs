//! `enroll-with-az.sh`: one `az iot dps enrollment create` (or `enrollment-group create`) per
//! enrollment, for a site with the Azure CLI and its `azure-iot` extension. An enrollment that
//! replaces one DPS may hold (a re-provisioned device) is an `az iot dps enrollment update`
//! instead (same credential flags, no `--attestation-type`, no `--etag`: the extension then
//! replaces whatever is there), falling back to `create` when DPS holds none. Flag names are those
//! of the extension (`--dps-name`, `--resource-group`, `--enrollment-id`, `--attestation-type
//! {symmetricKey,tpm,x509}`, `--certificate-path`, `--primary-key`, `--endorsement-key`,
//! `--root-ca-name`, ...). The script keeps going after a failure and writes
//! `az-results.csv` (`registration_id,status`), which `dps-station import-results` reads back.

use std::path::Path;

use super::csv_file::enum_text;
use super::{ExportError, ExportInput, GroupAttestation, Prepared, RecordAttestation, write_file};
use crate::dps::model::ReprovisionPolicy;

/// The results file the script writes next to itself.
pub const RESULTS_FILE: &str = "az-results.csv";

pub(super) fn write(
    dir: &Path,
    input: &ExportInput,
    prepared: &Prepared,
    secret_dir: bool,
) -> Result<(), ExportError> {
    let mut s = String::new();
    s.push_str("#!/bin/sh\n");
    s.push_str(
        "# Written by dps-station: enrolls the devices of this export with the Azure CLI.\n",
    );
    s.push_str(
        "# Needs: az login, and the azure-iot extension (az extension add --name azure-iot).\n",
    );
    s.push_str(
        "# Usage: DPS_NAME=<dps> DPS_RESOURCE_GROUP=<resource group> sh enroll-with-az.sh\n",
    );
    s.push_str(&format!(
        "# Each result is appended to {RESULTS_FILE}; give that file to `dps-station import-results`.\n"
    ));
    s.push_str("set -u\n");
    s.push_str(": \"${DPS_NAME:?set DPS_NAME to the name of the DPS instance}\"\n");
    s.push_str(": \"${DPS_RESOURCE_GROUP:?set DPS_RESOURCE_GROUP to the resource group of the DPS instance}\"\n");
    s.push_str("cd \"$(dirname \"$0\")\" || exit 1\n");
    s.push_str(&format!(
        "[ -f {RESULTS_FILE} ] || echo 'registration_id,status' > {RESULTS_FILE}\n"
    ));
    s.push_str("failed=0\n");
    s.push_str("record() { echo \"$1,$2\" >> ");
    s.push_str(RESULTS_FILE);
    s.push_str("; [ \"$2\" = enrolled ] || failed=$((failed + 1)); }\n\n");

    let common = common_flags(input);
    for (record, (_, cert_file)) in input.individuals.iter().zip(&prepared.individuals) {
        let id = &record.registration_id;
        let mut credential = String::new();
        let attestation_type = match &record.attestation {
            RecordAttestation::X509 { .. } => {
                credential.push_str(" --certificate-path ");
                credential.push_str(&quote(cert_file.as_deref().unwrap_or_default()));
                " --attestation-type x509"
            }
            RecordAttestation::SymmetricKey {
                primary_key,
                secondary_key,
            } => {
                credential.push_str(" --primary-key ");
                credential.push_str(&quote(primary_key.expose()));
                if let Some(k) = secondary_key {
                    credential.push_str(" --secondary-key ");
                    credential.push_str(&quote(k.expose()));
                }
                " --attestation-type symmetricKey"
            }
            RecordAttestation::Tpm { endorsement_key } => {
                credential.push_str(" --endorsement-key ");
                credential.push_str(&quote(endorsement_key));
                " --attestation-type tpm"
            }
        };
        if let Some(device_id) = &record.device_id {
            credential.push_str(" --device-id ");
            credential.push_str(&quote(device_id));
        }
        credential.push_str(&common);
        let command = |verb: &str, attestation: &str| {
            format!(
                "az iot dps enrollment {verb} --dps-name \"$DPS_NAME\" --resource-group \"$DPS_RESOURCE_GROUP\" \\\n    --enrollment-id {}{attestation}{credential}",
                quote(id)
            )
        };
        let create = command("create", attestation_type);
        if record.replaces_existing {
            // Re-provisioned: replace the revoked identity's enrollment; create it if DPS
            // holds none (update needs an existing enrollment).
            let update = command("update", "");
            s.push_str(&format!(
                "if {update} >/dev/null || {create} >/dev/null; then record {id} enrolled; else record {id} failed; fi\n",
                id = quote(id)
            ));
        } else {
            s.push_str(&format!(
                "if {create} >/dev/null; then record {id} enrolled; else record {id} failed; fi\n",
                id = quote(id)
            ));
        }
    }
    for (group, (_, cert_file)) in input.groups.iter().zip(&prepared.groups) {
        let id = &group.group_id;
        let mut cmd = format!(
            "az iot dps enrollment-group create --dps-name \"$DPS_NAME\" --resource-group \"$DPS_RESOURCE_GROUP\" \\\n    --enrollment-id {}",
            quote(id)
        );
        match &group.attestation {
            GroupAttestation::SigningCertificate { .. } => {
                cmd.push_str(" --certificate-path ");
                cmd.push_str(&quote(cert_file.as_deref().unwrap_or_default()));
            }
            GroupAttestation::CaReference { primary, secondary } => {
                cmd.push_str(" --root-ca-name ");
                cmd.push_str(&quote(primary));
                if let Some(sec) = secondary {
                    cmd.push_str(" --secondary-root-ca-name ");
                    cmd.push_str(&quote(sec));
                }
            }
            GroupAttestation::SymmetricKey {
                primary_key,
                secondary_key,
            } => {
                cmd.push_str(" --primary-key ");
                cmd.push_str(&quote(primary_key.expose()));
                if let Some(k) = secondary_key {
                    cmd.push_str(" --secondary-key ");
                    cmd.push_str(&quote(k.expose()));
                }
            }
        }
        cmd.push_str(&common);
        s.push_str(&format!(
            "if {cmd} >/dev/null; then echo {msg_ok}; else echo {msg_fail} >&2; failed=$((failed + 1)); fi\n",
            msg_ok = quote(&format!("enrollment group {id}: created")),
            msg_fail = quote(&format!("enrollment group {id}: FAILED")),
        ));
    }
    s.push_str("\necho \"done; $failed failed (see ");
    s.push_str(RESULTS_FILE);
    s.push_str(")\"\n[ \"$failed\" -eq 0 ]\n");
    let secret = input
        .individuals
        .iter()
        .any(|r| matches!(r.attestation, RecordAttestation::SymmetricKey { .. }))
        || input
            .groups
            .iter()
            .any(|g| matches!(g.attestation, GroupAttestation::SymmetricKey { .. }));
    write_file(dir, "enroll-with-az.sh", s.as_bytes(), secret, secret_dir)?;
    Ok(())
}

fn common_flags(input: &ExportInput) -> String {
    let st = &input.settings;
    let mut f = String::new();
    if !st.iot_hubs.is_empty() {
        f.push_str(" \\\n    --iot-hubs ");
        f.push_str(&quote(&st.iot_hubs.join(" ")));
    }
    if let Some(p) = st.allocation_policy {
        f.push_str(" --allocation-policy ");
        f.push_str(&enum_text(&p));
    }
    if let Some(p) = st.provisioning_status {
        f.push_str(" --provisioning-status ");
        f.push_str(&enum_text(&p));
    }
    if let Some(p) = st.reprovision_policy {
        f.push_str(" --reprovision-policy ");
        f.push_str(reprovision_flag(p));
    }
    if let Some(edge) = st.iot_edge {
        f.push_str(if edge {
            " --edge-enabled true"
        } else {
            " --edge-enabled false"
        });
    }
    if let Some(tags) = &st.tags {
        f.push_str(" \\\n    --initial-twin-tags ");
        f.push_str(&quote(&serde_json::Value::Object(tags.clone()).to_string()));
    }
    if let Some(desired) = &st.desired_properties {
        f.push_str(" \\\n    --initial-twin-properties ");
        f.push_str(&quote(
            &serde_json::Value::Object(desired.clone()).to_string(),
        ));
    }
    f
}

/// The az CLI names the three combinations of the policy's two flags.
fn reprovision_flag(p: ReprovisionPolicy) -> &'static str {
    match (p.update_hub_assignment, p.migrate_device_data) {
        (false, _) => "never",
        (true, true) => "reprovisionandmigratedata",
        (true, false) => "reprovisionandresetdata",
    }
}

/// POSIX single-quoting: safe for any text.
pub(crate) fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_quotes() {
        assert_eq!(quote("a'b"), "'a'\\''b'");
        assert_eq!(quote("{\"x\":1}"), "'{\"x\":1}'");
    }
}
