//! `dps-station enroll`, `export` and `import-results`: the ledger's pending enrollments sent to
//! DPS, written as enrollment files for another network, or marked from results enrolled there.
//!
//! The DPS connection string comes from the environment (`DPS_CONNECTION_STRING`) or a file
//! (`--connection-string-file`), never from the command line, where `ps` and shell histories
//! would show the key.
//!
//! `symmetric-individual` identities need their batch's key store (`--config station.toml
//! --batch batch.toml`, as `run` takes them): their keys are recomputed there, checked against the
//! ledger's fingerprints, sent or written, and dropped (zeroized).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use dps_station::dps::export::{GroupAttestation, GroupRecord};
use dps_station::dps::model::AllocationPolicy;
use dps_station::dps::{
    ConnectionString, DpsClient, DpsClientConfig, EnrollmentSettings, TlsTrust,
};
use dps_station::ledger::{self, Ledger, WriterIdentity};
use dps_station::secret::SecretString;
use dps_station::station::config::{BatchConfig, Mode, StationConfig};
use dps_station::station::enrollment::{
    EnrollOptions, Progress, Unfinished, batch_settings, enroll_pending, export_pending,
    import_pending_results, x509_group_record,
};
use dps_station::station::individual_keys::IndividualKeys;
use dps_station::station::keys::StationKeys;

/// The DPS commands, flattened into the top level.
#[derive(Debug, Subcommand)]
pub enum Commands {
    /// Send the ledger's pending enrollments to DPS (10 per bulk call, paced to the quota).
    Enroll(EnrollArgs),
    /// Write the ledger's pending enrollments as enrollment files for a site on another network.
    ///
    /// With `--config station.toml --batch batch.toml`, one batch: its identities only, with its
    /// iot_hubs, allocation_policy and initial_twin in every file (bulk JSON, CSV, az script);
    /// --iot-hub/--allocation-policy may add to the batch's settings, not contradict them.
    /// `--batch NAME` selects a batch of the ledger by name; its settings then come from the flags.
    Export(ExportArgs),
    /// Mark pending enrollments from the results of an enrollment done elsewhere.
    ImportResults(ImportArgs),
}

/// Where the ledger is and who writes to it.
#[derive(Debug, Args)]
pub struct LedgerOptions {
    /// The ledger file [default: $XDG_DATA_HOME/dps-station/ledger.db].
    #[arg(long, env = "DPS_STATION_LEDGER", value_name = "PATH")]
    ledger: Option<PathBuf>,
    /// The station name recorded as the writer [default: the host name].
    #[arg(long, env = "DPS_STATION_NAME")]
    station: Option<String>,
    /// The operator recorded as the writer [default: $USER].
    #[arg(long)]
    operator: Option<String>,
}

/// Where the keys of `symmetric-individual` identities are recomputed, and which batch.
#[derive(Debug, Args)]
pub struct KeySourceOptions {
    /// The station.toml of the batch (with a --batch file): its key store holds a
    /// symmetric-individual batch's device key master; also the ledger, unless --ledger is
    /// given. The HSM PIN comes from DPS_STATION_HSM_PIN_FILE, DPS_STATION_HSM_PIN, the
    /// station's [keystore] pin_file or a prompt, as for `run`.
    #[arg(long, value_name = "STATION_TOML")]
    config: Option<PathBuf>,
    /// The batch: its batch.toml (with --config; then also its enrollment settings, its key
    /// source and the DPS target, unless --dps-target is given), or its name in the ledger.
    #[arg(long, value_name = "BATCH_TOML|NAME")]
    batch: Option<String>,
}

/// The station and batch of `--config`/`--batch`, with a symmetric-individual batch's key
/// source opened.
struct KeySource {
    station: StationConfig,
    batch: BatchConfig,
    keys: Option<IndividualKeys>,
}

/// What `--batch` named.
enum BatchChoice {
    /// Nothing: every pending enrollment of the DPS target.
    All,
    /// A batch.toml, loaded against its station.toml.
    File(Box<KeySource>),
    /// A batch name in the ledger (its settings are not in the ledger).
    Name(String),
}

