//! A simulated Zephyr application with MCUmgr's SMP server on its UART console (a pseudo-terminal):
//! OS group 0 (echo, reset, MCUmgr parameters, OS info), settings group 3 (read, write, delete,
//! commit, load/save), file-system group 8 (upload, download, status, SHA-256/CRC32 hash, supported
//! hash types), shell group 9 (`hwinfo devid`, and the application's `dps` commands: `dps keygen
//! [--force] <CN>` answers a PKCS#10 CSR in base64 for a P-256 key the application keeps, `dps
//! reset` erases what the station wrote). Requests in SMP v1 get v1 errors (`rc`), v2 requests v2
//! errors (`err {group, rc}`), as Zephyr answers. Faults: a reply with a bad CRC, a reboot in the
//! middle of an upload, a certificate already on the file system.

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use base64::Engine;
use p256::SecretKey;
use p256::elliptic_curve::Generate;
use p256::pkcs8::EncodePrivateKey;
use serialport::{SerialPort, TTYPort};
use sha2::{Digest, Sha256};

use super::SimError;
use crate::device::smp::cbor::Value;
use crate::device::smp::frame::{self, LINE_LENGTH, Reassembler};
use crate::device::smp::header::{self, Header};

/// The SMP buffer the simulated server reports (`CONFIG_MCUMGR_TRANSPORT_NETBUF_SIZE`).
pub const BUF_SIZE: usize = 2048;
/// How much file data one download reply carries.
const DOWNLOAD_CHUNK: usize = 512;
/// Where the application keeps what the station writes.
pub const CERT_DIR: &str = "/lfs/dps";

/// MCUmgr return codes (`MGMT_ERR_*`, v1) used here.
mod rc {
    pub const ENOENT: i64 = 5;
    pub const EINVAL: i64 = 3;
    pub const ENOTSUP: i64 = 8;
}

/// Faults of a simulated SMP device.
#[derive(Debug, Clone, Default)]
pub struct SmpFaults {
    /// Corrupt the CRC of the Nth reply (1-based).
    pub bad_crc_reply: Option<u64>,
    /// Restart (print the boot banner, lose the upload in progress) on the Nth upload chunk.
    pub reboot_on_upload: Option<u64>,
    /// Start with a device certificate already on the file system.
    pub preloaded_certificate: bool,
    /// Emulate a UART at this speed both ways.
    pub baud: Option<u32>,
}

/// The simulated application's state.
pub struct SmpDevice {
    devid: [u8; 8],
    files: BTreeMap<String, Vec<u8>>,
    settings: BTreeMap<String, Vec<u8>>,
    saved: BTreeMap<String, Vec<u8>>,
    key: Option<SecretKey>,
    replies: u64,
    uploads: u64,
    reboot_pending: bool,
    faults: SmpFaults,
}

/// What the server does after a request.
enum After {
    Reply(Vec<u8>),
    Reboot,
}

impl SmpDevice {
    /// Device `index`, factory-fresh but for the preloaded fault.
    pub fn new(index: usize, faults: SmpFaults) -> Self {
        let digest = Sha256::digest(format!("zephyr-sim-{index}").as_bytes());
        let mut devid = [0u8; 8];
        devid.copy_from_slice(&digest[..8]);
        let mut files = BTreeMap::new();
        if faults.preloaded_certificate {
            files.insert(
                format!("{CERT_DIR}/device.crt"),
                b"-----BEGIN CERTIFICATE-----\nleftover\n-----END CERTIFICATE-----\n".to_vec(),
            );
        }
        Self {
            devid,
            files,
            settings: BTreeMap::new(),
            saved: BTreeMap::new(),
            key: None,
            replies: 0,
            uploads: 0,
            reboot_pending: false,
            faults,
        }
    }

    /// The device id `hwinfo devid` reports (hex), the station's serial.
    pub fn devid(&self) -> String {
        hex::encode(self.devid)
    }

