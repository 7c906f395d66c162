//! `dps-station central ...`: the central ledger (issue 18). The service's side (init, migrate,
//! grant-login, serve, token, status, station) lives here; other areas add their subcommands in a
//! contiguous block of their own at the end of [`CentralCommand`].

use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use dps_station::central::service::server::{self, ServeOptions};
use dps_station::central::service::{ca, migrations, stations, status, tokens};

/// `central`: the central ledger on PostgreSQL.
#[derive(Debug, Subcommand)]
pub enum CentralCommand {
    /// Make the service's CA, its receipt/lease signer and its TLS server certificate in --dir
    /// (refuses if a CA is already there).
    Init(InitArgs),
    /// Bring the PostgreSQL schema up to date (run as the database's owner).
    Migrate(DatabaseArg),
    /// Make a PostgreSQL login role a member of dps_central_service (the service's role), creating
    /// it if it does not exist (run as the database's owner).
    GrantLogin(GrantLoginArgs),
    /// Run the central service: HTTPS with mutual TLS in front of PostgreSQL, until Ctrl-C or SIGTERM.
    Serve(ServeArgs),
    /// One-time join tokens for stations.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Every joined station as the service sees it: chain head, last seen, lease left, conflicts.
    Status(StatusArgs),
    /// Joined stations.
    #[command(subcommand)]
    Station(StationCommand),
    // station (issue 18): the station's side.
    /// Join a central ledger service with a one-time token (`central token create` prints it):
    /// makes the station's key (in its HSM token where it has one), gets a client certificate
    /// and writes `[central]` into station.toml.
    Join(super::central_station::JoinArgs),
    /// Upload this station's outbox now, between runs (a run syncs by itself): until it is empty;
    /// exit 3 when the service cannot be reached.
    Sync(super::central_sync::SyncArgs),
    // ingest (issue 18): verification of the central ledger.
    /// Replay every station's chain, the service's audit chain and the receipts end to end (with
    /// --ledger, compare stations' own ledgers); names the first broken link, exit 1.
    Verify(super::central_verify::VerifyArgs),
    // lease (issue 18): batch caps and leases (`central batch set|list`, `central lease close`).
    #[command(flatten)]
    Leases(super::central_batch::CentralLeaseCommands),
}

/// The database URL (also from DPS_CENTRAL_DATABASE, which keeps a password out of `ps`).
#[derive(Debug, Args)]
pub struct DatabaseArg {
    /// postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE
    #[arg(
        long,
        value_name = "URL",
        env = "DPS_CENTRAL_DATABASE",
        hide_env_values = true
    )]
    database: String,
}

/// Flags of `central init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// The service's directory (made if missing; keep it private and backed up).
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    /// A DNS name stations use to reach the service (repeat for several; default localhost).
    #[arg(long = "dns", value_name = "NAME")]
    dns: Vec<String>,
    /// An IP address stations use to reach the service (repeat; default 127.0.0.1).
    #[arg(long = "ip", value_name = "ADDR")]
    ip: Vec<IpAddr>,
}

/// Flags of `central grant-login`.
#[derive(Debug, Args)]
pub struct GrantLoginArgs {
    /// The login role the service connects as.
    role: String,
    #[command(flatten)]
    database: DatabaseArg,
}

/// Flags of `central serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    database: DatabaseArg,
    /// The directory `central init` wrote (the same copy on every replica).
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    /// Address to listen on, e.g. 0.0.0.0:8443 (port 0: any free port, printed when ready).
    #[arg(long, value_name = "ADDR")]
    listen: SocketAddr,
    /// Database connections this replica keeps at most.
    #[arg(long, value_name = "N", default_value_t = 16)]
    pool: usize,
    // enroll (issue 18 point 5): central enrollment, on when a connection string file is given.
    #[command(flatten)]
    enroll: dps_station::central::service::enroll_args::EnrollArgs,
}

/// `central token ...`.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Make a one-time join token and print it (only its hash is stored; it is shown once).
    Create(TokenCreateArgs),
}

