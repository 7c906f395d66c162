//! `dps-station bench central`: the central ledger measured as a site runs it (the HTTPS service
//! on 127.0.0.1, stations that joined it), on a throwaway PostgreSQL cluster or a given database.

use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use dps_station::central::bench::{self, CentralBenchOptions, Latency};
use dps_station::central::temp_cluster::TempCluster;

/// Options of `bench central`.
#[derive(Debug, Args)]
pub struct CentralBench {
    /// A database to measure, as its owner (the schema is migrated and benchmark stations are
    /// added, and stay: the tables are append-only) [default: a throwaway cluster made here with
    /// Debian's PostgreSQL, fsync off].
    #[arg(long, value_name = "OWNER_URL")]
    database: Option<String>,
    /// Stations uploading at once.
    #[arg(long, default_value_t = 3)]
    stations: usize,
    /// Identities each station sends (two outbox rows each: issued, written).
    #[arg(long, default_value_t = 20_000)]
    identities: u64,
    /// Rows of the backlog one station drains.
    #[arg(long, default_value_t = 100_000)]
    backlog: u64,
    /// Rows per ingest request (at most 1000, as stations send).
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// Leases asked one after the other on the idle service (and at most as many during ingest).
    #[arg(long, default_value_t = 1000)]
    leases: usize,
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
    let owner_url = match (&args.database, &cluster) {
        (Some(url), _) => url.clone(),
        (None, Some(c)) => c.admin_url(),
        (None, None) => anyhow::bail!("no database to measure"),
    };
    let options = CentralBenchOptions {
        stations: args.stations.max(1),
        identities_per_station: args.identities,
        backlog_rows: args.backlog,
        batch_rows: args.batch,
        leases: args.leases,
    };
    // The service connects as the owner too: a `dps_central_service` login would need the
    // migrations first, and the grants do not change the work measured.
    let report = bench::measure(&owner_url, &owner_url, &options, &mut |line| {
        eprintln!("{line}")
    })
    .context("central benchmark failed")?;
    drop(cluster);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    let latency = |l: &Latency| {
        format!(
            "{} requests, p50 {:.1} ms, p99 {:.1} ms",
            l.requests, l.p50_ms, l.p99_ms
        )
    };
    println!(
        "ingest    {} identities ({} rows) from {} stations in {:.2} s: {:.0} identities/s, {:.0} rows/s (goal ≥ 5000 identities/s)",
        report.identities,
        report.rows,
        report.stations,
        report.ingest_seconds,
        report.identities_per_second,
        report.rows_per_second
    );
    println!(
        "request   {} rows each: {} (sent over mTLS, checked, stored, receipt signed, committed, verified)",
        report.batch_rows,
        latency(&report.ingest_request)
    );
    println!(
        "leases    while the stations upload: {}",
        latency(&report.leases_under_ingest)
    );
    println!(
        "backlog   {} rows drained by one station in {:.2} s ({:.0} rows/s; goal < 60 s)",
        report.backlog_rows, report.backlog_seconds, report.backlog_rows_per_second
    );
    println!(
        "leases    while that station drains its backlog: {}",
        latency(&report.leases_during_backlog)
    );
    println!(
        "leases    on the idle service: {} (goal p99 < 20 ms)",
        latency(&report.leases_idle)
    );
    Ok(ExitCode::SUCCESS)
}
