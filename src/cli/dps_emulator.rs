//! `dps-station dps-emulator`: runs the local DPS emulator until Ctrl-C (or SIGTERM).

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use dps_station::emulator::{
    DEFAULT_HOST_NAME, DEFAULT_IOT_HUB, DEFAULT_POLICY_NAME, Emulator, EmulatorConfig, Faults,
    Limits, TlsIdentity,
};
use dps_station::secret::SecretString;

/// The emulator's command.
#[derive(Debug, Subcommand)]
pub enum Commands {
    /// Run a local Device Provisioning Service (service API + device registration API) for tests and benches.
    DpsEmulator(Box<EmulatorArgs>),
    /// Show the telemetry devices sent to the emulator's local IoT hub, or its device identities.
    HubTelemetry(super::hub_telemetry::HubTelemetryArgs),
}

/// Flags of `dps-emulator`.
#[derive(Debug, Args)]
pub struct EmulatorArgs {
    /// Plain-HTTP address (service API; symmetric-key and TPM device registration), e.g. 127.0.0.1:8080.
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// HTTPS address (service API and device registration with X.509 client certificates).
    #[arg(long, value_name = "ADDR")]
    https_listen: Option<SocketAddr>,
    /// MQTT-over-TLS address where devices register with DPS and reach the local IoT hub, as the
    /// device SDKs do, e.g. 127.0.0.1:8883 (the Python SDK's fixed port; [::1] is served too).
    #[arg(long, value_name = "ADDR")]
    mqtt_listen: Option<SocketAddr>,
    /// Host name of the local IoT hub: DPS assigns devices whose enrollment names no hub to it.
    #[arg(long, value_name = "HOST", default_value = DEFAULT_IOT_HUB)]
    hub_host_name: String,
    /// Also serve plain HTTP on this Unix socket (the Node service SDK needs one for plain HTTP).
    #[arg(long, value_name = "PATH")]
    unix_socket: Option<PathBuf>,
    /// PEM certificate chain for HTTPS (server certificate first); without it one is made.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Write the certificate clients must trust for HTTPS and MQTT to this file.
    #[arg(long, value_name = "FILE")]
    ca_out: Option<PathBuf>,
    /// Host name accepted as SAS resource (sr), besides the listener's address.
    #[arg(long, default_value = DEFAULT_HOST_NAME)]
    host_name: String,
    /// ID scope served by the device API (default: kept in --state, else generated).
    #[arg(long)]
    id_scope: Option<String>,
    /// Shared-access policy name.
    #[arg(long, default_value = DEFAULT_POLICY_NAME)]
    policy_name: String,
    /// File holding the primary policy key (base64) on its first line and optionally the secondary on the second.
    #[arg(long, value_name = "FILE", conflicts_with = "primary_key_env")]
    key_file: Option<PathBuf>,
    /// Primary policy key (base64), from the environment only.
    #[arg(
        long = "primary-key-from-env",
        env = "DPS_EMULATOR_PRIMARY_KEY",
        hide_env_values = true,
        hide = true
    )]
    primary_key_env: Option<String>,
    /// Secondary policy key (base64), from the environment only.
    #[arg(
        long = "secondary-key-from-env",
        env = "DPS_EMULATOR_SECONDARY_KEY",
        hide_env_values = true,
        hide = true
    )]
    secondary_key_env: Option<String>,
    /// Write the connection string (with the key) to this file, readable by its owner only.
    #[arg(long, value_name = "FILE")]
    connection_string_file: Option<PathBuf>,
    /// An IoT hub linked to the instance (repeat); enrollments may name only these. Default: any.
    #[arg(long = "iot-hub", value_name = "HOST")]
    iot_hubs: Vec<String>,
    /// Service-API operations per minute before 429 (default: unlimited).
    #[arg(long, value_name = "N")]
    ops_per_minute: Option<u32>,
    /// Operations allowed at once before the per-minute rate applies (default: a minute's worth).
    #[arg(long, value_name = "N")]
    burst: Option<u32>,
    /// Device registrations per minute before 429 (default: unlimited).
    #[arg(long, value_name = "N")]
    registrations_per_minute: Option<u32>,
    /// The real service's default quotas: 1,000 operations and 1,000 registrations per minute.
    #[arg(long, conflicts_with_all = ["ops_per_minute", "registrations_per_minute"])]
    real_quota: bool,
    /// Items per bulk call.
    #[arg(long, default_value_t = 10, value_name = "N")]
    max_bulk: usize,
    /// Individual enrollments the instance holds.
    #[arg(long, default_value_t = 1_000_000, value_name = "N")]
    max_enrollments: usize,
    /// Enrollment groups of each kind (X.509, symmetric key).
    #[arg(long, default_value_t = 100, value_name = "N")]
    max_groups: usize,
    /// Share of requests answered 500 (0.0–1.0).
    #[arg(long, default_value_t = 0.0, value_name = "SHARE")]
    error_rate: f64,
    /// Share of requests whose connection is dropped (0.0–1.0).
    #[arg(long, default_value_t = 0.0, value_name = "SHARE")]
    drop_rate: f64,
    /// Share of requests answered 200 with an HTML page instead of JSON, unprocessed (0.0–1.0).
    #[arg(long, default_value_t = 0.0, value_name = "SHARE")]
    garbage_rate: f64,
    /// Share of requests answered late (0.0–1.0).
    #[arg(long, default_value_t = 0.0, value_name = "SHARE")]
    slow_rate: f64,
    /// How late a slow answer is, in milliseconds.
    #[arg(long, default_value_t = 2000, value_name = "MS")]
    slow_ms: u64,
    /// Keep the state in this JSON file across restarts (it holds enrollment keys: keep it private).
    #[arg(long = "state", value_name = "FILE")]
    state_file: Option<PathBuf>,
}

