//! The batch editor's jobs, each on its own short-lived thread so the screen never waits on a
//! file, the ledger or DPS: list the batches folder, open a file, validate the form's document
//! (the CLI's validation reads the CA chain file; the engine's ledger rule reads the ledger),
//! save atomically, and test the DPS connection.

use std::path::{Path, PathBuf};
use std::sync::mpsc::Sender;

use crate::ledger::Ledger;
use crate::station::batch_doc::{self, BatchDoc};
use crate::station::config::{BatchSize, ConfigError, StationConfig};
use crate::station::operator::handle::connect_dps;

/// What a job answers.
pub enum Answer {
    /// The batches folder's `.toml` files, or why it cannot be read.
    Listed(Result<Vec<PathBuf>, String>),
    /// A file read for editing.
    Opened(PathBuf, Result<BatchDoc, String>),
    /// A validation of the document sent with `generation`.
    Checked(u64, Checked),
    /// A save finished.
    Saved(Result<PathBuf, String>),
    /// A DPS connection test finished.
    Dps(Result<DpsReport, String>),
}

/// The CLI's verdict on the form and what follows from it.
#[derive(Debug, Clone, Default)]
pub struct Checked {
    /// The CLI's error: the key it names (for the inline mark) and its message.
    pub error: Option<(Option<String>, String)>,
    /// Registration IDs for the sample serials (serial, ID or why not).
    pub samples: Vec<(String, Result<String, String>)>,
    /// The batch is in the ledger (it ran): the engine's rule applies.
    pub ran: bool,
    /// The engine's refusal when the form changes what the ledger recorded.
    pub ledger_conflict: Option<String>,
    /// The ledger could not be read to check the rule (shown; saving is still refused).
    pub ledger_problem: Option<String>,
}

/// What the DPS service API shows of a target.
#[derive(Debug, Clone)]
pub struct DpsReport {
    /// The target's name and endpoint.
    pub target: String,
    /// Enrollment groups: id, status, hubs named.
    pub groups: Vec<(String, String, Vec<String>)>,
    /// Every hub any group names (the service API has no list of linked hubs).
    pub hubs: Vec<String>,
}

fn spawn(
    name: &str,
    ctx: &egui::Context,
    tx: &Sender<Answer>,
    job: impl FnOnce() -> Answer + Send + 'static,
) {
    let (ctx, tx) = (ctx.clone(), tx.clone());
    let started = std::thread::Builder::new()
        .name(format!("batch-editor-{name}"))
        .spawn(move || {
            let _ = tx.send(job());
            ctx.request_repaint();
        });
    if let Err(e) = started {
        tracing::warn!(error = %e, "the batch editor could not start a worker thread");
    }
}

/// Lists `dir`'s batch files.
pub fn list(ctx: &egui::Context, tx: &Sender<Answer>, dir: PathBuf) {
    spawn("list", ctx, tx, move || {
        Answer::Listed(
            std::fs::read_dir(&dir)
                .map(|d| {
                    let mut files: Vec<PathBuf> = d
                        .filter_map(Result::ok)
                        .map(|e| e.path())
                        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                        .collect();
                    files.sort();
                    files
                })
                .map_err(|e| format!("{}: {e}", dir.display())),
        )
    });
}

/// Reads `path` as a document.
pub fn open(ctx: &egui::Context, tx: &Sender<Answer>, path: PathBuf) {
    spawn("open", ctx, tx, move || {
        let doc = BatchDoc::open(&path).map_err(|e| e.to_string());
        Answer::Opened(path, doc)
    });
}

/// Validates `doc` as `run` would, makes sample IDs and applies the engine's ledger rule.
pub fn check(
    ctx: &egui::Context,
    tx: &Sender<Answer>,
    generation: u64,
    doc: BatchDoc,
    station: StationConfig,
    samples: Vec<String>,
) {
    spawn("check", ctx, tx, move || {
        Answer::Checked(generation, checked(&doc, &station, &samples))
    });
}

