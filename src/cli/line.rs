//! `dps-station run` (a batch on the fixture, headless), `dps-station demo` (the whole station in
//! a temporary workspace) and `dps-station bench line`. Progress bars draw from engine events.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, Subcommand};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use dps_station::device::ClientOptions;
use dps_station::dps::{ConnectionString, DpsClient, DpsClientConfig, TlsTrust};
use dps_station::station::config::{BatchConfig, EnrollTiming, Mode, StationConfig};
use dps_station::station::demo::{self, DemoWorkspace, KeyStoreChoice, RunOptions};
use dps_station::station::engine::{Engine, EngineSetup, RunSummary};
use dps_station::station::events::{Command, Event};
use dps_station::station::keys::StationKeys;
use dps_station::station::report::{self, ReportFigures};
use dps_station::station::source::{DeviceSource, PortSource};

/// The line commands, flattened into the top level.
#[derive(Debug, Subcommand)]
pub enum Commands {
    /// Run a batch on the fixture: a progress bar per slot, the summary, a report; Ctrl-C pauses.
    Run(RunArgs),
    /// The whole station with no hardware and no cloud account: emulator, simulated devices,
    /// SoftHSM2 (or software keys), a batch of every working mode, devices registering.
    Demo(DemoArgs),
}

/// `run` options.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The station file.
    #[arg(long, value_name = "PATH", default_value = "station.toml")]
    config: PathBuf,
    /// The batch file.
    #[arg(long, value_name = "PATH")]
    batch: PathBuf,
    /// Print one line per event instead of progress bars.
    #[arg(long)]
    headless: bool,
    /// Re-provision devices seen before, for this run, and say why (e.g. "RMA 123"): a locked
    /// device is factory-reset (its reset input must be asserted), its old identity revoked and
    /// a new one issued and enrolled in place of the old; all audited. Without it such devices
    /// are refused. Overrides `reprovision` in the batch file. Not for group modes (x509-group,
    /// symmetric-group): DPS would still accept the old credential.
    #[arg(long, value_name = "REASON")]
    reprovision: Option<String>,
}

/// `demo` options.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Run in the terminal (one line per event) instead of opening the desk's window.
    #[arg(long)]
    headless: bool,
    /// Devices per mode.
    #[arg(long, default_value_t = 8)]
    devices: u64,
    /// Use the software key store even if SoftHSM2 is installed.
    #[arg(long)]
    software_keys: bool,
    /// In the desk's window: the first device of slot S1 loses its cable mid-write, to show
    /// what a failure looks like.
    #[arg(long)]
    faulty_first: bool,
}

/// Runs a line command.
pub fn run(cmd: Commands) -> anyhow::Result<ExitCode> {
    match cmd {
        Commands::Run(args) => run_batch(&args),
        Commands::Demo(args) => run_demo(&args),
    }
}

/// Draws events: bars on a terminal, lines when headless.
struct View {
    headless: bool,
    multi: MultiProgress,
    slots: BTreeMap<String, ProgressBar>,
    batch: Option<ProgressBar>,
    prefix: String,
    done: (u64, u64),
}

