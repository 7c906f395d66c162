//! `README.txt` next to the enrollment files: what each file is, how to use it, and, in capitals
//! at the top, whether the files hold secrets (symmetric keys) and must be handled as such.

use std::path::Path;

use super::{ExportError, ExportInput, write_file};

pub(super) fn write(
    dir: &Path,
    input: &ExportInput,
    holds_secrets: bool,
) -> Result<(), ExportError> {
    let mut s = String::new();
    if holds_secrets {
        s.push_str(
            "WARNING: THESE FILES HOLD SECRETS.\n\
             enrollments.csv, enroll-with-az.sh and the bulk/*.json bodies contain symmetric keys\n\
             (device keys or enrollment-group keys). Anyone holding them can provision devices\n\
             into your IoT hubs. Keep them on encrypted, access-controlled storage, do not mail\n\
             them, and delete them once the enrollments are done.\n\n",
        );
    } else {
        s.push_str(
            "These files hold no secrets: certificates are public, and no symmetric key was\n\
             exported. They still describe which devices may provision: keep them intact.\n\n",
        );
    }
    s.push_str(&format!(
        "Exported by dps-station: {} individual enrollment(s), {} enrollment group(s).\n\n",
        input.individuals.len(),
        input.groups.len()
    ));
    s.push_str(
        "Files\n\
         - bulk/enrollments-NNNN.json, bulk/enrollment-groups-NNNN.json: request bodies of the DPS\n\
           bulk operation (api-version 2021-10-01), at most 10 enrollments each, sent as\n\
           POST https://<dps>.azure-devices-provisioning.net/enrollments?api-version=2021-10-01\n\
           (groups: /enrollmentGroups). Save each answer next to its body as\n\
           enrollments-NNNN.result.json, then run the import-results command below.\n\
         - bulk/enrollments-update-NNNN.json: the same, for re-provisioned devices whose new\n\
           enrollment replaces the one DPS holds for their revoked identity (\"mode\": \"update\").\n\
           Send them the same way and save the answers as enrollments-update-NNNN.result.json.\n\
         - enrollments.csv: one row per enrollment, for spreadsheets; its `operation` column says\n\
           create or update (replaces an existing enrollment).\n\
         - enroll-with-az.sh: the same enrollments as Azure CLI commands (`az iot dps enrollment\n\
           update` for the replacements); it writes az-results.csv, which the\n\
           import-results command below also reads.\n\
         - certs/devices/*.pem: device certificates; certs/groups/*.pem: group signing (CA)\n\
           certificates.\n\n",
    );
    s.push_str(&format!(
        "Once enrolled, mark the identities enrolled in the station's ledger, on the station:\n\
         \n    dps-station import-results --dps-target {} <this folder>\n\n\
         (add --ledger <ledger.db> when the ledger is not the default one).\n\n",
        super::az_script::quote(&input.dps_target)
    ));
    let replacements = input
        .individuals
        .iter()
        .filter(|r| r.replaces_existing)
        .count();
    if replacements == 0 {
        s.push_str(
            "Existing enrollments are never overwritten: mode \"create\" fails an item that exists.\n",
        );
    } else {
        s.push_str(&format!(
            "Only the {replacements} re-provisioned enrollment(s) in bulk/enrollments-update-*.json\n\
             (and their `update` commands in the script) replace what DPS holds; every other file\n\
             uses mode \"create\", which fails an item that exists and never overwrites it.\n"
        ));
    }
    write_file(dir, "README.txt", s.as_bytes(), false, holds_secrets)?;
    Ok(())
}
