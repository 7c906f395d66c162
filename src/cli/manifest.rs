//! `dps-station manifest ...`: Microchip Trust&GO manifests (issue 16). `verify` reads a manifest
//! and says which entries pass; `import` records the verified ones in the ledger (`written`,
//! with the manifest's provenance), queues their enrollments and, given a DPS connection string,
//! enrolls them at once (individually, or as a group over the device certificates' CA).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use dps_station::device::{ClientOptions, Family, open_driver};
use dps_station::dps::payload::EnrollmentSettings;
use dps_station::dps::{DpsClient, DpsClientConfig, TlsTrust};
use dps_station::ledger::{self, Ledger, WriterIdentity};
use dps_station::manifest::{self, EntryError, ManifestReport, ManifestSigner};
use dps_station::station::enrollment::{EnrollOptions, enroll_pending};
use dps_station::station::manifest_import::{
    ImportOptions, ManifestEnrollment, check_on_line, default_batch_name, ensure_group,
    ensure_verified_ca_group, import_manifest,
};

/// The `manifest` subcommands.
#[derive(Debug, Subcommand)]
pub enum ManifestCommand {
    /// Verify a manifest against its signer certificate and list the entries that fail.
    Verify(VerifyArgs),
    /// Verify a manifest, record its secure elements in the ledger and enroll them.
    Import(Box<ImportArgs>),
    /// Check the device on a port: its secure element must be in an imported manifest, with the
    /// public key listed there (exit status 1 if not).
    CheckDevice(CheckDeviceArgs),
}

/// The manifest and its signer.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The manifest file Microchip delivered (JSON list of signed entries).
    file: PathBuf,
    /// The manifest signer certificate (PEM or DER) the entries must be signed by.
    #[arg(long, value_name = "CERT")]
    signer: PathBuf,
}

/// Options of `manifest check-device`.
#[derive(Debug, Args)]
pub struct CheckDeviceArgs {
    /// The device's serial port.
    #[arg(long)]
    port: String,
    /// The ledger file [default: $XDG_DATA_HOME/dps-station/ledger.db]; opened read-only.
    #[arg(long, env = "DPS_STATION_LEDGER", value_name = "PATH")]
    ledger: Option<PathBuf>,
}

/// Options of `manifest import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    #[command(flatten)]
    manifest: VerifyArgs,
    /// The ledger file [default: $XDG_DATA_HOME/dps-station/ledger.db].
    #[arg(long, env = "DPS_STATION_LEDGER", value_name = "PATH")]
    ledger: Option<PathBuf>,
    /// The station name recorded as the writer [default: the host name].
    #[arg(long, env = "DPS_STATION_NAME")]
    station: Option<String>,
    /// The operator recorded as the writer [default: $USER].
    #[arg(long)]
    operator: Option<String>,
    /// The ledger batch the identities go into [default: manifest-<first 12 hex of its SHA-256>].
    #[arg(long)]
    batch: Option<String>,
    /// The DPS target the enrollments are queued for [default: the connection string's HostName;
    /// without either, identities are recorded and not queued].
    #[arg(long)]
    dps_target: Option<String>,
    /// Enroll as one X.509 enrollment group with this ID, over the CA that issued the device
    /// certificates (x5c[1]); without it, one individual enrollment per device.
    #[arg(long, value_name = "GROUP_ID")]
    group: Option<String>,
    /// With --group: enroll through a verified CA instead of a signing certificate: the device
    /// CA (x5c[1]) is uploaded to DPS's CA registry under this name, verified on upload (the
    /// manifest's signature vouches for it), and the group refers to it (caReferences).
    #[arg(long, value_name = "NAME", requires = "group")]
    ca_name: Option<String>,
    /// Enroll now with the DPS service connection string in this owner-only file (or
    /// $DPS_CONNECTION_STRING); without either, the enrollments stay queued for `dps enroll`.
    #[arg(long, value_name = "FILE")]
    connection_string_file: Option<PathBuf>,
    /// Send to this URL instead of https://<HostName> (an emulator).
    #[arg(long, value_name = "URL")]
    endpoint: Option<String>,
    /// Also trust this CA certificate (PEM) for the endpoint.
    #[arg(long, value_name = "PEM")]
    trust_ca: Option<PathBuf>,
    /// IoT hub host name the enrollments may be assigned to (repeat for several).
    #[arg(long = "iot-hub", value_name = "HOST")]
    iot_hubs: Vec<String>,
}