impl View {
    fn new(headless: bool, prefix: &str, target: Option<u64>) -> Self {
        let multi = MultiProgress::new();
        let batch = (!headless).then(|| {
            let bar = multi.add(ProgressBar::new(target.unwrap_or(0)));
            bar.set_style(
                ProgressStyle::with_template("{prefix:>14} [{bar:30}] {pos}/{len} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            bar.set_prefix(prefix.to_string());
            bar
        });
        Self {
            headless,
            multi,
            slots: BTreeMap::new(),
            batch,
            prefix: prefix.to_string(),
            done: (0, 0),
        }
    }

    fn slot(&mut self, slot: &str) -> &ProgressBar {
        let multi = &self.multi;
        self.slots.entry(slot.to_string()).or_insert_with(|| {
            let bar = multi.add(ProgressBar::new_spinner());
            bar.set_style(
                ProgressStyle::with_template("{prefix:>14} {spinner} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.set_prefix(format!("slot {slot}"));
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        })
    }

    fn show(&mut self, event: &Event) {
        if self.headless {
            match event {
                Event::StageStarted { .. } | Event::SlotWaiting { .. } | Event::Progress { .. } => {
                }
                Event::Enrollment {
                    enrolled, failed, ..
                } => {
                    println!(
                        "[{}] enrollment: {enrolled} confirmed by DPS, {failed} refused",
                        self.prefix
                    )
                }
                other => println!("[{}] {}", self.prefix, describe(other)),
            }
            return;
        }
        match event {
            Event::SlotWaiting { slot } => self.slot(slot).set_message("waiting for a device"),
            Event::DeviceSeen { slot, serial, .. } => {
                self.slot(slot).set_message(format!("{serial}: seen"))
            }
            Event::StageStarted { slot, stage } => self.slot(slot).set_message(format!("{stage}")),
            Event::Passed {
                slot,
                registration_id,
                elapsed,
                ..
            } => self.slot(slot).set_message(format!(
                "PASS {registration_id} ({} ms)",
                elapsed.as_millis()
            )),
            Event::Failed {
                slot,
                stage,
                reason,
                ..
            } => {
                let msg = format!("FAIL at {stage}: {reason}");
                self.slot(slot).set_message(msg.clone());
                let _ = self.multi.println(format!("slot {slot}: {msg}"));
            }
            Event::SlotStopped { slot, reason } => self
                .slot(slot)
                .finish_with_message(format!("stopped: {reason}")),
            Event::Progress { passed, failed, .. } => {
                self.done = (*passed, *failed);
                if let Some(b) = &self.batch {
                    b.set_position(passed + failed);
                    b.set_message(format!("{passed} passed, {failed} failed"));
                }
            }
            Event::Enrollment {
                enrolled, failed, ..
            } => {
                if let Some(b) = &self.batch {
                    b.set_message(format!("enrolled {enrolled}, refused {failed}"));
                }
            }
            Event::EnrollmentProblem { message } => {
                let _ = self.multi.println(format!("enrollment: {message}"));
            }
            Event::Batch(state) => {
                if let Some(b) = &self.batch {
                    b.set_message(format!(
                        "{state:?}: {} passed, {} failed",
                        self.done.0, self.done.1
                    ));
                }
            }
        }
    }

    fn finish(&mut self) {
        for bar in self.slots.values() {
            bar.finish_and_clear();
        }
        if let Some(b) = &self.batch {
            b.finish();
        }
    }
}

fn describe(event: &Event) -> String {
    match event {
        Event::Batch(s) => format!("batch {s:?}"),
        Event::DeviceSeen {
            slot,
            serial,
            model,
        } => format!("slot {slot}: device {serial} ({model})"),
        Event::Passed {
            slot,
            serial,
            registration_id,
            elapsed,
        } => {
            format!(
                "slot {slot}: PASS {serial} as {registration_id} in {} ms",
                elapsed.as_millis()
            )
        }
        Event::Failed {
            slot,
            serial,
            stage,
            reason,
        } => {
            format!(
                "slot {slot}: FAIL {} at {stage}: {reason}",
                serial.as_deref().unwrap_or("?")
            )
        }
        Event::SlotStopped { slot, reason } => format!("slot {slot}: stopped ({reason})"),
        Event::EnrollmentProblem { message } => format!("enrollment problem: {message}"),
        other => format!("{other:?}"),
    }
}

fn print_summary(name: &str, summary: &RunSummary) {
    let f = ReportFigures::of(summary);
    println!(
        "batch {name}: {:?}; {} passed, {} failed (yield {:.1}%); median {:.0} ms, p95 {:.0} ms per device; {} enrolled, {} refused, {} still queued",
        summary.state,
        f.passed,
        f.failed,
        f.yield_ratio * 100.0,
        f.median.as_secs_f64() * 1e3,
        f.p95.as_secs_f64() * 1e3,
        summary.enrollment.enrolled,
        summary.enrollment.failed,
        summary.pending_enrollments,
    );
    for (stage, n) in &f.failures_by_stage {
        println!("  failed at {stage}: {n}");
    }
    let r = summary.resumed;
    if r.voided + r.requeued > 0 {
        println!(
            "  resumed from the ledger: {} unwritten identities voided, {} written ones re-queued",
            r.voided, r.requeued
        );
    }
}

fn dps_client(
    station: &StationConfig,
    batch: &BatchConfig,
) -> anyhow::Result<Option<Arc<DpsClient>>> {
    if batch.timing == EnrollTiming::Offline {
        return Ok(None);
    }
    let target = station.dps.get(&batch.dps_target).with_context(|| {
        format!(
            "DPS target '{}' is not in {}",
            batch.dps_target,
            station.path.display()
        )
    })?;
    let secret = target.connection_string.fetch(&format!(
        "the connection string of DPS target '{}'",
        target.name
    ))?;
    let connection = ConnectionString::parse(&secret)
        .with_context(|| format!("DPS target '{}'", target.name))?;
    let tls = match &target.ca_file {
        Some(path) => TlsTrust::only(
            std::fs::read(path)
                .with_context(|| format!("reading the CA file {}", path.display()))?,
        ),
        None => TlsTrust::platform(),
    };
    let mut config = DpsClientConfig {
        endpoint: target.endpoint.clone(),
        tls,
        ..DpsClientConfig::default()
    };
    if let Some(opm) = target.operations_per_minute {
        config.operations_per_minute = opm;
    }
    Ok(Some(Arc::new(
        DpsClient::new(connection, config)
            .with_context(|| format!("DPS target '{}'", target.name))?,
    )))
}

fn run_batch(args: &RunArgs) -> anyhow::Result<ExitCode> {
    let station = StationConfig::load(&args.config)?;
    let mut batch = BatchConfig::load(&args.batch, &station)?;
    if let Some(reason) = &args.reprovision {
        let reason = BatchConfig::reprovision_reason(batch.mode, reason)
            .with_context(|| format!("--reprovision for batch {}", args.batch.display()))?;
        batch.reprovision = Some(reason);
    }
    if let Some(reason) = &batch.reprovision {
        eprintln!(
            "RE-PROVISIONING: devices seen before get a new identity, their old one is revoked (reason: {reason})"
        );
    }
    let keys = StationKeys::open(&station.keystore)?;
    if keys.is_software() {
        eprintln!("WARNING: {}", keys.describe());
    }
    let dps = dps_client(&station, &batch)?;
    let sources: Vec<(String, Box<dyn DeviceSource>)> = station
        .fixture
        .slots
        .iter()
        .map(|(slot, path)| {
            (
                slot.clone(),
                Box::new(PortSource::new(path.clone(), ClientOptions::default()))
                    as Box<dyn DeviceSource>,
            )
        })
        .collect();
    let engine = Engine::start(EngineSetup {
        station: station.clone(),
        batch: batch.clone(),
        keys: keys.clone(),
        dps,
        sources,
    })?;
    // Ctrl-C: take no new device, let in-flight ones finish; the batch stays resumable.
    let commands = engine.commands();
    let _ = std::thread::Builder::new()
        .name("ctrl-c".into())
        .spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            if rt.block_on(tokio::signal::ctrl_c()).is_ok() {
                eprintln!("\nCtrl-C: pausing; devices in the slots finish, no new device is taken");
                let _ = commands.send(Command::Close);
            }
        });
    let mut view = View::new(args.headless, &batch.name, batch.target());
    for event in engine.events.iter() {
        view.show(&event);
    }
    view.finish();
    let summary = engine
        .join()
        .context("the batch thread stopped unexpectedly")?;
    print_summary(&batch.name, &summary);
    let (md, csv) = report::write(
        &station.reports,
        &batch.name,
        &station.name,
        &keys.describe(),
        &summary,
    )
    .with_context(|| format!("writing the report under {}", station.reports.display()))?;
    println!("report: {} and {}", md.display(), csv.display());
    if batch.timing == EnrollTiming::Offline {
        if batch.mode == Mode::SymmetricIndividual {
            println!(
                "enrollment is offline: the identities stay queued for `dps-station export --config {} --batch {} --output <dir>` (their keys are recomputed in this key store)",
                args.config.display(),
                args.batch.display()
            );
        } else {
            println!("enrollment is offline: the identities stay queued for `dps-station export`");
        }
    }
    Ok(if summary.failed() > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn run_demo(args: &DemoArgs) -> anyhow::Result<ExitCode> {
    if !args.headless {
        if dps_station::gui::has_display() {
            return super::gui::demo_window(args.devices, args.software_keys, args.faulty_first);
        }
        eprintln!(
            "no display for the desk's window: the demo runs in this terminal (as with --headless)"
        );
    }
    let started = Instant::now();
    let choice = if args.software_keys {
        KeyStoreChoice::Software
    } else {
        KeyStoreChoice::Auto
    };
    let workspace = DemoWorkspace::create(choice)?;
    println!("dps-station demo: workspace {}", workspace.dir.display());
    println!(
        "  DPS emulator: {} (ID scope {})",
        workspace.emulator.service_url(),
        workspace.emulator.id_scope()
    );
    if workspace.is_software() {
        println!(
            "  !!! using the SOFTWARE key store ({} absent or --software-keys): keys are in files, NOT in an HSM !!!",
            demo::SOFTHSM_MODULE
        );
    }
    println!("  key store: {}", workspace.keys_description());
    let options = RunOptions {
        devices: args.devices,
        ..RunOptions::default()
    };
    let mut failed = 0usize;
    for mode in Mode::WORKING {
        let mut view = View::new(args.headless, mode.as_str(), Some(options.devices));
        let run = workspace.run_mode(mode, &format!("demo-{mode}"), &options, &mut |e| {
            view.show(e)
        })?;
        view.finish();
        print_summary(&format!("demo-{mode}"), &run.summary);
        let mut registered = 0;
        for device in run.devices.iter().filter(|d| d.passed) {
            match workspace.register_device(&device.flash) {
                Ok(_) => registered += 1,
                Err(e) => {
                    failed += 1;
                    println!("  device {} could not register: {e:#}", device.flash.serial)
                }
            }
        }
        failed += run.summary.failed();
        println!(
            "  {registered} of {} devices registered through the emulator's device API with the credentials they stored",
            run.devices.len()
        );
    }
    println!("demo finished in {:.1} s", started.elapsed().as_secs_f64());
    drop(workspace);
    demo::remove_softhsm_dir();
    Ok(if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
