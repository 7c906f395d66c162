//! `dps-station central batch set|list` and `central lease close`: a batch's cap and lease policy
//! on the central service, and closing a lease whose station is gone for good. They talk to
//! PostgreSQL directly (as the service's role or the owner), like `central migrate`.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand};

use dps_station::central::service::leases;
use dps_station::central::service::leases_admin::{self, BatchPolicy, BatchRow};

/// The lease part of the `central` command tree (the `central` group itself is `cli::central`'s;
/// these are flattened into it).
#[derive(Debug, Subcommand)]
pub enum CentralLeaseCommands {
    /// A batch's cap and lease policy on the central service.
    #[command(subcommand)]
    Batch(BatchCommand),
    /// Leases the central service granted.
    #[command(subcommand)]
    Lease(LeaseCommand),
}

/// `central batch ...`
#[derive(Debug, Subcommand)]
pub enum BatchCommand {
    /// Creates a batch or changes its cap: all stations together never issue more than the cap.
    Set(SetArgs),
    /// Every batch: cap, allocated, open leases.
    List(DatabaseArgs),
}

/// `central lease ...`
#[derive(Debug, Subcommand)]
pub enum LeaseCommand {
    /// Closes a lease by hand (its station is gone for good): what it used stays allocated, the
    /// rest goes back to the batch. Count `--used` from the station's rows the service holds.
    Close(CloseArgs),
}

/// Where the central database is.
#[derive(Debug, Args)]
pub struct DatabaseArgs {
    /// The central database, e.g. postgres://dps_central@db/central.
    #[arg(long, env = "DPS_CENTRAL_DATABASE")]
    database: String,
}

/// `central batch set NAME --cap N [--lease-size N] [--lease-ttl 24h] [--central-enrollment]`.
#[derive(Debug, Args)]
pub struct SetArgs {
    /// The batch's name, as in the stations' batch files.
    name: String,
    /// The most identities all stations together may issue for the batch.
    #[arg(long)]
    cap: u64,
    /// Identities per lease (default 50 for a new batch; unchanged if omitted).
    #[arg(long)]
    lease_size: Option<u32>,
    /// How long a lease may be spent: 24h, 90m, 2d (default 24h; unchanged if omitted).
    #[arg(long, value_parser = leases_admin::parse_duration)]
    lease_ttl: Option<std::time::Duration>,
    /// The service enrolls the batch's identities in DPS (the stations hold no connection string).
    #[arg(long)]
    central_enrollment: bool,
    #[command(flatten)]
    db: DatabaseArgs,
}

/// `central lease close LEASE --used N`.
#[derive(Debug, Args)]
pub struct CloseArgs {
    /// The lease id (`L-...`).
    lease: String,
    /// How many identities the station issued from it.
    #[arg(long)]
    used: u32,
    #[command(flatten)]
    db: DatabaseArgs,
}

/// Runs a lease command.
pub fn run(command: CentralLeaseCommands) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        match command {
            CentralLeaseCommands::Batch(BatchCommand::Set(args)) => {
                let mut client = connect(&args.db.database).await?;
                let policy = BatchPolicy {
                    batch: args.name,
                    cap: args.cap,
                    lease_size: args.lease_size,
                    lease_ttl: args.lease_ttl,
                    central_enrollment: args.central_enrollment.then_some(true),
                };
                let row = leases_admin::set_batch(&mut client, &administrator(), &policy).await?;
                print_batches(&[row]);
            }
            CentralLeaseCommands::Batch(BatchCommand::List(args)) => {
                let client = connect(&args.database).await?;
                let rows = leases_admin::list_batches(&client).await?;
                if rows.is_empty() {
                    println!(
                        "no batch has a cap yet: set one with `dps-station central batch set NAME --cap N`"
                    );
                }
                print_batches(&rows);
            }
            CentralLeaseCommands::Lease(LeaseCommand::Close(args)) => {
                let mut client = connect(&args.db.database).await?;
                let actor = administrator();
                let closed =
                    leases::close_lease(&mut client, None, &actor, &args.lease, args.used)
                        .await
                        .map_err(|e| {
                            anyhow::anyhow!(
                                "the central database failed: {}",
                                dps_station::central::service::db::describe(&e)
                            )
                        })?;
                match closed {
                    Ok(done) => println!(
                        "lease {} closed: {} used, {} back to its batch",
                        done.lease_id, args.used, done.returned
                    ),
                    Err(refusal) => anyhow::bail!("{}", refusal.body.message),
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// Who the central audit names as acting.
fn administrator() -> String {
    std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .map(|u| format!("admin:{u}"))
        .unwrap_or_else(|| "admin".into())
}

async fn connect(url: &str) -> anyhow::Result<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .with_context(|| {
            "cannot reach the central database (check --database / DPS_CENTRAL_DATABASE and that PostgreSQL runs)"
        })?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!("central database connection: {e}");
        }
    });
    Ok(client)
}

fn print_batches(rows: &[BatchRow]) {
    if rows.is_empty() {
        return;
    }
    println!(
        "{:<24} {:>10} {:>10} {:>10} {:>10} {:>12} {:>8}",
        "batch", "cap", "allocated", "lease", "ttl (s)", "open leases", "central"
    );
    for r in rows {
        println!(
            "{:<24} {:>10} {:>10} {:>10} {:>10} {:>12} {:>8}",
            r.batch,
            r.cap,
            r.allocated,
            r.lease_size,
            r.lease_ttl_seconds,
            format!("{} ({})", r.open_leases, r.open_count),
            if r.central_enrollment { "yes" } else { "no" }
        );
    }
}
