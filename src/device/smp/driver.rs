//! The `zephyr-smp` family's driver: a Zephyr application's MCUmgr SMP server behind
//! [`DeviceDriver`].
//!
//! - identify: OS info (`i` the board, `r` the release: model and firmware) and the shell's
//!   `hwinfo devid` (the device id, its serial).
//! - key: the application's shell command `dps keygen [--force] <CN>` answers a PKCS#10 CSR
//!   (base64) for a P-256 key the application keeps; `ret` 17 (EEXIST) means it has one already.
//! - store: the certificate and the CA chain are uploaded as files (`/lfs/dps/device.crt`,
//!   `/lfs/dps/ca.crt`, group 8) in requests as large as the device's SMP buffer (MCUmgr
//!   parameters) allows, each confirmed by its final offset; the registration ID,
//!   ID scope and global endpoint are settings `dps/regid`, `dps/scope`, `dps/endpoint`
//!   (group 3), then saved. A file already there is not overwritten unless overwriting was chosen.
//! - read back: the files' SHA-256 (group 8 hash) and the settings' values.
//! - no lock (SMP has none); factory reset is the application's `dps reset`.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use base64::Engine;

use super::cbor::Value;
use super::client::SmpPort;
use super::header::{GROUP_FS, GROUP_OS, GROUP_SETTINGS, GROUP_SHELL, OP_READ, OP_WRITE};
use crate::device::driver::{
    Bundle, DeviceConfig, DeviceDriver, DeviceInfo, Digests, Family, GeneratedKey, Held, Holdings,
    Stored, TpmEk,
};
use crate::device::error::{DeviceError, Step};
use crate::device::protocol::sha256_hex;

/// Where the device certificate goes.
pub const CERT_FILE: &str = "/lfs/dps/device.crt";
/// Where the CA chain goes.
pub const CA_FILE: &str = "/lfs/dps/ca.crt";
/// The settings the registration data goes in.
pub const SETTINGS: [&str; 3] = ["dps/regid", "dps/scope", "dps/endpoint"];

/// The SMP buffer assumed when the device does not report its own (Zephyr's default
/// `CONFIG_MCUMGR_TRANSPORT_NETBUF_SIZE`).
const DEFAULT_BUF_SIZE: usize = 384;

/// What an upload request carries besides the file data: the header and the CBOR keys, offset,
/// length and file name, with room to spare.
const UPLOAD_OVERHEAD: usize = 8 + 96;

/// How the driver talks to the device.
#[derive(Debug, Clone)]
pub struct SmpOptions {
    /// UART speed.
    pub baud: u32,
    /// Reply timeout of ordinary requests.
    pub reply: Duration,
    /// Reply timeout of the key generation command.
    pub keygen: Duration,
}

impl Default for SmpOptions {
    fn default() -> Self {
        Self {
            baud: 115_200,
            reply: Duration::from_secs(3),
            keygen: Duration::from_secs(30),
        }
    }
}

/// A Zephyr SMP device on one port.
pub struct ZephyrSmpDriver<W> {
    smp: SmpPort<W>,
    options: SmpOptions,
    /// The device's SMP buffer (MCUmgr parameters), which bounds an upload request.
    buf_size: usize,
}

impl ZephyrSmpDriver<Box<dyn serialport::SerialPort>> {
    /// Opens `port` at `options.baud`.
    pub fn open(port: &str, options: SmpOptions) -> Result<Self, DeviceError> {
        let wire = crate::device::transport::open(port, options.baud)?;
        Ok(Self::new(port, wire, options))
    }
}

fn digest_of_config(config: &DeviceConfig) -> String {
    DeviceConfig {
        extra: Default::default(),
        ..config.clone()
    }
    .digest_hex()
}

impl<W: Read + Write + Send> ZephyrSmpDriver<W> {
    /// A driver over an open port.
    pub fn new(port: &str, wire: W, options: SmpOptions) -> Self {
        Self {
            smp: SmpPort::new(port, wire),
            options,
            buf_size: DEFAULT_BUF_SIZE,
        }
    }

    /// Bytes (sent, received) so far.
    pub fn byte_counts(&self) -> (u64, u64) {
        self.smp.byte_counts()
    }