/// Flags of `central token create`.
#[derive(Debug, Args)]
pub struct TokenCreateArgs {
    #[command(flatten)]
    database: DatabaseArg,
    /// The service's directory (the token pins its CA).
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    /// Only this station id may join with the token.
    #[arg(long, value_name = "ID")]
    station: Option<String>,
    /// How long the token may be used: a number and s, m, h or d.
    #[arg(long, value_name = "TIME", default_value = "24h")]
    valid: String,
}

/// Flags of `central status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The central database: the service administrator's view (every station's chain head,
    /// lease left, conflicts). Without it, this station's view from its station.toml.
    #[arg(
        long,
        value_name = "URL",
        env = "DPS_CENTRAL_DATABASE",
        hide_env_values = true
    )]
    database: Option<String>,
    /// The station file, for the station's view: its outbox depth, last receipt, and every
    /// station as the service reports it when reachable [default: the installed station.toml].
    #[arg(long, value_name = "PATH", conflicts_with = "database")]
    station: Option<PathBuf>,
    /// JSON (the API's StatusReport) instead of a table (administrator's view).
    #[arg(long, requires = "database")]
    json: bool,
}

/// `central station ...`.
#[derive(Debug, Subcommand)]
pub enum StationCommand {
    /// Revoke a station: every replica refuses its certificate from now on.
    Revoke(RevokeArgs),
}

/// Flags of `central station revoke`.
#[derive(Debug, Args)]
pub struct RevokeArgs {
    /// The station id.
    station: String,
    /// Why (kept in the station's row and the service's audit chain).
    #[arg(long, value_name = "TEXT")]
    reason: String,
    #[command(flatten)]
    database: DatabaseArg,
}

/// Runs a `central` command.
pub fn run(command: CentralCommand) -> anyhow::Result<ExitCode> {
    match command {
        CentralCommand::Init(args) => init(args),
        CentralCommand::Migrate(args) => block_on(migrate(args)),
        CentralCommand::GrantLogin(args) => block_on(grant_login(args)),
        CentralCommand::Serve(args) => serve(args),
        CentralCommand::Token(TokenCommand::Create(args)) => block_on(token_create(args)),
        CentralCommand::Status(args) => match args.database {
            Some(database) => block_on(show_status(database, args.json)),
            None => super::central_station::run_status(super::central_station::StatusArgs {
                station: args
                    .station
                    .unwrap_or_else(super::central_station::default_station_path),
            }),
        },
        CentralCommand::Join(args) => super::central_station::run_join(args),
        CentralCommand::Sync(args) => super::central_sync::run(args),
        CentralCommand::Station(StationCommand::Revoke(args)) => block_on(revoke(args)),
        CentralCommand::Verify(args) => super::central_verify::run(args),
        CentralCommand::Leases(cmd) => super::central_batch::run(cmd),
    }
}

fn block_on(
    work: impl std::future::Future<Output = anyhow::Result<ExitCode>>,
) -> anyhow::Result<ExitCode> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(work)
}

/// Who ran an administrative command, for the audit chain.
fn administrator() -> String {
    let user = std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_else(|_| "unknown".into());
    format!("admin:{user}")
}

async fn connect(url: &str) -> anyhow::Result<tokio_postgres::Client> {
    let config: tokio_postgres::Config = url
        .parse()
        .context("the --database URL is not valid: give one like postgres://user@host/db")?;
    let (client, connection) = config.connect(tokio_postgres::NoTls).await.context(
        "cannot connect to the central database (is PostgreSQL running, the URL right?)",
    )?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %e, "the database connection ended");
        }
    });
    Ok(client)
}

fn init(args: InitArgs) -> anyhow::Result<ExitCode> {
    let report = ca::init(&args.dir, &args.dns, &args.ip)?;
    let mut out = std::io::stdout().lock();
    for file in &report.files {
        writeln!(out, "wrote {}", file.display())?;
    }
    writeln!(out, "CA fingerprint (SHA-256): {}", report.ca_sha256)?;
    writeln!(
        out,
        "next: `dps-station central migrate` as the database owner, then `central grant-login`"
    )?;
    Ok(ExitCode::SUCCESS)
}

