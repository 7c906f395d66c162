//! `dps-station bench central`: the central ledger's ingest rate from several stations at once and
//! the time to drain a station's backlog, on a throwaway PostgreSQL cluster (or a given database).

use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use dps_station::central::service::ingest_bench::{self, CentralBenchOptions};
use dps_station::central::temp_cluster::TempCluster;

/// Options of `bench central`.
#[derive(Debug, Args)]
pub struct CentralBench {
    /// A database to measure, as its owner (the schema is migrated and benchmark stations are
    /// added, and stay: the tables are append-only) [default: a throwaway cluster made here with
    /// Debian's PostgreSQL, fsync off].
    #[arg(long, value_name = "OWNER_URL")]
    database: Option<String>,
    /// Stations sending at once.
    #[arg(long, default_value_t = 3)]
    stations: usize,
    /// Identities each station sends (two outbox rows each: issued, written).
    #[arg(long, default_value_t = 20_000)]
    identities: u64,
    /// Rows of the backlog one station drains.
    #[arg(long, default_value_t = 100_000)]
    backlog: u64,
    /// Rows per ingest request.
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// Runs the benchmark and prints its report.
pub fn run(args: CentralBench) -> anyhow::Result<ExitCode> {
    if cfg!(debug_assertions) {
        eprintln!("note: this is a debug build; benchmark figures come from `cargo run --release`");
    }
    let cluster = match &args.database {
        Some(_) => None,
        None => {
            eprintln!("starting a throwaway PostgreSQL cluster…");
            Some(TempCluster::start().context("bench central needs PostgreSQL")?)
        }
    };
    let (owner_url, service_url) = match (&args.database, &cluster) {
        (Some(url), _) => (url.clone(), url.clone()),
        (None, Some(c)) => (c.admin_url(), c.admin_url()),
        (None, None) => anyhow::bail!("no database to measure"),
    };
    let options = CentralBenchOptions {
        stations: args.stations.max(1),
        identities_per_station: args.identities,
        backlog_rows: args.backlog,
        batch_rows: args.batch,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let report = runtime
        .block_on(ingest_bench::measure(
            &owner_url,
            &service_url,
            &options,
            &mut |line| eprintln!("{line}"),
        ))
        .context("central benchmark failed")?;
    drop(runtime);
    drop(cluster);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "ingest    {} identities ({} rows) from {} stations in {:.2} s: {:.0} identities/s, {:.0} rows/s",
        report.identities,
        report.rows,
        report.stations,
        report.ingest_seconds,
        report.identities_per_second,
        report.rows_per_second
    );
    println!(
        "request   {} rows each: p50 {:.1} ms, p99 {:.1} ms (checked, stored, receipt signed, committed)",
        report.batch_rows, report.request_ms_p50, report.request_ms_p99
    );
    println!(
        "backlog   {} rows drained by one station in {:.2} s ({:.0} rows/s)",
        report.backlog_rows, report.backlog_seconds, report.backlog_rows_per_second
    );
    Ok(ExitCode::SUCCESS)
}