    fn request(
        &mut self,
        name: &'static str,
        op: u8,
        group: u16,
        id: u8,
        body: Value,
    ) -> Result<Value, DeviceError> {
        let timeout = self.options.reply;
        self.smp.request(name, op, group, id, &body, timeout)
    }

    fn protocol(&self, name: &'static str, reason: impl Into<String>) -> DeviceError {
        DeviceError::Protocol {
            port: self.smp.port().to_string(),
            step: Step::Command(name),
            reason: reason.into(),
        }
    }

    fn os_info(&mut self, format: &str) -> Result<String, DeviceError> {
        let reply = self.request(
            "os info",
            OP_READ,
            GROUP_OS,
            7,
            Value::map([("format", Value::Text(format.into()))]),
        )?;
        reply
            .text("output")
            .map(str::to_string)
            .ok_or_else(|| self.protocol("os info", "no output"))
    }

    /// Runs a shell command; (output, ret).
    fn shell(&mut self, argv: &[&str], timeout: Duration) -> Result<(String, i64), DeviceError> {
        let argv = Value::Array(argv.iter().map(|a| Value::Text(a.to_string())).collect());
        let reply = self.smp.request(
            "shell exec",
            OP_WRITE,
            GROUP_SHELL,
            0,
            &Value::map([("argv", argv)]),
            timeout,
        )?;
        let output = reply.text("o").unwrap_or_default().to_string();
        let ret = reply
            .int("ret")
            .ok_or_else(|| self.protocol("shell exec", "no ret"))?;
        Ok((output, ret))
    }

