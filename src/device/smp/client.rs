//! An SMP client on a serial console: one request at a time, answered by sequence number; console
//! output between frames (logs, the boot banner) is skipped, a boot banner during a request is a
//! restart. Requests are not re-sent: a timed-out write may have been done.

use std::io::{ErrorKind, Read, Write};
use std::time::{Duration, Instant};

use super::cbor::Value;
use super::frame::{self, LINE_LENGTH, Reassembler};
use super::header::{self, Header};
use crate::device::error::{DeviceError, Step};

/// What Zephyr prints when it boots (`*** Booting Zephyr OS build ... ***`).
pub const BANNER_PREFIX: &[u8] = b"*** Booting Zephyr";

/// The longest console line kept (a longer one is noise and is dropped).
const MAX_LINE: usize = 8 * 1024;

/// What an MCUmgr return code means, with what to do (`MGMT_ERR_*` and the groups' own codes).
pub fn rc_meaning(group: u16, rc: i64) -> String {
    let what = match (group, rc) {
        (header::GROUP_FS, 2) | (_, 5) => "not found (ENOENT)",
        (header::GROUP_FS, 4) => "the file system is full; free space on the device",
        (_, 1) => "an unknown error (EUNKNOWN)",
        (_, 2) => "out of memory (ENOMEM); the device's SMP buffer is too small for the request",
        (_, 3) => "an invalid argument (EINVAL)",
        (_, 4) => "a timeout on the device (ETIMEOUT)",
        (_, 6) => "a bad state (EBADSTATE); restart the device",
        (_, 7) => "a response too large for the device's buffer (EMSGSIZE)",
        (_, 8) => "not supported by this firmware (ENOTSUP): enable the MCUmgr group in its build",
        (_, 9) => "a corrupt payload (ECORRUPT)",
        (_, 10) => "busy (EBUSY); run the device again",
        (_, 11) => "denied by the application (EACCESSDENIED)",
        _ => "an error",
    };
    format!("SMP group {group} rc {rc}: {what}")
}

/// An SMP client over one open port.
pub struct SmpPort<W> {
    port: String,
    wire: W,
    pending: Vec<u8>,
    reassembler: Reassembler,
    sequence: u8,
    bytes_sent: u64,
    bytes_received: u64,
    boot_seen: bool,
}

impl<W: Read + Write + Send> SmpPort<W> {
    /// A client over an open port (reads returning `TimedOut` when nothing came).
    pub fn new(port: &str, wire: W) -> Self {
        Self {
            port: port.to_string(),
            wire,
            pending: Vec::new(),
            reassembler: Reassembler::default(),
            sequence: rand::random(),
            bytes_sent: 0,
            bytes_received: 0,
            boot_seen: false,
        }
    }

    /// The port path.
    pub fn port(&self) -> &str {
        &self.port
    }

    /// Bytes (sent, received).
    pub fn byte_counts(&self) -> (u64, u64) {
        (self.bytes_sent, self.bytes_received)
    }

    /// Whether a boot banner went by since the last call.
    pub fn take_boot_seen(&mut self) -> bool {
        std::mem::take(&mut self.boot_seen)
    }

    fn vanished(&self, step: Step, source: std::io::Error) -> DeviceError {
        DeviceError::Vanished {
            port: self.port.clone(),
            step,
            source,
        }
    }

