//! [`LineClient`]: the station side of the line protocol, one blocking client per port.
//!
//! One request is outstanding at a time. Each has a timeout (plus the wire time of the request and
//! of the largest reply at the configured speed) and is retried a bounded number of times under the
//! same request id, which the device answers from its reply cache instead of executing twice.

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::time::{Duration, Instant};

use p256::SecretKey;
use tracing::{debug, trace};

use crate::secret::SecretBytes;

use super::driver::{DeviceConfig, TpmEk};
use super::error::{DeviceError, Step};
use super::frame::{Frame, FrameError, Line, LineAssembler, MAX_FRAME, UNSOLICITED_ID};
use super::protocol::{
    self, ErrorCode, Item, MAX_CHUNK, MAX_ITEM, b64_decode, b64_encode, caps, sha256_hex,
};
use super::replies::{Hello, Readback, StoredItem};
use super::session::{SessionKey, StationHandshake};

/// How long to wait for each kind of reply, on top of the wire time.
#[derive(Debug, Clone)]
pub struct Timeouts {
    /// Commands that only read or write a little flash (HELLO, PING, PUT, CONFIG, READBACK, LOCK).
    pub reply: Duration,
    /// KEYGEN and CSR, between two `BUSY` keep-alives.
    pub busy_idle: Duration,
    /// KEYGEN and CSR in all, however many `BUSY` frames arrive.
    pub busy_total: Duration,
    /// SESSION (one ECDH on the device).
    pub session: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            reply: Duration::from_millis(1000),
            busy_idle: Duration::from_millis(3000),
            busy_total: Duration::from_secs(60),
            session: Duration::from_millis(5000),
        }
    }
}

/// Settings of one client.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// The line speed, used to add the wire time to each timeout.
    pub baud: u32,
    /// Per-command timeouts.
    pub timeouts: Timeouts,
    /// How many times a request is sent before giving up (at least 1).
    pub attempts: u32,
    /// The `esp32` family's batch options (partition, flash speed, eFuse policy); its `baud` is
    /// ignored for `baud` above.
    pub esp32: crate::device::esp32::driver::Esp32Options,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            baud: 115_200,
            timeouts: Timeouts::default(),
            attempts: 3,
            esp32: Default::default(),
        }
    }
}

