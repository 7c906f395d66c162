//! `dps-station bench ...`: the performance goals of each area, measured (not asserted in tests).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};

use dps_station::device::Family;
use dps_station::device::client::{ClientOptions, LineClient};
use dps_station::device::driver::{Bundle, DeviceConfig, DeviceDriver, GeneratedKey};
use dps_station::device::nrf91::{Nrf91Driver, Nrf91Options};
use dps_station::device::protocol::sha256_hex;
use dps_station::device::replies::Expected;
use dps_station::device::simulator::{Fleet, SimFaults, SimOptions};
use dps_station::device::simulator::{ModemFaults, Nrf91Sim, SmpFaults, SmpSim};
use dps_station::device::smp::driver::{SmpOptions, ZephyrSmpDriver};
use dps_station::keystore::pin::obtain_pin;
use dps_station::keystore::pkcs11::{Pkcs11Config, TokenSelector};
use dps_station::keystore::profile::HsmProfile;
use dps_station::station::enroll_bench::{EnrollBenchOptions, PhaseReport, run_enroll_bench};
use dps_station::station::hsm_bench::{self, BenchPlan};

/// Benchmarks, one per area.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Ledger: durable insert rates (batched and one transaction per identity), lookup latency,
    /// CSV export time, file size per identity.
    Ledger(super::ledger_bench::LedgerBench),
    /// One device's full exchange over a pseudo-terminal against the simulator at a UART speed,
    /// beside the wire-time lower bound (bytes × 10 / baud).
    Serial(SerialArgs),
    /// Device certificates issued per second from CSRs, signed in the HSM with 1, 2 and 4
    /// sessions, beside the token's raw signatures per second. Creates a CA key on the token:
    /// use a development token.
    Hsm(HsmBench),
    /// DPS enrollment: enrollments per minute against the in-process emulator held to the real
    /// quota (1,000 operations/min), with bulk calls of 10 and with one PUT per device.
    Enroll(EnrollBench),
    /// The whole line: N slots of simulated devices, SoftHSM2, the DPS emulator, a durable ledger.
    Line(super::line_bench::BenchLineArgs),
    /// The emulator over MQTT: registrations per second (X.509 and SAS, beside HTTPS) and
    /// telemetry messages per second into the local hub from N devices connected at once, with
    /// the process's memory.
    Mqtt(MqttBench),
    /// The operator's desk: CPU time per frame of the line screen (32 slots, 200 engine events
    /// per second) over 1,200 frames, median and p99, and the process's peak memory.
    Gui(super::gui_bench::GuiBenchArgs),
    /// Trust&GO manifests: read, verify and import N entries (100,000) into a fresh ledger,
    /// with the process's peak memory (goal: under 30 s and 300 MB).
    Manifest(super::manifest::ManifestBenchArgs),
    /// The central ledger on PostgreSQL, through its HTTPS service: identities per second from
    /// three stations at once, lease latency p50/p99, and the time to drain a 100,000-row outbox
    /// backlog (a throwaway cluster unless --database is given).
    Central(super::bench_central::CentralBench),
}

/// Options of `bench hsm`.
#[derive(Debug, Args)]
pub struct HsmBench {
    /// HSM profile.
    #[arg(long, env = "DPS_STATION_HSM_PROFILE", default_value = "softhsm2")]
    profile: String,
    /// The PKCS#11 module, overriding the profile's.
    #[arg(long, env = "DPS_STATION_HSM_MODULE", value_name = "PATH")]
    module: Option<PathBuf>,
    /// The token's label.
    #[arg(long, env = "DPS_STATION_HSM_TOKEN", value_name = "LABEL")]
    token: String,
    /// A file holding the user PIN (else $DPS_STATION_HSM_PIN, else a prompt).
    #[arg(long, env = "DPS_STATION_HSM_PIN_FILE", value_name = "PATH")]
    pin_file: Option<PathBuf>,
    /// Session counts to measure.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4")]
    sessions: Vec<usize>,
    /// Seconds per timed run.
    #[arg(long, default_value_t = 3)]
    seconds: u64,
    /// Runs per measurement (the median is reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Worker threads per session (line slots share a smaller session pool); the same for the
    /// raw and the issuing measurement.
    #[arg(long, default_value_t = 2)]
    threads_per_session: usize,
}

