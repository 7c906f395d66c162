//! `dps-station central verify`: replays the central ledger's chains and receipts end to end (and,
//! with `--ledger`, compares stations' own SQLite chains with it); exit status 1 and the first broken
//! link of each chain when something does not hold. For the `central` subcommand tree
//! (`src/cli/central.rs`): its `Verify(VerifyArgs)` variant calls [`run`].

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use dps_station::central::service::verify::{self, LedgerToCompare};
use dps_station::central::signing::SignerCertificate;

/// Options of `central verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The central database (its owner or the service's role; verify only reads):
    /// postgres://user@host/db.
    #[arg(long, env = "DPS_CENTRAL_DATABASE", value_name = "URL")]
    pub database: String,
    /// The service's receipt signer certificate (PEM), to check every receipt's signature; repeat
    /// it after a key change.
    #[arg(long = "signer-certificate", value_name = "PEM", required = true)]
    pub signer_certificates: Vec<PathBuf>,
    /// A station's ledger to compare with what the central holds: `PATH`, or `STATION=PATH` when
    /// the station joined under another id than its ledger's rows name. Repeat for more stations.
    #[arg(long = "ledger", value_name = "[STATION=]PATH")]
    pub ledgers: Vec<String>,
}

/// Runs the verification and prints what it found; exit status 1 when a chain is broken.
pub fn run(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let signers = args
        .signer_certificates
        .iter()
        .map(|path| read_signer(path))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let ledgers: Vec<LedgerToCompare> = args.ledgers.iter().map(|a| ledger_arg(a)).collect();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let report = runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(&args.database, tokio_postgres::NoTls)
            .await
            .context("connecting to the central database (check --database)")?;
        let connection = tokio::spawn(connection);
        let report = verify::verify(&client, &signers, &ledgers).await;
        drop(client);
        let _ = connection.await;
        report.context("central verify")
    })?;
    println!("central audit: {} rows", report.audit_rows);
    for (station, rows) in &report.stations {
        println!("station {station}: {rows} rows");
    }
    println!("receipts: {}", report.receipts);
    for (ledger, rows) in &report.ledgers {
        println!("ledger {ledger}: {rows} rows compared");
    }
    if report.is_intact() {
        println!("every chain verifies; every stored row is covered by a receipt");
        return Ok(ExitCode::SUCCESS);
    }
    for finding in &report.findings {
        println!("BROKEN {finding}");
    }
    Ok(ExitCode::FAILURE)
}

fn read_signer(path: &std::path::Path) -> anyhow::Result<SignerCertificate> {
    let text = std::fs::read(path)
        .with_context(|| format!("reading the signer certificate {}", path.display()))?;
    let (_, pem) = x509_parser::pem::parse_x509_pem(&text).map_err(|e| {
        anyhow::anyhow!(
            "{} is not a PEM certificate ({e}): give the service's signer certificate",
            path.display()
        )
    })?;
    SignerCertificate::from_der(&pem.contents)
        .with_context(|| format!("reading the signer certificate {}", path.display()))
}

/// `PATH` or `STATION=PATH` (a station id has no `/`).
fn ledger_arg(arg: &str) -> LedgerToCompare {
    match arg.split_once('=') {
        Some((station, path)) if !station.is_empty() && !station.contains('/') => LedgerToCompare {
            station_id: Some(station.to_string()),
            path: PathBuf::from(path),
        },
        _ => LedgerToCompare {
            station_id: None,
            path: PathBuf::from(arg),
        },
    }
}