fn open_batch(opts: &KeySourceOptions) -> anyhow::Result<BatchChoice> {
    let Some(batch) = &opts.batch else {
        if opts.config.is_some() {
            bail!("--config names the station of a batch: add --batch <batch.toml>");
        }
        return Ok(BatchChoice::All);
    };
    let path = Path::new(batch);
    if !path.is_file() {
        if batch.contains('/') || batch.ends_with(".toml") {
            bail!(
                "the batch file {batch} does not exist: give an existing batch.toml, or the \
                 batch's name as the ledger lists it (`dps-station ledger list` shows them)"
            );
        }
        return Ok(BatchChoice::Name(batch.clone()));
    }
    let Some(config) = &opts.config else {
        bail!(
            "the batch file {batch} needs its station: add --config <station.toml> (its key \
             names and DPS target are checked against the station)"
        );
    };
    let station = StationConfig::load(config)?;
    let batch = BatchConfig::load(path, &station)?;
    // Only symmetric-individual batches have keys to recompute; other modes need no key store.
    let keys = if batch.device_key_master.is_some() {
        let keys = StationKeys::open(&station.keystore)?;
        if keys.is_software() {
            eprintln!("WARNING: {}", keys.describe());
        }
        Some(IndividualKeys::new(keys, batch.clone())?)
    } else {
        None
    };
    Ok(BatchChoice::File(Box::new(KeySource {
        station,
        batch,
        keys,
    })))
}

fn open_key_source(opts: &KeySourceOptions) -> anyhow::Result<Option<KeySource>> {
    match open_batch(opts)? {
        BatchChoice::File(source) => Ok(Some(*source)),
        BatchChoice::All => Ok(None),
        BatchChoice::Name(name) => bail!(
            "--batch {name}: give the batch.toml file (with --config) so that its key source \
             and settings are known"
        ),
    }
}

/// What every enrollment gets.
#[derive(Debug, Args)]
pub struct SettingsOptions {
    /// IoT hub host name the enrollments may be assigned to (repeat for several).
    #[arg(long = "iot-hub", value_name = "HOST")]
    iot_hubs: Vec<String>,
    /// How DPS picks among the hubs.
    #[arg(long, value_enum)]
    allocation_policy: Option<Allocation>,
    /// Mark the devices as IoT Edge devices.
    #[arg(long)]
    iot_edge: bool,
}

/// Allocation policies as typed on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum Allocation {
    Hashed,
    GeoLatency,
    Static,
}

/// Options of `enroll`.
#[derive(Debug, Args)]
pub struct EnrollArgs {
    #[command(flatten)]
    ledger: LedgerOptions,
    #[command(flatten)]
    settings: SettingsOptions,
    /// The DPS target the enrollments were queued for [default: the connection string's HostName].
    #[arg(long)]
    dps_target: Option<String>,
    /// An owner-only (chmod 600) file holding the DPS service connection string [default:
    /// $DPS_CONNECTION_STRING].
    #[arg(long, value_name = "FILE")]
    connection_string_file: Option<PathBuf>,
    /// Send to this URL instead of https://<HostName> (an emulator, a test bench).
    #[arg(long, value_name = "URL")]
    endpoint: Option<String>,
    /// Also trust this CA certificate (PEM) for the endpoint (an emulator's or a proxy's).
    #[arg(long, value_name = "PEM")]
    trust_ca: Option<PathBuf>,
    /// The DPS instance's operation quota per minute; the client never sends faster.
    #[arg(long, default_value_t = 1_000)]
    operations_per_minute: u32,
    /// Replace enrollments that exist in DPS with other content (re-provisioning). Without it,
    /// an existing enrollment is never overwritten.
    #[arg(long)]
    reprovision: bool,
    #[command(flatten)]
    key_source: KeySourceOptions,
}

