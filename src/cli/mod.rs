//! The command line (clap). Each area of the station owns one file here with its own `Commands`
//! enum, flattened into the top level, and its own `run`; this file only dispatches.
//!
//! `anyhow` lives here and nowhere below: library errors are typed and are shown with `{:#}`.

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use dps_station::station::setup::access;

mod bench;
mod bench_central;
mod bench_esp32;
mod central;
// `central join` and the station's `central status` (station), variants of the `central` tree.
mod central_station;
mod central_sync;
// `central batch|lease` (lease), flattened into the `central` tree.
mod central_batch;
// `central verify` (ingest), a variant of the `central` tree.
mod central_verify;
mod device;
mod device_esp32;
mod dps;
mod dps_emulator;
mod fixture;
mod gui;
mod gui_bench;
mod hsm;
mod hub_telemetry;
mod identity;
mod interrupt;
mod ledger;
mod ledger_bench;
mod ledger_revoke;
mod line;
mod line_bench;
mod logging;
mod manifest;
mod packaging;
mod pipe;
mod report;
mod setup;

/// Line-side provisioning station for Azure IoT Hub Device Provisioning Service.
#[derive(Debug, Parser)]
#[command(name = "dps-station", version, about, long_about = None, propagate_version = true)]
struct Cli {
    /// More log output on stderr (-v info, -vv debug, -vvv trace); `DPS_STATION_LOG` overrides it.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,

    /// Without a command the station opens its operator desk (`gui` with `station.toml` here).
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
    Gui(gui::Commands),
    #[command(flatten)]
    Device(device::Commands),
    /// Measure the performance goals of each area.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    #[command(flatten)]
    Packaging(packaging::Commands),
    #[command(flatten)]
    Fixture(fixture::Commands),
    /// Microchip Trust&GO manifests: verify, import into the ledger, enroll.
    #[command(subcommand)]
    Manifest(manifest::ManifestCommand),
    /// Set up this station (first run): name, ledger, HSM token, fixture slots, DPS target;
    /// `--check` says what is still missing.
    Setup(setup::SetupArgs),
    /// A batch's report (every run of it) or a day's, from the ledger: Markdown, CSV and SVG
    /// plots (throughput, time per device, failures by stage and by slot).
    Report(report::ReportArgs),
    /// The central ledger on PostgreSQL (issue 18): the service (init, migrate, serve, tokens,
    /// status, revocation) and the station's link to it.
    #[command(subcommand)]
    Central(central::CentralCommand),
}

/// Parses the arguments, runs the command and turns any error into a message and an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // A closed stdout ends a command quietly (status 141); `run` and servers opt out.
    pipe::default_sigpipe();
    logging::init(cli.verbose);
    let command = cli.command.unwrap_or(Command::Gui(gui::Commands::Gui(
        gui::GuiArgs::default_station(),
    )));
    match run(command) {
        Ok(code) => code,
        Err(err) => {
            // "Permission denied" on a port or the ledger is almost always the station's group.
            if access::looks_like_access_denied(&format!("{err:#}"))
                && let Some(hint) = access::group_hint(&access::membership())
            {
                eprintln!("error: {hint}");
            }
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Dps(cmd) => dps::run(cmd),
        Command::Manifest(cmd) => manifest::run(cmd),
        Command::DpsEmulator(cmd) => dps_emulator::run(cmd),
        Command::Identity(cmd) => identity::run(cmd),
        Command::Ledger(cmd) => ledger::run(cmd),
        Command::Line(cmd) => line::run(cmd),
        Command::Hsm(cmd) => hsm::run(cmd),
        Command::Gui(cmd) => gui::run(cmd),
        Command::Device(cmd) => device::run(cmd),
        Command::Bench(cmd) => bench::run(cmd),
        Command::Packaging(cmd) => packaging::run(cmd, Cli::command()),
        Command::Fixture(cmd) => fixture::run(cmd),
        Command::Setup(args) => setup::run(args),
        Command::Report(args) => report::run(args),
        Command::Central(cmd) => central::run(cmd),
    }
}
