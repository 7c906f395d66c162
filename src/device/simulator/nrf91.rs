//! A simulated nRF91 modem on a pseudo-terminal: the AT commands Nordic's host tools and the
//! station's `nrf91` driver send (`AT+CMEE`, `AT+CGSN`, `AT+CGMM`, `AT+CGMR`, `AT+CFUN`,
//! `AT%ATTESTTOKEN`, `AT%KEYGEN`, `AT%CMNG` write/list/delete), with the modem's rules (credential
//! work only offline, reserved sec_tags, the 4 KB AT line, limited storage) and the faults a line
//! sees (a bare `ERROR`, a truncated `%KEYGEN` answer, an attestation naming another CSR, a reboot
//! in the middle of a write, a sec_tag already holding credentials).
//!
//! The modem's answers follow the AT command reference: `%CMNG: <tag>,<type>,"<SHA-256>"` with the
//! digest of the text as stored (uppercase hex), `%KEYGEN: "<base64url CSR>.<base64url COSE>"`.

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use p256::SecretKey;
use p256::ecdsa::{Signature, SigningKey, signature::Signer};
use p256::elliptic_curve::Generate;
use p256::pkcs8::EncodePrivateKey;
use serialport::{SerialPort, TTYPort};
use sha2::{Digest, Sha256};

use super::SimError;
use crate::device::nrf91::at::{MAX_AT_LINE, READY};
use crate::device::nrf91::cose::{COSE_SIGN1_TAG, CSR_MESSAGE_V1, b64url_encode};

/// sec_tags from here up are Nordic's own: writing them answers 514.
const RESERVED_SEC_TAGS: u32 = 2_147_483_648;

/// How many credentials the modem's storage holds before it answers 515.
const MAX_CREDENTIALS: usize = 32;

/// Faults of a simulated modem.
#[derive(Debug, Clone, Default)]
pub struct ModemFaults {
    /// Commands starting with this answer a bare `ERROR` (no `+CME ERROR` code).
    pub error_without_code: Option<String>,
    /// `%KEYGEN` answers the CSR without its attestation (the line cut after the CSR).
    pub truncated_keygen: bool,
    /// `%KEYGEN`'s attestation names the digest of another CSR.
    pub wrong_attestation_digest: bool,
    /// The modem restarts on its Nth `%CMNG` write (1-based) instead of storing it.
    pub reboot_on_write: Option<u64>,
    /// The sec_tag given here already holds a client certificate when the modem starts.
    pub preloaded_sec_tag: Option<u32>,
    /// Emulate a UART at this speed: each byte takes `10 / baud` seconds, both ways.
    pub baud: Option<u32>,
}

/// One stored credential.
#[derive(Debug, Clone)]
struct Stored {
    text: String,
    sha: String,
}

/// The modem's state and its command interpreter.
pub struct Modem {
    imei: String,
    uuid: [u8; 16],
    cfun: u8,
    cmee: bool,
    credentials: BTreeMap<(u32, u8), Stored>,
    identity: SigningKey,
    writes: u64,
    faults: ModemFaults,
}

/// What the modem does after a command.
enum After {
    /// Answer these lines.
    Answer(Vec<String>),
    /// Restart (the answer is the boot banner).
    Reboot,
}

fn sha_upper(text: &str) -> String {
    hex::encode_upper(Sha256::digest(text.as_bytes()))
}

