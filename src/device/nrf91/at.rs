//! AT commands over a modem's UART, as Nordic's AT command reference describes them: a command is
//! one line ended by CR LF (a quoted argument may span lines: a PEM); the modem answers with
//! information lines, then `OK`, `ERROR` or, with `AT+CMEE=1`, `+CME ERROR: <n>`.
//!
//! A command is never re-sent on a timeout or an error: a modem that did not answer may have done
//! it (a key generated, a credential written), so the station reports and stops instead.

use std::io::{ErrorKind, Read, Write};
use std::time::{Duration, Instant};

use tracing::trace;

use super::super::error::{DeviceError, Step};

/// The longest AT command line the modem accepts (its AT buffer, 4 KB), CR LF included.
pub const MAX_AT_LINE: usize = 4096;

/// The longest reply line the station reads; a longer one is a broken modem or line noise.
const MAX_REPLY_LINE: usize = 16 * 1024;

/// The modem's boot banner (the AT host sample prints it when it is ready for commands).
pub const READY: &str = "Ready";

/// What a `+CME ERROR` code means, worded with what to do (Nordic's AT command reference, security
/// commands `%CMNG`/`%KEYGEN`/`%ATTESTTOKEN`).
pub fn cme_meaning(code: Option<u32>) -> String {
    match code {
        None => "ERROR without a code (error codes not enabled, or a command the firmware does not know); check that the modem firmware supports it (mfw 1.3 or later) and run the device again".into(),
        Some(0) => "the command is not supported by this modem firmware; update the modem firmware".into(),
        Some(513) => "not found (513): the sec_tag or credential does not exist".into(),
        Some(514) => "no access (514): the sec_tag is reserved or read-only; use a sec_tag of your own in station.toml".into(),
        Some(515) => "memory full (515): the modem's credential storage is full; delete credentials the product no longer needs (nrfcredstore <port> deleteall) and run it again".into(),
        Some(518) => "not allowed in active state (518): the modem must be offline (AT+CFUN=4) for credential work; the device went online by itself, restart it and run it again".into(),
        Some(519) => "already exists (519): the slot already holds a credential; re-provisioning must be chosen to replace it".into(),
        Some(523) => "key generation failed (523); restart the device and run it again, or replace it".into(),
        Some(527) => "invalid content (527): the modem could not parse the credential (PEM); check the batch's CA chain".into(),
        Some(528) => "not allowed while the power-off warning is active (528): the device's supply is too low; check its power and run it again".into(),
        Some(n) => format!("+CME ERROR: {n}; see Nordic's AT command reference and run the device again"),
    }
}

/// A modem's AT interface on one port.
pub struct AtPort<W> {
    port: String,
    wire: W,
    pending: Vec<u8>,
    bytes_sent: u64,
    bytes_received: u64,
    boot_seen: bool,
}

impl<W: Read + Write + Send> AtPort<W> {
    /// An AT interface over an open port (reads returning `TimedOut` when nothing came).
    pub fn new(port: &str, wire: W) -> Self {
        Self {
            port: port.to_string(),
            wire,
            pending: Vec::new(),
            bytes_sent: 0,
            bytes_received: 0,
            boot_seen: false,
        }
    }

    /// The port path.
    pub fn port(&self) -> &str {
        &self.port
    }

    /// Bytes (sent, received) so far.
    pub fn byte_counts(&self) -> (u64, u64) {
        (self.bytes_sent, self.bytes_received)
    }

    /// Whether a `Ready` banner went by since the last call.
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

