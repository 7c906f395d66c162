//! `import-results`: what was enrolled elsewhere, read back from the files a remote site returns.
//!
//! Accepted, in an export folder or as single files:
//! - `bulk/enrollments-NNNN.json` with its answer `bulk/enrollments-NNNN.result.json` (the
//!   `BulkEnrollmentOperationResult` DPS returned): items without an error (or with a 2xx code)
//!   are enrolled. A body without its answer proves nothing and is skipped. The replacements
//!   `bulk/enrollments-update-NNNN.json` (+ `.result.json`) are read the same way.
//! - a CSV with `registration_id` and `status` columns (`az-results.csv` of the script, or a
//!   spreadsheet): `enrolled`/`ok`/`succeeded`/`created`/`updated`/`already-present` count as enrolled,
//!   `failed`/`error` as failed; any other status is an error naming the line.
//! - a JSON array of enrollments (the output of `az iot dps enrollment list`): each listed
//!   registration ID is held by DPS, hence enrolled.
//!
//! A registration ID reported enrolled anywhere is enrolled: a later "failed" for it is the
//! conflict of a re-run.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use crate::dps::model::{BulkEnrollmentOperation, BulkEnrollmentOperationResult};

/// What the remote site reported for one registration ID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImportedStatus {
    /// DPS holds it.
    Enrolled,
    /// DPS refused it.
    Failed {
        /// DPS error code, when known.
        error_code: Option<i64>,
        /// What was reported.
        message: String,
    },
}

/// One imported result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedResult {
    /// The registration ID (lowercase: DPS IDs are case-insensitive).
    pub registration_id: String,
    /// Enrolled or failed.
    pub status: ImportedStatus,
    /// The file it came from.
    pub source: PathBuf,
}

/// Why results could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// Reading failed.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A CSV problem.
    #[error("{path}, line {line}: {message}")]
    Csv {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: u64,
        /// What is wrong.
        message: String,
    },
    /// A JSON problem.
    #[error(
        "{path} is not a DPS bulk-operation answer, bulk request body or list of enrollments: {message}"
    )]
    Json {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A bulk answer without the request it answers.
    #[error(
        "{path} is a bulk-operation answer, which lists only failures: put it next to its request \
         body (same name without .result) and import the folder"
    )]
    AnswerWithoutRequest {
        /// The file.
        path: PathBuf,
    },
    /// Nothing usable found.
    #[error(
        "no results found in {0}: expected bulk/*.result.json next to their bodies, az-results.csv, \
         or a CSV with registration_id,status"
    )]
    NothingFound(PathBuf),
}

/// Reads results from an export folder or a single file; one entry per registration ID.
pub fn import_results(path: &Path) -> Result<Vec<ImportedResult>, ImportError> {
    let mut found = Vec::new();
    if path.is_dir() {
        let bulk = path.join("bulk");
        if bulk.is_dir() {
            let mut names: Vec<PathBuf> = fs::read_dir(&bulk)
                .map_err(|source| ImportError::Io {
                    path: bulk.clone(),
                    source,
                })?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .collect();
            names.sort();
            for p in names {
                let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
                if name.starts_with("enrollments-") && name.ends_with(".result.json") {
                    found.extend(read_bulk_answer(&p)?);
                }
            }
        }
        for candidate in [path.join("az-results.csv")] {
            if candidate.is_file() {
                found.extend(read_csv(&candidate)?);
            }
        }
    } else {
        let name = path.to_string_lossy().to_ascii_lowercase();
        if name.ends_with(".result.json") {
            found.extend(read_bulk_answer(path)?);
        } else if name.ends_with(".json") {
            found.extend(read_json(path)?);
        } else {
            found.extend(read_csv(path)?);
        }
    }
    if found.is_empty() {
        return Err(ImportError::NothingFound(path.to_path_buf()));
    }
    Ok(merge(found))
}

/// Enrolled anywhere wins; otherwise the last failure is kept. Sorted by registration ID.
fn merge(results: Vec<ImportedResult>) -> Vec<ImportedResult> {
    let mut by_id: BTreeMap<String, ImportedResult> = BTreeMap::new();
    for r in results {
        match by_id.get(&r.registration_id) {
            Some(existing) if existing.status == ImportedStatus::Enrolled => {}
            _ => {
                by_id.insert(r.registration_id.clone(), r);
            }
        }
    }
    by_id.into_values().collect()
}