impl Modem {
    /// Modem number `index` (its IMEI and UUID follow from it), factory-fresh but for the
    /// preloaded fault.
    pub fn new(index: usize, faults: ModemFaults) -> Self {
        let mut uuid: [u8; 16] = Sha256::digest(format!("nrf91-sim-{index}").as_bytes())[..16]
            .try_into()
            .unwrap_or_default();
        uuid[6] = (uuid[6] & 0x0f) | 0x40;
        uuid[8] = (uuid[8] & 0x3f) | 0x80;
        let mut modem = Self {
            imei: format!("3520990{:08}", index % 100_000_000),
            uuid,
            cfun: 1,
            cmee: false,
            credentials: BTreeMap::new(),
            identity: SigningKey::from(SecretKey::generate_from_rng(&mut rand::rng())),
            writes: 0,
            faults,
        };
        if let Some(tag) = modem.faults.preloaded_sec_tag {
            let text =
                "-----BEGIN CERTIFICATE-----\nMIIBfactoryleftover\n-----END CERTIFICATE-----";
            modem.credentials.insert(
                (tag, 1),
                Stored {
                    text: text.into(),
                    sha: sha_upper(text),
                },
            );
        }
        modem
    }

    /// The modem's IMEI.
    pub fn imei(&self) -> &str {
        &self.imei
    }

    /// The stored text of credential `kind` in `tag`.
    pub fn credential(&self, tag: u32, kind: u8) -> Option<&str> {
        self.credentials.get(&(tag, kind)).map(|c| c.text.as_str())
    }

    /// The (sec_tag, type) pairs it holds.
    pub fn credential_slots(&self) -> Vec<(u32, u8)> {
        self.credentials.keys().copied().collect()
    }

    fn error(&self, code: u32) -> Vec<String> {
        if self.cmee {
            vec![format!("+CME ERROR: {code}")]
        } else {
            vec!["ERROR".into()]
        }
    }

    fn ok(mut lines: Vec<String>) -> Vec<String> {
        lines.push("OK".into());
        lines
    }

    /// Runs one command line.
    fn handle(&mut self, command: &str) -> After {
        if let Some(prefix) = &self.faults.error_without_code
            && command.starts_with(prefix.as_str())
        {
            return After::Answer(vec!["ERROR".into()]);
        }
        let upper_head: String = command
            .chars()
            .take_while(|c| *c != '=' && *c != '?')
            .collect::<String>()
            .to_ascii_uppercase();
        let args = command
            .find('=')
            .map(|i| &command[i + 1..])
            .unwrap_or_default();
        let answer = match upper_head.as_str() {
            "AT" => Self::ok(vec![]),
            "AT+CMEE" => match args {
                "0" | "1" => {
                    self.cmee = args == "1";
                    Self::ok(vec![])
                }
                _ => vec!["ERROR".into()],
            },
            "AT+CGSN" => Self::ok(vec![if args == "1" {
                format!("+CGSN: \"{}\"", self.imei)
            } else {
                self.imei.clone()
            }]),
            "AT+CGMM" => Self::ok(vec!["nRF9160-SICA".into()]),
            "AT+CGMR" => Self::ok(vec!["mfw_nrf9160_1.3.6".into()]),
            "AT+CFUN" if command.ends_with('?') => Self::ok(vec![format!("+CFUN: {}", self.cfun)]),
            "AT+CFUN" => match args.parse::<u8>() {
                Ok(mode @ (0 | 1 | 4 | 20 | 21 | 30 | 31 | 40 | 41 | 44)) => {
                    self.cfun = mode;
                    Self::ok(vec![])
                }
                _ => self.error(518),
            },
            "AT%ATTESTTOKEN" => self.attest_token(),
            "AT%KEYGEN" => self.keygen(args),
            "AT%CMNG" => return self.cmng(args),
            _ => vec!["ERROR".into()],
        };
        After::Answer(answer)
    }

    fn offline(&self) -> bool {
        matches!(self.cfun, 0 | 4)
    }

    fn sign1(&self, payload: &[u8]) -> Vec<u8> {
        let mut protected = Vec::new();
        // {1: -7}: ES256.
        let _ = minicbor::Encoder::new(&mut protected)
            .map(1)
            .and_then(|e| e.u8(1)?.i8(-7));
        let mut to_sign = Vec::new();
        let _ = minicbor::Encoder::new(&mut to_sign).array(4).and_then(|e| {
            e.str("Signature1")?
                .bytes(&protected)?
                .bytes(&[])?
                .bytes(payload)
        });
        let signature: Signature = self.identity.sign(&to_sign);
        let mut out = Vec::new();
        let _ = minicbor::Encoder::new(&mut out)
            .tag(minicbor::data::Tag::new(COSE_SIGN1_TAG))
            .and_then(|e| {
                e.array(4)?
                    .bytes(&protected)?
                    .map(0)?
                    .bytes(payload)?
                    .bytes(&signature.to_bytes())
            });
        out
    }