/// A frame crossing the wire, for `device console` and for tests that record the wire.
#[derive(Debug, Clone, Copy)]
pub enum WireEvent<'a> {
    /// Bytes the station wrote.
    Sent(&'a [u8]),
    /// A line the station read (without its `\n`).
    Received(&'a [u8]),
}

type Observer = Box<dyn FnMut(WireEvent<'_>) + Send>;

/// The station side of the line protocol on one port.
///
/// `W` is the port: anything that reads with a short timeout (returning `TimedOut`/`WouldBlock`
/// when nothing arrived) and writes. [`LineClient::open`] gives one over a real serial port.
pub struct LineClient<W> {
    port: String,
    wire: W,
    options: ClientOptions,
    next_id: u32,
    lines: LineAssembler,
    pending: VecDeque<Line>,
    session: Option<SessionKey>,
    info: Option<Hello>,
    /// A `BOOT` went by since [`LineClient::take_boot_seen`] was last asked.
    boot_seen: bool,
    observer: Option<Observer>,
    bytes_sent: u64,
    bytes_received: u64,
}

impl LineClient<Box<dyn serialport::SerialPort>> {
    /// Opens `port` at `options.baud`.
    pub fn open(port: &str, options: ClientOptions) -> Result<Self, DeviceError> {
        let wire = super::transport::open(port, options.baud)?;
        Ok(Self::new(port, wire, options))
    }
}

impl<W: Read + Write + Send> LineClient<W> {
    /// A client over an already open port; `port` names it in messages.
    pub fn new(port: &str, wire: W, options: ClientOptions) -> Self {
        // Start ids away from 1, so a device that still caches the reply of an earlier station run
        // is unlikely to see the same id again (it also compares the whole request before replaying).
        let next_id = (rand::random::<u32>() % 1_000_000_000).max(1);
        Self {
            port: port.to_string(),
            wire,
            options,
            next_id,
            lines: LineAssembler::new(),
            pending: VecDeque::new(),
            session: None,
            info: None,
            boot_seen: false,
            observer: None,
            bytes_sent: 0,
            bytes_received: 0,
        }
    }

    /// Calls `observer` for every frame sent and every line received.
    pub fn set_observer(&mut self, observer: impl FnMut(WireEvent<'_>) + Send + 'static) {
        self.observer = Some(Box::new(observer));
    }

    /// Bytes written and read so far (for the wire-time lower bound of `bench serial`).
    pub fn byte_counts(&self) -> (u64, u64) {
        (self.bytes_sent, self.bytes_received)
    }

    /// What the last `HELLO` said.
    pub fn info(&self) -> Option<&Hello> {
        self.info.as_ref()
    }

    /// Gives the port back (to reopen it elsewhere or to inspect a recording wrapper).
    pub fn into_inner(self) -> W {
        self.wire
    }

    fn allocate_id(&mut self) -> u32 {
        let id = self.next_id;
        self.next_id = self
            .next_id
            .checked_add(1)
            .filter(|&n| n != UNSOLICITED_ID)
            .unwrap_or(1);
        id
    }

    fn wire_time(&self, bytes: usize) -> Duration {
        let baud = u64::from(self.options.baud.max(1));
        Duration::from_micros(bytes as u64 * 10 * 1_000_000 / baud)
    }

    fn send(&mut self, step: Step, bytes: &[u8]) -> Result<(), DeviceError> {
        if let Some(observer) = self.observer.as_mut() {
            observer(WireEvent::Sent(bytes));
        }
        self.bytes_sent += bytes.len() as u64;
        self.wire
            .write_all(bytes)
            .and_then(|()| self.wire.flush())
            .map_err(|source| DeviceError::Vanished {
                port: self.port.clone(),
                step,
                source,
            })
    }

    /// Reads whatever arrives before `deadline` and returns complete lines (empty on timeout).
    /// The next complete line, from lines already read or from the port; `None` at the deadline.
    /// Lines that arrived with a reply are kept for the next request (a `BOOT` right after a
    /// reply must not be lost).
    fn next_line(&mut self, step: Step, deadline: Instant) -> Result<Option<Line>, DeviceError> {
        if self.pending.is_empty() {
            let lines = self.read_lines(step, deadline)?;
            self.pending.extend(lines);
        }
        Ok(self.pending.pop_front())
    }

    fn read_lines(&mut self, step: Step, deadline: Instant) -> Result<Vec<Line>, DeviceError> {
        let mut buf = [0u8; 1024];
        loop {
            match self.wire.read(&mut buf) {
                Ok(0) => std::thread::sleep(Duration::from_millis(5)),
                Ok(n) => {
                    self.bytes_received += n as u64;
                    let lines = self.lines.push(&buf[..n]);
                    if !lines.is_empty() {
                        return Ok(lines);
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::TimedOut | ErrorKind::WouldBlock | ErrorKind::Interrupted
                    ) => {}
                Err(source) => {
                    return Err(DeviceError::Vanished {
                        port: self.port.clone(),
                        step,
                        source,
                    });
                }
            }
            if Instant::now() >= deadline {
                return Ok(Vec::new());
            }
        }
    }

    /// Sends `frame` (whose id was allocated) and waits for its reply, with retries.
    /// `busy` allows `BUSY` keep-alives (KEYGEN, CSR); `timeout` is the reply timeout.
    fn exchange(
        &mut self,
        step: Step,
        frame: Frame,
        timeout: Duration,
        busy: bool,
    ) -> Result<Frame, DeviceError> {
        let bytes = frame.encode().map_err(|e| DeviceError::Input {
            port: self.port.clone(),
            step,
            reason: e.to_string(),
        })?;
        let id = frame.id;
        let wire = self.wire_time(bytes.len() + MAX_FRAME);
        let attempts = self.options.attempts.max(1);
        let started = Instant::now();
        let mut corrupted_every_time = true;
        // However many BUSY frames arrive, a step ends within busy_total (plus wire time).
        let total_deadline = started + self.options.timeouts.busy_total + wire;
        // Each attempt resends the identical bytes, so the device can answer from its reply cache.
        for attempt in 1..=attempts {
            debug!(port = %self.port, %step, attempt, "-> {frame}");
            self.send(step, &bytes)?;
            let mut deadline = Instant::now() + timeout + wire;
            let mut corrupted = false;
            'wait: loop {
                if Instant::now() >= deadline {
                    break 'wait;
                }
                while let Some(line) = self.next_line(step, deadline)? {
                    let Line::Complete(line) = line else {
                        corrupted = true;
                        break 'wait;
                    };
                    if let Some(observer) = self.observer.as_mut() {
                        observer(WireEvent::Received(&line));
                    }
                    let reply = match Frame::parse(&line) {
                        Ok(reply) => reply,
                        Err(FrameError::Noise) => {
                            trace!(port = %self.port, "ignoring noise line");
                            continue;
                        }
                        Err(e) => {
                            debug!(port = %self.port, %step, "corrupted reply: {e}");
                            corrupted = true;
                            break 'wait;
                        }
                    };
                    trace!(port = %self.port, "<- {reply}");
                    if reply.id == id {
                        match reply.verb.as_str() {
                            "OK" => return Ok(reply),
                            "ERR" => {
                                let code =
                                    ErrorCode::parse(reply.get("code").unwrap_or("INTERNAL"));
                                let detail = reply
                                    .get("detail")
                                    .and_then(b64_decode)
                                    .map(|d| String::from_utf8_lossy(&d).into_owned())
                                    .unwrap_or_default();
                                return Err(DeviceError::Refused {
                                    port: self.port.clone(),
                                    step,
                                    code,
                                    detail,
                                });
                            }
                            "BUSY" if busy => {
                                deadline =
                                    (Instant::now() + self.options.timeouts.busy_idle + wire)
                                        .min(total_deadline);
                            }
                            other => {
                                return Err(self.protocol(
                                    step,
                                    format!("reply verb {other} to request {id}"),
                                ));
                            }
                        }
                    } else if reply.id == UNSOLICITED_ID {
                        match (reply.verb.as_str(), reply.get("code")) {
                            ("BOOT", _) => {
                                self.session = None;
                                self.boot_seen = true;
                                if matches!(step, Step::Hello | Step::Ping | Step::Console) {
                                    // These change nothing on the device, so a boot is no failure:
                                    // keep waiting; if the booting device missed the request, the
                                    // timeout resends it.
                                    continue;
                                }
                                return Err(DeviceError::Restarted {
                                    port: self.port.clone(),
                                    step,
                                });
                            }
                            ("ERR", Some("BAD_CRC" | "TOO_LONG" | "BAD_FRAME")) => {
                                // The device saw our request corrupted: resend at once.
                                corrupted = true;
                                break 'wait;
                            }
                            _ => trace!(port = %self.port, "ignoring unsolicited {reply}"),
                        }
                    } else {
                        trace!(port = %self.port, "ignoring stale reply {reply}");
                    }
                }
            }
            corrupted_every_time &= corrupted;
            // A partial line left from this attempt must not glue onto the next reply.
            self.lines.reset();
        }
        if corrupted_every_time {
            Err(DeviceError::Garbled {
                port: self.port.clone(),
                step,
                attempts,
            })
        } else {
            Err(DeviceError::NoAnswer {
                port: self.port.clone(),
                step,
                attempts,
                waited: started.elapsed(),
            })
        }
    }

    fn protocol(&self, step: Step, reason: String) -> DeviceError {
        DeviceError::Protocol {
            port: self.port.clone(),
            step,
            reason,
        }
    }

    fn require(&self, step: Step, capability: &'static str) -> Result<(), DeviceError> {
        match &self.info {
            Some(info) if !info.has(capability) => Err(DeviceError::Unsupported {
                port: self.port.clone(),
                step,
                capability,
            }),
            _ => Ok(()),
        }
    }

    fn field<'a>(&self, step: Step, reply: &'a Frame, key: &str) -> Result<&'a str, DeviceError> {
        reply
            .get(key)
            .ok_or_else(|| self.protocol(step, format!("reply without {key}=")))
    }

    fn b64_field(&self, step: Step, reply: &Frame, key: &str) -> Result<Vec<u8>, DeviceError> {
        let text = self.field(step, reply, key)?;
        b64_decode(text).ok_or_else(|| self.protocol(step, format!("{key}= is not base64")))
    }

    fn simple(&mut self, step: Step, verb: &str) -> Result<Frame, DeviceError> {
        let id = self.allocate_id();
        let timeout = self.options.timeouts.reply;
        self.exchange(step, Frame::new(id, verb), timeout, false)
    }

    /// Writes one item in chunks of at most [`MAX_CHUNK`] bytes; secrets in one sealed chunk.
    fn put(
        &mut self,
        step: Step,
        item: Item,
        data: &[u8],
        expected_digest: String,
    ) -> Result<StoredItem, DeviceError> {
        if data.is_empty() || data.len() > MAX_ITEM {
            return Err(DeviceError::Input {
                port: self.port.clone(),
                step,
                reason: format!(
                    "the {} must be 1 to {MAX_ITEM} bytes, not {}",
                    item.wire_name(),
                    data.len()
                ),
            });
        }
        let timeout = self.options.timeouts.reply;
        if item.is_secret() {
            let id = self.allocate_id();
            let Some(session) = self.session.as_ref() else {
                return Err(DeviceError::NoSession {
                    port: self.port.clone(),
                    step,
                });
            };
            let sealed = session.seal(id, item.wire_name(), data);
            let frame = Frame::new(id, "PUT")
                .with("item", item.wire_name())
                .with("enc", "aes256gcm")
                .with("off", "0")
                .with("total", sealed.len().to_string())
                .with("data", b64_encode(&sealed));
            let reply = self.exchange(step, frame, timeout, false)?;
            return self.stored(step, item, &reply, expected_digest);
        }
        let mut offset = 0;
        loop {
            let end = (offset + MAX_CHUNK).min(data.len());
            let id = self.allocate_id();
            let frame = Frame::new(id, "PUT")
                .with("item", item.wire_name())
                .with("off", offset.to_string())
                .with("total", data.len().to_string())
                .with("data", b64_encode(&data[offset..end]));
            let reply = self.exchange(step, frame, timeout, false)?;
            if end == data.len() {
                return self.stored(step, item, &reply, expected_digest);
            }
            let next = self.field(step, &reply, "next")?;
            if next != end.to_string() {
                return Err(self.protocol(
                    step,
                    format!("device expects offset {next}, station sent up to {end}"),
                ));
            }
            offset = end;
        }
    }

    fn stored(
        &self,
        step: Step,
        item: Item,
        reply: &Frame,
        expected: String,
    ) -> Result<StoredItem, DeviceError> {
        if reply.get("stored") != Some(item.wire_name()) {
            return Err(self.protocol(
                step,
                format!("last chunk not acknowledged as stored={}", item.wire_name()),
            ));
        }
        let reported = self.field(step, reply, "sha256")?.to_string();
        if reported != expected {
            return Err(DeviceError::Mismatch {
                port: self.port.clone(),
                step,
                reported,
                expected,
            });
        }
        Ok(StoredItem { sha256: reported })
    }

    /// Sends one command typed as `VERB key=value ...` (for `device console`) and returns the reply,
    /// `ERR` included. Secrets cannot be typed here: `PUT` of a secret item needs the session key.
    pub fn raw(&mut self, command: &str) -> Result<Frame, DeviceError> {
        let step = Step::Console;
        let mut tokens = command.split_whitespace();
        let verb = tokens.next().unwrap_or("").to_ascii_uppercase();
        let id = self.allocate_id();
        let mut frame = Frame::new(id, &verb);
        for token in tokens {
            let (k, v) = token.split_once('=').ok_or_else(|| DeviceError::Input {
                port: self.port.clone(),
                step,
                reason: format!("'{token}' is not key=value"),
            })?;
            frame = frame.with(k, v);
        }
        let timeout = self.options.timeouts.busy_idle;
        match self.exchange(step, frame, timeout, true) {
            Ok(reply) => Ok(reply),
            Err(DeviceError::Refused { code, detail, .. }) => {
                let mut reply = Frame::new(id, "ERR").with("code", code.as_str());
                if !detail.is_empty() {
                    reply = reply.with("detail", b64_encode(detail.as_bytes()));
                }
                Ok(reply)
            }
            Err(e) => Err(e),
        }
    }

    /// The guarded factory reset: asks for a nonce, then confirms with the nonce and the serial.
    /// The device may also require its physical reset input (`ERR GUARDED` otherwise).
    pub fn factory_reset(&mut self) -> Result<(), DeviceError> {
        let step = Step::Reset;
        let serial = match &self.info {
            Some(info) => info.serial.clone(),
            None => self.hello()?.serial,
        };
        let reply = self.simple(step, "RESET")?;
        let nonce = self.field(step, &reply, "nonce")?.to_string();
        let id = self.allocate_id();
        let timeout = self.options.timeouts.reply;
        let frame = Frame::new(id, "RESET")
            .with("nonce", nonce)
            .with("serial", serial);
        self.exchange(step, frame, timeout, false)?;
        self.session = None;
        Ok(())
    }
}

fn parse_digest(value: Option<&str>) -> Option<String> {
    value.filter(|v| *v != "-").map(str::to_string)
}

/// The protocol's verbs one by one (tests, `device console`, `bench serial`); the station drives
/// devices through [`super::DeviceDriver`] instead.
impl<W: Read + Write + Send> LineClient<W> {
    /// The port this client talks through.
    pub fn port(&self) -> &str {
        &self.port
    }

    /// `HELLO`: identifies the device and negotiates the protocol version.
    pub fn hello(&mut self) -> Result<Hello, DeviceError> {
        let step = Step::Hello;
        let id = self.allocate_id();
        let versions: Vec<String> = protocol::PROTOCOL_VERSIONS
            .iter()
            .map(u32::to_string)
            .collect();
        let timeout = self.options.timeouts.reply;
        let reply = self.exchange(
            step,
            Frame::new(id, "HELLO").with("v", versions.join(",")),
            timeout,
            false,
        )?;
        let text = |k: &str| reply.get(k).unwrap_or("").to_string();
        let protocol: u32 = self
            .field(step, &reply, "proto")?
            .parse()
            .map_err(|_| self.protocol(step, "proto= is not a number".into()))?;
        if !protocol::PROTOCOL_VERSIONS.contains(&protocol) {
            return Err(self.protocol(
                step,
                format!("device chose protocol version {protocol}, which was not offered"),
            ));
        }
        let info = Hello {
            protocol,
            model: text("model"),
            serial: self.field(step, &reply, "serial")?.to_string(),
            hardware_id: text("hwid"),
            firmware: text("fw"),
            boot_counter: reply.get("boot").and_then(|b| b.parse().ok()).unwrap_or(0),
            capabilities: reply
                .get("caps")
                .map(|c| {
                    c.split(',')
                        .filter(|s| !s.is_empty())
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default(),
            max_frame: reply
                .get("max")
                .and_then(|m| m.parse().ok())
                .unwrap_or(MAX_FRAME),
            locked: reply.get("locked") == Some("1"),
        };
        self.info = Some(info.clone());
        Ok(info)
    }

    /// Waits up to `wait` for a `BOOT` on the open port; `true` as soon as one came.
    pub fn wait_for_boot(&mut self, wait: Duration) -> Result<bool, DeviceError> {
        let deadline = Instant::now() + wait;
        while let Some(line) = self.next_line(Step::Hello, deadline)? {
            let Line::Complete(line) = line else { continue };
            if let Some(observer) = self.observer.as_mut() {
                observer(WireEvent::Received(&line));
            }
            if let Ok(frame) = Frame::parse(&line)
                && frame.id == UNSOLICITED_ID
                && frame.verb == "BOOT"
            {
                self.session = None;
                self.boot_seen = true;
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Whether a `BOOT` went by since the last call (also one another request read past).
    pub fn take_boot_seen(&mut self) -> bool {
        std::mem::take(&mut self.boot_seen)
    }

    /// `PING`: the round-trip time.
    pub fn ping(&mut self) -> Result<Duration, DeviceError> {
        let started = Instant::now();
        self.simple(Step::Ping, "PING")?;
        Ok(started.elapsed())
    }

    /// `KEYGEN`: the device makes its P-256 key; returns the uncompressed public point.
    pub fn keygen(&mut self) -> Result<Vec<u8>, DeviceError> {
        let step = Step::Keygen;
        self.require(step, caps::P256_KEYGEN)?;
        let id = self.allocate_id();
        let timeout = self.options.timeouts.busy_idle;
        let reply = self.exchange(step, Frame::new(id, "KEYGEN"), timeout, true)?;
        let public = self.b64_field(step, &reply, "pub")?;
        if p256::PublicKey::from_sec1_bytes(&public).is_err() || public.len() != 65 {
            return Err(self.protocol(step, "pub= is not an uncompressed P-256 point".into()));
        }
        Ok(public)
    }

    /// `CSR`: a PKCS#10 request with subject CN `subject_cn`, DER.
    pub fn csr(&mut self, subject_cn: &str) -> Result<Vec<u8>, DeviceError> {
        let step = Step::Csr;
        self.require(step, caps::CSR)?;
        let id = self.allocate_id();
        let timeout = self.options.timeouts.busy_idle;
        let frame = Frame::new(id, "CSR").with("cn", b64_encode(subject_cn.as_bytes()));
        let reply = self.exchange(step, frame, timeout, true)?;
        self.b64_field(step, &reply, "csr")
    }

    /// `SESSION`: opens the encrypted session every secret travels in.
    pub fn open_session(&mut self) -> Result<(), DeviceError> {
        let step = Step::Session;
        self.require(step, caps::ENCRYPTED_INJECTION)?;
        self.session = None;
        let handshake = StationHandshake::new();
        let id = self.allocate_id();
        let frame = Frame::new(id, "SESSION").with("pub", b64_encode(handshake.public()));
        let timeout = self.options.timeouts.session;
        let reply = self.exchange(step, frame, timeout, true)?;
        let device_pub = self.b64_field(step, &reply, "pub")?;
        let confirm = self.b64_field(step, &reply, "confirm")?;
        let (key, expected) = handshake
            .finish(&device_pub)
            .ok_or_else(|| self.protocol(step, "pub= is not a P-256 point".into()))?;
        if confirm != expected {
            return Err(self.protocol(
                step,
                "the key confirmation does not match: someone altered the exchange".into(),
            ));
        }
        self.session = Some(key);
        Ok(())
    }

    /// `PUT item=chain`.
    pub fn put_certificate_chain(&mut self, chain: &[u8]) -> Result<StoredItem, DeviceError> {
        self.put(Step::PutChain, Item::Chain, chain, sha256_hex(chain))
    }

    /// `PUT item=private-key` (a 32-byte P-256 scalar), inside the session.
    pub fn put_private_key(&mut self, scalar: &SecretBytes) -> Result<StoredItem, DeviceError> {
        let step = Step::PutPrivateKey;
        self.require(step, caps::ENCRYPTED_INJECTION)?;
        let key = SecretKey::from_slice(scalar.expose()).map_err(|_| DeviceError::Input {
            port: self.port.clone(),
            step,
            reason: "the private key is not a valid 32-byte P-256 scalar".into(),
        })?;
        let digest = sha256_hex(&super::session::point(&key.public_key()));
        self.put(step, Item::PrivateKey, scalar.expose(), digest)
    }

    /// `PUT item=symmetric-key`, inside the session.
    pub fn put_symmetric_key(&mut self, key: &SecretBytes) -> Result<StoredItem, DeviceError> {
        let step = Step::PutSymmetricKey;
        self.require(step, caps::SYMMETRIC_KEY)?;
        if key.expose().len() > 64 {
            return Err(DeviceError::Input {
                port: self.port.clone(),
                step,
                reason: "symmetric keys are at most 64 bytes".into(),
            });
        }
        self.put(
            step,
            Item::SymmetricKey,
            key.expose(),
            sha256_hex(key.expose()),
        )
    }

    /// `CONFIG`: registration ID, ID scope, global endpoint and product key/values.
    pub fn config(&mut self, config: &DeviceConfig) -> Result<StoredItem, DeviceError> {
        let step = Step::Config;
        if config.extra.len() > protocol::MAX_CONFIG_EXTRAS {
            return Err(DeviceError::Input {
                port: self.port.clone(),
                step,
                reason: format!("at most {} extra key/values", protocol::MAX_CONFIG_EXTRAS),
            });
        }
        let id = self.allocate_id();
        let mut frame = Frame::new(id, "CONFIG");
        for (k, v) in config.wire_fields() {
            frame = frame.with(&k, v);
        }
        let timeout = self.options.timeouts.reply;
        let reply = self.exchange(step, frame, timeout, false)?;
        let reported = self.field(step, &reply, "sha256")?.to_string();
        let expected = config.digest_hex();
        if reported != expected {
            return Err(DeviceError::Mismatch {
                port: self.port.clone(),
                step,
                reported,
                expected,
            });
        }
        Ok(StoredItem { sha256: reported })
    }

    /// `READBACK`: the digests of what the device holds.
    pub fn readback(&mut self) -> Result<Readback, DeviceError> {
        let reply = self.simple(Step::Readback, "READBACK")?;
        Ok(Readback {
            key: parse_digest(reply.get("key")),
            chain: parse_digest(reply.get("chain")),
            symmetric_key: parse_digest(reply.get("symmetric-key")),
            config: parse_digest(reply.get("config")),
            locked: reply.get("locked") == Some("1"),
        })
    }

    /// `TPM-EK`: the TPM endorsement key.
    pub fn tpm_ek(&mut self) -> Result<TpmEk, DeviceError> {
        let step = Step::TpmEk;
        self.require(step, caps::TPM_EK)?;
        let reply = self.simple(step, "TPM-EK")?;
        Ok(TpmEk {
            public_der: self.b64_field(step, &reply, "ek")?,
            suggested_registration_id: reply.get("regid").map(str::to_string),
        })
    }

    /// `SE-INFO`: the secure element's serial (hex) and public key (base64 uncompressed point).
    pub fn se_info(&mut self) -> Result<super::driver::SecureElementInfo, DeviceError> {
        let step = Step::SecureElement;
        self.require(step, caps::SECURE_ELEMENT)?;
        let reply = self.simple(step, "SE-INFO")?;
        let serial = self.field(step, &reply, "serial")?;
        if serial.is_empty() || serial.len() > 64 || !serial.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return Err(self.protocol(step, "serial= is not hex".into()));
        }
        let serial = serial.to_ascii_lowercase();
        let public_key = self.b64_field(step, &reply, "key")?;
        if public_key.len() != 65 || public_key[0] != 0x04 {
            return Err(self.protocol(step, "key= is not an uncompressed P-256 point".into()));
        }
        Ok(super::driver::SecureElementInfo { serial, public_key })
    }

    /// `LOCK`.
    pub fn lock(&mut self) -> Result<(), DeviceError> {
        let step = Step::Lock;
        self.require(step, caps::LOCK)?;
        let reply = self.simple(step, "LOCK")?;
        if reply.get("locked") != Some("1") {
            return Err(self.protocol(step, "LOCK acknowledged without locked=1".into()));
        }
        Ok(())
    }
}
