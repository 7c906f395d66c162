//! The command line (clap). Each area of the station owns one file here with its own `Commands`
//! enum, flattened into the top level, and its own `run`; this file only dispatches.
//!
//! `anyhow` lives here and nowhere below: library errors are typed and are shown with `{:#}`.

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

mod bench;
mod device;
mod device_esp32;
mod dps;
mod dps_emulator;
mod hsm;
mod identity;
mod ledger;
mod ledger_bench;
mod line;
mod line_bench;
mod logging;

/// Line-side provisioning station for Azure IoT Hub Device Provisioning Service.
#[derive(Debug, Parser)]
#[command(name = "dps-station", version, about, long_about = None, propagate_version = true)]
struct Cli {
    /// More log output on stderr (-v info, -vv debug, -vvv trace); `DPS_STATION_LOG` overrides it.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,

    /// Without a command the station will open its operator GUI; until then it prints this help.
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    #[command(flatten)]
    Dps(dps::Commands),
    #[command(flatten)]
    DpsEmulator(dps_emulator::Commands),
    #[command(flatten)]
    Identity(identity::Commands),
    #[command(flatten)]
    Ledger(ledger::Commands),
    #[command(flatten)]
    Line(line::Commands),
    #[command(flatten)]
    Hsm(hsm::Commands),
    #[command(flatten)]
    Device(device::Commands),
    /// Measure the performance goals of each area.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

/// Parses the arguments, runs the command and turns any error into a message and an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.verbose);
    let Some(command) = cli.command else {
        // Printing help can only fail on a closed stdout, where there is nobody to tell.
        let _ = Cli::command().print_help();
        return ExitCode::SUCCESS;
    };
    match run(command) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Dps(cmd) => dps::run(cmd),
        Command::DpsEmulator(cmd) => dps_emulator::run(cmd),
        Command::Identity(cmd) => identity::run(cmd),
        Command::Ledger(cmd) => ledger::run(cmd),
        Command::Line(cmd) => line::run(cmd),
        Command::Hsm(cmd) => hsm::run(cmd),
        Command::Device(cmd) => device::run(cmd),
        Command::Bench(cmd) => bench::run(cmd),
    }
}