    /// The file's SHA-256, `None` if it does not exist.
    fn file_sha256(&mut self, name: &str) -> Result<Option<String>, DeviceError> {
        let body = Value::map([
            ("name", Value::Text(name.into())),
            ("type", Value::Text("sha256".into())),
        ]);
        match self.request("fs hash", OP_READ, GROUP_FS, 2, body) {
            Ok(reply) => reply
                .bytes("output")
                .map(|b| Some(hex::encode(b)))
                .ok_or_else(|| self.protocol("fs hash", "no sha256 output")),
            Err(DeviceError::Smp { rc, .. }) if is_not_found(rc) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn file_exists(&mut self, name: &str) -> Result<bool, DeviceError> {
        let body = Value::map([("name", Value::Text(name.into()))]);
        match self.request("fs status", OP_READ, GROUP_FS, 1, body) {
            Ok(_) => Ok(true),
            Err(DeviceError::Smp { rc, .. }) if is_not_found(rc) => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn upload(&mut self, name: &str, data: &[u8]) -> Result<(), DeviceError> {
        let chunk = self
            .buf_size
            .saturating_sub(UPLOAD_OVERHEAD + name.len())
            .max(64);
        let mut off = 0usize;
        loop {
            let end = (off + chunk).min(data.len());
            let mut pairs = vec![
                ("off".to_string(), Value::Int(off as i64)),
                ("data".to_string(), Value::Bytes(data[off..end].to_vec())),
                ("name".to_string(), Value::Text(name.into())),
            ];
            if off == 0 {
                pairs.push(("len".to_string(), Value::Int(data.len() as i64)));
            }
            let reply = self.request("fs upload", OP_WRITE, GROUP_FS, 0, Value::Map(pairs))?;
            let next = reply
                .int("off")
                .and_then(|o| usize::try_from(o).ok())
                .ok_or_else(|| self.protocol("fs upload", "no off"))?;
            if next != end {
                return Err(self.protocol(
                    "fs upload",
                    format!("the device is at offset {next}, the station sent up to {end}"),
                ));
            }
            off = end;
            if off >= data.len() {
                return Ok(());
            }
        }
    }

    fn setting(&mut self, name: &str) -> Result<Option<Vec<u8>>, DeviceError> {
        let body = Value::map([("name", Value::Text(name.into()))]);
        match self.request("settings read", OP_READ, GROUP_SETTINGS, 0, body) {
            Ok(reply) => Ok(reply.bytes("val").map(<[u8]>::to_vec)),
            Err(DeviceError::Smp { rc, .. }) if is_not_found(rc) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn occupied(&self, what: String) -> DeviceError {
        DeviceError::Occupied {
            port: self.smp.port().to_string(),
            what,
        }
    }

    fn files<'a>(bundle: &'a Bundle<'_>) -> Vec<(&'static str, Held, &'a str)> {
        let mut out = Vec::new();
        if let Some(cert) = bundle.certificate_pem {
            out.push((CERT_FILE, Held::Certificate, cert));
        }
        if let Some(chain) = bundle.ca_chain_pem {
            out.push((CA_FILE, Held::CaChain, chain));
        }
        out
    }
}

/// `ENOENT` as MCUmgr (5) and the fs group (2) report it.
fn is_not_found(rc: i64) -> bool {
    rc == 5 || rc == 2
}

impl<W: Read + Write + Send> DeviceDriver for ZephyrSmpDriver<W> {
    fn port(&self) -> &str {
        self.smp.port()
    }

    fn family(&self) -> Family {
        Family::ZephyrSmp
    }

    fn identify(&mut self) -> Result<DeviceInfo, DeviceError> {
        // A device just plugged in prints its boot banner, maybe while this first request crosses.
        // Its SMP buffer bounds the upload requests; a firmware without the parameters command
        // gets Zephyr's default.
        let timeout = self.options.reply;
        self.buf_size = match self.smp.first_request(
            "mcumgr parameters",
            OP_READ,
            GROUP_OS,
            6,
            &Value::Map(Vec::new()),
            timeout,
        ) {
            Ok(params) => params
                .int("buf_size")
                .and_then(|b| usize::try_from(b).ok())
                .filter(|b| *b >= 128)
                .unwrap_or(DEFAULT_BUF_SIZE),
            Err(DeviceError::Smp { .. }) => DEFAULT_BUF_SIZE,
            Err(e) => return Err(e),
        };
        let model = self.os_info("i")?;
        let firmware = self.os_info("r")?;
        let timeout = self.options.reply;
        let (out, ret) = self.shell(&["hwinfo", "devid"], timeout)?;
        let serial = out
            .lines()
            .find_map(|l| l.trim().strip_prefix("ID: 0x"))
            .filter(|id| ret == 0 && !id.is_empty() && id.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| {
                self.protocol(
                    "hwinfo devid",
                    "no device id (enable CONFIG_HWINFO_SHELL in the firmware)",
                )
            })?
            .to_string();
        Ok(DeviceInfo {
            family: Family::ZephyrSmp,
            model,
            hardware_id: serial.clone(),
            serial,
            firmware,
            boot_counter: 0,
            capabilities: Family::ZephyrSmp.capabilities(),
            locked: false,
        })
    }

    fn ping(&mut self) -> Result<Duration, DeviceError> {
        let started = Instant::now();
        self.request(
            "os echo",
            OP_WRITE,
            GROUP_OS,
            0,
            Value::map([("d", Value::Text("ping".into()))]),
        )?;
        Ok(started.elapsed())
    }

    fn generate_key(
        &mut self,
        subject_cn: &str,
        overwrite: bool,
    ) -> Result<GeneratedKey, DeviceError> {
        let name = "dps keygen";
        if subject_cn.is_empty() || subject_cn.contains(char::is_whitespace) {
            return Err(DeviceError::Input {
                port: self.smp.port().to_string(),
                step: Step::Command(name),
                reason: format!("subject CN '{subject_cn}' is empty or holds a space"),
            });
        }
        let mut argv = vec!["dps", "keygen"];
        if overwrite {
            argv.push("--force");
        }
        argv.push(subject_cn);
        let timeout = self.options.keygen;
        let (out, ret) = self.shell(&argv, timeout)?;
        match ret {
            0 => {}
            17 => return Err(self.occupied("a device key (dps keygen answered EEXIST)".into())),
            _ => {
                return Err(self.protocol(
                    name,
                    format!("the command failed (ret {ret}): {}", out.trim()),
                ));
            }
        }
        let der = base64::engine::general_purpose::STANDARD
            .decode(out.trim())
            .ok()
            .filter(|d| !d.is_empty())
            .ok_or_else(|| self.protocol(name, "the CSR is not base64"))?;
        Ok(GeneratedKey::Csr {
            der,
            attestation: None,
        })
    }

    fn csr(&mut self, _subject_cn: &str) -> Result<Vec<u8>, DeviceError> {
        Err(DeviceError::Unsupported {
            port: self.smp.port().to_string(),
            step: Step::Command("dps keygen"),
            capability: "a CSR apart from key generation (dps keygen answers it)",
        })
    }

    fn endorsement_key(&mut self) -> Result<TpmEk, DeviceError> {
        Err(DeviceError::Unsupported {
            port: self.smp.port().to_string(),
            step: Step::TpmEk,
            capability: "a TPM endorsement key",
        })
    }

    fn store(&mut self, bundle: &Bundle<'_>) -> Result<Stored, DeviceError> {
        if bundle.private_key.is_some() || bundle.symmetric_key.is_some() {
            return Err(DeviceError::Unsupported {
                port: self.smp.port().to_string(),
                step: Step::Command("fs upload"),
                capability: "injected keys (the station sends no secret over SMP)",
            });
        }
        let files = Self::files(bundle);
        if !bundle.overwrite {
            for (name, _, _) in &files {
                if self.file_exists(name)? {
                    return Err(self.occupied(format!("a file {name}")));
                }
            }
        }
        let digests = self.digests_of(bundle)?;
        // Each upload ends with the device confirming the whole length; the read-back that
        // follows compares each file's SHA-256 (group 8 hash) with what was sent.
        for (name, _, text) in &files {
            self.upload(name, text.as_bytes())?;
        }
        let config = bundle.config;
        for (name, value) in SETTINGS.iter().zip([
            &config.registration_id,
            &config.id_scope,
            &config.global_endpoint,
        ]) {
            self.request(
                "settings write",
                OP_WRITE,
                GROUP_SETTINGS,
                0,
                Value::map([
                    ("name", Value::Text((*name).into())),
                    ("val", Value::Bytes(value.as_bytes().to_vec())),
                ]),
            )?;
        }
        self.request(
            "settings save",
            OP_WRITE,
            GROUP_SETTINGS,
            3,
            Value::Map(Vec::new()),
        )?;
        Ok(Stored {
            digests,
            config: Family::ZephyrSmp.capabilities().config,
        })
    }

    fn digests_of(&self, bundle: &Bundle<'_>) -> Result<Digests, DeviceError> {
        let mut digests: Digests = Self::files(bundle)
            .into_iter()
            .map(|(_, held, text)| (held, sha256_hex(text.as_bytes())))
            .collect();
        digests.insert(Held::Config, digest_of_config(bundle.config));
        Ok(digests)
    }

    fn read_back(&mut self) -> Result<Holdings, DeviceError> {
        let mut digests = Digests::new();
        for (name, held) in [(CERT_FILE, Held::Certificate), (CA_FILE, Held::CaChain)] {
            if let Some(sha) = self.file_sha256(name)? {
                digests.insert(held, sha);
            }
        }
        let mut values = Vec::new();
        for name in SETTINGS {
            values.push(self.setting(name)?);
        }
        if let [Some(regid), Some(scope), Some(endpoint)] = values.as_slice() {
            let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
            let config = DeviceConfig {
                registration_id: text(regid),
                id_scope: text(scope),
                global_endpoint: text(endpoint),
                extra: Default::default(),
            };
            digests.insert(Held::Config, digest_of_config(&config));
        }
        Ok(Holdings {
            digests,
            locked: false,
        })
    }

    fn lock(&mut self) -> Result<(), DeviceError> {
        Err(DeviceError::Unsupported {
            port: self.smp.port().to_string(),
            step: Step::Lock,
            capability: "a lock (MCUmgr has none)",
        })
    }

    fn factory_reset(&mut self) -> Result<(), DeviceError> {
        let timeout = self.options.reply;
        let (out, ret) = self.shell(&["dps", "reset"], timeout)?;
        if ret != 0 {
            return Err(self.protocol("dps reset", format!("ret {ret}: {}", out.trim())));
        }
        Ok(())
    }

    fn wait_for_boot(&mut self, wait: Duration) -> Result<bool, DeviceError> {
        self.smp.wait_for_banner(wait)
    }

    fn take_boot_seen(&mut self) -> bool {
        self.smp.take_boot_seen()
    }
}
