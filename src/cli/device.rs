//! `dps-station device ...` and `dps-station simulate-device`: bench work on serial devices, for
//! production and firmware engineers.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};

use dps_station::device::Family;
use dps_station::device::client::{ClientOptions, LineClient, WireEvent};
use dps_station::device::simulator::{
    Esp32Faults, Esp32Sim, ModemFaults, Nrf91Sim, SmpFaults, SmpSim,
};
use dps_station::device::simulator::{
    FirmwareOptions, Fleet, SimFaults, SimOptions, SimulatedDevice,
};
use dps_station::device::transport;

/// The device area's top-level commands.
#[derive(Debug, Subcommand)]
pub enum Commands {
    /// Serial ports and devices on the bench.
    #[command(subcommand)]
    Device(DeviceCommand),
    /// Run simulated devices of a family (our line protocol, an nRF91 modem, a Zephyr SMP device,
    /// an ESP32 ROM bootloader)
    /// on pseudo-terminals, or one of our protocol on a given port.
    SimulateDevice(SimulateArgs),
}

/// `device ...` subcommands.
#[derive(Debug, Subcommand)]
pub enum DeviceCommand {
    /// List serial ports with USB vendor/product id, serial number and stable /dev/serial/by-id path.
    List,
    /// Identify the device on a port (HELLO, or the family's own identification).
    Info(InfoArgs),
    /// Send one command (e.g. "HELLO v=1", "READBACK") and show the frames both ways.
    Console {
        #[command(flatten)]
        port: PortArgs,
        /// The command: a verb and key=value fields, as in docs/device-protocol.md.
        command: Vec<String>,
    },
    /// ESP32 tools: the esp_secure_cert partition image (docs/devices/esp32.md).
    #[command(subcommand)]
    Esp32(super::device_esp32::Esp32Command),
}

/// `device info` options.
#[derive(Debug, Args)]
pub struct InfoArgs {
    #[command(flatten)]
    pub port: PortArgs,
    /// The device's family: `station`, `nrf91`, `zephyr-smp` or `esp32`.
    #[arg(long, default_value = "station", value_parser = parse_family)]
    pub family: Family,
}

/// Which port, at which speed.
#[derive(Debug, Args)]
pub struct PortArgs {
    /// The serial port (prefer the /dev/serial/by-id/... path).
    #[arg(long)]
    pub port: String,
    /// Line speed in baud.
    #[arg(long, default_value_t = 115_200)]
    pub baud: u32,
}

