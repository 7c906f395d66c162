//! The audit screen's work off the UI thread: a page of rows, the ledger's stats, `verify` with
//! its progress, the CSV export of a time range. Each job opens the ledger read-only on its own
//! thread (a reader never blocks the station's writer, and this screen never writes), sends its
//! answer and wakes the window.

use std::path::{Path, PathBuf};
use std::sync::mpsc::Sender;

use crate::ledger::{
    AuditFilter, AuditId, AuditPage, AuditRecord, Ledger, LedgerStats, TimeRange, VerifyProgress,
    VerifyReport,
};

/// What `verify` found: the chain, the file's own problems, and the first broken row as stored.
#[derive(Debug, Clone)]
pub struct Verified {
    /// The chain's report.
    pub report: VerifyReport,
    /// SQLite's quick_check and the append-only triggers (empty when all is well).
    pub file_problems: Vec<String>,
    /// The first broken row, read back to show what it holds now.
    pub broken_row: Option<AuditRecord>,
}

impl Verified {
    /// Whether nothing at all is wrong.
    pub fn is_clean(&self) -> bool {
        self.report.is_intact() && self.file_problems.is_empty()
    }
}

/// An answer from a job, in the order the screen takes them.
#[derive(Debug)]
pub enum Answer {
    /// A page for the query numbered `seq` (older answers are dropped).
    Page {
        /// Which query.
        seq: u64,
        /// The rows, or why not.
        result: Result<AuditPage, String>,
    },
    /// The schema version of the file (above this build's: a newer dps-station wrote it).
    Schema(i64),
    /// Counts and file size.
    Stats(Result<LedgerStats, String>),
    /// Verify has got this far.
    VerifyProgress(VerifyProgress),
    /// Verify is done.
    Verified(Result<Verified, String>),
    /// Rows written so far by the export.
    ExportProgress(u64),
    /// The export is done: the file and its row count.
    Exported(Result<(PathBuf, u64), String>),
}

/// Starts jobs for one screen; every answer goes to the screen's channel.
#[derive(Clone)]
pub struct Jobs {
    ledger: PathBuf,
    tx: Sender<Answer>,
    ctx: egui::Context,
}

impl Jobs {
    /// Jobs over the ledger at `ledger`, answering on `tx` and repainting `ctx`.
    pub fn new(ledger: PathBuf, tx: Sender<Answer>, ctx: egui::Context) -> Self {
        Self { ledger, tx, ctx }
    }

    fn spawn(
        &self,
        name: &str,
        job: impl FnOnce(&Ledger, &dyn Fn(Answer)) -> Answer + Send + 'static,
        fail: impl FnOnce(String) -> Answer + Clone + Send + 'static,
    ) {
        let this = self.clone();
        let fail_to_start = fail.clone();
        let started = std::thread::Builder::new()
            .name(format!("audit-{name}"))
            .spawn(move || {
                let send = |a: Answer| {
                    let _ = this.tx.send(a);
                    this.ctx.request_repaint();
                };
                let answer = match Ledger::open_for_inspection(&this.ledger) {
                    Ok(l) => job(&l, &send),
                    Err(e) => fail(e.to_string()),
                };
                send(answer);
            });
        if let Err(e) = started {
            tracing::error!(error = %e, "cannot start the audit screen's worker thread");
            // The screen waits for an answer: give it one, or its spinner would turn forever.
            let _ = self.tx.send(fail_to_start(format!(
                "cannot start a worker thread ({e}); close other programs and try again"
            )));
        }
    }

    /// One page of rows matching `filter`, older than `before`.
    pub fn page(&self, seq: u64, filter: AuditFilter, before: Option<AuditId>, limit: u32) {
        self.spawn(
            "page",
            move |l, _| Answer::Page {
                seq,
                result: l
                    .audit_page(&filter, before, limit)
                    .map_err(|e| e.to_string()),
            },
            move |e| Answer::Page {
                seq,
                result: Err(e),
            },
        );
    }

    /// The ledger's counts and file size.
    pub fn stats(&self) {
        self.spawn(
            "stats",
            |l, send| {
                send(Answer::Schema(l.schema_version()));
                Answer::Stats(l.stats().map_err(|e| e.to_string()))
            },
            |e| Answer::Stats(Err(e)),
        );
    }

    /// The whole chain and the file, with progress.
    pub fn verify(&self) {
        self.spawn(
            "verify",
            |l, send| Answer::Verified(verify(l, &|p| send(Answer::VerifyProgress(p)))),
            |e| Answer::Verified(Err(e)),
        );
    }

    /// The rows of `range` as CSV into `file`, with progress.
    pub fn export(&self, range: TimeRange, file: PathBuf) {
        self.spawn(
            "export",
            move |l, send| {
                let written =
                    l.export_audit_csv_file(&range, &file, |n| send(Answer::ExportProgress(n)));
                match &written {
                    Ok(n) => tracing::info!(
                        file = %file.display(), rows = n, from = ?range.from, to = ?range.to,
                        "audit log exported from the audit screen"
                    ),
                    Err(e) => {
                        tracing::warn!(file = %file.display(), error = %e, "audit export failed")
                    }
                }
                Answer::Exported(
                    written
                        .map(|n| (file.clone(), n))
                        .map_err(|e| e.to_string()),
                )
            },
            |e| Answer::Exported(Err(e)),
        );
    }
}

fn verify(l: &Ledger, progress: &dyn Fn(VerifyProgress)) -> Result<Verified, String> {
    let report = l
        .verify_audit_chain_with_progress(progress)
        .map_err(|e| e.to_string())?;
    let file_problems = l.file_problems().map_err(|e| e.to_string())?;
    let broken_row = match &report.first_broken {
        Some(b) => l
            .audit_page(&AuditFilter::default(), Some(AuditId(b.id + 1)), 1)
            .map_err(|e| e.to_string())?
            .rows
            .into_iter()
            .find(|r| r.id.0 == b.id),
        None => None,
    };
    tracing::info!(
        ledger = %l.path().display(),
        rows = report.rows_checked,
        intact = report.is_intact(),
        "audit chain verified from the audit screen"
    );
    Ok(Verified {
        report,
        file_problems,
        broken_row,
    })
}

/// The export's file name for a range: `audit-<from>--<to>.csv`, with only characters every
/// file system takes.
pub fn export_file_name(range: &TimeRange) -> String {
    let part = |t: &Option<String>, none: &str| {
        t.as_deref()
            .unwrap_or(none)
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '-'
                }
            })
            .collect::<String>()
    };
    format!(
        "audit-{}--{}.csv",
        part(&range.from, "start"),
        part(&range.to, "now")
    )
}

/// `folder` joined with the export's file name.
pub fn export_path(folder: &Path, range: &TimeRange) -> PathBuf {
    folder.join(export_file_name(range))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn export_names_hold_no_colons() {
        let name = export_file_name(&TimeRange {
            from: Some("2026-12-01T00:00:00.000Z".into()),
            to: None,
        });
        assert_eq!(name, "audit-2026-12-01T00-00-00-000Z--now.csv");
    }
}