fn read_keys(
    args: &EmulatorArgs,
) -> anyhow::Result<(Option<SecretString>, Option<SecretString>, &'static str)> {
    if let Some(path) = &args.key_file {
        let text = SecretString::new(
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the key file {}", path.display()))?,
        );
        let mut lines = text
            .expose()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty());
        let primary = lines.next().map(SecretString::new);
        if primary.is_none() {
            bail!(
                "the key file {} is empty; put the base64 primary key on its first line",
                path.display()
            );
        }
        return Ok((primary, lines.next().map(SecretString::new), "the key file"));
    }
    Ok((
        args.primary_key_env.clone().map(SecretString::new),
        args.secondary_key_env.clone().map(SecretString::new),
        "DPS_EMULATOR_PRIMARY_KEY",
    ))
}

fn write_private(path: &PathBuf, text: &str) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// Runs the emulator in the foreground.
pub fn run(cmd: Commands) -> anyhow::Result<ExitCode> {
    let args = match cmd {
        Commands::DpsEmulator(args) => args,
        Commands::HubTelemetry(args) => return super::hub_telemetry::run(args),
    };
    // A server: a reader that went away must not end it (and lose its state) through SIGPIPE.
    super::pipe::ignore_sigpipe();
    if args.listen.is_none()
        && args.https_listen.is_none()
        && args.unix_socket.is_none()
        && args.mqtt_listen.is_none()
    {
        bail!("give at least one of --listen, --https-listen, --mqtt-listen or --unix-socket");
    }
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => TlsIdentity::Given {
            cert_chain_pem: std::fs::read_to_string(cert)
                .with_context(|| format!("cannot read the TLS certificate {}", cert.display()))?,
            key_pem: SecretString::new(
                std::fs::read_to_string(key)
                    .with_context(|| format!("cannot read the TLS key {}", key.display()))?,
            ),
        },
        _ => TlsIdentity::Generate,
    };
    let (primary_key, secondary_key, key_source) = read_keys(&args)?;
    let key_given = primary_key.is_some();
    let base = if args.real_quota {
        Limits::real_quota()
    } else {
        Limits::default()
    };
    let limits = Limits {
        operations_per_minute: args.ops_per_minute.or(base.operations_per_minute),
        operations_burst: args.burst,
        registrations_per_minute: args
            .registrations_per_minute
            .or(base.registrations_per_minute),
        max_bulk_items: args.max_bulk,
        max_individual_enrollments: args.max_enrollments,
        max_x509_groups: args.max_groups,
        max_symmetric_key_groups: args.max_groups,
        ..base
    };
    let config = EmulatorConfig {
        http: args.listen,
        https: args.https_listen,
        mqtt: args.mqtt_listen,
        hub_host_name: args.hub_host_name.clone(),
        unix_socket: args.unix_socket.clone(),
        tls,
        host_name: args.host_name.clone(),
        id_scope: args.id_scope.clone(),
        policy_name: args.policy_name.clone(),
        primary_key,
        secondary_key,
        iot_hubs: args.iot_hubs.clone(),
        limits,
        faults: Faults {
            error_rate: args.error_rate,
            drop_rate: args.drop_rate,
            garbage_rate: args.garbage_rate,
            slow_rate: args.slow_rate,
            slow_delay: Duration::from_millis(args.slow_ms),
        },
        state_file: args.state_file.clone(),
    };
    let emulator = Emulator::start(config).context("the DPS emulator did not start")?;

    // Signal handlers go in before anything is printed: a supervisor that reads the output may
    // stop the emulator at once, and SIGTERM must then save the state, not kill the process.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the signal handler")?;
    let (mut interrupt, mut terminate) = {
        use tokio::signal::unix::{SignalKind, signal};
        let _guard = runtime.enter();
        (
            signal(SignalKind::interrupt()).context("cannot handle Ctrl-C")?,
            signal(SignalKind::terminate()).context("cannot handle SIGTERM")?,
        )
    };

    let mut out = std::io::stdout().lock();
    writeln!(out, "DPS emulator running")?;
    if let Some(u) = emulator.http_url() {
        writeln!(out, "service API (HTTP):   {u}")?;
    }
    if let Some(u) = emulator.https_url() {
        writeln!(out, "service API (HTTPS):  {u}")?;
        writeln!(out, "device API (HTTPS):   {u}")?;
    }
    if let Some(a) = emulator.mqtt_addr() {
        writeln!(
            out,
            "DPS + IoT hub (MQTT):  mqtts://{a} (hub host name {})",
            emulator.hub_host_name()
        )?;
    }
    if let Some(p) = emulator.unix_socket() {
        writeln!(out, "Unix socket (HTTP):   {}", p.display())?;
    }
    writeln!(out, "ID scope:             {}", emulator.id_scope())?;
    if let Some(path) = &args.connection_string_file {
        // Asked for a file: the key goes there only, not into a terminal's scrollback or a log.
        write_private(path, emulator.connection_string().expose())?;
        writeln!(
            out,
            "connection string:    written to {} (owner-only; the key is not shown)",
            path.display()
        )?;
    } else if key_given {
        // A key the user gave is not echoed: they have it already.
        writeln!(
            out,
            "connection string:    HostName={};SharedAccessKeyName={};SharedAccessKey=<from {key_source}>",
            emulator.host(),
            emulator.policy_name()
        )?;
    } else {
        // The emulator made this key and nobody else knows it: printing it is the point.
        writeln!(
            out,
            "connection string:    {}",
            emulator.connection_string().expose()
        )?;
    }
    if let (Some(path), Some(pem)) = (&args.ca_out, emulator.ca_certificate_pem()) {
        std::fs::write(path, pem)
            .with_context(|| format!("cannot write the CA certificate to {}", path.display()))?;
        writeln!(out, "TLS CA certificate written to {}", path.display())?;
    }
    writeln!(out, "press Ctrl-C to stop")?;
    out.flush()?;
    drop(out);

    let signal = runtime.block_on(async {
        tokio::select! {
            _ = interrupt.recv() => "Ctrl-C",
            _ = terminate.recv() => "SIGTERM",
        }
    });
    drop(runtime);
    // Best effort: whoever started the emulator may no longer read its output.
    let _ = writeln!(std::io::stdout(), "{signal}: stopping the DPS emulator");
    emulator
        .shutdown()
        .context("the DPS emulator did not stop cleanly")?;
    let _ = match &args.state_file {
        Some(path) => writeln!(
            std::io::stdout(),
            "DPS emulator stopped; state saved to {}",
            path.display()
        ),
        None => writeln!(
            std::io::stdout(),
            "DPS emulator stopped; without --state its enrollments are gone"
        ),
    };
    Ok(ExitCode::SUCCESS)
}