/// `simulate-device` options.
#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// Which firmware to simulate: `station` (our line protocol), `nrf91` (a modem's AT
    /// commands, as Nordic's nrfcredstore drives it), `zephyr-smp` (an MCUmgr SMP server, as
    /// smpmgr drives it) or `esp32` (the ESP32 ROM bootloader, as esptool --no-stub drives it).
    #[arg(long, default_value = "station", value_parser = parse_family)]
    pub family: Family,
    /// How many devices to start, each on its own pseudo-terminal (a virtual fixture).
    #[arg(long, default_value_t = 1, conflicts_with = "port")]
    pub count: usize,
    /// Run one device on this real serial port instead of a pseudo-terminal.
    #[arg(long)]
    pub port: Option<String>,
    /// Directory holding each device's flash (sim-<n>.json, esp32-<n>.bin); kept across runs.
    #[arg(long, default_value = "sim-flash")]
    pub flash_dir: PathBuf,
    /// Emulate a UART at this speed (bytes take 10/baud s each, both ways). Also the --port speed.
    #[arg(long)]
    pub baud: Option<u32>,
    /// Probability of losing each byte, 0..1.
    #[arg(long, default_value_t = 0.0)]
    pub drop_rate: f64,
    /// Probability of flipping a bit in each byte, 0..1.
    #[arg(long, default_value_t = 0.0)]
    pub corrupt_rate: f64,
    /// Send a noise line before every frame.
    #[arg(long)]
    pub garbage: bool,
    /// Vanish after answering this many frames, like an unplugged cable.
    #[arg(long)]
    pub disconnect_after: Option<u64>,
    /// Reboot on receiving frame number N (1-based) instead of answering it.
    #[arg(long)]
    pub reboot_at: Option<u64>,
    /// Extra time KEYGEN takes, in milliseconds (a slow secure element).
    #[arg(long, default_value_t = 0)]
    pub keygen_delay_ms: u64,
    /// Simulate a device without a TPM.
    #[arg(long)]
    pub no_tpm: bool,
    /// Refuse the factory reset, as a device whose reset input is not asserted.
    #[arg(long)]
    pub reset_guarded: bool,
    /// Seed of the fault generator.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// nrf91: answer a bare ERROR (no +CME code) to commands starting with this.
    #[arg(long)]
    pub bare_error: Option<String>,
    /// nrf91: cut the %KEYGEN answer after the CSR.
    #[arg(long)]
    pub truncated_keygen: bool,
    /// nrf91: attest the digest of another CSR.
    #[arg(long)]
    pub wrong_attestation: bool,
    /// nrf91: restart on the Nth %CMNG write (1-based) instead of storing it.
    #[arg(long)]
    pub reboot_on_write: Option<u64>,
    /// nrf91: start with a client certificate already in this sec_tag.
    #[arg(long)]
    pub preloaded_sec_tag: Option<u32>,
    /// zephyr-smp: corrupt the CRC of the Nth reply (1-based).
    #[arg(long)]
    pub bad_crc_reply: Option<u64>,
    /// zephyr-smp: restart on the Nth file upload request (1-based).
    #[arg(long)]
    pub reboot_on_upload: Option<u64>,
    /// zephyr-smp: start with a device certificate already on the file system.
    #[arg(long)]
    pub preloaded_certificate: bool,
    /// esp32: never answer SYNC (a chip not in download mode).
    #[arg(long)]
    pub no_sync: bool,
    /// esp32: the first flash write loses a bit (MD5 and read-back fail).
    #[arg(long)]
    pub bad_flash_write: bool,
    /// esp32: start with flash encryption on (FLASH_CRYPT_CNT = 1).
    #[arg(long)]
    pub flash_encryption: bool,
    /// esp32: start with secure boot on (ABS_DONE_0).
    #[arg(long)]
    pub secure_boot: bool,
}