/// `bench serial` options.
#[derive(Debug, Args)]
pub struct SerialArgs {
    /// The emulated line speed.
    #[arg(long, default_value_t = 115_200)]
    pub baud: u32,
    /// How many devices to run through (the median is reported).
    #[arg(long, default_value_t = 7)]
    pub runs: usize,
    /// Which family's exchange: `station` (our line protocol), `nrf91` (AT commands),
    /// `zephyr-smp` or `esp32` (the ROM bootloader).
    #[arg(long, default_value = "station", value_parser = parse_family)]
    pub family: Family,
}

fn parse_family(text: &str) -> Result<Family, String> {
    Family::parse(text)
        .ok_or_else(|| format!("unknown family '{text}'; station, nrf91, zephyr-smp or esp32"))
}

/// Runs a benchmark.
pub fn run(cmd: BenchCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        BenchCommand::Ledger(args) => super::ledger_bench::run(args),
        BenchCommand::Serial(args) => serial(&args),
        BenchCommand::Hsm(args) => hsm(args),
        BenchCommand::Enroll(args) => enroll(args),
        BenchCommand::Line(args) => super::line_bench::bench(&args),
        BenchCommand::Mqtt(args) => mqtt(&args),
        BenchCommand::Gui(args) => super::gui_bench::run(&args),
        BenchCommand::Manifest(args) => super::manifest::bench(&args),
        BenchCommand::Central(args) => super::bench_central::run(args),
    }
}

/// One exchange's measurements.
struct Run {
    exchange: Duration,
    keygen: Duration,
    bytes: u64,
}

/// The X.509 flow with device-side key generation: HELLO, KEYGEN, CSR, PUT chain, CONFIG,
/// READBACK (compared), LOCK. The station's own certificate issuing is not timed.
fn one_exchange(baud: Option<u32>, client_baud: u32) -> anyhow::Result<Run> {
    let options = SimOptions {
        faults: SimFaults {
            baud,
            ..SimFaults::default()
        },
        ..SimOptions::default()
    };
    let fleet = Fleet::start(1, &options)?;
    let path = fleet.paths().remove(0);
    let mut client = LineClient::open(
        &path,
        ClientOptions {
            baud: client_baud,
            ..ClientOptions::default()
        },
    )?;
    let ca_key = rcgen::KeyPair::generate()?;
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "bench intermediate");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key)?;

    let mut timed = Duration::ZERO;
    let started = Instant::now();
    let info = client.hello()?;
    let t = Instant::now();
    client.keygen()?;
    let keygen = t.elapsed();
    let csr = client.csr(&format!("bench-{}", info.serial.to_lowercase()))?;
    timed += started.elapsed();

    let csr = rcgen::CertificateSigningRequestParams::from_der(&csr.into())
        .context("the device's CSR does not parse")?;
    let leaf = csr.signed_by(&ca)?;
    let chain = format!("{}{}", leaf.pem(), ca.pem());

    let started = Instant::now();
    client.put_certificate_chain(chain.as_bytes())?;
    let config = DeviceConfig {
        registration_id: format!("bench-{}", info.serial.to_lowercase()),
        id_scope: "0ne00000A0A".into(),
        global_endpoint: "global.azure-devices-provisioning.net".into(),
        extra: Default::default(),
    };
    client.config(&config)?;
    let readback = client.readback()?;
    let expected = Expected {
        chain: Some(sha256_hex(chain.as_bytes())),
        config: Some(config.digest_hex()),
        ..Expected::default()
    };
    let differences = readback.differences(&expected);
    if !differences.is_empty() {
        bail!("readback differs: {differences:?}");
    }
    client.lock()?;
    timed += started.elapsed();
    let (sent, received) = client.byte_counts();
    fleet.stop();
    Ok(Run {
        exchange: timed,
        keygen,
        bytes: sent + received,
    })
}

