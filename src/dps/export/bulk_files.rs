//! `bulk/enrollments-NNNN.json` and `bulk/enrollment-groups-NNNN.json`: request bodies exactly as
//! `POST /enrollments` and `POST /enrollmentGroups` take them, at most 10 items each, so a site
//! can send them with any HTTP tool (or `dps-station enroll` elsewhere) and keep the answers as
//! `...-NNNN.result.json` for `import-results`. Enrollments that replace one DPS may hold (a
//! re-provisioned device) go into `bulk/enrollments-update-NNNN.json` with `"mode": "update"`, so
//! that a `create` file never overwrites anything and an `update` file replaces only those.

use std::path::{Path, PathBuf};

use super::{ExportError, ExportInput, Prepared, write_file};
use crate::dps::bulk::chunks;
use crate::dps::model::{
    AttestationType, BulkEnrollmentGroupOperation, BulkEnrollmentOperation, BulkMode,
};

/// File name of the n-th (1-based) individual-enrollment body.
pub fn individual_file(n: usize) -> String {
    format!("bulk/enrollments-{n:04}.json")
}

/// File name of the n-th (1-based) body of replacements (`"mode": "update"`). It starts like
/// [`individual_file`] so that `import-results` reads its answers the same way.
pub fn replacement_file(n: usize) -> String {
    format!("bulk/enrollments-update-{n:04}.json")
}

/// File name of the n-th (1-based) group body.
pub fn group_file(n: usize) -> String {
    format!("bulk/enrollment-groups-{n:04}.json")
}

pub(super) fn write(
    dir: &Path,
    input: &ExportInput,
    prepared: &Prepared,
    secret_dir: bool,
) -> Result<Vec<PathBuf>, ExportError> {
    let mut written = Vec::new();
    let (replacing, creating): (Vec<_>, Vec<_>) = input
        .individuals
        .iter()
        .zip(&prepared.individuals)
        .partition(|(record, _)| record.replaces_existing);
    let sets = [
        (creating, input.mode, individual_file as fn(usize) -> String),
        (replacing, BulkMode::Update, replacement_file),
    ];
    for (set, mode, file_name) in sets {
        let individuals: Vec<_> = set.into_iter().map(|(_, (e, _))| e.clone()).collect();
        for (i, chunk) in chunks(&individuals).enumerate() {
            let secret = chunk
                .iter()
                .any(|e| e.attestation.kind == AttestationType::SymmetricKey);
            let body = BulkEnrollmentOperation {
                enrollments: chunk.to_vec(),
                mode,
            };
            written.push(write_json(
                dir,
                &file_name(i + 1),
                &body,
                secret,
                secret_dir,
            )?);
        }
    }
    let groups: Vec<_> = prepared.groups.iter().map(|(g, _)| g.clone()).collect();
    for (i, chunk) in chunks(&groups).enumerate() {
        let secret = chunk
            .iter()
            .any(|g| g.attestation.kind == AttestationType::SymmetricKey);
        let body = BulkEnrollmentGroupOperation {
            enrollment_groups: chunk.to_vec(),
            mode: input.mode,
        };
        written.push(write_json(
            dir,
            &group_file(i + 1),
            &body,
            secret,
            secret_dir,
        )?);
    }
    Ok(written)
}

fn write_json<T: serde::Serialize>(
    dir: &Path,
    rel: &str,
    body: &T,
    secret: bool,
    secret_dir: bool,
) -> Result<PathBuf, ExportError> {
    let mut text = serde_json::to_vec_pretty(body).map_err(|e| ExportError::Io {
        path: dir.join(rel),
        source: std::io::Error::other(e),
    })?;
    text.push(b'\n');
    write_file(dir, rel, &text, secret, secret_dir)
}