async fn migrate(args: DatabaseArg) -> anyhow::Result<ExitCode> {
    let mut client = connect(&args.database).await?;
    let version = migrations::run(&mut client).await?;
    println!("the central database's schema is at version {version}");
    Ok(ExitCode::SUCCESS)
}

/// `"name"`, doubled quotes inside: a role name is an identifier, not a parameter.
fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

async fn grant_login(args: GrantLoginArgs) -> anyhow::Result<ExitCode> {
    if args.role.is_empty() || args.role.len() > 63 {
        bail!(
            "`{}` is not a PostgreSQL role name (1 to 63 characters)",
            args.role
        );
    }
    let client = connect(&args.database.database).await?;
    let exists = client
        .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&args.role])
        .await
        .context("cannot read the database's roles")?
        .is_some();
    let role = quote_identifier(&args.role);
    if !exists {
        client
            .batch_execute(&format!("CREATE ROLE {role} LOGIN"))
            .await
            .with_context(|| {
                format!("cannot create the role {role} (run as the database owner)")
            })?;
        println!(
            "created login role {role} (no password: set one with psql `\\password {}` if pg_hba.conf asks for one)",
            args.role
        );
    }
    client
        .batch_execute(&format!("GRANT dps_central_service TO {role}"))
        .await
        .with_context(|| {
            format!("cannot grant dps_central_service to {role}: run `central migrate` first, as the database owner")
        })?;
    println!("{role} is a member of dps_central_service: the service may connect as it");
    Ok(ExitCode::SUCCESS)
}

fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    super::pipe::ignore_sigpipe();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let (mut interrupt, mut terminate) = {
        use tokio::signal::unix::{SignalKind, signal};
        let _guard = runtime.enter();
        (
            signal(SignalKind::interrupt()).context("cannot handle Ctrl-C")?,
            signal(SignalKind::terminate()).context("cannot handle SIGTERM")?,
        )
    };
    // enroll: the worker runs on its own thread with its own pool, beside the HTTP server.
    let enroll_worker = args
        .enroll
        .start(&args.database.database)
        .context("central enrollment could not start")?;
    let options = ServeOptions {
        database: args.database.database,
        dir: args.dir,
        listen: args.listen,
        pool: args.pool,
    };
    runtime.block_on(server::serve(
        options,
        |address| {
            // Tests and supervisors wait for this line.
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "central service listening on https://{address}");
            let _ = out.flush();
        },
        async move {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
        },
    ))?;
    if let Some(worker) = enroll_worker {
        worker.stop();
    }
    eprintln!("central service stopped");
    Ok(ExitCode::SUCCESS)
}

async fn token_create(args: TokenCreateArgs) -> anyhow::Result<ExitCode> {
    let valid = tokens::parse_validity(&args.valid)?;
    if let Some(station) = &args.station
        && !dps_station::central::service::join::valid_station_id(station)
    {
        bail!("`{station}` is not a station id: use letters, digits, '-', '_' or '.' (at most 64)");
    }
    let ca_sha256 = ca::ca_fingerprint(&args.dir)?;
    let mut client = connect(&args.database.database).await?;
    let token = tokens::create(
        &mut client,
        &ca_sha256,
        args.station.as_deref(),
        valid,
        &administrator(),
    )
    .await?;
    println!("{}", token.to_text());
    eprintln!(
        "one use, valid for {}: on the station run `dps-station central join https://HOST:PORT --token TOKEN`",
        args.valid
    );
    Ok(ExitCode::SUCCESS)
}

async fn show_status(database: String, json: bool) -> anyhow::Result<ExitCode> {
    let client = connect(&database).await?;
    let report = status::report(&client)
        .await
        .context("cannot read the stations from the central database")?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", status::table(&report));
    }
    Ok(ExitCode::SUCCESS)
}

async fn revoke(args: RevokeArgs) -> anyhow::Result<ExitCode> {
    if args.reason.trim().is_empty() {
        bail!("give a --reason: it is kept with the revocation for the auditor");
    }
    let mut client = connect(&args.database.database).await?;
    stations::revoke(&mut client, &args.station, &args.reason, &administrator()).await?;
    println!(
        "station {} is revoked: every replica refuses it from now on",
        args.station
    );
    Ok(ExitCode::SUCCESS)
}