/// The nRF91 X.509 flow through the `nrf91` driver against the simulated modem: identify (with
/// offline), `%KEYGEN` (attestation checked), the two `%CMNG` writes with their occupancy check,
/// the read-back listing. The station's certificate issuing is not timed.
fn nrf91_exchange(index: usize, baud: Option<u32>, client_baud: u32) -> anyhow::Result<Run> {
    let sim = Nrf91Sim::on_pty(
        index,
        ModemFaults {
            baud,
            ..ModemFaults::default()
        },
    )?;
    let mut driver = Nrf91Driver::open(
        sim.path(),
        Nrf91Options {
            baud: client_baud,
            ..Nrf91Options::default()
        },
    )?;
    let ca_key = rcgen::KeyPair::generate()?;
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "bench intermediate");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key)?;

    let started = Instant::now();
    let info = driver.identify()?;
    let rid = format!("bench-{}", info.serial);
    let t = Instant::now();
    let GeneratedKey::Csr { der, .. } = driver.generate_key(&rid, false)? else {
        bail!("the nrf91 driver answered key generation without a CSR");
    };
    let keygen = t.elapsed();
    let mut timed = started.elapsed();

    let csr = rcgen::CertificateSigningRequestParams::from_der(&der.into())
        .context("the modem's CSR does not parse")?;
    let leaf = csr.signed_by(&ca)?;
    let (leaf, chain) = (leaf.pem(), ca.pem());
    let config = DeviceConfig {
        registration_id: rid,
        id_scope: "0ne00000A0A".into(),
        global_endpoint: "global.azure-devices-provisioning.net".into(),
        extra: Default::default(),
    };
    let started = Instant::now();
    let stored = driver.store(&Bundle {
        certificate_pem: Some(&leaf),
        ca_chain_pem: Some(&chain),
        private_key: None,
        symmetric_key: None,
        config: &config,
        overwrite: false,
    })?;
    let holdings = driver.read_back()?;
    let differences = holdings.differences(&stored.digests);
    if !differences.is_empty() {
        bail!("readback differs: {differences:?}");
    }
    timed += started.elapsed();
    let (sent, received) = driver.byte_counts();
    Ok(Run {
        exchange: timed,
        keygen,
        bytes: sent + received,
    })
}

/// A throwaway issuing CA for the serial benchmarks.
fn bench_ca() -> anyhow::Result<rcgen::CertifiedIssuer<'static, rcgen::KeyPair>> {
    let ca_key = rcgen::KeyPair::generate()?;
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "bench intermediate");
    Ok(rcgen::CertifiedIssuer::self_signed(ca_params, ca_key)?)
}

