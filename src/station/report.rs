//! The batch report a production engineer reads: yield, failures by stage, time per device
//! (median and 95th percentile), and one row per device; as Markdown and as CSV.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::engine::RunSummary;
use super::events::Stage;
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
        "- Time per device: median {:.0} ms, 95th percentile {:.0} ms; wall time {:.1} s\n",
        f.median.as_secs_f64() * 1e3,
        f.p95.as_secs_f64() * 1e3,
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
    out += "## Failures by stage\n\n| Stage | Devices |\n|---|---|\n";
    for (stage, n) in &f.failures_by_stage {
        out += &format!("| {stage} | {n} |\n");
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

/// Writes `<dir>/<batch>-<unix time>.md` and `.csv`; returns both paths.
pub fn write(
    dir: &Path,
    batch: &str,
    station: &str,
    keys: &str,
    summary: &RunSummary,
) -> Result<(PathBuf, PathBuf), std::io::Error> {
    std::fs::create_dir_all(dir)?;
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
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
    let md = dir.join(format!("{safe}-{stamp}.md"));
    let csv_path = dir.join(format!("{safe}-{stamp}.csv"));
    std::fs::write(&md, markdown(batch, station, keys, summary))?;
    std::fs::write(&csv_path, csv(summary).map_err(std::io::Error::other)?)?;
    Ok((md, csv_path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_use_nearest_rank() {
        let v: Vec<Duration> = (1..=20).map(Duration::from_millis).collect();
        assert_eq!(quantile(&v, 0.5), Duration::from_millis(10));
        assert_eq!(quantile(&v, 0.95), Duration::from_millis(19));
        assert_eq!(quantile(&[], 0.95), Duration::ZERO);
    }
}
