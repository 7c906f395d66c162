//! `dps-station report`: a batch's or a day's report from the ledger (every run, not only the
//! last one): Markdown, CSV and the SVG plots, written to the station's reports folder.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use dps_station::ledger::{Ledger, RunScope};
use dps_station::station::config::StationConfig;
use dps_station::station::ledger_report::LedgerReport;

use super::line::default_station_path;

/// `report` options.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("scope").required(true).args(["batch", "day"])))]
pub struct ReportArgs {
    /// The batch (by name) whose every run is reported.
    batch: Option<String>,
    /// A UTC day, `2026-12-03`: every batch that ran that day.
    #[arg(long, value_name = "YYYY-MM-DD")]
    day: Option<String>,
    /// The station file (its ledger and reports folder).
    #[arg(long, value_name = "PATH", default_value_os_t = default_station_path(), hide_default_value = true)]
    config: PathBuf,
    /// The ledger file, instead of the station file's (with --output, no station file is read).
    #[arg(long, value_name = "PATH")]
    ledger: Option<PathBuf>,
    /// Where to write [default: the station's reports folder].
    #[arg(long, short, value_name = "DIR")]
    output: Option<PathBuf>,
}

/// Writes the report and prints where.
pub fn run(args: ReportArgs) -> anyhow::Result<ExitCode> {
    // A ledger and an output folder given: a copy of a ledger is reported on any machine.
    let (ledger_path, dir) = match (args.ledger, args.output) {
        (Some(ledger), Some(dir)) => (ledger, dir),
        (ledger, output) => {
            let station = StationConfig::load(&args.config).with_context(|| {
                format!(
                    "reading the station file {} (or give --ledger and --output)",
                    args.config.display()
                )
            })?;
            (
                ledger.unwrap_or(station.ledger),
                output.unwrap_or(station.reports),
            )
        }
    };
    let scope = match (args.batch, args.day) {
        (Some(batch), _) => RunScope::Batch(batch),
        (None, Some(day)) => {
            if dps_station::station::report_data::parse_ledger_time(&format!("{day}T00:00:00Z"))
                .is_none()
            {
                anyhow::bail!("--day {day} is not a day; write it as 2026-12-03");
            }
            RunScope::Day(day)
        }
        (None, None) => anyhow::bail!("name a batch or give --day"),
    };
    let ledger = Ledger::open_read_only(&ledger_path)
        .with_context(|| format!("opening the ledger {}", ledger_path.display()))?;
    let report = LedgerReport::read(&ledger, scope)?;
    let (md, plots) = report.write(&dir)?;
    println!("report: {}", md.display());
    for p in plots {
        println!("plot: {}", p.display());
    }
    Ok(ExitCode::SUCCESS)
}
