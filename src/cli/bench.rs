//! `dps-station bench …`: the performance goals, measured on this machine (see docs/PERFORMANCE.md).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::bail;
use clap::{Args, Subcommand};

use dps_station::keystore::pin::obtain_pin;
use dps_station::keystore::pkcs11::{Pkcs11Config, TokenSelector};
use dps_station::keystore::profile::HsmProfile;
use dps_station::station::hsm_bench::{self, BenchPlan};

/// The benchmarks.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Device certificates issued per second from CSRs, signed in the HSM with 1, 2 and 4
    /// sessions, beside the token's raw signatures per second. Creates a CA key on the token:
    /// use a development token.
    Hsm(HsmBench),
}

/// Options of `bench hsm`.
#[derive(Debug, Args)]
pub struct HsmBench {
    /// HSM profile.
    #[arg(long, env = "DPS_STATION_HSM_PROFILE", default_value = "softhsm2")]
    profile: String,
    /// The PKCS#11 module, overriding the profile's.
    #[arg(long, env = "DPS_STATION_HSM_MODULE", value_name = "PATH")]
    module: Option<PathBuf>,
    /// The token's label.
    #[arg(long, env = "DPS_STATION_HSM_TOKEN", value_name = "LABEL")]
    token: String,
    /// A file holding the user PIN (else $DPS_STATION_HSM_PIN, else a prompt).
    #[arg(long, env = "DPS_STATION_HSM_PIN_FILE", value_name = "PATH")]
    pin_file: Option<PathBuf>,
    /// Session counts to measure.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4")]
    sessions: Vec<usize>,
    /// Seconds per timed run.
    #[arg(long, default_value_t = 3)]
    seconds: u64,
    /// Runs per measurement (the median is reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Worker threads per session (line slots share a smaller session pool); the same for the
    /// raw and the issuing measurement.
    #[arg(long, default_value_t = 2)]
    threads_per_session: usize,
}

/// Runs a benchmark.
pub fn run(cmd: BenchCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        BenchCommand::Hsm(args) => hsm(args),
    }
}

fn hsm(args: HsmBench) -> anyhow::Result<ExitCode> {
    if cfg!(debug_assertions) {
        eprintln!("note: this is a debug build; benchmark figures come from `cargo run --release`");
    }
    if args.sessions.is_empty() || args.sessions.contains(&0) {
        bail!("--sessions needs positive counts, e.g. --sessions 1,2,4");
    }
    let config = Pkcs11Config {
        profile: HsmProfile::built_in(&args.profile)?,
        module: args.module,
        token: TokenSelector::Label(args.token.clone()),
        sessions: None,
    };
    let pin = obtain_pin(
        args.pin_file.as_deref(),
        &format!("user PIN for token {}: ", args.token),
    )?;
    let plan = BenchPlan {
        sessions: args.sessions,
        run: Duration::from_secs(args.seconds.max(1)),
        runs: args.runs.max(1),
        threads_per_session: args.threads_per_session.max(1),
    };
    let label = format!("bench-ca-{}", std::process::id());
    let rows = hsm_bench::run(&config, &pin, &label, &plan, &|line| eprintln!("{line}"))?;
    println!(
        "| sessions | threads | raw signatures/s | certificates issued/s | issuing / raw | CSR checks alone/s |"
    );
    println!("|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {} | {:.0} | {:.0} | {:.0}% | {:.0} |",
            r.sessions,
            r.threads,
            r.raw_signatures_per_sec,
            r.certificates_per_sec,
            r.ratio() * 100.0,
            r.csr_checks_per_sec
        );
    }
    Ok(ExitCode::SUCCESS)
}
