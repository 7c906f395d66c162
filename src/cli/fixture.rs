//! `dps-station fixture udev-rules | detect`: naming the fixture's slots by the USB port each
//! adapter sits on, so that `/dev/dps-fixture/<slot>` survives swapping identical adapters.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde::Deserialize;

use dps_station::device::FixtureMap;
use dps_station::station::setup::detect;
use dps_station::station::setup::first_run::{self, default_station_file};
use dps_station::station::setup::station_file::StationValues;
use dps_station::station::setup::udev::{self, FIXTURE_RULES_FILE, SlotPort};

/// The fixture area's top-level command.
#[derive(Debug, Subcommand)]
pub enum Commands {
    /// The fixture's slots: udev names by USB port, and finding them.
    #[command(subcommand)]
    Fixture(FixtureCommand),
}

/// `fixture ...` subcommands.
#[derive(Debug, Subcommand)]
pub enum FixtureCommand {
    /// Print udev rules naming each slot /dev/dps-fixture/<slot> by the USB port (ID_PATH) its
    /// adapter is plugged into: from `--slot` values, or from the slots of station.toml whose
    /// adapters are plugged in now.
    UdevRules(UdevRulesArgs),
    /// Walk through the fixture slot by slot (plug the adapter, press Enter), then write the udev
    /// rules and the `[fixture.slots]` of station.toml.
    Detect(DetectArgs),
}

/// `fixture udev-rules` options.
#[derive(Debug, Args)]
pub struct UdevRulesArgs {
    /// The station file whose slots are used when no --slot is given.
    #[arg(long, value_name = "FILE", env = first_run::STATION_FILE_ENV)]
    config: Option<PathBuf>,
    /// A slot and its USB port: `A1=pci-0000:00:14.0-usb-0:1.1:1.0` (repeat for each slot).
    #[arg(long = "slot", value_name = "SLOT=ID_PATH")]
    slots: Vec<String>,
    /// Write the rules to this file instead of standard output.
    #[arg(long, value_name = "FILE")]
    output: Option<PathBuf>,
}

/// `fixture detect` options.
#[derive(Debug, Args)]
pub struct DetectArgs {
    /// The station file to write `[fixture.slots]` into.
    #[arg(long, value_name = "FILE", env = first_run::STATION_FILE_ENV)]
    config: Option<PathBuf>,
    /// The slot names, in the order to plug them: `A1,A2,B1,B2`.
    #[arg(long, value_delimiter = ',', conflicts_with = "count")]
    slots: Vec<String>,
    /// Slots named 1..N (default: the slots station.toml names already).
    #[arg(long)]
    count: Option<usize>,
    /// Where to write the udev rules.
    #[arg(long, value_name = "FILE", default_value = FIXTURE_RULES_FILE)]
    rules_out: PathBuf,
}

/// Runs a fixture command.
pub fn run(cmd: Commands) -> anyhow::Result<ExitCode> {
    let Commands::Fixture(cmd) = cmd;
    match cmd {
        FixtureCommand::UdevRules(args) => udev_rules(args),
        FixtureCommand::Detect(args) => detect(args),
    }
}

/// Only the fixture part of a station file, which may not be complete yet.
#[derive(Debug, Default, Deserialize)]
struct FixtureOnly {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    fixture: FixtureMap,
}

