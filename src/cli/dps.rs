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
use dps_station::station::config::{BatchConfig, StationConfig};
use dps_station::station::enrollment::{
    EnrollOptions, Progress, Unfinished, enroll_pending, export_pending, import_pending_results,
};
use dps_station::station::individual_keys::IndividualKeys;
use dps_station::station::keys::StationKeys;

/// The DPS commands, flattened into the top level.
#[derive(Debug, Subcommand)]
pub enum Commands {
    /// Send the ledger's pending enrollments to DPS (10 per bulk call, paced to the quota).
    Enroll(EnrollArgs),
    /// Write the ledger's pending enrollments as enrollment files for a site on another network.
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

/// Where the keys of `symmetric-individual` identities are recomputed.
#[derive(Debug, Args)]
pub struct KeySourceOptions {
    /// The station.toml whose key store holds the batch's device key master (with --batch);
    /// also the ledger, unless --ledger is given. The HSM PIN comes from DPS_STATION_HSM_PIN.
    #[arg(long, value_name = "STATION_TOML", requires = "batch")]
    config: Option<PathBuf>,
    /// The batch.toml of the symmetric-individual batch that made the identities (with
    /// --config); also the DPS target, unless --dps-target is given.
    #[arg(long, value_name = "BATCH_TOML", requires = "config")]
    batch: Option<PathBuf>,
}

/// The station and batch of `--config`/`--batch`, with the batch's key source opened.
struct KeySource {
    station: StationConfig,
    batch_target: String,
    keys: IndividualKeys,
}

fn open_key_source(opts: &KeySourceOptions) -> anyhow::Result<Option<KeySource>> {
    let (Some(config), Some(batch)) = (&opts.config, &opts.batch) else {
        return Ok(None);
    };
    let station = StationConfig::load(config)?;
    let batch = BatchConfig::load(batch, &station)?;
    let keys = StationKeys::open(&station.keystore)?;
    if keys.is_software() {
        eprintln!("WARNING: {}", keys.describe());
    }
    let batch_target = batch.dps_target.clone();
    Ok(Some(KeySource {
        station,
        batch_target,
        keys: IndividualKeys::new(keys, batch)?,
    }))
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
    /// A file holding the DPS service connection string [default: $DPS_CONNECTION_STRING].
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

/// The connection string from `--connection-string-file` or `DPS_CONNECTION_STRING`.
pub fn connection_string(file: Option<&Path>) -> anyhow::Result<ConnectionString> {
    let text = match file {
        Some(path) => SecretString::new(
            std::fs::read_to_string(path)
                .with_context(|| {
                    format!("cannot read the connection string file {}", path.display())
                })?
                .trim()
                .to_string(),
        ),
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
        .or_else(|| key_source.as_ref().map(|k| k.batch_target.clone()))
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
    let summary = enroll_pending(
        &mut ledger,
        &client,
        &EnrollOptions {
            dps_target: dps_target.clone(),
            settings: settings(&args.settings),
            reprovision: args.reprovision,
            individual_keys: key_source.map(|k| k.keys),
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
    let key_source = open_key_source(&args.key_source)?;
    let Some(dps_target) = args
        .dps_target
        .clone()
        .or_else(|| key_source.as_ref().map(|k| k.batch_target.clone()))
    else {
        bail!("give --dps-target (the DPS target the enrollments were queued for) or --batch");
    };
    let ledger = open_ledger(&args.ledger, key_source.as_ref().map(|k| &k.station))?;
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
    let report = export_pending(
        &ledger,
        &dps_target,
        &settings(&args.settings),
        groups,
        key_source.as_ref().map(|k| &k.keys),
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