fn read_text(path: &Path) -> Result<String, ImportError> {
    fs::read_to_string(path).map_err(|source| ImportError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn json_err(path: &Path, e: impl std::fmt::Display) -> ImportError {
    ImportError::Json {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

fn read_bulk_answer(answer_path: &Path) -> Result<Vec<ImportedResult>, ImportError> {
    let text = read_text(answer_path)?;
    let answer: BulkEnrollmentOperationResult =
        serde_json::from_str(&text).map_err(|e| json_err(answer_path, e))?;
    let name = answer_path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let request_path = answer_path.with_file_name(name.replace(".result.json", ".json"));
    if !request_path.is_file() {
        return Err(ImportError::AnswerWithoutRequest {
            path: answer_path.to_path_buf(),
        });
    }
    let request_text = read_text(&request_path)?;
    let request: BulkEnrollmentOperation =
        serde_json::from_str(&request_text).map_err(|e| json_err(&request_path, e))?;
    Ok(request
        .enrollments
        .iter()
        .map(|e| {
            let id = e.registration_id.to_ascii_lowercase();
            let error = answer
                .errors
                .iter()
                .find(|x| x.registration_id.eq_ignore_ascii_case(&id))
                .filter(|x| !(200..300).contains(&x.error_code));
            ImportedResult {
                registration_id: id,
                status: match error {
                    None => ImportedStatus::Enrolled,
                    Some(x) => ImportedStatus::Failed {
                        error_code: Some(x.error_code),
                        message: x.error_status.clone(),
                    },
                },
                source: answer_path.to_path_buf(),
            }
        })
        .collect())
}

fn read_json(path: &Path) -> Result<Vec<ImportedResult>, ImportError> {
    let text = read_text(path)?;
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| json_err(path, e))?;
    if value.get("isSuccessful").is_some() {
        return Err(ImportError::AnswerWithoutRequest {
            path: path.to_path_buf(),
        });
    }
    let serde_json::Value::Array(items) = value else {
        return Err(json_err(
            path,
            "expected a JSON array of enrollments (az iot dps enrollment list)",
        ));
    };
    items
        .iter()
        .map(|item| {
            let id = item
                .get("registrationId")
                .and_then(|v| v.as_str())
                .filter(|s| !s.is_empty())
                .ok_or_else(|| json_err(path, "an item has no registrationId"))?;
            Ok(ImportedResult {
                registration_id: id.to_ascii_lowercase(),
                status: ImportedStatus::Enrolled,
                source: path.to_path_buf(),
            })
        })
        .collect()
}

fn read_csv(path: &Path) -> Result<Vec<ImportedResult>, ImportError> {
    let text = read_text(path)?;
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let csv_err = |line: u64, message: String| ImportError::Csv {
        path: path.to_path_buf(),
        line,
        message,
    };
    let headers = reader
        .headers()
        .map_err(|e| csv_err(1, e.to_string()))?
        .clone();
    let col = |name: &str| headers.iter().position(|h| h.eq_ignore_ascii_case(name));
    let id_col = col("registration_id")
        .or_else(|| col("registrationId"))
        .ok_or_else(|| csv_err(1, "no registration_id column".into()))?;
    let status_col = col("status").ok_or_else(|| csv_err(1, "no status column".into()))?;
    let message_col = col("message");
    let code_col = col("error_code");
    let mut out = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| {
            let line = e.position().map_or(0, |p| p.line());
            csv_err(line, e.to_string())
        })?;
        let line = record.position().map_or(0, |p| p.line());
        let id = record.get(id_col).unwrap_or_default();
        if id.is_empty() {
            continue;
        }
        let status_text = record
            .get(status_col)
            .unwrap_or_default()
            .to_ascii_lowercase();
        let status = match status_text.as_str() {
            "enrolled" | "ok" | "succeeded" | "success" | "created" | "updated" | "replaced"
            | "already-present" => ImportedStatus::Enrolled,
            "failed" | "error" => ImportedStatus::Failed {
                error_code: code_col
                    .and_then(|c| record.get(c))
                    .and_then(|c| c.parse().ok()),
                message: message_col
                    .and_then(|c| record.get(c))
                    .filter(|m| !m.is_empty())
                    .unwrap_or("reported failed")
                    .to_string(),
            },
            other => {
                return Err(csv_err(
                    line,
                    format!(
                        "status '{other}' of '{id}' is neither enrolled (ok, succeeded, created, \
                         updated) nor failed"
                    ),
                ));
            }
        };
        out.push(ImportedResult {
            registration_id: id.to_ascii_lowercase(),
            status,
            source: path.to_path_buf(),
        });
    }
    Ok(out)
}