fn read_fixture(path: &Path) -> anyhow::Result<FixtureOnly> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            toml::from_str(&text).with_context(|| format!("{} is not valid", path.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(FixtureOnly::default()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

fn station_name(f: &FixtureOnly) -> String {
    f.name
        .clone()
        .unwrap_or_else(|| "(not named yet)".to_owned())
}

fn udev_rules(args: UdevRulesArgs) -> anyhow::Result<ExitCode> {
    let path = args.config.unwrap_or_else(default_station_file);
    let mut name = "(given on the command line)".to_owned();
    let slots: Vec<SlotPort> = if !args.slots.is_empty() {
        args.slots
            .iter()
            .map(|s| {
                let (slot, id_path) = s
                    .split_once('=')
                    .with_context(|| format!("--slot {s}: expected SLOT=ID_PATH"))?;
                Ok(SlotPort {
                    slot: slot.trim().to_owned(),
                    id_path: id_path.trim().to_owned(),
                })
            })
            .collect::<anyhow::Result<_>>()?
    } else {
        let station = read_fixture(&path)?;
        name = station_name(&station);
        if station.fixture.slots.is_empty() {
            bail!(
                "{} names no fixture slots: run `sudo dps-station fixture detect --count <slots>`, or pass --slot SLOT=ID_PATH",
                path.display()
            );
        }
        let mut found = Vec::new();
        for (slot, port) in &station.fixture.slots {
            match udev::id_path_of(port) {
                Ok(id_path) => found.push(SlotPort {
                    slot: slot.clone(),
                    id_path,
                }),
                Err(e) => eprintln!("slot {slot} ({}): no rule: {e}", port.display()),
            }
        }
        if found.is_empty() {
            bail!(
                "none of the slots in {} has its adapter plugged in: plug them in and run this again",
                path.display()
            );
        }
        found
    };
    let text = udev::fixture_rules(&name, &slots)?;
    udev::check_rules(&text)?;
    match args.output {
        Some(out) => std::fs::write(&out, &text)
            .with_context(|| format!("cannot write {}", out.display()))?,
        None => {
            let mut stdout = std::io::stdout().lock();
            // A closed pipe (`| head`) is not an error worth a message.
            let _ = stdout.write_all(text.as_bytes());
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn detect(args: DetectArgs) -> anyhow::Result<ExitCode> {
    let path = args.config.unwrap_or_else(default_station_file);
    let station = read_fixture(&path)?;
    let slots = if !args.slots.is_empty() {
        args.slots.iter().map(|s| s.trim().to_owned()).collect()
    } else if let Some(n) = args.count {
        detect::numbered_slots(n)
    } else {
        station.fixture.slots.keys().cloned().collect::<Vec<_>>()
    };
    if let Some(bad) = slots.iter().find(|s| !udev::valid_slot_name(s)) {
        bail!(udev::UdevError::SlotName(bad.clone()));
    }
    let found = run_detect(&slots)?;
    if found.is_empty() {
        println!("no slot detected: nothing written.");
        return Ok(ExitCode::FAILURE);
    }
    write_detected(
        Some(&path),
        &station_name(&station),
        &found,
        &args.rules_out,
    )?;
    Ok(ExitCode::SUCCESS)
}

/// The interactive walk-through on this terminal.
pub fn run_detect(slots: &[String]) -> anyhow::Result<Vec<SlotPort>> {
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let mut out = std::io::stdout();
    let mut scan = detect::usb_serial_ports;
    Ok(detect::detect_slots(
        slots, &mut scan, &mut input, &mut out,
    )?)
}

/// Writes the rules file and (with `station_file`) the `[fixture.slots]` of the station file, and
/// says how to load the rules.
pub fn write_detected(
    station_file: Option<&Path>,
    station: &str,
    found: &[SlotPort],
    rules_out: &Path,
) -> anyhow::Result<()> {
    let text = udev::fixture_rules(station, found)?;
    udev::check_rules(&text)?;
    std::fs::write(rules_out, &text).with_context(|| {
        format!(
            "cannot write the udev rules to {}: run as root (`sudo dps-station fixture detect`) or pass --rules-out <file> and copy it there",
            rules_out.display()
        )
    })?;
    println!("udev rules written to {}", rules_out.display());
    println!(
        "load the rules now: sudo udevadm control --reload-rules && sudo udevadm trigger --subsystem-match=tty"
    );
    let Some(station_file) = station_file else {
        return Ok(());
    };
    let values = StationValues {
        fixture: found
            .iter()
            .map(|s| (s.slot.clone(), s.device_path()))
            .collect(),
        ..Default::default()
    };
    first_run::write_station(station_file, &values, false)?;
    println!(
        "[fixture.slots] of {} now names {} slot(s) /dev/dps-fixture/<slot>",
        station_file.display(),
        found.len()
    );
    Ok(())
}
