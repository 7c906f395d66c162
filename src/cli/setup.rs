//! `dps-station setup`: the first run at a terminal. Asks for (or takes as options) the station
//! name, ledger location, HSM profile and token, fixture slots and DPS target, and writes
//! station.toml through `station::setup::first_run`, which the GUI's first-run screen also uses.
//! `setup --check` says what this machine still lacks.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Args;

use dps_station::keystore::profile::HsmProfile;
use dps_station::station::config::SecretSource;
use dps_station::station::setup::first_run::{
    self, StationState, checks, default_station_file, first_run_steps, station_state,
};
use dps_station::station::setup::station_file::{DpsChoice, HsmChoice, StationValues};
use dps_station::station::setup::udev::FIXTURE_RULES_FILE;

use super::fixture;

/// `setup` options; any not given is asked for when standard input is a terminal.
#[derive(Debug, Args)]
pub struct SetupArgs {
    /// The station file to write.
    #[arg(long, value_name = "FILE", env = first_run::STATION_FILE_ENV)]
    config: Option<PathBuf>,
    /// Only report what this station still needs (exit 1 if anything is missing).
    #[arg(long)]
    check: bool,
    /// The station's name (written on every ledger row).
    #[arg(long)]
    name: Option<String>,
    /// The ledger file.
    #[arg(long, value_name = "FILE")]
    ledger: Option<PathBuf>,
    /// The HSM profile (`dps-station hsm profiles`).
    #[arg(long)]
    hsm_profile: Option<String>,
    /// The label of the token that holds the CA and group keys.
    #[arg(long)]
    token_label: Option<String>,
    /// A fixture slot and its port: `A1=/dev/dps-fixture/A1` (repeat for each slot).
    #[arg(long = "slot", value_name = "SLOT=PORT")]
    slots: Vec<String>,
    /// The DPS target's name in station.toml.
    #[arg(long, default_value = "production")]
    dps_target: String,
    /// The environment variable that holds that target's connection string.
    #[arg(long, value_name = "VAR")]
    dps_connection_env: Option<String>,
}

struct Prompter<'a> {
    input: std::io::StdinLock<'a>,
}

impl Prompter<'_> {
    fn ask(&mut self, question: &str, default: &str) -> anyhow::Result<String> {
        print!("{question} [{default}]: ");
        std::io::stdout().flush()?;
        let mut line = String::new();
        if self.input.read_line(&mut line)? == 0 {
            bail!("standard input ended: nothing written");
        }
        let line = line.trim();
        Ok(if line.is_empty() { default } else { line }.to_owned())
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "station-1".to_owned())
}

/// Runs `setup`.
pub fn run(args: SetupArgs) -> anyhow::Result<ExitCode> {
    let path = args.config.clone().unwrap_or_else(default_station_file);
    if args.check {
        return check(&path);
    }
    let interactive = std::io::stdin().is_terminal();
    let mut slots = Vec::new();
    for s in &args.slots {
        let (slot, port) = s
            .split_once('=')
            .with_context(|| format!("--slot {s}: expected SLOT=PORT"))?;
        slots.push((slot.trim().to_owned(), PathBuf::from(port.trim())));
    }
    let missing: Vec<&str> = [
        ("--name", args.name.is_none()),
        ("--ledger", args.ledger.is_none()),
        ("--hsm-profile", args.hsm_profile.is_none()),
        ("--token-label", args.token_label.is_none()),
        ("--slot", slots.is_empty()),
        ("--dps-connection-env", args.dps_connection_env.is_none()),
    ]
    .into_iter()
    .filter_map(|(flag, m)| m.then_some(flag))
    .collect();
    if !missing.is_empty() && !interactive {
        print_steps(&path);
        bail!(
            "not a terminal, so nothing can be asked: pass {} (or run `sudo dps-station setup` at a terminal)",
            missing.join(", ")
        );
    }
    let stdin = std::io::stdin();
    let mut p = Prompter {
        input: stdin.lock(),
    };
    if !missing.is_empty() {
        println!(
            "Setting up this station; the answers go to {}.",
            path.display()
        );
    }
    let name = match args.name {
        Some(n) => n,
        None => p.ask("Station name (on every ledger row)", &hostname())?,
    };
    let ledger = match args.ledger {
        Some(l) => l,
        None => PathBuf::from(p.ask("Ledger file", "/var/lib/dps-station/ledger.db")?),
    };
    let profile = match args.hsm_profile {
        Some(h) => h,
        None => {
            for prof in HsmProfile::all_built_in()? {
                let here = if prof.installed_module().is_some() {
                    "installed"
                } else {
                    "module not installed"
                };
                println!("  {:<14} {} ({here})", prof.name, prof.display_name);
            }
            p.ask("HSM profile", "softhsm2")?
        }
    };
    HsmProfile::built_in(&profile)?;
    let token_label = match args.token_label {
        Some(t) => t,
        None => p.ask(
            "Token label (`dps-station hsm list --profile ...` shows the tokens)",
            "factory-ca",
        )?,
    };
    let connection_env = match args.dps_connection_env {
        Some(v) => v,
        None => p.ask(
            &format!(
                "Environment variable holding DPS target `{}`'s connection string",
                args.dps_target
            ),
            "DPS_PRODUCTION_CONNECTION_STRING",
        )?,
    };
    if slots.is_empty() {
        let count: usize = p
            .ask(
                "How many fixture slots? They are found next, one adapter at a time",
                "1",
            )?
            .parse()
            .context("the number of slots must be a whole number")?;
        drop(p);
        let found =
            fixture::run_detect(&dps_station::station::setup::detect::numbered_slots(count))?;
        if found.is_empty() {
            bail!("no fixture slot detected: nothing written");
        }
        // The slots go into station.toml below, with the rest of the answers.
        fixture::write_detected(None, &name, &found, Path::new(FIXTURE_RULES_FILE))?;
        slots = found
            .iter()
            .map(|s| (s.slot.clone(), s.device_path()))
            .collect();
    }
    let values = StationValues {
        name: Some(name),
        ledger: Some(ledger),
        reports: None,
        fixture: slots.into_iter().collect(),
        hsm: Some(HsmChoice {
            profile,
            token_label,
        }),
        dps: Some(DpsChoice {
            name: args.dps_target,
            connection_string: SecretSource::Env(connection_env),
        }),
    };
    let config = first_run::write_station(&path, &values, true)?
        .context("the station file was written but not read back")?;
    println!(
        "{} written: station {}, ledger {}, {} fixture slot(s).",
        path.display(),
        config.name,
        config.ledger.display(),
        config.fixture.slots.len()
    );
    // What the machine still lacks is reported, but the file is written: setup succeeded.
    check(&path)?;
    Ok(ExitCode::SUCCESS)
}

fn print_steps(path: &Path) {
    println!("This station is not set up yet. The steps:");
    for (i, step) in first_run_steps(path).iter().enumerate() {
        println!("  {}. {}: {}", i + 1, step.what, step.how);
    }
}

fn check(path: &Path) -> anyhow::Result<ExitCode> {
    if matches!(
        station_state(path),
        StationState::Missing | StationState::Unconfigured
    ) {
        print_steps(path);
        println!();
    }
    let mut all = true;
    for c in checks(path) {
        all &= c.ok;
        println!(
            "{} {:<34} {}",
            if c.ok { "ok     " } else { "MISSING" },
            c.what,
            c.detail
        );
    }
    Ok(if all {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
