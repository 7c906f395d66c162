//! The batch report a production engineer reads: yield, failures by stage, time per device
//! (median and 95th percentile), and one row per device; as Markdown and as CSV.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::engine::RunSummary;
use super::events::Stage;
use super::report_data::{ReportData, RunPoint};
use super::report_plots;
use crate::device::driver::{ConfigStorage, Family};

/// Figures of one run.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportFigures {
    /// Devices seen.
    pub devices: usize,
    /// Passed.
    pub passed: usize,
    /// Failed.
    pub failed: usize,
    /// passed / devices.
    pub yield_ratio: f64,
    /// Failures per stage.
    pub failures_by_stage: BTreeMap<Stage, usize>,
    /// Median time per passed device.
    pub median: Duration,
    /// 95th percentile time per passed device.
    pub p95: Duration,
}

/// The `q` quantile (0..=1) of sorted values, nearest rank.
pub fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

impl ReportFigures {
    /// `median 812 ms, 95th percentile 901 ms`, or that no device passed (no time to show: a
    /// "median 0 ms" would read as instant devices).
    pub fn times_text(&self) -> String {
        if self.passed == 0 {
            "no device passed, no time to show".into()
        } else {
            format!(
                "median {:.0} ms, 95th percentile {:.0} ms",
                self.median.as_secs_f64() * 1e3,
                self.p95.as_secs_f64() * 1e3
            )
        }
    }

    /// Computes the figures of a run.
    pub fn of(summary: &RunSummary) -> Self {
        let devices = summary.outcomes.len();
        let passed = summary.passed();
        let mut times: Vec<Duration> = summary
            .outcomes
            .iter()
            .filter(|o| o.failure.is_none())
            .map(|o| o.elapsed)
            .collect();
        times.sort();
        let mut failures_by_stage = BTreeMap::new();
        for (stage, _) in summary.outcomes.iter().filter_map(|o| o.failure.as_ref()) {
            *failures_by_stage.entry(*stage).or_insert(0) += 1;
        }
        Self {
            devices,
            passed,
            failed: devices - passed,
            yield_ratio: if devices == 0 {
                0.0
            } else {
                passed as f64 / devices as f64
            },
            failures_by_stage,
            median: quantile(&times, 0.5),
            p95: quantile(&times, 0.95),
        }
    }
}

/// The Markdown report.
pub fn markdown(batch: &str, station: &str, keys: &str, summary: &RunSummary) -> String {
    let f = ReportFigures::of(summary);
    let mut out = format!("# Batch report: {batch}\n\n");
    out += &format!(
        "- Station: {station}\n- Key store: {keys}\n- State: {:?}\n",
        summary.state
    );
    out += &format!(
        "- Devices: {} passed, {} failed, yield {:.1}%\n",
        f.passed,
        f.failed,
        f.yield_ratio * 100.0
    );
    out += &format!(
        "- Time per device: {}; wall time {:.1} s\n",
        f.times_text(),
        summary.wall.as_secs_f64()
    );
    out += &format!(
        "- Enrollment: {} confirmed by DPS, {} refused, {} still queued\n",
        summary.enrollment.enrolled, summary.enrollment.failed, summary.pending_enrollments
    );
    out += &format!(
        "- Resumed from the ledger: {} voided, {} re-queued, {} done before\n",
        summary.resumed.voided, summary.resumed.requeued, summary.resumed.already_done
    );
    out += &registration_data_lines(summary);
    out += "\n";
    out += "## Failures by stage\n\n";
    if f.failures_by_stage.is_empty() {
        out += "No device failed.\n";
    } else {
        out += "| Stage | Devices |\n|---|---|\n";
        for (stage, n) in &f.failures_by_stage {
            out += &format!("| {stage} | {n} |\n");
        }
    }
    out += "\n## Devices\n\n| Slot | Serial | Registration ID | Result | Stage | Reason | ms |\n|---|---|---|---|---|---|---|\n";
    for o in &summary.outcomes {
        let (result, stage, reason) = match &o.failure {
            None => ("passed", String::new(), String::new()),
            Some((s, r)) => ("failed", s.to_string(), r.replace('|', "/")),
        };
        out += &format!(
            "| {} | {} | {} | {result} | {stage} | {reason} | {} |\n",
            o.slot,
            o.serial.as_deref().unwrap_or(""),
            o.registration_id.as_deref().unwrap_or(""),
            o.elapsed.as_millis()
        );
    }
    out
}

/// Where each family's written devices keep their registration data (ID scope, endpoint): a
/// family without a place for it (nRF91) relies on its firmware, and the report says so.
fn registration_data_lines(summary: &RunSummary) -> String {
    let mut counts: BTreeMap<(Family, ConfigStorage), usize> = BTreeMap::new();
    for o in &summary.outcomes {
        if let Some(config) = o.config {
            *counts.entry((o.family, config)).or_default() += 1;
        }
    }
    counts
        .into_iter()
        .map(|((family, config), n)| {
            let how = match config {
                ConfigStorage::Written => "registration data written to the device and read back",
                ConfigStorage::CarriedByFirmware => {
                    "ID scope and global endpoint carried by the product firmware, not written; registration ID in the certificate's CN"
                }
            };
            format!("- Family {family}: {n} devices, {how}\n")
        })
        .collect()
}