    /// The next complete line (CR/LF stripped, empty lines skipped) before `deadline`.
    fn line(&mut self, step: Step, deadline: Instant) -> Result<Option<String>, DeviceError> {
        let mut buf = [0u8; 1024];
        loop {
            if let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
                let raw: Vec<u8> = self.pending.drain(..=end).collect();
                let text = String::from_utf8_lossy(&raw).trim().to_string();
                if text.is_empty() {
                    continue;
                }
                trace!(port = %self.port, "< {} bytes", text.len());
                return Ok(Some(text));
            }
            if self.pending.len() > MAX_REPLY_LINE {
                self.pending.clear();
                return Err(DeviceError::Protocol {
                    port: self.port.clone(),
                    step,
                    reason: format!("a reply line longer than {MAX_REPLY_LINE} bytes"),
                });
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

    /// Waits up to `wait` for the modem's `Ready` banner.
    pub fn wait_for_ready(&mut self, wait: Duration) -> Result<bool, DeviceError> {
        let deadline = Instant::now() + wait;
        while let Some(line) = self.line(Step::Hello, deadline)? {
            if line == READY {
                self.boot_seen = true;
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Sends `command` (named `name` in messages: never the arguments, which may hold a key) and
    /// returns the information lines before `OK`. A line over the modem's 4 KB limit is refused
    /// before anything is sent.
    pub fn command(
        &mut self,
        name: &'static str,
        command: &str,
        timeout: Duration,
    ) -> Result<Vec<String>, DeviceError> {
        self.exchange(name, command, timeout, false)
    }

    /// [`Self::command`] for the first, harmless command to a modem that may just have been
    /// plugged in: a `Ready` banner before its answer is the boot it follows, not a restart
    /// during it (noted for [`Self::take_boot_seen`]).
    pub fn first_command(
        &mut self,
        name: &'static str,
        command: &str,
        timeout: Duration,
    ) -> Result<Vec<String>, DeviceError> {
        self.exchange(name, command, timeout, true)
    }

    fn exchange(
        &mut self,
        name: &'static str,
        command: &str,
        timeout: Duration,
        after_boot: bool,
    ) -> Result<Vec<String>, DeviceError> {
        let step = Step::Command(name);
        if command.len() + 2 > MAX_AT_LINE {
            return Err(DeviceError::Input {
                port: self.port.clone(),
                step,
                reason: format!(
                    "the command is {} bytes, over the modem's {MAX_AT_LINE}-byte AT line; nothing was written",
                    command.len() + 2
                ),
            });
        }
        // Whatever the modem said before this command (a banner, an unsolicited result) belongs to
        // no command: a banner marks a restart, kept for the next look.
        self.drain_unsolicited(step)?;
        let mut line = Vec::with_capacity(command.len() + 2);
        line.extend_from_slice(command.as_bytes());
        line.extend_from_slice(b"\r\n");
        self.wire
            .write_all(&line)
            .and_then(|()| self.wire.flush())
            .map_err(|e| self.vanished(step, e))?;
        self.bytes_sent += line.len() as u64;
        let started = Instant::now();
        let deadline = started + timeout;
        let mut info = Vec::new();
        loop {
            let Some(line) = self.line(step, deadline)? else {
                return Err(DeviceError::NoAnswer {
                    port: self.port.clone(),
                    step,
                    attempts: 1,
                    waited: started.elapsed(),
                });
            };
            match line.as_str() {
                "OK" => return Ok(info),
                "ERROR" => return Err(self.refused(step, None)),
                READY if after_boot => {
                    self.boot_seen = true;
                    continue;
                }
                READY => {
                    self.boot_seen = true;
                    return Err(DeviceError::Restarted {
                        port: self.port.clone(),
                        step,
                    });
                }
                _ => {}
            }
            if let Some(code) = line.strip_prefix("+CME ERROR:") {
                let code = code.trim().parse().ok();
                return Err(self.refused(step, code));
            }
            info.push(line);
        }
    }

    fn refused(&self, step: Step, code: Option<u32>) -> DeviceError {
        DeviceError::Modem {
            port: self.port.clone(),
            step,
            code,
            meaning: cme_meaning(code),
        }
    }

    fn drain_unsolicited(&mut self, step: Step) -> Result<(), DeviceError> {
        while let Some(line) = self.line(step, Instant::now())? {
            if line == READY {
                self.boot_seen = true;
            }
        }
        Ok(())
    }
}