fn checked(doc: &BatchDoc, station: &StationConfig, samples: &[String]) -> Checked {
    let batch = match doc.validate(station) {
        Ok(b) => b,
        Err(e) => {
            let key = match &e {
                ConfigError::Invalid { key, .. } => Some(key.clone()),
                _ => None,
            };
            return Checked {
                error: Some((key, e.to_string())),
                ..Checked::default()
            };
        }
    };
    let mut serials: Vec<String> = samples
        .iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    if let BatchSize::SerialRange { first, last } = &batch.size {
        serials.insert(0, first.clone());
        serials.push(last.clone());
    }
    let refs: Vec<&str> = serials.iter().map(String::as_str).collect();
    let ids = batch_doc::sample_ids(&batch, &refs);
    let mut out = Checked {
        samples: serials.into_iter().zip(ids).collect(),
        ..Checked::default()
    };
    if station.ledger.exists() {
        match Ledger::open_read_only(&station.ledger).and_then(|l| {
            let ran = l.find_batch(&batch.name)?.is_some();
            Ok((ran, batch_doc::ledger_conflict(&batch, &l)?))
        }) {
            Ok((ran, conflict)) => {
                out.ran = ran;
                out.ledger_conflict = conflict;
            }
            Err(e) => out.ledger_problem = Some(e.to_string()),
        }
    }
    out
}

/// Saves `doc`; a new file never replaces one that exists.
pub fn save(ctx: &egui::Context, tx: &Sender<Answer>, doc: BatchDoc, is_new: bool) {
    spawn("save", ctx, tx, move || {
        let path = doc.path().to_path_buf();
        if is_new && path.exists() {
            return Answer::Saved(Err(format!(
                "{} exists already: give the new batch file another name",
                path.display()
            )));
        }
        Answer::Saved(doc.save().map(|()| path).map_err(|e| e.to_string()))
    });
}

/// Lists the target's enrollment groups and the hubs they name (bounded: 10 pages of 100).
pub fn test_dps(ctx: &egui::Context, tx: &Sender<Answer>, station: StationConfig, target: String) {
    spawn("dps", ctx, tx, move || {
        Answer::Dps(dps_report(&station, &target))
    });
}

fn dps_report(station: &StationConfig, target: &str) -> Result<DpsReport, String> {
    let client = connect_dps(station, target).map_err(|e| e.to_string())?;
    let mut groups = Vec::new();
    for page in client
        .query_groups("SELECT * FROM enrollmentGroups", Some(100))
        .take(10)
    {
        for g in page.map_err(|e| e.to_string())? {
            let mut hubs = g.iot_hubs.clone().unwrap_or_default();
            hubs.extend(g.iot_hub_host_name.clone());
            let status = g
                .provisioning_status
                .map(|s| format!("{s:?}").to_lowercase())
                .unwrap_or_else(|| "enabled".into());
            groups.push((g.enrollment_group_id, status, hubs));
        }
    }
    let mut hubs: Vec<String> = groups.iter().flat_map(|g| g.2.clone()).collect();
    hubs.sort();
    hubs.dedup();
    Ok(DpsReport {
        target: format!("{target} ({})", client.endpoint()),
        groups,
        hubs,
    })
}

/// The file a new batch named `name` is saved as in `dir`.
pub fn new_path(dir: &Path, name: &str) -> Option<PathBuf> {
    let stem: String = name
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    (!stem.is_empty()).then(|| dir.join(format!("{stem}.toml")))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::station::config::SecretSource;
    use crate::station::demo::{DemoWorkspace, KeyStoreChoice};

    #[test]
    fn the_dps_test_lists_the_targets_enrollment_groups_or_says_why_not() {
        let ws = DemoWorkspace::create(KeyStoreChoice::Software).unwrap();
        let mut station = ws.station.clone();
        // The demo's own target reads its connection string from a variable nobody set: a message.
        let e = dps_report(&station, "emulator").unwrap_err();
        assert!(e.contains("DPS_STATION_DEMO_CONNECTION_STRING"), "{e}");

        let file = ws.dir.join("dps-connection-string");
        std::fs::write(&file, ws.emulator.connection_string().expose()).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        if let Some(t) = station.dps.get_mut("emulator") {
            t.connection_string = SecretSource::File(file);
        }
        let r = dps_report(&station, "emulator").unwrap();
        let ids: Vec<&str> = r.groups.iter().map(|g| g.0.as_str()).collect();
        assert!(ids.contains(&"demo-symmetric-group"), "{ids:?}");
        assert!(r.target.starts_with("emulator ("), "{}", r.target);
    }
}