/// The Zephyr SMP X.509 flow through the `zephyr-smp` driver against the simulated device.
fn zephyr_exchange(index: usize, baud: Option<u32>, client_baud: u32) -> anyhow::Result<Run> {
    let sim = SmpSim::on_pty(
        index,
        SmpFaults {
            baud,
            ..SmpFaults::default()
        },
    )?;
    let mut driver = ZephyrSmpDriver::open(
        sim.path(),
        SmpOptions {
            baud: client_baud,
            ..SmpOptions::default()
        },
    )?;
    // The boot banner goes by before the station's first request, as on a freshly plugged device.
    driver.wait_for_boot(Duration::from_millis(500))?;
    let ca = bench_ca()?;
    let started = Instant::now();
    let info = driver.identify()?;
    let rid = format!("bench-{}", info.serial);
    let t = Instant::now();
    let GeneratedKey::Csr { der, .. } = driver.generate_key(&rid, false)? else {
        bail!("the zephyr-smp driver answered key generation without a CSR");
    };
    let keygen = t.elapsed();
    let mut timed = started.elapsed();
    let csr = rcgen::CertificateSigningRequestParams::from_der(&der.into())
        .context("the device's CSR does not parse")?;
    let leaf = csr.signed_by(&ca)?;
    let (leaf, chain) = (leaf.pem(), ca.pem());
    let config = DeviceConfig {
        registration_id: rid,
        id_scope: "0ne00000A0A".into(),
        global_endpoint: "global.azure-devices-provisioning.net".into(),
        extra: Default::default(),
    };
    let started = Instant::now();
    let stored = driver.store(&Bundle {
        certificate_pem: Some(&leaf),
        ca_chain_pem: Some(&chain),
        private_key: None,
        symmetric_key: None,
        config: &config,
        overwrite: false,
    })?;
    let holdings = driver.read_back()?;
    let differences = holdings.differences(&stored.digests);
    if !differences.is_empty() {
        bail!("readback differs: {differences:?}");
    }
    timed += started.elapsed();
    let (sent, received) = driver.byte_counts();
    Ok(Run {
        exchange: timed,
        keygen,
        bytes: sent + received,
    })
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values.get(values.len() / 2).copied().unwrap_or_default()
}