impl SimulateArgs {
    /// The fault options given that belong to another family than `--family`.
    fn foreign_faults(&self) -> Vec<&'static str> {
        let nrf91 = [
            ("--bare-error", self.bare_error.is_some()),
            ("--truncated-keygen", self.truncated_keygen),
            ("--wrong-attestation", self.wrong_attestation),
            ("--reboot-on-write", self.reboot_on_write.is_some()),
            ("--preloaded-sec-tag", self.preloaded_sec_tag.is_some()),
        ];
        let zephyr = [
            ("--bad-crc-reply", self.bad_crc_reply.is_some()),
            ("--reboot-on-upload", self.reboot_on_upload.is_some()),
            ("--preloaded-certificate", self.preloaded_certificate),
        ];
        let station = [
            ("--drop-rate", self.drop_rate != 0.0),
            ("--corrupt-rate", self.corrupt_rate != 0.0),
            ("--garbage", self.garbage),
            ("--disconnect-after", self.disconnect_after.is_some()),
            ("--reboot-at", self.reboot_at.is_some()),
            ("--keygen-delay-ms", self.keygen_delay_ms != 0),
            ("--no-tpm", self.no_tpm),
            ("--reset-guarded", self.reset_guarded),
        ];
        let esp32 = [
            ("--no-sync", self.no_sync),
            ("--bad-flash-write", self.bad_flash_write),
            ("--flash-encryption", self.flash_encryption),
            ("--secure-boot", self.secure_boot),
        ];
        let foreign: [&[(&'static str, bool)]; 3] = match self.family {
            Family::Station => [&nrf91, &zephyr, &esp32],
            Family::Nrf91 => [&zephyr, &station, &esp32],
            Family::ZephyrSmp => [&nrf91, &station, &esp32],
            Family::Esp32 => [&nrf91, &zephyr, &station],
        };
        foreign
            .into_iter()
            .flatten()
            .filter(|(_, given)| *given)
            .map(|(name, _)| *name)
            .collect()
    }
}

fn parse_family(text: &str) -> Result<Family, String> {
    Family::parse(text).ok_or_else(|| {
        let names: Vec<&str> = Family::ALL.iter().map(|f| f.as_str()).collect();
        format!("unknown family '{text}'; one of: {}", names.join(", "))
    })
}

/// Runs a device-area command.
pub fn run(cmd: Commands) -> anyhow::Result<ExitCode> {
    match cmd {
        Commands::Device(DeviceCommand::List) => list(),
        Commands::Device(DeviceCommand::Info(args)) if args.family == Family::Station => {
            info(&args.port)
        }
        Commands::Device(DeviceCommand::Info(args)) => family_info(&args),
        Commands::Device(DeviceCommand::Console { port, command }) => {
            console(&port, &command.join(" "))
        }
        Commands::Device(DeviceCommand::Esp32(cmd)) => super::device_esp32::run(cmd),
        Commands::SimulateDevice(args) => simulate(&args),
    }
}

fn list() -> anyhow::Result<ExitCode> {
    let ports = transport::list_ports()?;
    if ports.is_empty() {
        println!("no serial ports found");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<16} {:<9} {:<20} {:<24} stable path",
        "port", "vid:pid", "serial number", "product"
    );
    for p in ports {
        let (ids, serial, product) = match &p.usb {
            Some(u) => (
                format!("{:04x}:{:04x}", u.vid, u.pid),
                u.serial_number.clone().unwrap_or_else(|| "-".into()),
                u.product.clone().unwrap_or_else(|| "-".into()),
            ),
            None => ("-".into(), "-".into(), "-".into()),
        };
        let stable = p
            .by_id
            .map(|b| b.display().to_string())
            .unwrap_or_else(|| "(none: not a USB device)".into());
        println!(
            "{:<16} {:<9} {:<20} {:<24} {}",
            p.path, ids, serial, product, stable
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn options(port: &PortArgs) -> ClientOptions {
    ClientOptions {
        baud: port.baud,
        ..ClientOptions::default()
    }
}

fn info(port: &PortArgs) -> anyhow::Result<ExitCode> {
    let mut client = LineClient::open(&port.port, options(port))?;
    let info = client.hello()?;
    println!("port:          {}", port.port);
    println!("model:         {}", info.model);
    println!("serial number: {}", info.serial);
    println!("hardware id:   {}", info.hardware_id);
    println!("firmware:      {}", info.firmware);
    println!("protocol:      {}", info.protocol);
    println!("boot counter:  {}", info.boot_counter);
    println!("capabilities:  {}", info.capabilities.join(", "));
    println!("max frame:     {} bytes", info.max_frame);
    println!("locked:        {}", if info.locked { "yes" } else { "no" });
    Ok(ExitCode::SUCCESS)
}

/// `device info --family nrf91|zephyr-smp`: what the family's driver identifies, and what the
/// family can do.
fn family_info(args: &InfoArgs) -> anyhow::Result<ExitCode> {
    let options = options(&args.port);
    let mut driver = dps_station::device::open_driver(args.family, &args.port.port, &options)?;
    let info = driver.identify()?;
    let caps = info.capabilities;
    println!("port:          {}", args.port.port);
    println!("family:        {}", info.family);
    println!("model:         {}", info.model);
    println!("serial number: {}", info.serial);
    println!("hardware id:   {}", info.hardware_id);
    println!("firmware:      {}", info.firmware);
    println!("key generation: {:?}", caps.key_generation);
    println!("injected key:  {:?}", caps.private_key_injection);
    println!("symmetric key: {:?}", caps.symmetric_key);
    println!("lock:          {:?}", caps.lock);
    println!("locked:        {}", if info.locked { "yes" } else { "no" });
    Ok(ExitCode::SUCCESS)
}

fn console(port: &PortArgs, command: &str) -> anyhow::Result<ExitCode> {
    if command.trim().is_empty() {
        bail!(
            "give a command to send, e.g. `dps-station device console --port {} HELLO v=1`",
            port.port
        );
    }
    let mut client = LineClient::open(&port.port, options(port))?;
    client.set_observer(|event| match event {
        WireEvent::Sent(bytes) => print!("-> {}", String::from_utf8_lossy(bytes)),
        WireEvent::Received(line) => {
            println!("<- {}", String::from_utf8_lossy(line).escape_debug())
        }
    });
    let reply = client.raw(command)?;
    Ok(if reply.verb == "OK" {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn simulate(args: &SimulateArgs) -> anyhow::Result<ExitCode> {
    let foreign = args.foreign_faults();
    if !foreign.is_empty() {
        bail!(
            "{} do not apply to --family {}: each fault option simulates one family (see --help)",
            foreign.join(", "),
            args.family
        );
    }
    match args.family {
        Family::Nrf91 => return simulate_nrf91(args),
        Family::ZephyrSmp => return simulate_zephyr(args),
        Family::Esp32 => return simulate_esp32(args),
        Family::Station => {}
    }
    std::fs::create_dir_all(&args.flash_dir).with_context(|| {
        format!(
            "cannot create the flash directory {}",
            args.flash_dir.display()
        )
    })?;
    for (name, rate) in [
        ("--drop-rate", args.drop_rate),
        ("--corrupt-rate", args.corrupt_rate),
    ] {
        if !(0.0..=1.0).contains(&rate) {
            bail!("{name} must be between 0 and 1, not {rate}");
        }
    }
    let options = SimOptions {
        faults: SimFaults {
            baud: args.baud,
            drop_rate: args.drop_rate,
            corrupt_rate: args.corrupt_rate,
            garbage: args.garbage,
            disconnect_after: args.disconnect_after,
            reboot_at: args.reboot_at,
            seed: args.seed,
        },
        firmware: FirmwareOptions {
            keygen_delay: Duration::from_millis(args.keygen_delay_ms),
            tpm: !args.no_tpm,
            reset_guarded: args.reset_guarded,
            secure_element: None,
        },
        flash_dir: Some(args.flash_dir.clone()),
    };
    let devices: Vec<SimulatedDevice> = match &args.port {
        Some(port) => vec![SimulatedDevice::on_port(
            port,
            args.baud.unwrap_or(115_200),
            &options,
        )?],
        None => {
            if args.count == 0 {
                bail!("--count must be at least 1");
            }
            let fleet = Fleet::start(args.count, &options)?;
            fleet.into_devices()
        }
    };
    for (i, d) in devices.iter().enumerate() {
        let flash = d.flash();
        println!(
            "{}\t{}\tserial {}\tflash {}",
            i,
            d.path(),
            flash.serial,
            args.flash_dir.join(format!("sim-{i}.json")).display()
        );
    }
    eprintln!(
        "simulating {} device(s); connect the station to the path(s) above; Ctrl-C to stop",
        devices.len()
    );
    // Run until every device has vanished (disconnect fault) or the process is interrupted.
    while devices.iter().any(SimulatedDevice::is_running) {
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!("every simulated device has disconnected");
    Ok(ExitCode::SUCCESS)
}

/// `simulate-device --family nrf91`: modems on pseudo-terminals, one line per modem.
fn simulate_nrf91(args: &SimulateArgs) -> anyhow::Result<ExitCode> {
    if args.port.is_some() {
        bail!("--port is for the station family; an nrf91 modem runs on a pseudo-terminal");
    }
    if args.count == 0 {
        bail!("--count must be at least 1");
    }
    let faults = ModemFaults {
        error_without_code: args.bare_error.clone(),
        truncated_keygen: args.truncated_keygen,
        wrong_attestation_digest: args.wrong_attestation,
        reboot_on_write: args.reboot_on_write,
        preloaded_sec_tag: args.preloaded_sec_tag,
        baud: args.baud,
    };
    let modems = (0..args.count)
        .map(|i| Nrf91Sim::on_pty(i, faults.clone()))
        .collect::<Result<Vec<_>, _>>()?;
    for (i, m) in modems.iter().enumerate() {
        let imei = m.with_modem(|modem| modem.imei().to_string());
        println!("{i}\t{}\timei {imei}", m.path());
    }
    eprintln!(
        "simulating {} nRF91 modem(s); connect the station (or nrfcredstore) to the path(s) above; Ctrl-C to stop",
        modems.len()
    );
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// `simulate-device --family esp32`: ROM bootloaders on pseudo-terminals, one line per chip,
/// their flash files in `--flash-dir`.
fn simulate_esp32(args: &SimulateArgs) -> anyhow::Result<ExitCode> {
    if args.port.is_some() {
        bail!("--port is for the station family; an esp32 runs on a pseudo-terminal");
    }
    if args.count == 0 {
        bail!("--count must be at least 1");
    }
    std::fs::create_dir_all(&args.flash_dir).with_context(|| {
        format!(
            "cannot create the flash directory {}",
            args.flash_dir.display()
        )
    })?;
    let faults = Esp32Faults {
        baud: args.baud,
        no_sync: args.no_sync,
        bad_flash_write: args.bad_flash_write,
        flash_encryption: args.flash_encryption,
        secure_boot: args.secure_boot,
    };
    let chips = (0..args.count)
        .map(|i| Esp32Sim::on_pty(i, &args.flash_dir, faults.clone()))
        .collect::<Result<Vec<_>, _>>()?;
    for (i, c) in chips.iter().enumerate() {
        let (mac, flash) = c.with_chip(|chip| (chip.mac(), chip.flash_path().to_path_buf()));
        let serial = hex::encode_upper(mac);
        let mac = mac.map(|b| format!("{b:02x}")).join(":");
        println!(
            "{i}\t{}\tmac {mac}\tserial {serial}\tflash {}",
            c.path(),
            flash.display()
        );
    }
    eprintln!(
        "simulating {} ESP32 ROM bootloader(s); connect the station (or esptool --before no-reset --no-stub) to the path(s) above; Ctrl-C to stop",
        chips.len()
    );
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// `simulate-device --family zephyr-smp`: SMP servers on pseudo-terminals, one line per device.
fn simulate_zephyr(args: &SimulateArgs) -> anyhow::Result<ExitCode> {
    if args.port.is_some() {
        bail!("--port is for the station family; a zephyr-smp device runs on a pseudo-terminal");
    }
    if args.count == 0 {
        bail!("--count must be at least 1");
    }
    let faults = SmpFaults {
        baud: args.baud,
        bad_crc_reply: args.bad_crc_reply,
        reboot_on_upload: args.reboot_on_upload,
        preloaded_certificate: args.preloaded_certificate,
    };
    let devices = (0..args.count)
        .map(|i| SmpSim::on_pty(i, faults.clone()))
        .collect::<Result<Vec<_>, _>>()?;
    for (i, d) in devices.iter().enumerate() {
        let id = d.with_device(|dev| dev.devid());
        println!("{i}\t{}\tdevid {id}", d.path());
    }
    eprintln!(
        "simulating {} Zephyr SMP device(s); connect the station (or smpmgr --port) to the path(s) above; Ctrl-C to stop",
        devices.len()
    );
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}