/// Options of `export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    ledger: LedgerOptions,
    #[command(flatten)]
    settings: SettingsOptions,
    /// The DPS target the enrollments were queued for [default: the --batch's dps_target].
    #[arg(long)]
    dps_target: Option<String>,
    #[command(flatten)]
    key_source: KeySourceOptions,
    /// The directory to write (new or empty).
    #[arg(long, short, value_name = "DIR")]
    output: PathBuf,
    /// Also export an X.509 enrollment group with this ID...
    #[arg(long, requires = "group_source")]
    group_id: Option<String>,
    /// ...over this signing (root or intermediate CA) certificate, PEM...
    #[arg(long, value_name = "PEM", group = "group_source")]
    group_certificate: Option<PathBuf>,
    /// ...or over this CA certificate already verified in the DPS instance, by name.
    #[arg(long, group = "group_source")]
    group_ca_name: Option<String>,
}

/// Options of `import-results`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    #[command(flatten)]
    ledger: LedgerOptions,
    /// The DPS target the enrollments were queued for.
    #[arg(long)]
    dps_target: String,
    /// An export folder holding bulk/*.result.json or az-results.csv, or one results file
    /// (CSV with registration_id,status; or `az iot dps enrollment list` JSON).
    results: PathBuf,
}

/// Runs a DPS command.
pub fn run(cmd: Commands) -> anyhow::Result<ExitCode> {
    match cmd {
        Commands::Enroll(args) => enroll(args),
        Commands::Export(args) => export(args),
        Commands::ImportResults(args) => import(args),
    }
}

/// The ledger of `--ledger`, else of the `--config` station.toml, else the default path.
fn open_ledger(opts: &LedgerOptions, station: Option<&StationConfig>) -> anyhow::Result<Ledger> {
    let path = match (&opts.ledger, station) {
        (Some(p), _) => p.clone(),
        (None, Some(station)) => station.ledger.clone(),
        (None, None) => ledger::default_path()
            .context("no ledger path: set --ledger, DPS_STATION_LEDGER, XDG_DATA_HOME or HOME")?,
    };
    let writer = WriterIdentity {
        station: opts.station.clone().unwrap_or_else(ledger::lock::host_name),
        operator: opts
            .operator
            .clone()
            .or_else(|| std::env::var("USER").ok())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "unknown".into()),
    };
    Ok(Ledger::open(&path, &writer)?)
}

fn settings(opts: &SettingsOptions) -> EnrollmentSettings {
    EnrollmentSettings {
        iot_hubs: opts.iot_hubs.clone(),
        allocation_policy: opts.allocation_policy.map(|a| match a {
            Allocation::Hashed => AllocationPolicy::Hashed,
            Allocation::GeoLatency => AllocationPolicy::GeoLatency,
            Allocation::Static => AllocationPolicy::Static,
        }),
        iot_edge: opts.iot_edge.then_some(true),
        ..EnrollmentSettings::default()
    }
}

/// The batch's enrollment settings, with what the flags add; a flag that contradicts the batch
/// is refused (an export must not silently differ from what an immediate enrollment sends).
fn merged_settings(
    batch: &BatchConfig,
    flags: EnrollmentSettings,
) -> anyhow::Result<EnrollmentSettings> {
    let mut merged = batch_settings(batch);
    if !flags.iot_hubs.is_empty() {
        if !merged.iot_hubs.is_empty() && merged.iot_hubs != flags.iot_hubs {
            bail!(
                "--iot-hub contradicts the batch's iot_hubs ({}) in {}: drop the flag or change the batch",
                merged.iot_hubs.join(", "),
                batch.path.display()
            );
        }
        merged.iot_hubs = flags.iot_hubs;
    }
    if let Some(policy) = flags.allocation_policy {
        if merged.allocation_policy.is_some_and(|p| p != policy) {
            bail!(
                "--allocation-policy contradicts the batch's allocation_policy in {}: drop the flag or change the batch",
                batch.path.display()
            );
        }
        merged.allocation_policy = Some(policy);
    }
    merged.iot_edge = flags.iot_edge;
    Ok(merged)
}

