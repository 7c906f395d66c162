//! `dps-station gui` (also what `dps-station` alone does): the operator's desk in a window;
//! `dps-station gui set-password <role>`: a role password's argon2 hash into station.toml;
//! and the window of `dps-station demo`.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Subcommand};

use dps_station::gui::{self, DeskOptions};
use dps_station::station::config::StationConfig;
use dps_station::station::demo::{self, DemoWorkspace, KeyStoreChoice};
use dps_station::station::demo_desk::{self, DemoDeskOptions};
use dps_station::station::operator::roles::{self, Role};
use dps_station::station::operator::settings::RolesSection;
use dps_station::station::operator::{FixtureProvider, StationHandle};
use dps_station::station::setup::first_run::{self, StationState};

/// The desk's commands, flattened into the top level.
#[derive(Debug, Subcommand)]
pub enum Commands {
    /// Open the operator's desk (the default without a command).
    Gui(GuiArgs),
}

/// `gui` options.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct GuiArgs {
    /// The station file [default: $DPS_STATION_CONFIG, else ./station.toml if there is one, else
    /// /etc/dps-station/station.toml, the package's; as `run` finds it]. A missing or
    /// unconfigured one opens the first-run screen.
    #[arg(long, value_name = "PATH", env = first_run::STATION_FILE_ENV)]
    pub config: Option<PathBuf>,
    /// Full screen without window decorations; leaving needs an engineer.
    #[arg(long)]
    pub kiosk: bool,
    #[command(subcommand)]
    action: Option<GuiAction>,
}

impl GuiArgs {
    /// What `dps-station` alone does: the desk over `station.toml` in this folder.
    pub fn default_station() -> Self {
        Self {
            config: None,
            kiosk: false,
            action: None,
        }
    }
}

#[derive(Debug, Subcommand)]
enum GuiAction {
    /// Set the engineer's or security officer's password (read from standard input, one line);
    /// its argon2 hash goes into station.toml's [roles], the file's comments stay.
    SetPassword {
        /// `engineer` or `officer`.
        role: String,
        /// The station file.
        #[arg(long, value_name = "PATH", default_value = "station.toml")]
        config: PathBuf,
    },
}

/// Runs a desk command.
pub fn run(cmd: Commands) -> anyhow::Result<ExitCode> {
    match cmd {
        Commands::Gui(args) => match args.action {
            Some(GuiAction::SetPassword { role, config }) => set_password(&role, &config),
            None => open(
                &args
                    .config
                    .unwrap_or_else(super::line::default_station_path),
                args.kiosk,
            ),
        },
    }
}

fn no_display() -> ExitCode {
    eprintln!("error: {}", gui::GuiError::NoDisplay);
    ExitCode::from(2)
}

/// Opens the desk over a station file; the first-run screen when none is configured yet.
pub fn open(config: &Path, kiosk: bool) -> anyhow::Result<ExitCode> {
    if !gui::has_display() {
        return Ok(no_display());
    }
    let options = DeskOptions {
        kiosk,
        ..DeskOptions::default()
    };
    if let StationState::Missing | StationState::Unconfigured = first_run::station_state(config) {
        eprintln!(
            "{} is not configured yet: the first-run screen asks for it",
            config.display()
        );
        gui::first_run::run(config, options)?;
        return Ok(ExitCode::SUCCESS);
    }
    let station = match StationConfig::load(config) {
        Ok(s) => s,
        Err(e) => {
            let message = format!(
                "{e:#}\n\n(the desk needs a station file: pass --config PATH, or try `dps-station demo`)"
            );
            eprintln!("error: {e:#}");
            // Shown where the engineer looked: the window, not only this terminal.
            gui::error_window::show(&message, None)?;
            return Ok(ExitCode::FAILURE);
        }
    };
    let handle = StationHandle::open(station, Box::new(FixtureProvider::default()));
    gui::run(handle, options)?;
    Ok(ExitCode::SUCCESS)
}

fn set_password(role: &str, config: &Path) -> anyhow::Result<ExitCode> {
    let role = Role::parse(role)
        .filter(|r| *r != Role::Operator)
        .with_context(|| {
            format!("'{role}' is not a role with a password; name engineer or officer")
        })?;
    eprintln!(
        "new {} password (one line on standard input):",
        role.as_str()
    );
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the password from standard input")?;
    let password = line.trim_end_matches(['\r', '\n']);
    if password.chars().count() < 8 {
        anyhow::bail!("the password is shorter than 8 characters; choose a longer one");
    }
    roles::set_password(config, role, password)?;
    println!(
        "the {} password's argon2 hash is in {} [roles]",
        role.as_str(),
        config.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// The demo desk's engineer and officer password (a demo workspace only).
const DEMO_ROLE_PASSWORD: &str = "demo";

/// `dps-station demo` with a display: the demo workspace behind the desk, signed in as `demo`.
pub fn demo_window(
    devices: u64,
    software_keys: bool,
    faulty_first: bool,
) -> anyhow::Result<ExitCode> {
    let choice = if software_keys {
        KeyStoreChoice::Software
    } else {
        KeyStoreChoice::Auto
    };
    let mut workspace = DemoWorkspace::create(choice)?;
    workspace.keep_connection_string_in_file()?;
    let workspace = Arc::new(workspace);
    println!(
        "dps-station demo: workspace {}; DPS emulator {}; key store {}",
        workspace.dir.display(),
        workspace.emulator.service_url(),
        workspace.keys_description()
    );
    // The demo's operator may also take the engineer's and the officer's roles, so every screen
    // can be seen; the password is the demo's own, printed here, never a real station's.
    let password = roles::hash_password(DEMO_ROLE_PASSWORD)?;
    let mut desk_roles = RolesSection {
        engineers: vec!["demo".into()],
        officers: vec!["demo".into()],
        ..RolesSection::default()
    };
    desk_roles.engineer_password = Some(password.clone());
    desk_roles.officer_password = Some(password);
    println!(
        "signed in as demo; for the engineer's and the officer's screens press Role… and give the demo password \"{DEMO_ROLE_PASSWORD}\""
    );
    let handle = demo_desk::demo_station(
        workspace.clone(),
        DemoDeskOptions {
            devices,
            faulty_first,
            roles: desk_roles,
            ..DemoDeskOptions::default()
        },
    )?;
    handle.sign_in("demo")?;
    let result = gui::run(handle, DeskOptions::default());
    drop(workspace);
    demo::remove_softhsm_dir();
    result?;
    Ok(ExitCode::SUCCESS)
}