    fn attest_token(&self) -> Vec<String> {
        let mut body = Vec::new();
        let fw_uuid: [u8; 16] = [0x5a; 16];
        let _ = minicbor::Encoder::new(&mut body)
            .array(4)
            .and_then(|e| e.u8(1)?.bytes(&self.uuid)?.u8(3)?.bytes(&fw_uuid));
        let cose = self.sign1(&[]);
        Self::ok(vec![format!(
            "%ATTESTTOKEN: \"{}.{}\"",
            b64url_encode(&body),
            b64url_encode(&cose)
        )])
    }

    fn keygen(&mut self, args: &str) -> Vec<String> {
        let mut parts = args.splitn(4, ',');
        let (Some(tag), Some(kind)) = (parts.next(), parts.next()) else {
            return vec!["ERROR".into()];
        };
        let (Ok(tag), Ok(2)) = (tag.trim().parse::<u32>(), kind.trim().parse::<u8>()) else {
            return vec!["ERROR".into()];
        };
        let _format = parts.next();
        let attributes = parts.next().unwrap_or("").trim().trim_matches('"');
        if tag >= RESERVED_SEC_TAGS {
            return self.error(514);
        }
        if !self.offline() {
            return self.error(518);
        }
        let cn = attributes
            .split(',')
            .find_map(|a| a.trim().strip_prefix("CN="))
            .unwrap_or(&self.imei)
            .to_string();
        let key = SecretKey::generate_from_rng(&mut rand::rng());
        let Some(csr) = csr_der(&key, &cn) else {
            return self.error(523);
        };
        let mut digest: [u8; 32] = Sha256::digest(&csr).into();
        if self.faults.wrong_attestation_digest {
            digest[0] ^= 0xff;
        }
        let mut tag_cbor = Vec::new();
        let _ = minicbor::Encoder::new(&mut tag_cbor).u32(tag);
        let mut payload = Vec::new();
        let _ = minicbor::Encoder::new(&mut payload).array(5).and_then(|e| {
            e.u32(CSR_MESSAGE_V1)?
                .bytes(&self.uuid)?
                .bytes(&tag_cbor)?
                .bytes(&digest)?
                .bytes(&rand::random::<[u8; 16]>())
        });
        let cose = self.sign1(&payload);
        // The modem keeps the key in the sec_tag (listed with the digest of its public key).
        let point = crate::device::session::point(&key.public_key());
        let stored = key
            .to_pkcs8_pem(p256::pkcs8::LineEnding::LF)
            .map(|pem| pem.to_string())
            .unwrap_or_default();
        self.credentials.insert(
            (tag, 2),
            Stored {
                text: stored,
                sha: hex::encode_upper(Sha256::digest(point)),
            },
        );
        let answer = if self.faults.truncated_keygen {
            format!("%KEYGEN: \"{}", b64url_encode(&csr))
        } else {
            format!(
                "%KEYGEN: \"{}.{}\"",
                b64url_encode(&csr),
                b64url_encode(&cose)
            )
        };
        Self::ok(vec![answer])
    }