    /// A file's content.
    pub fn file(&self, name: &str) -> Option<&[u8]> {
        self.files.get(name).map(Vec::as_slice)
    }

    /// A setting's saved value (what survives a reboot).
    pub fn saved_setting(&self, name: &str) -> Option<&[u8]> {
        self.saved.get(name).map(Vec::as_slice)
    }

    /// The application's key as PKCS#8 PEM (what the simulated product would use for TLS).
    pub fn key_pem(&self) -> Option<String> {
        self.key
            .as_ref()
            .and_then(|k| k.to_pkcs8_pem(p256::pkcs8::LineEnding::LF).ok())
            .map(|p| p.to_string())
    }

    fn handle(&mut self, packet: &[u8]) -> After {
        let Some(h) = Header::parse(packet) else {
            return After::Reply(Vec::new());
        };
        let body = &packet[header::SIZE..];
        let request = if usize::from(h.length) != body.len() {
            Err(rc::EINVAL)
        } else if body.is_empty() {
            Ok(Value::Map(Vec::new()))
        } else {
            Value::decode(body).map_err(|_| rc::EINVAL)
        };
        let answer = match request {
            Err(code) => Err(code),
            Ok(req) => match (h.group, h.id, h.op) {
                (header::GROUP_OS, 0, header::OP_WRITE) => Ok(Value::map([(
                    "r",
                    Value::Text(req.text("d").unwrap_or_default().to_string()),
                )])),
                // Zephyr answers the reset, then restarts.
                (header::GROUP_OS, 5, header::OP_WRITE) => {
                    self.reboot_pending = true;
                    Ok(Value::Map(Vec::new()))
                }
                (header::GROUP_OS, 6, header::OP_READ) => Ok(Value::map([
                    ("buf_size", Value::Int(BUF_SIZE as i64)),
                    ("buf_count", Value::Int(4)),
                ])),
                (header::GROUP_OS, 7, header::OP_READ) => Ok(self.os_info(&req)),
                (header::GROUP_SETTINGS, id, op) => self.settings(id, op, &req),
                (header::GROUP_FS, id, op) => match self.fs(id, op, &req) {
                    Ok(Some(v)) => Ok(v),
                    Ok(None) => return After::Reboot,
                    Err(e) => Err(e),
                },
                (header::GROUP_SHELL, 0, header::OP_WRITE) => Ok(self.shell(&req)),
                _ => Err(rc::ENOTSUP),
            },
        };
        let body = match answer {
            Ok(v) => v,
            Err(code) if h.version >= header::VERSION_2 => Value::map([(
                "err",
                Value::map([
                    ("group", Value::Int(i64::from(h.group))),
                    ("rc", Value::Int(code)),
                ]),
            )]),
            Err(code) => Value::map([("rc", Value::Int(code))]),
        }
        .encode();
        let reply = Header {
            op: h.op + 1,
            version: h.version,
            flags: 0,
            length: body.len() as u16,
            group: h.group,
            sequence: h.sequence,
            id: h.id,
        };
        let mut out = reply.to_bytes().to_vec();
        out.extend_from_slice(&body);
        After::Reply(out)
    }

    fn os_info(&self, req: &Value) -> Value {
        let format = req.text("format").unwrap_or("s");
        let parts: Vec<&str> = format
            .chars()
            .filter_map(|c| match c {
                's' => Some("Zephyr"),
                'n' => Some("dps-sensor"),
                'r' => Some("1.4.2"),
                'v' => Some("v4.1.0"),
                'm' => Some("arm"),
                'i' => Some("nrf52840dk"),
                'o' => Some("Zephyr"),
                _ => None,
            })
            .collect();
        Value::map([("output", Value::Text(parts.join(" ")))])
    }

