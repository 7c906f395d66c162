//! `dps-station run` (a batch on the fixture, headless), `dps-station demo` (the whole station in
//! a temporary workspace) and `dps-station bench line`. Progress bars draw from engine events.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, Subcommand};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use dps_station::device::ClientOptions;
use dps_station::dps::DpsClient;
use dps_station::identity::registration_id::IdUse;
use dps_station::identity::template::TemplateValues;
use dps_station::station::config::{BatchConfig, BatchSize, EnrollTiming, Mode, StationConfig};
use dps_station::station::demo::{self, DemoWorkspace, KeyStoreChoice, RunOptions};
use dps_station::station::engine::{Engine, EngineSetup, RunSummary};
use dps_station::station::events::{BatchState, Command, Event};
use dps_station::station::keys::StationKeys;
use dps_station::station::operator::handle::connect_dps;
use dps_station::station::report::{self, ReportFigures};
use dps_station::station::setup::access;
use dps_station::station::setup::first_run::{self, StationState, first_run_steps, station_state};
use dps_station::station::source::{self, DeviceSource, PortSource};

use super::interrupt;
use super::pipe::{self, Out};

/// The line commands, flattened into the top level.
#[derive(Debug, Subcommand)]
pub enum Commands {
    /// Run a batch on the fixture: a progress bar per slot, the summary, a report.
    ///
    /// Ctrl-C pauses: no new device is taken, the devices in flight finish, the batch stays
    /// resumable (run the same command again) and the exit status is 130; a second Ctrl-C aborts
    /// the devices in flight (their identities are voided when the batch runs again). SIGTERM
    /// pauses the same way (exit status 143) but waits at most DPS_STATION_STOP_TIMEOUT seconds
    /// (default 30) for the devices in flight.
    ///
    /// The HSM user PIN comes from the file DPS_STATION_HSM_PIN_FILE names, DPS_STATION_HSM_PIN,
    /// station.toml [keystore] pin_file (files must be owner-only: chmod 600), or else a prompt
    /// on the terminal.
    Run(RunArgs),
    /// The whole station with no hardware and no cloud account: emulator, simulated devices,
    /// SoftHSM2 (or software keys), a batch of every working mode, devices registering.
    Demo(DemoArgs),
}

/// `run` options.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The station file (default: ./station.toml if there is one, else the installed
    /// /etc/dps-station/station.toml).
    #[arg(long, value_name = "PATH", env = first_run::STATION_FILE_ENV, default_value_os_t = default_station_path(), hide_default_value = true)]
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
    /// Devices of the batch done by earlier runs (the bar starts there on resume).
    before: u64,
    /// Devices between `DeviceSeen` and `Passed`/`Failed`: what a pause lets finish.
    in_flight: Arc<AtomicUsize>,
    /// Standard output (a closed one pauses a run).
    out: Arc<Out>,
}