    fn cmng(&mut self, args: &str) -> After {
        let mut parts = args.splitn(4, ',');
        let op = parts.next().unwrap_or("").trim();
        let tag = parts.next().map(|t| t.trim().parse::<u32>());
        let kind = parts.next().map(|k| k.trim().parse::<u8>());
        let answer = match (op, tag, kind) {
            ("1", None, None) => self.list(None, None),
            ("1", Some(Ok(tag)), None) => self.list(Some(tag), None),
            ("1", Some(Ok(tag)), Some(Ok(kind))) => self.list(Some(tag), Some(kind)),
            ("0", Some(Ok(tag)), Some(Ok(kind))) => {
                self.writes += 1;
                if self.faults.reboot_on_write == Some(self.writes) {
                    return After::Reboot;
                }
                let content = parts.next().unwrap_or("").trim();
                // The content's own quotes; a passphrase after them is not supported here.
                let Some(text) = content
                    .strip_prefix('"')
                    .and_then(|c| c.strip_suffix('"'))
                    .filter(|t| !t.contains('"'))
                else {
                    return After::Answer(self.error(527));
                };
                self.write(tag, kind, text)
            }
            ("3", Some(Ok(tag)), Some(Ok(kind))) => {
                if tag >= RESERVED_SEC_TAGS {
                    self.error(514)
                } else if !self.offline() {
                    self.error(518)
                } else if self.credentials.remove(&(tag, kind)).is_some() {
                    Self::ok(vec![])
                } else {
                    self.error(513)
                }
            }
            _ => vec!["ERROR".into()],
        };
        After::Answer(answer)
    }

    fn list(&self, tag: Option<u32>, kind: Option<u8>) -> Vec<String> {
        let lines = self
            .credentials
            .iter()
            .filter(|((t, k), _)| tag.is_none_or(|x| x == *t) && kind.is_none_or(|x| x == *k))
            .map(|((t, k), c)| format!("%CMNG: {t},{k},\"{}\"", c.sha))
            .collect();
        Self::ok(lines)
    }

    fn write(&mut self, tag: u32, kind: u8, text: &str) -> Vec<String> {
        if tag >= RESERVED_SEC_TAGS {
            return self.error(514);
        }
        if !self.offline() {
            return self.error(518);
        }
        if kind > 4 || text.is_empty() {
            return self.error(527);
        }
        let pem_ok = match kind {
            0 | 1 => text.starts_with("-----BEGIN CERTIFICATE-----"),
            2 => text.starts_with("-----BEGIN"),
            3 => text.bytes().all(|b| b.is_ascii_hexdigit()),
            _ => true,
        };
        if !pem_ok {
            return self.error(527);
        }
        if !self.credentials.contains_key(&(tag, kind)) && self.credentials.len() >= MAX_CREDENTIALS
        {
            return self.error(515);
        }
        self.credentials.insert(
            (tag, kind),
            Stored {
                text: text.to_string(),
                sha: sha_upper(text),
            },
        );
        Self::ok(vec![])
    }
}

/// A PKCS#10 request for `key` with subject CN `cn`, DER, as the modem makes it.
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

/// Splits the modem's input into command lines: a line ends at CR or LF outside quotes (a quoted
/// PEM spans lines), empty lines are skipped, and a line over the AT buffer is dropped whole.
#[derive(Default)]
struct CommandAssembler {
    line: Vec<u8>,
    quoted: bool,
    overflow: bool,
}

enum Assembled {
    Command(String),
    TooLong,
}

impl CommandAssembler {
    fn push(&mut self, byte: u8) -> Option<Assembled> {
        if byte == b'"' {
            self.quoted = !self.quoted;
        }
        if !self.quoted && (byte == b'\r' || byte == b'\n') {
            let line = std::mem::take(&mut self.line);
            if std::mem::take(&mut self.overflow) {
                return Some(Assembled::TooLong);
            }
            let text = String::from_utf8_lossy(&line).trim().to_string();
            return (!text.is_empty()).then_some(Assembled::Command(text));
        }
        if self.line.len() >= MAX_AT_LINE {
            self.overflow = true;
        } else {
            self.line.push(byte);
        }
        None
    }
}

