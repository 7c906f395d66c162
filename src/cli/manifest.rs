//! `dps-station manifest ...`: Microchip Trust&GO manifests (issue 16). `verify` reads a manifest
//! and says which entries pass; `import` records the verified ones in the ledger (`written`,
//! with the manifest's provenance), queues their enrollments and, given a DPS connection string,
//! enrolls them at once (individually, or as a group over the device certificates' CA).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use dps_station::dps::payload::EnrollmentSettings;
use dps_station::dps::{DpsClient, DpsClientConfig, TlsTrust};
use dps_station::ledger::{self, Ledger, WriterIdentity};
use dps_station::manifest::{self, EntryError, ManifestReport, ManifestSigner};
use dps_station::station::enrollment::{EnrollOptions, enroll_pending};
use dps_station::station::manifest_import::{
    ImportOptions, ManifestEnrollment, default_batch_name, ensure_group, import_manifest,
};

/// The `manifest` subcommands.
#[derive(Debug, Subcommand)]
pub enum ManifestCommand {
    /// Verify a manifest against its signer certificate and list the entries that fail.
    Verify(VerifyArgs),
    /// Verify a manifest, record its secure elements in the ledger and enroll them.
    Import(Box<ImportArgs>),
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
    if let (ManifestEnrollment::Group { group_id }, Some(ca)) =
        (&options.enrollment, &outcome.group_ca_der)
    {
        ensure_group(&client, group_id, ca, &settings)?;
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