/// Runs a `manifest` command.
pub fn run(cmd: ManifestCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ManifestCommand::Verify(args) => {
            let report = read(&args)?;
            print_refused(&report.refused);
            println!(
                "{}: {} entries, {} verified, {} refused (SHA-256 {}, signer {})",
                report.path.display(),
                report.total(),
                report.verified.len(),
                report.refused.len(),
                report.provenance.file_sha256,
                report.provenance.signer_thumbprint
            );
            Ok(exit(report.refused.is_empty()))
        }
        ManifestCommand::Import(args) => import(*args),
        ManifestCommand::CheckDevice(args) => check_device(&args),
    }
}

fn read(args: &VerifyArgs) -> anyhow::Result<ManifestReport> {
    let signer = ManifestSigner::load(&args.signer)?;
    Ok(manifest::read_manifest(&args.file, &signer)?)
}

fn exit(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn print_refused(refused: &[EntryError]) {
    for e in refused {
        eprintln!("refused: {e}");
    }
}

fn import(args: ImportArgs) -> anyhow::Result<ExitCode> {
    let report = read(&args.manifest)?;
    // A connection string only when asked for (a file, or the variable): without one, queue.
    let cs = match (
        &args.connection_string_file,
        std::env::var_os("DPS_CONNECTION_STRING"),
    ) {
        (None, None) => None,
        (file, _) => Some(crate::cli::dps::connection_string(file.as_deref())?),
    };
    let dps_target = args
        .dps_target
        .clone()
        .or_else(|| cs.as_ref().map(|c| c.host_name().to_string()));
    let path = match &args.ledger {
        Some(p) => p.clone(),
        None => ledger::default_path()
            .context("no ledger path: set --ledger, DPS_STATION_LEDGER, XDG_DATA_HOME or HOME")?,
    };
    let mut ledger = Ledger::open(
        &path,
        &WriterIdentity {
            station: args.station.clone().unwrap_or_else(ledger::lock::host_name),
            operator: args
                .operator
                .clone()
                .or_else(|| std::env::var("USER").ok())
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "unknown".into()),
        },
    )?;
    let options = ImportOptions {
        batch: args
            .batch
            .clone()
            .unwrap_or_else(|| default_batch_name(&report)),
        dps_target: dps_target.clone(),
        enrollment: match &args.group {
            Some(group_id) => ManifestEnrollment::Group {
                group_id: group_id.clone(),
                ca_name: args.ca_name.clone(),
            },
            None => ManifestEnrollment::Individual,
        },
    };
    let outcome = import_manifest(&mut ledger, &report, &options)
        .with_context(|| format!("recording {} in {}", report.path.display(), path.display()))?;
    print_refused(&outcome.refused);
    println!(
        "{}: {} entries, {} recorded as written in batch {}, {} refused",
        report.path.display(),
        report.total(),
        outcome.recorded.len(),
        options.batch,
        outcome.refused.len()
    );
    let Some(cs) = cs else {
        if dps_target.is_some() {
            println!("enrollments queued: `dps-station dps enroll` sends them");
        }
        return Ok(exit(outcome.refused.is_empty()));
    };
    let Some(dps_target) = dps_target else {
        return Ok(exit(outcome.refused.is_empty()));
    };
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
            ..DpsClientConfig::default()
        },
    )?;
    let settings = EnrollmentSettings {
        iot_hubs: args.iot_hubs.clone(),
        ..EnrollmentSettings::default()
    };
    if let (ManifestEnrollment::Group { group_id, ca_name }, Some(ca)) =
        (&options.enrollment, &outcome.group_ca_der)
    {
        match ca_name {
            Some(name) => ensure_verified_ca_group(&client, group_id, name, ca, &settings)?,
            None => ensure_group(&client, group_id, ca, &settings)?,
        }
    }
    let summary = enroll_pending(
        &mut ledger,
        &client,
        &EnrollOptions {
            dps_target: dps_target.clone(),
            settings,
            reprovision: false,
            individual_keys: None,
            batch: Some(options.batch.clone()),
        },
        |_| {},
    )
    .with_context(|| format!("enrolling with {dps_target}"))?;
    for u in summary
        .failed
        .iter()
        .chain(&summary.retry_later)
        .chain(&summary.not_sendable)
    {
        eprintln!("not enrolled: {}: {}", u.registration_id, u.reason);
    }
    println!(
        "{dps_target}: {} enrolled ({} created, {} already present, {} by group), {} failed, {} to retry",
        summary.enrolled(),
        summary.created,
        summary.already_present,
        summary.by_group,
        summary.failed.len(),
        summary.retry_later.len()
    );
    Ok(exit(outcome.refused.is_empty() && summary.all_enrolled()))
}