/// A simulated modem running on its own pseudo-terminal.
pub struct Nrf91Sim {
    path: String,
    modem: Arc<Mutex<Modem>>,
    bytes: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Nrf91Sim {
    /// Starts modem `index` on a new pseudo-terminal; it prints `Ready` as it boots.
    pub fn on_pty(index: usize, faults: ModemFaults) -> Result<Self, SimError> {
        let pty = |source| SimError::Pty { index, source };
        let (mut master, slave) = TTYPort::pair().map_err(pty)?;
        let path = slave.name().unwrap_or_default();
        drop(slave);
        master.set_timeout(Duration::from_millis(20)).map_err(pty)?;
        let baud = faults.baud;
        let modem = Arc::new(Mutex::new(Modem::new(index, faults)));
        let stop = Arc::new(AtomicBool::new(false));
        let bytes = Arc::new(AtomicU64::new(0));
        let thread = {
            let (modem, stop, bytes) = (modem.clone(), stop.clone(), bytes.clone());
            std::thread::Builder::new()
                .name(format!("sim-nrf91-{index}"))
                .spawn(move || run(&mut master, &modem, &stop, &bytes, baud))
                .map_err(|e| pty(e.into()))?
        };
        Ok(Self {
            path,
            modem,
            bytes,
            stop,
            thread: Some(thread),
        })
    }

    /// The port the station (or a host tool) opens.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Runs `f` on the modem's state as it is now.
    pub fn with_modem<T>(&self, f: impl FnOnce(&Modem) -> T) -> T {
        f(&self.modem.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Bytes on the wire so far, both ways.
    pub fn wire_bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
}

impl Drop for Nrf91Sim {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn wire_time(bytes: usize, baud: Option<u32>) -> Option<Duration> {
    baud.map(|b| Duration::from_secs_f64(bytes as f64 * 10.0 / f64::from(b.max(1))))
}

fn send(port: &mut TTYPort, lines: &[String], bytes: &AtomicU64, baud: Option<u32>) -> bool {
    let mut out = String::new();
    for line in lines {
        out.push_str(line);
        out.push_str("\r\n");
    }
    if let Some(t) = wire_time(out.len(), baud) {
        std::thread::sleep(t);
    }
    bytes.fetch_add(out.len() as u64, Ordering::Relaxed);
    // Written is sent: a flush (tcdrain) can fail on a pty whose other end is not open yet while
    // the bytes are already queued for it, and sending the boot banner again on that account
    // made the station see a second banner, a restart, mid-identify.
    let written = port.write_all(out.as_bytes()).is_ok();
    let _ = port.flush();
    written
}

fn run(
    port: &mut TTYPort,
    modem: &Mutex<Modem>,
    stop: &AtomicBool,
    bytes: &AtomicU64,
    baud: Option<u32>,
) {
    let mut assembler = CommandAssembler::default();
    // The banner goes out when the station's end is opened: a pty drops what is written before.
    let mut booted = false;
    let mut buf = [0u8; 1024];
    while !stop.load(Ordering::Relaxed) {
        if !booted {
            booted = send(port, &[READY.to_string()], bytes, baud);
        }
        let n = match port.read(&mut buf) {
            Ok(0) => continue,
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock) => continue,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            // The station's end is closed (EIO on a pty): wait for it to open again.
            Err(_) => {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
        };
        bytes.fetch_add(n as u64, Ordering::Relaxed);
        if let Some(t) = wire_time(n, baud) {
            std::thread::sleep(t);
        }
        for &b in &buf[..n] {
            let answer = match assembler.push(b) {
                None => continue,
                Some(Assembled::TooLong) => vec!["ERROR".to_string()],
                Some(Assembled::Command(command)) => {
                    let mut m = modem.lock().unwrap_or_else(|p| p.into_inner());
                    match m.handle(&command) {
                        After::Answer(lines) => lines,
                        After::Reboot => {
                            m.cfun = 1;
                            m.cmee = false;
                            assembler = CommandAssembler::default();
                            vec![READY.to_string()]
                        }
                    }
                }
            };
            send(port, &answer, bytes, baud);
        }
    }
}
