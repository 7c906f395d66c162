//! A report from the ledger rather than from one run: every run of a batch, or every batch of a
//! UTC day. What `dps-station report` and the reports screen write: Markdown with the figures,
//! the devices as CSV, and the plots as SVG files next to them.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::ledger::{DeviceRunRecord, Ledger, LedgerError, RunScope};

use super::report_data::{ReportData, RunPoint};
use super::report_plots;

/// Why a ledger report could not be made.
#[derive(Debug, thiserror::Error)]
pub enum LedgerReportError {
    /// The ledger could not be read.
    #[error("reading the ledger for the report: {0}")]
    Ledger(#[from] LedgerError),
    /// Nothing to report.
    #[error(
        "the ledger holds no device runs for {0}; pick a batch that ran or a day a line worked"
    )]
    Empty(String),
    /// The files could not be written.
    #[error(
        "writing the report under {dir}: {source}; check that the folder exists and is writable"
    )]
    Write {
        /// The folder.
        dir: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// What a ledger report holds, read once (the screen draws it, then may write it).
#[derive(Debug, Clone)]
pub struct LedgerReport {
    /// What it covers.
    pub scope: RunScope,
    /// The device runs, oldest first.
    pub runs: Vec<DeviceRunRecord>,
    /// The figures and plot data.
    pub data: ReportData,
}

/// `batch night` / `day 2026-12-03`.
pub fn scope_text(scope: &RunScope) -> String {
    match scope {
        RunScope::Batch(name) => format!("batch {name}"),
        RunScope::Day(day) => format!("day {day} (UTC)"),
    }
}

fn safe_name(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

impl LedgerReport {
    /// Reads a batch's or a day's device runs and computes the figures.
    pub fn read(ledger: &Ledger, scope: RunScope) -> Result<Self, LedgerReportError> {
        let runs = ledger.device_runs(&scope)?;
        if runs.is_empty() {
            return Err(LedgerReportError::Empty(scope_text(&scope)));
        }
        let data = ReportData::of(&RunPoint::from_records(&runs));
        Ok(Self { scope, runs, data })
    }

    /// The file names' common part: `batch-night` or `day-2026-12-03`.
    pub fn base_name(&self) -> String {
        match &self.scope {
            RunScope::Batch(name) => format!("batch-{}", safe_name(name)),
            RunScope::Day(day) => format!("day-{}", safe_name(day)),
        }
    }

    /// The Markdown (without the plot links).
    pub fn markdown(&self) -> String {
        let d = &self.data;
        let mut out = format!("# Report: {}\n\n", scope_text(&self.scope));
        let _ = writeln!(
            out,
            "- Devices: {} passed, {} failed, yield {:.1}%",
            d.passed,
            d.failed,
            d.yield_ratio * 100.0
        );
        if d.passed == 0 {
            out += "- Time per device: no device passed, no time to show\n";
        } else {
            let _ = writeln!(
                out,
                "- Time per device: median {} ms, 95th percentile {} ms",
                d.median.as_millis(),
                d.p95.as_millis()
            );
        }
        if let (Some(first), Some(last)) = (self.runs.first(), self.runs.last()) {
            let _ = writeln!(out, "- From {} to {}", first.finished_at, last.finished_at);
        }
        out += "\n## Failures by stage\n\n";
        if d.failures_by_stage.is_empty() {
            out += "No device failed.\n";
        } else {
            out += "| Stage | Devices |\n|---|---|\n";
            for (stage, n) in &d.failures_by_stage {
                let _ = writeln!(out, "| {stage} | {n} |");
            }
        }
        out += "\n## Slots\n\n| Slot | Devices | Failed | Failure rate |\n|---|---|---|---|\n";
        for s in &d.slots {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {:.1}% |",
                s.slot.replace('|', "/"),
                s.devices,
                s.failed,
                s.failure_rate() * 100.0
            );
        }
        out
    }

    /// One row per device run.
    pub fn csv(&self) -> Result<Vec<u8>, csv::Error> {
        let mut w = csv::Writer::from_writer(Vec::new());
        w.write_record([
            "finished_at",
            "batch",
            "slot",
            "serial",
            "registration_id",
            "result",
            "stage",
            "reason",
            "milliseconds",
        ])?;
        for r in &self.runs {
            w.write_record([
                r.finished_at.as_str(),
                &r.batch,
                &r.slot,
                r.serial_number.as_deref().unwrap_or(""),
                r.registration_id.as_deref().unwrap_or(""),
                if r.failed_stage.is_some() {
                    "failed"
                } else {
                    "passed"
                },
                r.failed_stage.as_deref().unwrap_or(""),
                r.failed_reason.as_deref().unwrap_or(""),
                &r.elapsed_ms.to_string(),
            ])?;
        }
        w.into_inner().map_err(|e| csv::Error::from(e.into_error()))
    }

    /// Writes `<dir>/<base>.md`, `.csv` and `<base>-<plot>.svg` (replacing an earlier report
    /// of the same batch or day: it only grew since); returns the Markdown's path and the plots.
    pub fn write(&self, dir: &Path) -> Result<(PathBuf, Vec<PathBuf>), LedgerReportError> {
        let err = |source| LedgerReportError::Write {
            dir: dir.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(err)?;
        let base = self.base_name();
        let plots = report_plots::write_plots(dir, &base, &self.data).map_err(err)?;
        let md = dir.join(format!("{base}.md"));
        let text = self.markdown() + &report_plots::markdown_section(&self.data, &plots);
        std::fs::write(&md, text).map_err(err)?;
        let csv = self.csv().map_err(|e| err(std::io::Error::other(e)))?;
        std::fs::write(dir.join(format!("{base}.csv")), csv).map_err(err)?;
        Ok((md, plots.into_iter().map(|(_, p)| p).collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{AttestationKind, EnrollmentKind, NewBatch, NewDeviceRun, WriterIdentity};

    #[test]
    fn a_batch_report_from_the_ledger_has_its_figures_plots_and_rows() {
        let dir = tempfile::tempdir().unwrap();
        let writer = WriterIdentity {
            station: "line-1".into(),
            operator: "ann".into(),
        };
        let mut l = Ledger::open(&dir.path().join("l.db"), &writer).unwrap();
        let batch = l
            .create_batch(&NewBatch {
                name: "night/1".into(),
                product: "p".into(),
                attestation: AttestationKind::X509,
                enrollment_kind: EnrollmentKind::Individual,
                dps_target: "dps".into(),
                registration_id_template: "p-{serial}".into(),
            })
            .unwrap();
        l.transaction(|w| {
            for (i, failure) in [None, None, Some(("verify", "digest"))]
                .into_iter()
                .enumerate()
            {
                w.record_device_run(&NewDeviceRun {
                    batch,
                    slot: format!("S{i}"),
                    serial_number: Some(format!("SN{i}")),
                    registration_id: None,
                    failure: failure.map(|(s, r)| (s.into(), r.into())),
                    elapsed_ms: 700 + i as u64,
                })?;
            }
            Ok(())
        })
        .unwrap();
        let report = LedgerReport::read(&l, RunScope::Batch("night/1".into())).unwrap();
        assert_eq!((report.data.passed, report.data.failed), (2, 1));
        let out = dir.path().join("reports");
        let (md, plots) = report.write(&out).unwrap();
        assert_eq!(md, out.join("batch-night_1.md"));
        let text = std::fs::read_to_string(&md).unwrap();
        assert!(text.contains("yield 66.7%"), "{text}");
        assert!(text.contains("| verify | 1 |"), "{text}");
        assert!(text.contains("(batch-night_1-slots.svg)"), "{text}");
        assert_eq!(plots.len(), 4);
        let csv = std::fs::read_to_string(out.join("batch-night_1.csv")).unwrap();
        assert_eq!(csv.lines().count(), 4);
        assert!(csv.contains(",failed,verify,digest,702"), "{csv}");

        let none = LedgerReport::read(&l, RunScope::Batch("other".into())).unwrap_err();
        assert!(
            none.to_string().contains("no device runs for batch other"),
            "{none}"
        );
    }
}