    fn settings(&mut self, id: u8, op: u8, req: &Value) -> Result<Value, i64> {
        match (id, op) {
            (0, header::OP_READ) => {
                let name = req.text("name").ok_or(rc::EINVAL)?;
                let val = self.settings.get(name).ok_or(rc::ENOENT)?;
                Ok(Value::map([("val", Value::Bytes(val.clone()))]))
            }
            (0, header::OP_WRITE) => {
                let name = req.text("name").ok_or(rc::EINVAL)?;
                let val = req.bytes("val").ok_or(rc::EINVAL)?;
                self.settings.insert(name.to_string(), val.to_vec());
                Ok(Value::Map(Vec::new()))
            }
            (1, header::OP_WRITE) => {
                let name = req.text("name").ok_or(rc::EINVAL)?;
                self.settings.remove(name).ok_or(rc::ENOENT)?;
                Ok(Value::Map(Vec::new()))
            }
            (2, header::OP_WRITE) => Ok(Value::Map(Vec::new())),
            // Load (read): back to what was saved; save (write): keep what is set.
            (3, header::OP_READ) => {
                self.settings = self.saved.clone();
                Ok(Value::Map(Vec::new()))
            }
            (3, header::OP_WRITE) => {
                self.saved = self.settings.clone();
                Ok(Value::Map(Vec::new()))
            }
            _ => Err(rc::ENOTSUP),
        }
    }

    /// `Ok(None)`: the device restarts (the reboot fault).
    fn fs(&mut self, id: u8, op: u8, req: &Value) -> Result<Option<Value>, i64> {
        let name = req.text("name").unwrap_or_default().to_string();
        match (id, op) {
            (0, header::OP_WRITE) => {
                self.uploads += 1;
                if self.faults.reboot_on_upload == Some(self.uploads) {
                    return Ok(None);
                }
                let off =
                    usize::try_from(req.int("off").ok_or(rc::EINVAL)?).map_err(|_| rc::EINVAL)?;
                let data = req.bytes("data").ok_or(rc::EINVAL)?;
                if name.is_empty() {
                    return Err(rc::EINVAL);
                }
                let file = if off == 0 {
                    // The first chunk (re)creates the file.
                    self.files.insert(name.clone(), Vec::new());
                    self.files.get_mut(&name)
                } else {
                    self.files.get_mut(&name)
                }
                .ok_or(rc::ENOENT)?;
                if off != file.len() {
                    return Err(rc::EINVAL);
                }
                file.extend_from_slice(data);
                Ok(Some(Value::map([("off", Value::Int(file.len() as i64))])))
            }
            (0, header::OP_READ) => {
                let off =
                    usize::try_from(req.int("off").ok_or(rc::EINVAL)?).map_err(|_| rc::EINVAL)?;
                let file = self.files.get(&name).ok_or(rc::ENOENT)?;
                if off > file.len() {
                    return Err(rc::EINVAL);
                }
                let end = (off + DOWNLOAD_CHUNK).min(file.len());
                let mut pairs = vec![
                    ("off".to_string(), Value::Int(off as i64)),
                    ("data".to_string(), Value::Bytes(file[off..end].to_vec())),
                ];
                if off == 0 {
                    pairs.push(("len".to_string(), Value::Int(file.len() as i64)));
                }
                Ok(Some(Value::Map(pairs)))
            }
            (1, header::OP_READ) => {
                let file = self.files.get(&name).ok_or(rc::ENOENT)?;
                Ok(Some(Value::map([("len", Value::Int(file.len() as i64))])))
            }
            (2, header::OP_READ) => {
                let file = self.files.get(&name).ok_or(rc::ENOENT)?;
                let kind = req.text("type").unwrap_or("crc32");
                let output = match kind {
                    "sha256" => Value::Bytes(Sha256::digest(file).to_vec()),
                    "crc32" => Value::Int(i64::from(crc32(file))),
                    _ => return Err(rc::ENOTSUP),
                };
                Ok(Some(Value::map([
                    ("type", Value::Text(kind.to_string())),
                    ("off", Value::Int(0)),
                    ("len", Value::Int(file.len() as i64)),
                    ("output", output),
                ])))
            }
            (3, header::OP_READ) => Ok(Some(Value::map([(
                "types",
                Value::map([
                    (
                        "crc32",
                        Value::map([("format", Value::Int(0)), ("size", Value::Int(4))]),
                    ),
                    (
                        "sha256",
                        Value::map([("format", Value::Int(1)), ("size", Value::Int(32))]),
                    ),
                ]),
            )]))),
            (4, header::OP_WRITE) => Ok(Some(Value::Map(Vec::new()))),
            _ => Err(rc::ENOTSUP),
        }
    }