fn serial(args: &SerialArgs) -> anyhow::Result<ExitCode> {
    if args.runs == 0 || args.baud == 0 {
        bail!("--runs and --baud must be at least 1");
    }
    let mut paced = Vec::new();
    let mut unpaced = Vec::new();
    let esp32_flash = super::bench_esp32::ScratchDir::new()?;
    let esp32_ca = bench_ca()?;
    for i in 0..args.runs {
        match args.family {
            Family::Station => {
                paced.push(one_exchange(Some(args.baud), args.baud)?);
                unpaced.push(one_exchange(None, args.baud)?);
            }
            Family::Nrf91 => {
                paced.push(nrf91_exchange(2 * i, Some(args.baud), args.baud)?);
                unpaced.push(nrf91_exchange(2 * i + 1, None, args.baud)?);
            }
            Family::ZephyrSmp => {
                paced.push(zephyr_exchange(2 * i, Some(args.baud), args.baud)?);
                unpaced.push(zephyr_exchange(2 * i + 1, None, args.baud)?);
            }
            Family::Esp32 => {
                for (index, baud, into) in [
                    (2 * i, Some(args.baud), &mut paced),
                    (2 * i + 1, None, &mut unpaced),
                ] {
                    let (exchange, bytes) = super::bench_esp32::exchange(
                        esp32_flash.path(),
                        index,
                        baud,
                        args.baud,
                        &esp32_ca,
                    )?;
                    into.push(Run {
                        exchange,
                        keygen: Duration::ZERO,
                        bytes,
                    });
                }
            }
        }
    }
    let bytes = paced.iter().map(|r| r.bytes).max().unwrap_or(0);
    let lower = Duration::from_secs_f64(bytes as f64 * 10.0 / f64::from(args.baud));
    let exchange = median(paced.iter().map(|r| r.exchange).collect());
    let keygen = median(unpaced.iter().map(|r| r.keygen).collect());
    let compute = median(unpaced.iter().map(|r| r.exchange).collect());
    let goal = (lower + keygen).mul_f64(1.10);
    let flow = match args.family {
        Family::Station => "station, X.509 flow: HELLO KEYGEN CSR PUT-chain CONFIG READBACK LOCK",
        Family::Nrf91 => {
            "nrf91, X.509 flow: CMEE CGSN CGMM CGMR ATTESTTOKEN CFUN=4 CMNG-list KEYGEN CMNG-list CMNG×2 CMNG-list"
        }
        Family::Esp32 => {
            "esp32, x509-inject flow: SYNC magic MAC eFuses SPI_ATTACH/SET_PARAMS read-partition-head FLASH_DEFL_BEGIN FLASH_DEFL_DATA×n SPI_FLASH_MD5, read-back of the entries READ_FLASH_SLOW×n eFuses, FLASH_DEFL_END (no device keygen: 0)"
        }
        Family::ZephyrSmp => {
            "zephyr-smp, X.509 flow: params os-info×2 hwinfo keygen fs-status×2 fs-upload×2 settings-write×3 save, read-back hash×2 settings-read×3"
        }
    };
    println!(
        "bench serial: {} runs at {} baud ({flow})",
        args.runs, args.baud
    );
    println!("  bytes on the wire (both ways):     {bytes}");
    println!(
        "  wire-time lower bound:             {:.1} ms",
        lower.as_secs_f64() * 1e3
    );
    println!(
        "  simulator KEYGEN (unpaced):        {:.1} ms",
        keygen.as_secs_f64() * 1e3
    );
    println!(
        "  whole exchange unpaced:            {:.1} ms",
        compute.as_secs_f64() * 1e3
    );
    println!(
        "  whole exchange at {} baud (median): {:.1} ms",
        args.baud,
        exchange.as_secs_f64() * 1e3
    );
    println!(
        "  goal (lower bound + keygen) × 1.10: {:.1} ms  → {}",
        goal.as_secs_f64() * 1e3,
        if exchange <= goal { "met" } else { "NOT met" }
    );
    println!(
        "  ratio to lower bound + keygen:     {:.3}",
        exchange.as_secs_f64() / (lower + keygen).as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

fn hsm(args: HsmBench) -> anyhow::Result<ExitCode> {
    if cfg!(debug_assertions) {
        eprintln!("note: this is a debug build; benchmark figures come from `cargo run --release`");
    }
    if args.sessions.is_empty() || args.sessions.contains(&0) {
        bail!("--sessions needs positive counts, e.g. --sessions 1,2,4");
    }
    let config = Pkcs11Config {
        profile: HsmProfile::built_in(&args.profile)?,
        module: args.module,
        token: TokenSelector::Label(args.token.clone()),
        sessions: None,
    };
    let pin = obtain_pin(
        args.pin_file.as_deref(),
        &format!("user PIN for token {}: ", args.token),
    )?;
    let plan = BenchPlan {
        sessions: args.sessions,
        run: Duration::from_secs(args.seconds.max(1)),
        runs: args.runs.max(1),
        threads_per_session: args.threads_per_session.max(1),
    };
    let label = format!("bench-ca-{}", std::process::id());
    let rows = hsm_bench::run(&config, &pin, &label, &plan, &|line| eprintln!("{line}"))?;
    println!(
        "| sessions | threads | raw signatures/s | certificates issued/s (from CSRs) | issuing / raw | CSR checks alone/s | issued/s for checked keys | that / raw |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {} | {:.0} | {:.0} | {:.0}% | {:.0} | {:.0} | {:.0}% |",
            r.sessions,
            r.threads,
            r.raw_signatures_per_sec,
            r.certificates_per_sec,
            r.ratio() * 100.0,
            r.csr_checks_per_sec,
            r.certificates_from_checked_keys_per_sec,
            100.0 * r.certificates_from_checked_keys_per_sec
                / r.raw_signatures_per_sec.max(f64::EPSILON)
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Options of `bench mqtt`.
#[derive(Debug, Args)]
pub struct MqttBench {
    /// Devices registered per phase and connected to the hub at once.
    #[arg(long, default_value_t = 1000)]
    devices: usize,
    /// Messages each connected device sends.
    #[arg(long, default_value_t = 10)]
    messages: usize,
    /// Registrations in flight at once (each waits up to 50 ms before polling, so the rate a
    /// client reaches is bounded by this over that wait).
    #[arg(long, default_value_t = 128)]
    concurrency: usize,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

fn mqtt(args: &MqttBench) -> anyhow::Result<ExitCode> {
    use dps_station::station::mqtt_bench::{MqttBenchOptions, Phase, run_mqtt_bench};
    if cfg!(debug_assertions) {
        eprintln!("note: this is a debug build; benchmark figures come from `cargo run --release`");
    }
    let report = run_mqtt_bench(
        &MqttBenchOptions {
            devices: args.devices,
            messages_per_device: args.messages,
            concurrency: args.concurrency,
        },
        |line| eprintln!("{line}"),
    )
    .context("MQTT benchmark failed")?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    // Below one clock tick of CPU there is no rate to show, only that it was too short.
    let rate = |r: Option<f64>| match r {
        Some(r) => format!("{r:.0} per CPU second"),
        None => "too little to measure".to_owned(),
    };
    let line = |name: &str, unit: &str, p: &Phase| {
        println!(
            "{name:<26} {:>6} {unit} in {:>6.2} s = {:>8.0}/s  ({:.2} CPU s, {}; emulator alone {:.2} CPU s, {})",
            p.count,
            p.seconds,
            p.per_second,
            p.cpu_seconds,
            rate(p.per_cpu_second),
            p.emulator_cpu_seconds,
            rate(p.per_emulator_cpu_second)
        );
    };
    line(
        "register over MQTT, X.509",
        "registrations",
        &report.mqtt_x509,
    );
    line("register over MQTT, SAS", "registrations", &report.mqtt_sas);
    line(
        "register over HTTPS, SAS",
        "registrations",
        &report.https_sas,
    );
    line("connect to the hub, SAS", "connections", &report.connect);
    line("telemetry into the hub", "messages", &report.telemetry);
    println!(
        "memory (RSS, emulator + clients in one process): {:.1} MB before, {:.1} MB with {} devices connected ({:.1} MB more); the hub kept {} messages",
        report.rss_before_mb,
        report.rss_connected_mb,
        report.connections,
        report.rss_connected_mb - report.rss_before_mb,
        report.messages_kept
    );
    Ok(ExitCode::SUCCESS)
}

/// Options of `bench enroll`.
#[derive(Debug, Args)]
pub struct EnrollBench {
    /// Enrollments sent with bulk calls of 10.
    #[arg(long, default_value_t = 10_000)]
    identities: usize,
    /// Enrollments sent one PUT each (at the quota, a minute per 1,000).
    #[arg(long, default_value_t = 500)]
    single: usize,
    /// The quota the emulator enforces and the client keeps to.
    #[arg(long, default_value_t = 1_000)]
    operations_per_minute: u32,
    /// Symmetric-key enrollments instead of X.509 device certificates.
    #[arg(long)]
    symmetric_key: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

fn enroll(args: EnrollBench) -> anyhow::Result<ExitCode> {
    if cfg!(debug_assertions) {
        eprintln!("note: this is a debug build; benchmark figures come from `cargo run --release`");
    }
    let report = run_enroll_bench(
        &EnrollBenchOptions {
            identities: args.identities,
            single: args.single,
            operations_per_minute: args.operations_per_minute,
            x509: !args.symmetric_key,
        },
        |line| eprintln!("{line}"),
    )
    .context("DPS enrollment benchmark failed")?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "quota            {} operations/min, {} enrollments",
            report.operations_per_minute, report.attestation
        );
        print_phase("bulk of 10", &report.bulk);
        print_phase("one PUT each", &report.single);
    }
    let ok = report.bulk.failed == 0
        && report.single.failed == 0
        && report.bulk.held == report.bulk.enrollments
        && report.single.held == report.single.enrollments;
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn print_phase(name: &str, p: &PhaseReport) {
    println!(
        "{name:<16} {} enrollments in {:.1} s, {} operations: {:.0}/min = {:.1}% of the {:.0}/min the \
         quota allows; {} answered 429; {} failed; {} held by DPS",
        p.enrollments,
        p.seconds,
        p.operations,
        p.per_minute,
        p.share_of_quota * 100.0,
        p.quota_allows_per_minute,
        p.throttled,
        p.failed,
        p.held
    );
}