/// Options of `bench manifest`.
#[derive(Debug, Args)]
pub struct ManifestBenchArgs {
    /// Entries in the manifest.
    #[arg(long, default_value_t = 100_000)]
    entries: u64,
    /// Where the manifest and the ledger are made (a directory inside it, removed after).
    #[arg(long, value_name = "DIR", default_value_os_t = std::env::temp_dir())]
    dir: PathBuf,
}

/// Runs `bench manifest`.
pub fn bench(args: &ManifestBenchArgs) -> anyhow::Result<ExitCode> {
    if cfg!(debug_assertions) {
        eprintln!("note: this is a debug build; benchmark figures come from `cargo run --release`");
    }
    let dir = args
        .dir
        .join(format!("dps-station-bench-manifest-{}", std::process::id()));
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot make the directory {}", dir.display()))?;
    let result = dps_station::station::manifest_bench::run(args.entries, &dir);
    // The manifest and ledger are hundreds of MB: never left behind.
    let _ = std::fs::remove_dir_all(&dir);
    let r = result?;
    println!(
        "manifest of {} entries ({:.1} MB, made in {:.1} s): verified in {:.2} s, imported in {:.2} s \
         (one transaction, enrollments queued): {:.2} s in all (goal < 30 s); CPU time {:.2} s verifying, \
         {:.2} s importing; peak memory {:.0} MB (goal < 300 MB)",
        r.entries,
        r.file_bytes as f64 / 1e6,
        r.generate.as_secs_f64(),
        r.verify.as_secs_f64(),
        r.import.as_secs_f64(),
        r.total().as_secs_f64(),
        r.verify_cpu.as_secs_f64(),
        r.import_cpu.as_secs_f64(),
        r.peak_rss as f64 / 1e6
    );
    Ok(ExitCode::SUCCESS)
}

fn check_device(args: &CheckDeviceArgs) -> anyhow::Result<ExitCode> {
    let path = match &args.ledger {
        Some(p) => p.clone(),
        None => ledger::default_path()
            .context("no ledger path: set --ledger, DPS_STATION_LEDGER, XDG_DATA_HOME or HOME")?,
    };
    let ledger = Ledger::open_read_only(&path)?;
    // Trust&GO boards speak the station's line protocol (`SE-INFO`).
    let mut driver = open_driver(Family::Station, &args.port, &ClientOptions::default())?;
    driver.identify()?;
    match check_on_line(&ledger, driver.as_mut()) {
        Ok(entry) => {
            println!(
                "PASS {}: secure element {} is in manifest {} as {} ({})",
                args.port, entry.unique_id, entry.manifest_file, entry.registration_id, entry.state
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            println!("FAIL {}: {e}", args.port);
            Ok(ExitCode::FAILURE)
        }
    }
}
