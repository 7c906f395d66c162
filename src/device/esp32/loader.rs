//! The station's side of the ESP32 ROM bootloader: sync, registers, baud change, flash write in
//! 0x400-byte blocks (plain or zlib-compressed), the ROM's flash MD5, `READ_FLASH_SLOW` read-back,
//! and leaving the bootloader.
//!
//! Why not the `espflash` crate (4.7), which the issue prefers: its `Connection` could be opened
//! on a pty (`ResetBeforeOperation::NoReset`, a made-up `UsbPortInfo`) and its `Flasher` has a
//! no-stub path, but its ROM read-back (`Flasher::read_flash_rom`) writes to a file path and
//! `assert!`s on the length of the chip's answer (a panic on device input, which the station
//! must never have), and the crate brings `object`, `gimli`, `miette`, `esp-idf-part`,
//! `slip-codec` and a build script (`esp-metadata-generated`) into a tree CI builds from scratch
//! on two cores. The station needs ten ROM commands, so this is the smallest own implementation,
//! checked against Espressif's `esptool` through the
//! simulator (`tests/device/esp32_esptool.rs`).

use std::io::{ErrorKind, Read, Write};
use std::time::{Duration, Instant};

use serialport::SerialPort;
use zeroize::Zeroizing;

use super::rom::{self, Command, Response, SlipDecoder, op, reg};
use crate::device::error::{DeviceError, Step};

/// How many `SYNC`s are sent before the chip is declared absent (esptool tries 5 per attempt).
const SYNC_ATTEMPTS: u32 = 7;
/// How long one `SYNC` waits for its answer.
const SYNC_WAIT: Duration = Duration::from_millis(100);
/// How long an ordinary command waits (beyond its bytes' wire time).
const REPLY_WAIT: Duration = Duration::from_secs(3);
/// Erase time per 4 KiB sector the ROM does at `FLASH_BEGIN` (generous: 30-60 ms on real flash).
const ERASE_PER_SECTOR: Duration = Duration::from_millis(120);

/// A ROM bootloader session on one port.
pub struct Loader {
    port_name: String,
    port: Box<dyn SerialPort>,
    decoder: SlipDecoder,
    /// Bytes read from the port and not yet decoded (one read can hold several answers: the
    /// eight answers to one `SYNC`). Zeroized: read-back answers carry the partition's key.
    pending: Zeroizing<Vec<u8>>,
    /// How far `pending` has been decoded.
    pending_at: usize,
    baud: u32,
    sent: u64,
    received: u64,
    /// The last flash write was compressed: it is ended with `FLASH_DEFL_END`.
    deflated: bool,
}

impl Loader {
    /// A session over an open port at `baud` (the ROM's speed at reset is 115200).
    pub fn new(port_name: &str, port: Box<dyn SerialPort>, baud: u32) -> Self {
        Self {
            port_name: port_name.to_string(),
            port,
            decoder: SlipDecoder::new(0x4000),
            pending: Zeroizing::new(Vec::new()),
            pending_at: 0,
            baud,
            sent: 0,
            received: 0,
            deflated: false,
        }
    }

    /// The port's name, for messages.
    pub fn port_name(&self) -> &str {
        &self.port_name
    }

    /// Bytes (sent, received) so far.
    pub fn byte_counts(&self) -> (u64, u64) {
        (self.sent, self.received)
    }

    fn wire_time(&self, bytes: usize) -> Duration {
        Duration::from_secs_f64(bytes as f64 * 10.0 / f64::from(self.baud.max(1)))
    }

    fn vanished(&self, step: Step, source: std::io::Error) -> DeviceError {
        DeviceError::Vanished {
            port: self.port_name.clone(),
            step,
            source,
        }
    }

    fn send(&mut self, cmd: &Command, step: Step) -> Result<(), DeviceError> {
        let framed = Zeroizing::new(rom::slip_encode(&cmd.encode()));
        self.port
            .write_all(&framed)
            .and_then(|()| self.port.flush())
            .map_err(|e| self.vanished(step, e))?;
        self.sent += framed.len() as u64;
        Ok(())
    }