/// The CSV report: one row per device.
pub fn csv(summary: &RunSummary) -> Result<String, csv::Error> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "slot",
        "serial",
        "registration_id",
        "result",
        "stage",
        "reason",
        "milliseconds",
    ])?;
    for o in &summary.outcomes {
        let (result, stage, reason) = match &o.failure {
            None => ("passed", String::new(), String::new()),
            Some((s, r)) => ("failed", s.to_string(), r.clone()),
        };
        w.write_record([
            o.slot.as_str(),
            o.serial.as_deref().unwrap_or(""),
            o.registration_id.as_deref().unwrap_or(""),
            result,
            &stage,
            &reason,
            &o.elapsed.as_millis().to_string(),
        ])?;
    }
    let bytes = w
        .into_inner()
        .map_err(|e| csv::Error::from(e.into_error()))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Writes `<dir>/<batch>-<UTC time>.md` and `.csv`, and the plots as `<same name>-<plot>.svg`
/// linked from the Markdown (`night-20261203T084512Z.md`: readable and
/// sorting by time; `-2`, `-3`... when a run of the same second wrote one); returns both paths.
pub fn write(
    dir: &Path,
    batch: &str,
    station: &str,
    keys: &str,
    summary: &RunSummary,
) -> Result<(PathBuf, PathBuf), std::io::Error> {
    std::fs::create_dir_all(dir)?;
    let stamp = time::OffsetDateTime::now_utc()
        .format(time::macros::format_description!(
            "[year][month][day]T[hour][minute][second]Z"
        ))
        .map_err(std::io::Error::other)?;
    let safe: String = batch
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let (md, csv_path) = (1..)
        .map(|n| {
            let base = if n == 1 {
                format!("{safe}-{stamp}")
            } else {
                format!("{safe}-{stamp}-{n}")
            };
            (
                dir.join(format!("{base}.md")),
                dir.join(format!("{base}.csv")),
            )
        })
        .find(|(md, csv)| !md.exists() && !csv.exists())
        .ok_or_else(|| std::io::Error::other("no free report file name"))?;
    let data = ReportData::of(&RunPoint::from_summary(summary));
    let base = md
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let plots = report_plots::write_plots(dir, &base, &data)?;
    let text =
        markdown(batch, station, keys, summary) + &report_plots::markdown_section(&data, &plots);
    std::fs::write(&md, text)?;
    std::fs::write(&csv_path, csv(summary).map_err(std::io::Error::other)?)?;
    Ok((md, csv_path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::station::engine::Resumed;
    use crate::station::enroll_worker::EnrollStats;
    use crate::station::events::BatchState;
    use crate::station::pipeline::{DeviceOutcome, Done};

    #[test]
    fn quantiles_use_nearest_rank() {
        let v: Vec<Duration> = (1..=20).map(Duration::from_millis).collect();
        assert_eq!(quantile(&v, 0.5), Duration::from_millis(10));
        assert_eq!(quantile(&v, 0.95), Duration::from_millis(19));
        assert_eq!(quantile(&[], 0.95), Duration::ZERO);
    }

    fn summary(outcomes: Vec<DeviceOutcome>) -> RunSummary {
        RunSummary {
            outcomes,
            enrollment: EnrollStats::default(),
            resumed: Resumed::default(),
            complete: false,
            state: BatchState::Paused,
            wall: Duration::from_secs(3),
            pending_enrollments: 0,
        }
    }

    fn outcome(failure: Option<(Stage, String)>) -> DeviceOutcome {
        DeviceOutcome {
            slot: "S1".into(),
            serial: Some("SN1".into()),
            registration_id: Some("dev-sn1".into()),
            failure,
            done: Done::Provisioned,
            elapsed: Duration::from_millis(800),
            family: Family::Station,
            config: None,
            finished_at: std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_764_750_000),
        }
    }

    #[test]
    fn a_report_without_failures_or_passes_says_so_instead_of_empty_figures() {
        let none = markdown("b", "s", "k", &summary(vec![]));
        assert!(none.contains("no device passed, no time to show"), "{none}");
        assert!(!none.contains("median 0 ms"), "{none}");
        assert!(none.contains("No device failed."), "{none}");
        assert!(!none.contains("| Stage | Devices |"), "{none}");

        let mixed = markdown(
            "b",
            "s",
            "k",
            &summary(vec![
                outcome(None),
                outcome(Some((Stage::Write, "cable".into()))),
            ]),
        );
        assert!(mixed.contains("median 800 ms"), "{mixed}");
        assert!(mixed.contains("| write | 1 |"), "{mixed}");
    }

    #[test]
    fn report_files_are_named_by_readable_utc_time_and_never_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let s = summary(vec![outcome(None)]);
        let (md, csv) = write(dir.path(), "night shift", "st", "keys", &s).unwrap();
        let name = md.file_name().unwrap().to_string_lossy().into_owned();
        // night_shift-20261203T084512Z.md
        let stamp = name
            .strip_prefix("night_shift-")
            .and_then(|n| n.strip_suffix(".md"))
            .unwrap();
        assert_eq!(stamp.len(), 16, "{name}");
        assert!(stamp.starts_with("20") && stamp.ends_with('Z') && stamp.as_bytes()[8] == b'T');
        assert!(csv.exists());
        let text = std::fs::read_to_string(&md).unwrap();
        let svg = format!("night_shift-{stamp}-throughput.svg");
        assert!(text.contains(&format!("({svg})")), "{text}");
        assert!(dir.path().join(&svg).exists());
        let (md2, _) = write(dir.path(), "night shift", "st", "keys", &s).unwrap();
        assert_ne!(md, md2, "a second report the same second gets its own name");
    }
}