/// The connection string from `--connection-string-file` (owner-only, as station.toml's
/// `connection_string_file`: the same check) or `DPS_CONNECTION_STRING`.
pub fn connection_string(file: Option<&Path>) -> anyhow::Result<ConnectionString> {
    let text = match file {
        Some(path) => dps_station::station::secret_file::read_owner_only(path)
            .context("--connection-string-file")?,
        None => match std::env::var("DPS_CONNECTION_STRING") {
            Ok(v) => SecretString::new(v),
            Err(_) => bail!(
                "no DPS connection string: set DPS_CONNECTION_STRING or give --connection-string-file \
                 (a file readable only by you)"
            ),
        },
    };
    Ok(ConnectionString::parse(&text)?)
}

fn enroll(args: EnrollArgs) -> anyhow::Result<ExitCode> {
    let cs = connection_string(args.connection_string_file.as_deref())?;
    let key_source = open_key_source(&args.key_source)?;
    let dps_target = args
        .dps_target
        .clone()
        .or_else(|| key_source.as_ref().map(|k| k.batch.dps_target.clone()))
        .unwrap_or_else(|| cs.host_name().to_string());
    let mut tls = TlsTrust::platform();
    if let Some(path) = &args.trust_ca {
        tls.extra_ca_pem.push(
            std::fs::read(path)
                .with_context(|| format!("cannot read the CA certificate {}", path.display()))?,
        );
    }
    let client = DpsClient::new(
        cs,
        DpsClientConfig {
            endpoint: args.endpoint.clone(),
            tls,
            operations_per_minute: args.operations_per_minute,
            ..DpsClientConfig::default()
        },
    )?;
    let mut ledger = open_ledger(&args.ledger, key_source.as_ref().map(|k| &k.station))?;
    let bar = indicatif::ProgressBar::new(0).with_style(
        indicatif::ProgressStyle::default_bar()
            .template("{spinner} enrolling [{bar:40}] {pos}/{len} ({per_sec}, eta {eta})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    // With the batch file: that batch's identities, with its settings (as `run` would send them).
    let (enrollment_settings, batch) = match &key_source {
        Some(source) => (
            merged_settings(&source.batch, settings(&args.settings))?,
            Some(source.batch.name.clone()),
        ),
        None => (settings(&args.settings), None),
    };
    let summary = enroll_pending(
        &mut ledger,
        &client,
        &EnrollOptions {
            dps_target: dps_target.clone(),
            settings: enrollment_settings,
            reprovision: args.reprovision,
            individual_keys: key_source.and_then(|k| k.keys),
            batch,
        },
        |Progress { done, total }| {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        },
    );
    bar.finish_and_clear();
    let summary = summary.with_context(|| format!("enrolling with {dps_target}"))?;
    let stats = client.stats();
    println!(
        "{dps_target}: {} pending, {} enrolled ({} created, {} already present, {} replaced, {} by group), \
         {} failed, {} to retry, {} not sendable here",
        summary.pending,
        summary.enrolled(),
        summary.created,
        summary.already_present,
        summary.replaced,
        summary.by_group,
        summary.failed.len(),
        summary.retry_later.len(),
        summary.not_sendable.len()
    );
    println!(
        "DPS: {} requests, {} throttled (429), {} server errors, {} without answer",
        stats.requests, stats.throttled, stats.server_errors, stats.transport_failures
    );
    print_unfinished("failed", &summary.failed);
    print_unfinished("to retry", &summary.retry_later);
    print_unfinished("not sendable", &summary.not_sendable);
    Ok(if summary.all_enrolled() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn print_unfinished(what: &str, list: &[Unfinished]) {
    for u in list {
        println!("  {what}: {}: {}", u.registration_id, u.reason);
    }
}

fn export(args: ExportArgs) -> anyhow::Result<ExitCode> {
    let choice = open_batch(&args.key_source)?;
    let (source, batch_name) = match choice {
        BatchChoice::All => (None, None),
        BatchChoice::Name(name) => (None, Some(name)),
        BatchChoice::File(source) => {
            let name = source.batch.name.clone();
            (Some(*source), Some(name))
        }
    };
    let Some(dps_target) = args
        .dps_target
        .clone()
        .or_else(|| source.as_ref().map(|k| k.batch.dps_target.clone()))
    else {
        bail!(
            "give --dps-target (the DPS target the enrollments were queued for) or a --batch file"
        );
    };
    let ledger = open_ledger(&args.ledger, source.as_ref().map(|k| &k.station))?;
    if let Some(name) = &batch_name
        && ledger.find_batch(name)?.is_none()
    {
        bail!(
            "the ledger {} holds no batch named '{name}' (`dps-station ledger list` shows each identity's batch)",
            ledger.path().display()
        );
    }
    let flags = settings(&args.settings);
    let enrollment_settings = match &source {
        Some(source) => merged_settings(&source.batch, flags)?,
        None => {
            if let Some(name) = &batch_name {
                eprintln!(
                    "note: the ledger does not hold batch '{name}''s iot_hubs, allocation_policy or \
                     initial_twin; give its batch.toml (--config <station.toml> --batch \
                     <batch.toml>) to write them, or the --iot-hub/--allocation-policy flags"
                );
            }
            flags
        }
    };
    let mut groups = Vec::new();
    if let Some(group_id) = &args.group_id {
        let attestation = match (&args.group_certificate, &args.group_ca_name) {
            (Some(path), _) => GroupAttestation::SigningCertificate {
                certificate_pem: std::fs::read_to_string(path).with_context(|| {
                    format!("cannot read the group certificate {}", path.display())
                })?,
            },
            (None, Some(name)) => GroupAttestation::CaReference {
                primary: name.clone(),
                secondary: None,
            },
            (None, None) => bail!("--group-id needs --group-certificate or --group-ca-name"),
        };
        groups.push(GroupRecord {
            group_id: group_id.clone(),
            attestation,
        });
    }
    // An x509-group batch's devices are covered by its group: export the group over the batch's
    // issuing CA certificate unless one was given.
    if groups.is_empty()
        && let Some(source) = &source
        && source.batch.mode == Mode::X509Group
        && source.batch.enrollment_group.is_some()
    {
        groups.push(x509_group_record(&source.batch).with_context(|| {
            format!(
                "batch {}: [keys] ca_chain holds no certificate for the enrollment group",
                source.batch.path.display()
            )
        })?);
    }
    let report = export_pending(
        &ledger,
        &dps_target,
        batch_name.as_deref(),
        &enrollment_settings,
        groups,
        source.as_ref().and_then(|k| k.keys.as_ref()),
        &args.output,
    )?;
    let w = &report.written;
    if w.individuals == 0 && w.groups == 0 {
        println!(
            "nothing written to {}: no pending enrollment of {dps_target} could be exported",
            args.output.display()
        );
        print_unfinished("left out", &report.left_out);
        return Ok(ExitCode::FAILURE);
    }
    println!(
        "wrote {} individual enrollment(s) and {} group(s) to {}: {} bulk file(s), {} certificate(s), \
         enrollments.csv, enroll-with-az.sh, README.txt{}",
        w.individuals,
        w.groups,
        args.output.display(),
        w.bulk_files.len(),
        w.certificate_files,
        if w.holds_secrets {
            " (THEY HOLD SECRETS: see README.txt)"
        } else {
            ""
        }
    );
    print_unfinished("left out", &report.left_out);
    Ok(ExitCode::SUCCESS)
}

fn import(args: ImportArgs) -> anyhow::Result<ExitCode> {
    let mut ledger = open_ledger(&args.ledger, None)?;
    let summary = import_pending_results(&mut ledger, &args.dps_target, &args.results)?;
    println!(
        "{} result(s) read: {} marked enrolled, {} reported failed (left pending), {} not pending here",
        summary.read,
        summary.enrolled,
        summary.reported_failed.len(),
        summary.not_pending.len()
    );
    print_unfinished("reported failed", &summary.reported_failed);
    for id in &summary.not_pending {
        println!("  not pending: {id}");
    }
    Ok(if summary.reported_failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