    /// The next response to `op` within `wait`; `None` on timeout. Other packets are skipped;
    /// bytes after the answer stay pending for the next call.
    fn receive(
        &mut self,
        op: u8,
        wait: Duration,
        step: Step,
    ) -> Result<Option<Response>, DeviceError> {
        let deadline = Instant::now() + wait;
        let mut buf = Zeroizing::new([0u8; 512]);
        loop {
            while let Some(&b) = self.pending.get(self.pending_at) {
                self.pending_at += 1;
                if let Some(packet) = self.decoder.push(b)
                    && let Some(r) = Response::parse(&packet)
                    && r.op == op
                {
                    return Ok(Some(r));
                }
            }
            self.pending.clear();
            self.pending_at = 0;
            if Instant::now() >= deadline {
                return Ok(None);
            }
            let n = match self.port.read(&mut buf[..]) {
                Ok(n) => n,
                Err(e) if matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock) => 0,
                Err(e) if e.kind() == ErrorKind::Interrupted => 0,
                Err(e) => return Err(self.vanished(step, e)),
            };
            self.received += n as u64;
            self.pending.extend_from_slice(&buf[..n]);
        }
    }

    /// Sends `cmd` and returns its answer's body (`body_len` bytes before the status) and value.
    fn command(
        &mut self,
        cmd: Command,
        body_len: usize,
        extra_wait: Duration,
        step: Step,
    ) -> Result<(u32, Vec<u8>), DeviceError> {
        let started = Instant::now();
        self.send(&cmd, step)?;
        let wait = REPLY_WAIT + extra_wait + self.wire_time(cmd.data.len() + body_len + 32);
        let Some(r) = self.receive(cmd.op, wait, step)? else {
            return Err(DeviceError::NoAnswer {
                port: self.port_name.clone(),
                step,
                attempts: 1,
                waited: started.elapsed(),
            });
        };
        match r.body(body_len) {
            Ok(body) => Ok((r.value, body.to_vec())),
            Err(code) => Err(DeviceError::Protocol {
                port: self.port_name.clone(),
                step,
                reason: format!(
                    "the ROM bootloader answered error 0x{code:02x} ({})",
                    rom::error_name(code)
                ),
            }),
        }
    }

    /// Synchronises with the ROM (its auto-baud), then drains the extra answers it sends.
    pub fn sync(&mut self) -> Result<(), DeviceError> {
        let step = Step::Command("SYNC (is the ESP32 in download mode: GPIO0 low at reset?)");
        let started = Instant::now();
        for _ in 0..SYNC_ATTEMPTS {
            self.send(&Command::new(op::SYNC, rom::SYNC_PAYLOAD.to_vec()), step)?;
            if self.receive(op::SYNC, SYNC_WAIT, step)?.is_some() {
                // The ROM answers one SYNC eight times: read the rest so they do not stand in
                // for the next command's answer (without waiting once all have come).
                for _ in 1..rom::SYNC_ANSWERS {
                    if self
                        .receive(op::SYNC, Duration::from_millis(30), step)?
                        .is_none()
                    {
                        break;
                    }
                }
                return Ok(());
            }
        }
        Err(DeviceError::NoAnswer {
            port: self.port_name.clone(),
            step,
            attempts: SYNC_ATTEMPTS,
            waited: started.elapsed(),
        })
    }

    /// Reads a 32-bit register.
    pub fn read_reg(&mut self, addr: u32) -> Result<u32, DeviceError> {
        let cmd = Command::new(op::READ_REG, addr.to_le_bytes().to_vec());
        Ok(self
            .command(cmd, 0, Duration::ZERO, Step::Command("READ_REG"))?
            .0)
    }

    /// Writes a 32-bit register.
    pub fn write_reg(&mut self, addr: u32, value: u32) -> Result<(), DeviceError> {
        let data = [addr, value, u32::MAX, 0]
            .iter()
            .flat_map(|w| w.to_le_bytes())
            .collect();
        self.command(
            Command::new(op::WRITE_REG, data),
            0,
            Duration::ZERO,
            Step::Command("WRITE_REG"),
        )
        .map(|_| ())
    }

    /// Attaches the SPI flash (default pins) and tells the ROM its geometry.
    pub fn attach_flash(&mut self, flash_size: u32) -> Result<(), DeviceError> {
        let step = Step::Command("SPI_ATTACH");
        self.command(
            Command::new(op::SPI_ATTACH, vec![0; 8]),
            0,
            Duration::ZERO,
            step,
        )?;
        let params = [0, flash_size, 64 * 1024, 4 * 1024, 256, 0xFFFF]
            .iter()
            .flat_map(|w: &u32| w.to_le_bytes())
            .collect();
        self.command(
            Command::new(op::SPI_SET_PARAMS, params),
            0,
            Duration::ZERO,
            Step::Command("SPI_SET_PARAMS"),
        )
        .map(|_| ())
    }

    /// Changes the UART speed on both ends.
    pub fn change_baud(&mut self, baud: u32) -> Result<(), DeviceError> {
        let step = Step::Command("CHANGE_BAUDRATE");
        let data = [baud, 0].iter().flat_map(|w| w.to_le_bytes()).collect();
        self.command(
            Command::new(op::CHANGE_BAUDRATE, data),
            0,
            Duration::ZERO,
            step,
        )?;
        self.port
            .set_baud_rate(baud)
            .map_err(|e| self.vanished(step, std::io::Error::other(e.to_string())))?;
        self.baud = baud;
        // The ROM switches after its answer; give the UART a moment, as esptool does.
        std::thread::sleep(Duration::from_millis(50));
        let _ = self.port.clear(serialport::ClearBuffer::Input);
        self.decoder = SlipDecoder::new(0x4000);
        self.pending.clear();
        self.pending_at = 0;
        Ok(())
    }

    /// Erases `erase` bytes at `offset` (a sector boundary) and writes `data` there in
    /// `FLASH_WRITE_SIZE` blocks, the last padded with erased bytes; what follows `data` stays
    /// erased (`0xFF`) without crossing the wire. Does not end the write: [`Loader::run_app`] does.
    pub fn write_flash(&mut self, offset: u32, erase: u32, data: &[u8]) -> Result<(), DeviceError> {
        self.deflated = false;
        let blocks = data.len().div_ceil(rom::FLASH_WRITE_SIZE);
        let erase = erase.max(data.len() as u32);
        let sectors = (erase as usize).div_ceil(rom::SECTOR_SIZE) as u32;
        let begin = [erase, blocks as u32, rom::FLASH_WRITE_SIZE as u32, offset]
            .iter()
            .flat_map(|w| w.to_le_bytes())
            .collect();
        self.command(
            Command::new(op::FLASH_BEGIN, begin),
            0,
            ERASE_PER_SECTOR * sectors,
            Step::Command("FLASH_BEGIN"),
        )?;
        for (seq, chunk) in data.chunks(rom::FLASH_WRITE_SIZE).enumerate() {
            let mut block = Zeroizing::new(chunk.to_vec());
            block.resize(rom::FLASH_WRITE_SIZE, 0xFF);
            let cmd = Command::block(op::FLASH_DATA, seq as u32, &block);
            self.command(cmd, 0, Duration::ZERO, Step::Command("FLASH_DATA"))?;
        }
        Ok(())
    }

    /// Erases `erase` bytes at `offset` (a sector boundary) and writes `data` there compressed
    /// (`FLASH_DEFL_BEGIN`/`DATA`: zlib, inflated by the ROM into flash), the compressed stream in
    /// `FLASH_WRITE_SIZE` blocks, the last one short: fewer bytes cross the wire than with
    /// [`Loader::write_flash`], whose blocks are padded. The classic ESP32's ROM takes these
    /// commands without the stub (esptool sends them to it). The compressor's own buffers are freed
    /// without zeroizing; the compressed bytes are zeroized.
    pub fn write_flash_deflated(
        &mut self,
        offset: u32,
        erase: u32,
        data: &[u8],
    ) -> Result<(), DeviceError> {
        use std::io::Write as _;
        let step = Step::Command("FLASH_DEFL_BEGIN");
        // Room for incompressible data (zlib adds 5 bytes per 64 KiB stored block and 6 in all),
        // so that the output is never reallocated and leaves no copy behind.
        let mut encoder = flate2::write::ZlibEncoder::new(
            Vec::with_capacity(data.len() + data.len() / 1024 + 64),
            flate2::Compression::best(),
        );
        let compressed = encoder
            .write_all(data)
            .and_then(|()| encoder.finish())
            .map(Zeroizing::new)
            .map_err(|e| DeviceError::Protocol {
                port: self.port_name.clone(),
                step,
                reason: format!("cannot compress the image: {e}"),
            })?;
        let block = rom::FLASH_WRITE_SIZE;
        let blocks = compressed.len().div_ceil(block);
        // The ROM erases at begin, the size rounded up to whole blocks (as esptool sends it).
        let erase = (erase.max(data.len() as u32) as usize).div_ceil(block) * block;
        let sectors = erase.div_ceil(rom::SECTOR_SIZE) as u32;
        let begin = [erase as u32, blocks as u32, block as u32, offset]
            .iter()
            .flat_map(|w| w.to_le_bytes())
            .collect();
        self.command(
            Command::new(op::FLASH_DEFL_BEGIN, begin),
            0,
            ERASE_PER_SECTOR * sectors,
            step,
        )?;
        self.deflated = true;
        for (seq, chunk) in compressed.chunks(block).enumerate() {
            let cmd = Command::block(op::FLASH_DEFL_DATA, seq as u32, chunk);
            self.command(cmd, 0, Duration::ZERO, Step::Command("FLASH_DEFL_DATA"))?;
        }
        Ok(())
    }

    /// The ROM's MD5 of `len` bytes of flash at `offset`, lowercase hex.
    pub fn flash_md5(&mut self, offset: u32, len: u32) -> Result<String, DeviceError> {
        let step = Step::Command("SPI_FLASH_MD5");
        let data = [offset, len, 0, 0]
            .iter()
            .flat_map(|w| w.to_le_bytes())
            .collect();
        // The ROM hashes at a few MB/s.
        let extra = Duration::from_millis(u64::from(len / 1024));
        let (_, body) = self.command(Command::new(op::SPI_FLASH_MD5, data), 32, extra, step)?;
        String::from_utf8(body)
            .ok()
            .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
            .map(|h| h.to_ascii_lowercase())
            .ok_or_else(|| DeviceError::Protocol {
                port: self.port_name.clone(),
                step,
                reason: "the MD5 is not 32 hex digits".into(),
            })
    }

    /// Reads `len` bytes at `offset` with the ROM's 64-byte `READ_FLASH_SLOW`.
    pub fn read_flash(
        &mut self,
        offset: u32,
        len: usize,
    ) -> Result<Zeroizing<Vec<u8>>, DeviceError> {
        let mut out = Zeroizing::new(Vec::with_capacity(len));
        while out.len() < len {
            let n = (len - out.len()).min(rom::READ_SLOW_BLOCK);
            let data = [offset + out.len() as u32, n as u32]
                .iter()
                .flat_map(|w| w.to_le_bytes())
                .collect();
            let (_, body) = self.command(
                Command::new(op::READ_FLASH_SLOW, data),
                rom::READ_SLOW_BLOCK,
                Duration::ZERO,
                Step::Command("READ_FLASH_SLOW"),
            )?;
            let body = Zeroizing::new(body);
            out.extend_from_slice(&body[..n]);
        }
        Ok(out)
    }

    /// Ends the flash write and leaves the bootloader: the chip runs its application. Waits at
    /// most `wait` for the answer (a chip already gone need not hold up the slot).
    pub fn run_app(&mut self, wait: Duration) -> Result<(), DeviceError> {
        // A compressed write is ended by its own command; either runs the application.
        let (end, step) = if std::mem::take(&mut self.deflated) {
            (op::FLASH_DEFL_END, Step::Command("FLASH_DEFL_END"))
        } else {
            (op::FLASH_END, Step::Command("FLASH_END"))
        };
        let started = Instant::now();
        self.send(&Command::new(end, 0u32.to_le_bytes().to_vec()), step)?;
        match self.receive(end, wait, step)? {
            Some(r) if r.body(0).is_ok() => Ok(()),
            Some(r) => Err(DeviceError::Protocol {
                port: self.port_name.clone(),
                step,
                reason: format!("the ROM bootloader refused it ({:?})", r.body(0).err()),
            }),
            None => Err(DeviceError::NoAnswer {
                port: self.port_name.clone(),
                step,
                attempts: 1,
                waited: started.elapsed(),
            }),
        }
    }

    /// eFuse read word `n`.
    pub fn efuse(&mut self, n: u32) -> Result<u32, DeviceError> {
        self.read_reg(reg::EFUSE_RD_BASE + 4 * n)
    }
}