    /// The next console line before `deadline`.
    fn line(&mut self, step: Step, deadline: Instant) -> Result<Option<Vec<u8>>, DeviceError> {
        let mut buf = [0u8; 1024];
        loop {
            if let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=end).collect();
                return Ok(Some(line[..line.len() - 1].to_vec()));
            }
            if self.pending.len() > MAX_LINE {
                self.pending.clear();
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            match self.wire.read(&mut buf) {
                Ok(0) => {
                    return Err(self.vanished(
                        step,
                        std::io::Error::new(ErrorKind::UnexpectedEof, "the port closed"),
                    ));
                }
                Ok(n) => {
                    self.bytes_received += n as u64;
                    self.pending.extend_from_slice(&buf[..n]);
                }
                Err(e) if matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(self.vanished(step, e)),
            }
        }
    }

    /// Waits up to `wait` for a boot banner.
    pub fn wait_for_banner(&mut self, wait: Duration) -> Result<bool, DeviceError> {
        let deadline = Instant::now() + wait;
        while let Some(line) = self.line(Step::Hello, deadline)? {
            if line.starts_with(BANNER_PREFIX) {
                self.boot_seen = true;
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Sends one request (SMP v2) and returns the response body; an error body is mapped to
    /// [`DeviceError::Smp`]. `name` names the request in messages.
    pub fn request(
        &mut self,
        name: &'static str,
        op: u8,
        group: u16,
        id: u8,
        body: &Value,
        timeout: Duration,
    ) -> Result<Value, DeviceError> {
        self.exchange(name, op, group, id, body, timeout, false)
    }

    /// [`Self::request`] for the first, harmless (read) request to a device that may just have
    /// been plugged in: a boot banner before its reply is the boot it follows, not a restart.
    pub fn first_request(
        &mut self,
        name: &'static str,
        op: u8,
        group: u16,
        id: u8,
        body: &Value,
        timeout: Duration,
    ) -> Result<Value, DeviceError> {
        self.exchange(name, op, group, id, body, timeout, true)
    }

    #[allow(clippy::too_many_arguments)]
    fn exchange(
        &mut self,
        name: &'static str,
        op: u8,
        group: u16,
        id: u8,
        body: &Value,
        timeout: Duration,
        after_boot: bool,
    ) -> Result<Value, DeviceError> {
        let step = Step::Command(name);
        // What came before this request belongs to no request; a banner marks a restart.
        while let Some(line) = self.line(step, Instant::now())? {
            if line.starts_with(BANNER_PREFIX) {
                self.boot_seen = true;
            }
        }
        self.sequence = self.sequence.wrapping_add(1);
        let body_bytes = body.encode();
        let h = Header {
            op,
            version: header::VERSION_2,
            flags: 0,
            length: u16::try_from(body_bytes.len()).map_err(|_| DeviceError::Input {
                port: self.port.clone(),
                step,
                reason: format!("a request body of {} bytes", body_bytes.len()),
            })?,
            group,
            sequence: self.sequence,
            id,
        };
        let mut packet = h.to_bytes().to_vec();
        packet.extend_from_slice(&body_bytes);
        let lines = frame::encode(&packet, LINE_LENGTH);
        self.wire
            .write_all(&lines)
            .and_then(|()| self.wire.flush())
            .map_err(|e| self.vanished(step, e))?;
        self.bytes_sent += lines.len() as u64;
        let port = self.port.clone();
        let protocol = |reason: String| DeviceError::Protocol {
            port: port.clone(),
            step,
            reason,
        };
        let started = Instant::now();
        let deadline = started + timeout;
        loop {
            let Some(line) = self.line(step, deadline)? else {
                return Err(DeviceError::NoAnswer {
                    port: self.port.clone(),
                    step,
                    attempts: 1,
                    waited: started.elapsed(),
                });
            };
            if line.starts_with(BANNER_PREFIX) && after_boot {
                self.boot_seen = true;
                continue;
            }
            if line.starts_with(BANNER_PREFIX) {
                self.boot_seen = true;
                return Err(DeviceError::Restarted {
                    port: self.port.clone(),
                    step,
                });
            }
            let reply = match self.reassembler.line(&line) {
                None => continue,
                Some(Err(e)) => return Err(protocol(e.to_string())),
                Some(Ok(reply)) => reply,
            };
            let Some(rh) = Header::parse(&reply) else {
                return Err(protocol("a reply shorter than the SMP header".into()));
            };
            if rh.sequence != self.sequence {
                // A late reply to an earlier request: not this one's.
                continue;
            }
            if rh.op != op + 1 || rh.group != group || rh.id != id {
                return Err(protocol(format!(
                    "a reply for op {} group {} command {} to a request op {op} group {group} command {id}",
                    rh.op, rh.group, rh.id
                )));
            }
            let data = &reply[header::SIZE..];
            if usize::from(rh.length) != data.len() {
                return Err(protocol(format!(
                    "the header says {} body bytes, {} came",
                    rh.length,
                    data.len()
                )));
            }
            let value = if data.is_empty() {
                Value::Map(Vec::new())
            } else {
                Value::decode(data).map_err(protocol)?
            };
            let error = match (value.get("err"), value.int("rc")) {
                (Some(err), _) => Some((
                    err.int("group")
                        .and_then(|g| u16::try_from(g).ok())
                        .unwrap_or(group),
                    err.int("rc").unwrap_or(-1),
                )),
                (None, Some(rc)) if rc != 0 => Some((group, rc)),
                _ => None,
            };
            if let Some((group, rc)) = error {
                return Err(DeviceError::Smp {
                    port: self.port.clone(),
                    step,
                    group,
                    rc,
                    meaning: rc_meaning(group, rc),
                });
            }
            return Ok(value);
        }
    }
}