impl View {
    fn new(headless: bool, prefix: &str, target: Option<u64>, out: Arc<Out>) -> Self {
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
            before: 0,
            in_flight: Arc::new(AtomicUsize::new(0)),
            out,
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
        match event {
            Event::DeviceSeen { .. } => {
                self.in_flight.fetch_add(1, Ordering::SeqCst);
            }
            Event::Passed { .. } | Event::Failed { .. } => {
                let _ = self
                    .in_flight
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
            }
            Event::Resumed { already_done, .. } => self.before = *already_done,
            _ => {}
        }
        if self.headless {
            match event {
                Event::StageStarted { .. } | Event::SlotWaiting { .. } => {}
                Event::Resumed { already_done, size } => {
                    if *already_done > 0 {
                        self.out.line(format!(
                            "[{}] resuming: the ledger holds {already_done}{} device(s) of this batch done",
                            self.prefix,
                            size.map(|s| format!(" of {s}")).unwrap_or_default()
                        ));
                    }
                }
                Event::Progress {
                    passed,
                    failed,
                    target,
                } => {
                    let done = self.before + passed + failed;
                    let of = target
                        .map(|t| format!("/{}", t + self.before))
                        .unwrap_or_default();
                    self.out.line(format!(
                        "[{}] progress: {done}{of} done ({passed} passed, {failed} failed in this run)",
                        self.prefix
                    ));
                }
                Event::Enrollment {
                    enrolled, failed, ..
                } => self.out.line(format!(
                    "[{}] enrollment: {enrolled} confirmed by DPS, {failed} refused",
                    self.prefix
                )),
                other => self
                    .out
                    .line(format!("[{}] {}", self.prefix, describe(other))),
            }
            return;
        }
        match event {
            Event::SlotWaiting { slot } => self.slot(slot).set_message("waiting for a device"),
            Event::LeaseWaiting { slot, waiting } => {
                self.slot(slot).set_message(format!("▲ {waiting}"))
            }
            Event::PortAbsent { slot, path, waited } => self.slot(slot).set_message(format!(
                "waiting for {path} to appear (waited {} s; is the adapter plugged in?)",
                waited.as_secs()
            )),
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
            Event::Resumed { already_done, size } => {
                if let Some(b) = &self.batch {
                    if let Some(size) = size {
                        b.set_length(*size);
                    }
                    b.set_position(*already_done);
                    if *already_done > 0 {
                        b.set_message(format!("resumed: {already_done} done before"));
                    }
                }
            }
            Event::Progress { passed, failed, .. } => {
                self.done = (*passed, *failed);
                if let Some(b) = &self.batch {
                    b.set_position(self.before + passed + failed);
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
            Event::Central(notice) => {
                let _ = self.multi.println(notice.describe());
            }
            Event::Batch(state) => {
                if let Some(b) = &self.batch {
                    b.set_message(format!(
                        "{state:?}: {} passed, {} failed",
                        self.done.0, self.done.1
                    ));
                }
            }
            Event::LabelWanted { slot, hardware_id } => {
                self.slot(slot).set_message("scan the device's label");
                let _ = self.multi.println(label_wanted(slot, hardware_id));
            }
            Event::LabelTaken { slot, serial } => self
                .slot(slot)
                .set_message(format!("{serial}: label scanned")),
            Event::LabelRefused { serial, reason } => {
                let _ = self
                    .multi
                    .println(format!("label {serial} not taken: {reason}"));
            }
        }
    }

    fn finish(&mut self) {
        for bar in self.slots.values() {
            bar.finish_and_clear();
        }
        // `abandon`, not `finish`: finish would draw the bar full for a paused batch.
        if let Some(b) = &self.batch {
            b.abandon();
        }
    }
}

/// Lines on standard input are device labels (a USB scanner types into the terminal like a
/// keyboard), for devices that cannot report their own serial or batches with
/// `serial_from = "label"`. The engine refuses a label no slot waits for, with the reason.
fn read_labels(commands: std::sync::mpsc::Sender<Command>) {
    let spawned = std::thread::Builder::new()
        .name("labels".into())
        .spawn(move || {
            for line in std::io::stdin().lines() {
                let Ok(line) = line else { return };
                let label = line.trim();
                if !label.is_empty() && commands.send(Command::Label(label.to_string())).is_err() {
                    return;
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!("cannot read device labels from standard input: {e}");
    }
}

fn label_wanted(slot: &str, hardware_id: &str) -> String {
    let which = if hardware_id.is_empty() {
        String::new()
    } else {
        format!(" (it reports {hardware_id})")
    };
    format!(
        "slot {slot}: scan the label of the device in this slot{which}; a scanner types it here, or type it and press Enter"
    )
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
        Event::LeaseWaiting { slot, waiting } => format!("slot {slot}: ▲ {waiting}"),
        Event::PortAbsent { slot, path, waited } => format!(
            "slot {slot}: waiting for {path} to appear (waited {} s; is the adapter plugged in?)",
            waited.as_secs()
        ),
        Event::EnrollmentProblem { message } => format!("enrollment problem: {message}"),
        Event::Central(notice) => notice.describe(),
        Event::LabelWanted { slot, hardware_id } => label_wanted(slot, hardware_id),
        Event::LabelTaken { slot, serial } => {
            format!("slot {slot}: label {serial} is the device's serial")
        }
        Event::LabelRefused { serial, reason } => format!("label {serial} not taken: {reason}"),
        other => format!("{other:?}"),
    }
}

fn print_summary(out: &Out, name: &str, summary: &RunSummary) {
    let f = ReportFigures::of(summary);
    out.line(format!(
        "batch {name}: {:?}; {} passed, {} failed (yield {:.1}%); time per device: {}; {} enrolled, {} refused, {} still queued",
        summary.state,
        f.passed,
        f.failed,
        f.yield_ratio * 100.0,
        f.times_text(),
        summary.enrollment.enrolled,
        summary.enrollment.failed,
        summary.pending_enrollments,
    ));
    for (stage, n) in &f.failures_by_stage {
        out.line(format!("  failed at {stage}: {n}"));
    }
    let r = summary.resumed;
    if r.voided + r.requeued > 0 {
        out.line(format!(
            "  resumed from the ledger: {} unwritten identities voided, {} written ones re-queued",
            r.voided, r.requeued
        ));
    }
}

/// What the batch will make, with a sample registration ID as the station writes it
/// (lowercased), before any device is touched.
fn batch_preview(batch: &BatchConfig) -> String {
    let serial = match &batch.size {
        BatchSize::SerialRange { first, .. } => first.clone(),
        BatchSize::Count(_) => "SN000123".to_string(),
    };
    let values = TemplateValues {
        product: Some(&batch.product),
        serial: Some(&serial),
        model: Some(batch.model.as_deref().unwrap_or("Model-1")),
        hardware_id: Some("HWID-01"),
        device_suggestion: Some("Device-01"),
    };
    let usage = if batch.mode.is_x509() {
        IdUse::X509CommonName
    } else {
        IdUse::Any
    };
    let size = match &batch.size {
        BatchSize::Count(n) => format!("{n} device(s)"),
        BatchSize::SerialRange { first, last } => format!("serials {first} to {last}"),
    };
    let example = match batch.template.render(&values, usage) {
        Ok(id) => format!(
            "registration IDs like '{id}' (from '{}' with serial {serial}; always lowercase)",
            batch.template.as_str()
        ),
        Err(e) => format!("registration IDs from '{}' ({e})", batch.template.as_str()),
    };
    format!("batch {}: {}, {size}, {example}", batch.name, batch.mode)
}

fn dps_client(
    station: &StationConfig,
    batch: &BatchConfig,
) -> anyhow::Result<Option<Arc<DpsClient>>> {
    if batch.timing == EnrollTiming::Offline {
        return Ok(None);
    }
    // The same client the desk builds (one place decides secret source and TLS trust).
    Ok(Some(Arc::new(connect_dps(station, &batch.dps_target)?)))
}

/// `./station.toml` for a station run from a working directory (the README's examples), else the
/// package's station file.
pub(crate) fn default_station_path() -> PathBuf {
    let local = PathBuf::from("station.toml");
    if local.is_file() {
        local
    } else {
        first_run::default_station_file()
    }
}

fn run_batch(args: &RunArgs) -> anyhow::Result<ExitCode> {
    // First run: no station yet; say the steps instead of a parse error on a commented template.
    if let StationState::Missing | StationState::Unconfigured = station_state(&args.config) {
        println!(
            "{} does not configure a station yet. The steps:",
            args.config.display()
        );
        for (i, step) in first_run_steps(&args.config).iter().enumerate() {
            println!("  {}. {}: {}", i + 1, step.what, step.how);
        }
        anyhow::bail!(
            "no station configured in {}: run `sudo dps-station setup`",
            args.config.display()
        );
    }
    // A closed stdout must pause the batch, not end the process mid-device.
    pipe::ignore_sigpipe();
    let station = StationConfig::load(&args.config)?;
    // A slot whose port is refused fails as a device would; say the real cause once, up front.
    if let Some(hint) = access::group_hint(&access::membership()) {
        eprintln!("warning: {hint}");
    }
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
    // Before the PIN is asked for: what is about to be made, as the station writes its IDs.
    Out::new(None).line(batch_preview(&batch));
    let keys = StationKeys::open(&station.keystore)?;
    if keys.is_software() {
        eprintln!("WARNING: {}", keys.describe());
    }
    // A typo in a port path would otherwise wait forever for a device that cannot come.
    let bad_ports: Vec<String> = station
        .fixture
        .slots
        .iter()
        .filter_map(|(slot, path)| source::check_port(slot, path).err())
        .map(|e| e.to_string())
        .collect();
    if !bad_ports.is_empty() {
        anyhow::bail!("{} (in {})", bad_ports.join("\n"), args.config.display());
    }
    // A malformed grace is refused before the batch starts, not once devices are in the slots.
    let grace = interrupt::term_grace()?;
    let dps = dps_client(&station, &batch)?;
    let sources: Vec<(String, Box<dyn DeviceSource>)> = station
        .fixture
        .slots
        .iter()
        .map(|(slot, path)| {
            (
                slot.clone(),
                Box::new(PortSource::for_family(
                    path.clone(),
                    station.fixture.family_of(slot),
                    ClientOptions {
                        esp32: batch.esp32.clone(),
                        ..ClientOptions::default()
                    },
                )) as Box<dyn DeviceSource>,
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
    let out = Arc::new(Out::new(Some(engine.commands())));
    let mut view = View::new(args.headless, &batch.name, batch.target(), out.clone());
    // Ctrl-C / SIGTERM: take no new device, let in-flight ones finish; the batch stays resumable.
    let interrupts = interrupt::watch(engine.commands(), view.in_flight.clone(), grace);
    read_labels(engine.commands());
    for event in engine.events.iter() {
        view.show(&event);
    }
    view.finish();
    let summary = engine
        .join()
        .context("the batch thread stopped unexpectedly")?;
    let resume_hint = format!(
        "dps-station run --config {} --batch {}",
        args.config.display(),
        args.batch.display()
    );
    if summary.outcomes.is_empty() && summary.complete && summary.resumed.already_done > 0 {
        // Nothing was left to do: say what the batch holds; an empty report helps no one.
        out.line(format!(
            "batch {} is closed: it holds {} device(s) done ({} still queued for DPS{}); no device was taken and no report written",
            batch.name,
            summary.resumed.already_done,
            summary.pending_enrollments,
            if summary.enrollment.enrolled > 0 {
                format!(", {} enrolled now", summary.enrollment.enrolled)
            } else {
                String::new()
            }
        ));
        return Ok(ExitCode::SUCCESS);
    }
    print_summary(&out, &batch.name, &summary);
    let (md, csv) = report::write(
        &station.reports,
        &batch.name,
        &station.name,
        &keys.describe(),
        &summary,
    )
    .with_context(|| format!("writing the report under {}", station.reports.display()))?;
    out.line(format!("report: {} and {}", md.display(), csv.display()));
    if batch.timing == EnrollTiming::Offline {
        if batch.mode == Mode::SymmetricIndividual {
            out.line(format!(
                "enrollment is offline: the identities stay queued for `dps-station export --config {} --batch {} --output <dir>` (their keys are recomputed in this key store)",
                args.config.display(),
                args.batch.display()
            ));
        } else {
            out.line(format!(
                "enrollment is offline: the identities stay queued for `dps-station export --config {} --batch {} --output <dir>`",
                args.config.display(),
                args.batch.display()
            ));
        }
    }
    if summary.state == BatchState::Paused {
        out.line(format!(
            "batch {} is paused, not finished: run the same command to resume ({resume_hint})",
            batch.name
        ));
    }
    if let Some(code) = out.closed_status() {
        return Ok(code);
    }
    if summary.state == BatchState::Paused
        && let Some(code) = interrupts.exit_code()
    {
        return Ok(code);
    }
    // A batch that stopped short of its size did not finish, even without a failed device.
    Ok(
        if summary.failed() > 0 || summary.state == BatchState::Paused {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        },
    )
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
        let mut view = View::new(
            args.headless,
            mode.as_str(),
            Some(options.devices),
            Arc::new(Out::new(None)),
        );
        let run = workspace.run_mode(mode, &format!("demo-{mode}"), &options, &mut |e| {
            view.show(e)
        })?;
        view.finish();
        print_summary(&view.out, &format!("demo-{mode}"), &run.summary);
        // The end of the demo (issue 13): each device registers with what it stored, connects
        // to its hub over MQTT, reads the batch's initialTwin and sends its first message.
        let mut sent = 0;
        for device in run.devices.iter().filter(|d| d.passed) {
            match workspace.first_telemetry(&device.flash) {
                Ok(contact)
                    if contact.desired["telemetry_interval_s"]
                        == demo::DEMO_TELEMETRY_INTERVAL_S =>
                {
                    sent += 1
                }
                Ok(contact) => {
                    failed += 1;
                    println!(
                        "  device {} read a twin without the batch's initialTwin: {}",
                        device.flash.serial, contact.desired
                    )
                }
                Err(e) => {
                    failed += 1;
                    println!(
                        "  device {} could not reach its hub: {e:#}",
                        device.flash.serial
                    )
                }
            }
        }
        failed += run.summary.failed();
        println!(
            "  {sent} of {} devices sent telemetry to their hub (with the credentials they stored; twin from the batch's initialTwin)",
            run.devices.len()
        );
    }
    failed += demo_families(&workspace, args.headless, args.devices)?;
    println!("demo finished in {:.1} s", started.elapsed().as_secs_f64());
    drop(workspace);
    demo::remove_softhsm_dir();
    Ok(if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// The demo's batch per device family: one fixture with station-protocol slots beside nRF91
/// modem and Zephyr SMP slots; each then registers with what it stored. Returns how many failed.
fn demo_families(workspace: &DemoWorkspace, headless: bool, devices: u64) -> anyhow::Result<usize> {
    use dps_station::station::demo_families::{
        MixedOptions, register_modem, register_smp, run_mixed,
    };
    let slots = devices.clamp(1, 4) as usize;
    let options = MixedOptions {
        station_devices: devices,
        station_slots: slots,
        modem_devices: devices,
        modem_slots: slots,
        zephyr_devices: devices,
        zephyr_slots: slots,
        ..MixedOptions::default()
    };
    let name = "demo-families";
    let total = options.station_devices + options.modem_devices + options.zephyr_devices;
    let mut view = View::new(
        headless,
        "station + nrf91 + zephyr-smp",
        Some(total),
        Arc::new(Out::new(None)),
    );
    let run = run_mixed(workspace, name, &options, &mut |e| view.show(e))?;
    view.finish();
    print_summary(&view.out, name, &run.summary);
    let mut failed = run.summary.failed();
    let mut registered = 0;
    for modem in run.modems.iter().filter(|m| m.passed) {
        match register_modem(workspace, modem) {
            Ok(_) => registered += 1,
            Err(e) => {
                failed += 1;
                println!("  modem {} could not register: {e:#}", modem.imei)
            }
        }
    }
    println!(
        "  {registered} of {} nRF91 modems registered with the certificate, CA chain and key they hold (not locked: the AT interface has no lock; ID scope carried by the firmware)",
        run.modems.len()
    );
    let mut registered = 0;
    for device in run.zephyr.iter().filter(|d| d.passed) {
        match register_smp(workspace, device) {
            Ok(_) => registered += 1,
            Err(e) => {
                failed += 1;
                println!(
                    "  zephyr device {} could not register: {e:#}",
                    device.serial
                )
            }
        }
    }
    println!(
        "  {registered} of {} Zephyr SMP devices registered with the files, key and settings they hold (not locked: SMP has no lock)",
        run.zephyr.len()
    );
    Ok(failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 17, point 5: the batch bar starts from what the ledger holds and a pause leaves it
    /// where it is (indicatif's `finish` would draw it full).
    #[test]
    fn the_batch_bar_resumes_from_the_ledger_and_stays_put_on_pause() {
        let mut view = View::new(false, "b", Some(6), Arc::new(Out::new(None)));
        let position = |view: &View| view.batch.as_ref().map(|b| (b.position(), b.length()));
        view.show(&Event::Resumed {
            already_done: 4,
            size: Some(6),
        });
        assert_eq!(position(&view), Some((4, Some(6))));
        view.show(&Event::Progress {
            passed: 1,
            failed: 0,
            target: Some(2),
        });
        assert_eq!(position(&view), Some((5, Some(6))));
        view.show(&Event::Batch(BatchState::Paused));
        view.finish();
        assert_eq!(position(&view), Some((5, Some(6))), "not drawn full");
    }
}