    fn shell(&mut self, req: &Value) -> Value {
        let argv: Vec<String> = match req.get("argv") {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(|v| match v {
                    Value::Text(t) => Some(t.clone()),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        let args: Vec<&str> = argv.iter().map(String::as_str).collect();
        let (output, ret) = match args.as_slice() {
            ["hwinfo", "devid"] => (format!("Length: 8\nID: 0x{}\n", self.devid()), 0),
            ["dps", "keygen", rest @ ..] => {
                let (force, cn) = match rest {
                    ["--force", cn] => (true, *cn),
                    [cn] => (false, *cn),
                    _ => return shell_reply("usage: dps keygen [--force] <CN>\n", 22),
                };
                if self.key.is_some() && !force {
                    return shell_reply(
                        "dps: a device key exists; use --force to replace it\n",
                        17,
                    );
                }
                let key = SecretKey::generate();
                match csr_der(&key, cn) {
                    Some(der) => {
                        self.key = Some(key);
                        (
                            format!(
                                "{}\n",
                                base64::engine::general_purpose::STANDARD.encode(der)
                            ),
                            0,
                        )
                    }
                    None => ("dps: key generation failed\n".into(), 5),
                }
            }
            ["dps", "reset"] => {
                self.key = None;
                self.files.retain(|k, _| !k.starts_with(CERT_DIR));
                self.settings.retain(|k, _| !k.starts_with("dps/"));
                self.saved.retain(|k, _| !k.starts_with("dps/"));
                ("dps: erased\n".into(), 0)
            }
            [cmd, ..] => (format!("{cmd}: command not found\n"), -8),
            [] => (String::new(), 0),
        };
        shell_reply(&output, ret)
    }
}

fn shell_reply(output: &str, ret: i64) -> Value {
    Value::map([
        ("o", Value::Text(output.to_string())),
        ("ret", Value::Int(ret)),
    ])
}

/// CRC-32 (IEEE), as Zephyr's `crc32_ieee`.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn csr_der(key: &SecretKey, cn: &str) -> Option<Vec<u8>> {
    let der = key.to_pkcs8_der().ok()?;
    let pair = rcgen::KeyPair::try_from(der.as_bytes()).ok()?;
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    params
        .serialize_request(&pair)
        .ok()
        .map(|c| c.der().to_vec())
}

/// The boot banner Zephyr prints on the console.
pub const BANNER: &str = "*** Booting Zephyr OS build v4.1.0 ***";

/// A simulated SMP device on its own pseudo-terminal.
pub struct SmpSim {
    path: String,
    device: Arc<Mutex<SmpDevice>>,
    bytes: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl SmpSim {
    /// Starts device `index` on a new pseudo-terminal.
    pub fn on_pty(index: usize, faults: SmpFaults) -> Result<Self, SimError> {
        let pty = |source| SimError::Pty { index, source };
        let (mut master, slave) = TTYPort::pair().map_err(pty)?;
        let path = slave.name().unwrap_or_default();
        drop(slave);
        master.set_timeout(Duration::from_millis(20)).map_err(pty)?;
        let baud = faults.baud;
        let device = Arc::new(Mutex::new(SmpDevice::new(index, faults)));
        let stop = Arc::new(AtomicBool::new(false));
        let bytes = Arc::new(AtomicU64::new(0));
        let thread = {
            let (device, stop, bytes) = (device.clone(), stop.clone(), bytes.clone());
            std::thread::Builder::new()
                .name(format!("sim-smp-{index}"))
                .spawn(move || run(&mut master, &device, &stop, &bytes, baud))
                .map_err(|e| pty(e.into()))?
        };
        Ok(Self {
            path,
            device,
            bytes,
            stop,
            thread: Some(thread),
        })
    }

    /// The port to open.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Runs `f` on the device's state as it is now.
    pub fn with_device<T>(&self, f: impl FnOnce(&SmpDevice) -> T) -> T {
        f(&self.device.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Bytes on the wire so far, both ways.
    pub fn wire_bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
}

impl Drop for SmpSim {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn pace(bytes: usize, baud: Option<u32>) {
    if let Some(b) = baud {
        std::thread::sleep(Duration::from_secs_f64(
            bytes as f64 * 10.0 / f64::from(b.max(1)),
        ));
    }
}

fn send(port: &mut TTYPort, out: &[u8], bytes: &AtomicU64, baud: Option<u32>) {
    pace(out.len(), baud);
    bytes.fetch_add(out.len() as u64, Ordering::Relaxed);
    let _ = port.write_all(out).and_then(|()| port.flush());
}

fn run(
    port: &mut TTYPort,
    device: &Mutex<SmpDevice>,
    stop: &AtomicBool,
    bytes: &AtomicU64,
    baud: Option<u32>,
) {
    let mut reassembler = Reassembler::default();
    let mut line = Vec::new();
    let mut buf = [0u8; 1024];
    // The device boots when the station's end is opened (a pty reads EIO while it is closed, and
    // opening a port flushes what was written before): then it prints its banner.
    let mut open = false;
    while !stop.load(Ordering::Relaxed) {
        let read = port.read(&mut buf);
        if !matches!(&read, Err(e) if !matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock | ErrorKind::Interrupted))
            && !open
        {
            open = true;
            send(port, format!("{BANNER}\r\n").as_bytes(), bytes, baud);
        }
        let n = match read {
            Ok(0) => continue,
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock) => continue,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => {
                open = false;
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
        };
        bytes.fetch_add(n as u64, Ordering::Relaxed);
        pace(n, baud);
        for &b in &buf[..n] {
            if b != b'\n' {
                if line.len() < 4096 {
                    line.push(b);
                }
                continue;
            }
            let packet = reassembler.line(&line);
            line.clear();
            // A frame with a bad CRC or length is dropped, as Zephyr's SMP transport drops it.
            let Some(Ok(packet)) = packet else { continue };
            let mut d = device.lock().unwrap_or_else(|p| p.into_inner());
            match d.handle(&packet) {
                After::Reply(reply) if reply.is_empty() => {}
                After::Reply(reply) => {
                    d.replies += 1;
                    let mut crc = frame::crc16_xmodem(&reply);
                    if d.faults.bad_crc_reply == Some(d.replies) {
                        crc ^= 0x0101;
                    }
                    let lines = frame::encode_with_crc(&reply, crc, LINE_LENGTH);
                    let reboot = std::mem::take(&mut d.reboot_pending);
                    if reboot {
                        d.settings = d.saved.clone();
                    }
                    drop(d);
                    send(port, &lines, bytes, baud);
                    if reboot {
                        reassembler = Reassembler::default();
                        send(port, format!("{BANNER}\r\n").as_bytes(), bytes, baud);
                    }
                }
                After::Reboot => {
                    d.settings = d.saved.clone();
                    drop(d);
                    reassembler = Reassembler::default();
                    send(port, format!("{BANNER}\r\n").as_bytes(), bytes, baud);
                }
            }
        }
    }
}
