//! `dps-station bench ledger`: durable insert rates, lookup latency, CSV export time and file size
//! of the ledger on this machine's disk.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use dps_station::ledger::bench::{self, BenchOptions};

/// Options of `bench ledger`.
#[derive(Debug, Args)]
pub struct LedgerBench {
    /// Identities inserted in large transactions (the ledger's size for lookups and export).
    #[arg(long, default_value_t = 100_000)]
    identities: u64,
    /// Identities per transaction in the batched phase.
    #[arg(long, default_value_t = 10_000)]
    batch_size: u64,
    /// Identities inserted one durable transaction each, after the batched ones.
    #[arg(long, default_value_t = 20_000)]
    single: u64,
    /// Random lookups by registration ID.
    #[arg(long, default_value_t = 100_000)]
    lookups: u64,
    /// Directory for the ledger and the export [default: a new directory under the system temp dir].
    /// Put it on the disk the station's ledger will live on: fsync speed is the figure.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Keep the ledger and the export afterwards.
    #[arg(long)]
    keep: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// Runs the ledger benchmark and prints its report.
pub fn run(args: LedgerBench) -> anyhow::Result<ExitCode> {
    if cfg!(debug_assertions) {
        eprintln!("note: this is a debug build; benchmark figures come from `cargo run --release`");
    }
    let dir = args.dir.unwrap_or_else(|| {
        std::env::temp_dir().join(format!("dps-station-bench-{}", std::process::id()))
    });
    let options = BenchOptions {
        dir: dir.clone(),
        identities: args.identities,
        batch_size: args.batch_size,
        single: args.single,
        lookups: args.lookups,
    };
    let result = bench::run(&options, |line| eprintln!("{line}"));
    if !args.keep {
        bench::clean(&dir);
    }
    let r = result.context("ledger benchmark failed")?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("ledger           {}", r.ledger);
    println!(
        "batched insert   {} identities in {:.2} s: {:.0}/s ({} per transaction)",
        r.batched_insert.count, r.batched_insert.seconds, r.batched_insert.per_second, r.batch_size
    );
    println!(
        "disk syncs       {:.0} bare fdatasync/s (the ceiling for durable transactions)",
        r.disk_syncs.per_second
    );
    println!(
        "single insert    {} identities in {:.2} s: {:.0} durable transactions/s",
        r.single_transaction_insert.count,
        r.single_transaction_insert.seconds,
        r.single_transaction_insert.per_second
    );
    println!(
        "lookup           {} by registration ID: p50 {:.1} µs, p99 {:.1} µs, max {:.1} µs",
        r.lookup.count, r.lookup.p50_us, r.lookup.p99_us, r.lookup.max_us
    );
    println!(
        "CSV export       {} rows in {:.2} s ({:.0} rows/s, {} bytes)",
        r.export.count, r.export.seconds, r.export.per_second, r.export_bytes
    );
    println!(
        "verify           {} audit rows in {:.2} s",
        r.verify_audit_chain.count, r.verify_audit_chain.seconds
    );
    println!(
        "file size        {} bytes for {} identities: {:.0} bytes/identity",
        r.ledger_bytes, r.identities_total, r.bytes_per_identity
    );
    Ok(ExitCode::SUCCESS)
}
