//! `dps-station bench …`: performance measurements on this machine (run them from a release
//! build). Each area adds its own variant; figures go to `docs/PERFORMANCE.md`.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use dps_station::dps::bench::{EnrollBenchOptions, PhaseReport, run_enroll_bench};

/// The benchmarks.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// DPS enrollment: enrollments per minute against the in-process emulator held to the real
    /// quota (1,000 operations/min), with bulk calls of 10 and with one PUT per device.
    Enroll(EnrollBench),
}

/// Options of `bench enroll`.
#[derive(Debug, Args)]
pub struct EnrollBench {
    /// Enrollments sent with bulk calls of 10.
    #[arg(long, default_value_t = 10_000)]
    identities: usize,
    /// Enrollments sent one PUT each (at the quota, a minute per 1,000).
    #[arg(long, default_value_t = 500)]
    single: usize,
    /// The quota the emulator enforces and the client keeps to.
    #[arg(long, default_value_t = 1_000)]
    operations_per_minute: u32,
    /// Symmetric-key enrollments instead of X.509 device certificates.
    #[arg(long)]
    symmetric_key: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// Runs a benchmark.
pub fn run(cmd: BenchCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        BenchCommand::Enroll(args) => enroll(args),
    }
}

fn enroll(args: EnrollBench) -> anyhow::Result<ExitCode> {
    if cfg!(debug_assertions) {
        eprintln!("note: this is a debug build; benchmark figures come from `cargo run --release`");
    }
    let report = run_enroll_bench(
        &EnrollBenchOptions {
            identities: args.identities,
            single: args.single,
            operations_per_minute: args.operations_per_minute,
            x509: !args.symmetric_key,
        },
        |line| eprintln!("{line}"),
    )
    .context("DPS enrollment benchmark failed")?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "quota            {} operations/min, {} enrollments",
            report.operations_per_minute, report.attestation
        );
        print_phase("bulk of 10", &report.bulk);
        print_phase("one PUT each", &report.single);
    }
    let ok = report.bulk.failed == 0
        && report.single.failed == 0
        && report.bulk.held == report.bulk.enrollments
        && report.single.held == report.single.enrollments;
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn print_phase(name: &str, p: &PhaseReport) {
    println!(
        "{name:<16} {} enrollments in {:.1} s, {} operations: {:.0}/min = {:.1}% of the {:.0}/min the \
         quota allows; {} answered 429; {} failed; {} held by DPS",
        p.enrollments,
        p.seconds,
        p.operations,
        p.per_minute,
        p.share_of_quota * 100.0,
        p.quota_allows_per_minute,
        p.throttled,
        p.failed,
        p.held
    );
}
