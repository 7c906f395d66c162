//! A simulated classic ESP32 in its ROM serial bootloader (download mode), on a pseudo-terminal:
//! the commands `esptool --no-stub` and the station's driver send (`SYNC`, `READ_REG`/`WRITE_REG`,
//! `SPI_ATTACH`, `SPI_SET_PARAMS`, `FLASH_BEGIN`/`DATA`/`END` and their compressed `DEFL` forms,
//! `SPI_FLASH_MD5`, `CHANGE_BAUDRATE`, `READ_FLASH_SLOW`), answered as the ROM answers (four status
//! bytes, `SYNC` answered eight times, an unknown command refused with "invalid message"). The
//! 4 MB flash is a file (erased flash is `0xFF`); the eFuses are words the registers show, and the
//! block-0 program sequence (`EFUSE_CONF = 0x5A5A`, `EFUSE_CMD = 2`) burns bits and records it.
//!
//! `FLASH_END` with "run the application" leaves download mode, as the real chip does; the chip goes
//! back to download mode when the station's end of the port is closed (the fixture's reset lines
//! hold GPIO0 low at the next power-up). Faults: a chip that never answers `SYNC` (held in reset,
//! wrong strapping), a flash cell that does not keep the first byte written (MD5 and read-back
//! fail), flash encryption or secure boot already on.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use flate2::{Decompress, FlushDecompress, Status};
use md5::{Digest, Md5};

use crate::device::esp32::rom::{self, Command, Response, error, le32, op, reg};

/// The simulated flash size (4 MB, the common ESP32 module).
pub const FLASH_SIZE: usize = 4 * 1024 * 1024;
/// The JEDEC id the flash answers to `0x9F` (a Winbond W25Q32: 4 MB).
const FLASH_JEDEC_ID: u32 = 0x16_40_EF;
/// The APB clock the UART divider is taken from.
const APB_CLOCK: u32 = 40_000_000;
/// The largest packet accepted (a 0x400 data block plus headers, with room to spare).
pub(super) const PACKET_LIMIT: usize = 0x4000;

/// Faults and starting state of a simulated ESP32.
#[derive(Debug, Clone, Default)]
pub struct Esp32Faults {
    /// Emulate the UART's speed (bytes take `10 / baud` s), starting at this baud; `CHANGE_BAUDRATE`
    /// changes it as it changes a real UART.
    pub baud: Option<u32>,
    /// Never answer `SYNC` (a chip held in reset or not strapped for download mode).
    pub no_sync: bool,
    /// The first flash write loses a bit (a worn cell): the flash MD5 and a read-back differ.
    pub bad_flash_write: bool,
    /// Flash encryption already on (`FLASH_CRYPT_CNT` = 1).
    pub flash_encryption: bool,
    /// Secure boot v1 already on (`ABS_DONE_0`).
    pub secure_boot: bool,
}

/// One eFuse program operation the chip performed: block-0 word and the bits burnt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EfuseBurn {
    /// eFuse block-0 word (0..=6).
    pub word: usize,
    /// The bits set by this burn.
    pub bits: u32,
}

/// An in-progress flash write.
pub(super) struct Write_ {
    offset: usize,
    next_seq: u32,
    block_size: usize,
    /// Compressed writes: the inflater and where the next inflated byte goes.
    inflate: Option<(Decompress, usize)>,
}

/// The simulated chip's state.
pub struct Esp32Chip {
    mac: [u8; 6],
    efuse: [u32; 32],
    efuse_wdata: [u32; 7],
    regs: std::collections::HashMap<u32, u32>,
    flash: File,
    flash_path: PathBuf,
    pub(super) write: Option<Write_>,
    baud: u32,
    pub(super) in_download_mode: bool,
    runs: u64,
    writes: u64,
    burns: Vec<EfuseBurn>,
    faults: Esp32Faults,
}

impl Esp32Chip {
    /// Chip `index` with its flash in `flash_path` (made erased if it does not exist).
    pub fn new(index: usize, flash_path: &Path, faults: Esp32Faults) -> std::io::Result<Self> {
        let flash = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(flash_path)?;
        if flash.metadata()?.len() != FLASH_SIZE as u64 {
            flash.set_len(0)?;
            flash.write_all_at(&vec![0xFF; FLASH_SIZE], 0)?;
        }
        // Espressif's OUI 24:0A:C4, then the index: a MAC as eFuse block 0 words 1 and 2 hold it.
        let mac = [0x24, 0x0A, 0xC4, 0x5E, (index >> 8) as u8, index as u8];
        let mut efuse = [0u32; 32];
        efuse[1] = u32::from_be_bytes([mac[2], mac[3], mac[4], mac[5]]);
        efuse[2] = u32::from_be_bytes([0, 0, mac[0], mac[1]]);
        // ESP32-D0WD-V3: package 1 (word 3 bits 9..11), revision bits (word 3 bit 15, word 5 bit 20).
        efuse[3] = (1 << 9) | (1 << 15);
        efuse[5] = 1 << 20;
        if faults.flash_encryption {
            efuse[0] |= 1 << 20;
        }
        if faults.secure_boot {
            efuse[reg::ABS_DONE_WORD] |= reg::ABS_DONE_0;
        }
        let baud = faults.baud.unwrap_or(rom::ROM_BAUD);
        Ok(Self {
            mac,
            efuse,
            efuse_wdata: [0; 7],
            regs: Default::default(),
            flash,
            flash_path: flash_path.to_path_buf(),
            write: None,
            baud,
            in_download_mode: true,
            runs: 0,
            writes: 0,
            burns: Vec::new(),
            faults,
        })
    }

    /// The chip's base MAC (from its eFuses).
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// eFuse block-0 word `n` as the chip reads it now.
    pub fn efuse(&self, n: usize) -> u32 {
        self.efuse.get(n).copied().unwrap_or(0)
    }

    /// Every eFuse burn the chip performed, in order.
    pub fn burns(&self) -> &[EfuseBurn] {
        &self.burns
    }

    /// How many times the chip left the bootloader to run the application.
    pub fn runs(&self) -> u64 {
        self.runs
    }

    /// Whether the chip is in download mode (it leaves on `FLASH_END` "run").
    pub fn in_download_mode(&self) -> bool {
        self.in_download_mode
    }

    /// The flash file.
    pub fn flash_path(&self) -> &Path {
        &self.flash_path
    }

    /// `len` bytes of flash at `offset` (what a firmware reading its partition sees).
    pub fn read_flash(&self, offset: usize, len: usize) -> std::io::Result<Vec<u8>> {
        let mut buf = vec![0u8; len];
        self.flash.read_exact_at(&mut buf, offset as u64)?;
        Ok(buf)
    }

    /// Answers one command packet; an empty list for a packet the ROM ignores.
    pub fn handle(&mut self, packet: &[u8]) -> Vec<Response> {
        let Some(cmd) = Command::parse(packet) else {
            return Vec::new();
        };
        // Running its application, the chip hears nothing of the bootloader's protocol.
        if !self.in_download_mode {
            return Vec::new();
        }
        if cmd.op == op::SYNC {
            if self.faults.no_sync || cmd.data != rom::SYNC_PAYLOAD {
                return Vec::new();
            }
            return vec![Response::ok(op::SYNC, 0x2012_0707, &[]); rom::SYNC_ANSWERS];
        }
        let answer = match self.command(&cmd) {
            Ok((value, body)) => Response::ok(cmd.op, value, &body),
            Err(code) => Response::failed(cmd.op, code),
        };
        vec![answer]
    }

    fn command(&mut self, cmd: &Command) -> Result<(u32, Vec<u8>), u8> {
        let d = &cmd.data;
        let need = |n: usize| {
            if d.len() == n {
                Ok(())
            } else {
                Err(error::INVALID_MESSAGE)
            }
        };
        match cmd.op {
            op::READ_REG => {
                need(4)?;
                Ok((self.read_reg(le32(d, 0)), Vec::new()))
            }
            op::WRITE_REG => {
                if d.is_empty() || !d.len().is_multiple_of(16) {
                    return Err(error::INVALID_MESSAGE);
                }
                for w in d.chunks(16) {
                    self.write_reg(le32(w, 0), le32(w, 4), le32(w, 8));
                }
                Ok((0, Vec::new()))
            }
            op::SPI_ATTACH => need(8).map(|()| (0, Vec::new())),
            op::SPI_SET_PARAMS => need(24).map(|()| (0, Vec::new())),
            op::CHANGE_BAUDRATE => {
                need(8)?;
                let baud = le32(d, 0);
                if !(300..=5_000_000).contains(&baud) {
                    return Err(error::FAILED_TO_ACT);
                }
                self.baud = baud;
                Ok((0, Vec::new()))
            }
            op::FLASH_BEGIN | op::FLASH_DEFL_BEGIN => {
                need(16)?;
                self.begin(cmd.op == op::FLASH_DEFL_BEGIN, d)
            }
            op::FLASH_DATA | op::FLASH_DEFL_DATA => self.data(cmd),
            op::FLASH_END | op::FLASH_DEFL_END => {
                need(4)?;
                self.write = None;
                if le32(d, 0) == 0 {
                    // "Run the application": the ROM jumps to the flashed code.
                    self.in_download_mode = false;
                    self.runs += 1;
                }
                Ok((0, Vec::new()))
            }
            op::SPI_FLASH_MD5 => {
                need(16)?;
                let (addr, size) = (le32(d, 0) as usize, le32(d, 4) as usize);
                let bytes = self.flash_range(addr, size)?;
                let hex = hex::encode(Md5::digest(&bytes));
                Ok((0, hex.into_bytes()))
            }
            op::READ_FLASH_SLOW => {
                need(8)?;
                let (addr, len) = (le32(d, 0) as usize, le32(d, 4) as usize);
                if len > rom::READ_SLOW_BLOCK {
                    return Err(error::READ_LENGTH);
                }
                let mut block = self.flash_range(addr, len)?;
                block.resize(rom::READ_SLOW_BLOCK, 0);
                Ok((0, block))
            }
            _ => Err(error::INVALID_MESSAGE),
        }
    }

    fn flash_range(&self, addr: usize, size: usize) -> Result<Vec<u8>, u8> {
        if addr.checked_add(size).is_none_or(|end| end > FLASH_SIZE) {
            return Err(error::FLASH_READ);
        }
        self.read_flash(addr, size).map_err(|_| error::FLASH_READ)
    }

    fn begin(&mut self, compressed: bool, d: &[u8]) -> Result<(u32, Vec<u8>), u8> {
        let (erase, block_size, offset) = (le32(d, 0) as usize, le32(d, 8) as usize, le32(d, 12));
        let offset = offset as usize;
        if !offset.is_multiple_of(rom::SECTOR_SIZE)
            || block_size == 0
            || block_size > PACKET_LIMIT
            || offset.checked_add(erase).is_none_or(|end| end > FLASH_SIZE)
        {
            return Err(error::FAILED_TO_ACT);
        }
        // The ROM erases whole sectors up front.
        let sectors = erase.div_ceil(rom::SECTOR_SIZE) * rom::SECTOR_SIZE;
        let end = (offset + sectors).min(FLASH_SIZE);
        self.flash
            .write_all_at(&vec![0xFF; end - offset], offset as u64)
            .map_err(|_| error::FLASH_WRITE)?;
        self.write = Some(Write_ {
            offset,
            next_seq: 0,
            block_size,
            inflate: compressed.then(|| (Decompress::new(true), offset)),
        });
        Ok((0, Vec::new()))
    }

    fn data(&mut self, cmd: &Command) -> Result<(u32, Vec<u8>), u8> {
        let d = &cmd.data;
        if d.len() < 16 {
            return Err(error::INVALID_MESSAGE);
        }
        let (len, seq) = (le32(d, 0) as usize, le32(d, 4));
        let block = &d[16..];
        if block.len() != len {
            return Err(error::INVALID_MESSAGE);
        }
        if u32::from(rom::checksum(block)) != cmd.checksum {
            return Err(error::INVALID_CRC);
        }
        let Some(w) = self.write.as_mut() else {
            return Err(error::FAILED_TO_ACT);
        };
        if seq != w.next_seq || (w.inflate.is_none() && len > w.block_size) {
            return Err(error::FAILED_TO_ACT);
        }
        w.next_seq += 1;
        let (at, bytes) = match &mut w.inflate {
            None => (w.offset + seq as usize * w.block_size, block.to_vec()),
            Some((inflater, at)) => {
                let start = *at;
                let mut out = Vec::with_capacity(len * 4);
                let mut input = block;
                loop {
                    if out.capacity() - out.len() < 32 * 1024 {
                        out.reserve(64 * 1024);
                    }
                    let (in_before, out_before) = (inflater.total_in(), inflater.total_out());
                    let status = inflater
                        .decompress_vec(input, &mut out, FlushDecompress::None)
                        .map_err(|_| error::DEFLATE)?;
                    input = &input[(inflater.total_in() - in_before) as usize..];
                    let stalled =
                        inflater.total_in() == in_before && inflater.total_out() == out_before;
                    let drained = input.is_empty() && out.len() < out.capacity();
                    if status == Status::StreamEnd || stalled || drained {
                        break;
                    }
                }
                *at += out.len();
                (start, out)
            }
        };
        self.program(at, &bytes)
    }

    /// Writes `bytes` at `at` as NOR flash does: bits only go from 1 to 0.
    fn program(&mut self, at: usize, bytes: &[u8]) -> Result<(u32, Vec<u8>), u8> {
        if at
            .checked_add(bytes.len())
            .is_none_or(|end| end > FLASH_SIZE)
        {
            return Err(error::FLASH_WRITE);
        }
        let mut cells = self.flash_range(at, bytes.len())?;
        for (cell, b) in cells.iter_mut().zip(bytes) {
            *cell &= b;
        }
        self.writes += 1;
        if self.faults.bad_flash_write && self.writes == 1 && !cells.is_empty() {
            // A worn cell: its lowest bit stays as it was erased.
            cells[0] |= 1;
            if cells[0] == bytes[0] {
                cells[0] ^= 0x02;
            }
        }
        self.flash
            .write_all_at(&cells, at as u64)
            .map_err(|_| error::FLASH_WRITE)?;
        Ok((0, Vec::new()))
    }

    fn read_reg(&self, addr: u32) -> u32 {
        match addr {
            reg::CHIP_DETECT_MAGIC => reg::ESP32_MAGIC,
            a if (reg::EFUSE_RD_BASE..reg::EFUSE_RD_BASE + 4 * 32).contains(&a) => {
                self.efuse[((a - reg::EFUSE_RD_BASE) / 4) as usize]
            }
            reg::EFUSE_CMD | reg::SPI_CMD => 0,
            reg::APB_CTL_DATE => 1 << 31,
            reg::UART_CLKDIV => APB_CLOCK / self.baud.max(1),
            a => self.regs.get(&a).copied().unwrap_or(0),
        }
    }

    fn write_reg(&mut self, addr: u32, value: u32, mask: u32) {
        let old = self.read_reg(addr);
        let value = (old & !mask) | (value & mask);
        match addr {
            a if (reg::EFUSE_WDATA_BASE..reg::EFUSE_WDATA_BASE + 4 * 7).contains(&a) => {
                self.efuse_wdata[((a - reg::EFUSE_WDATA_BASE) / 4) as usize] = value;
            }
            reg::EFUSE_CMD => {
                let conf = self.regs.get(&reg::EFUSE_CONF).copied().unwrap_or(0);
                if value == reg::EFUSE_CMD_PGM && conf == reg::EFUSE_CONF_WRITE {
                    for (word, bits) in std::mem::take(&mut self.efuse_wdata)
                        .into_iter()
                        .enumerate()
                    {
                        let new = bits & !self.efuse[word];
                        if new != 0 {
                            self.efuse[word] |= new;
                            self.burns.push(EfuseBurn { word, bits: new });
                        }
                    }
                }
            }
            reg::SPI_CMD if value & reg::SPI_CMD_USR != 0 => {
                // The SPI user command esptool runs: the JEDEC id; status registers read 0.
                let command = self.regs.get(&reg::SPI_USR2).copied().unwrap_or(0) & 0xFF;
                let answer = if command == 0x9F { FLASH_JEDEC_ID } else { 0 };
                self.regs.insert(reg::SPI_W0, answer);
            }
            _ => {
                self.regs.insert(addr, value);
            }
        }
    }

    /// The UART speed now.
    pub(super) fn baud(&self) -> u32 {
        self.baud
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chip(faults: Esp32Faults) -> (tempfile::TempDir, Esp32Chip) {
        let dir = tempfile::tempdir().unwrap();
        let c = Esp32Chip::new(7, &dir.path().join("f.bin"), faults).unwrap();
        (dir, c)
    }

    fn ask(c: &mut Esp32Chip, cmd: Command) -> Response {
        c.handle(&cmd.encode()).pop().unwrap()
    }

    #[test]
    fn sync_is_answered_eight_times_and_the_mac_is_in_the_efuses() {
        let (_d, mut c) = chip(Esp32Faults::default());
        let answers = c.handle(&Command::new(op::SYNC, rom::SYNC_PAYLOAD.to_vec()).encode());
        assert_eq!(answers.len(), 8);
        let w1 = ask(
            &mut c,
            Command::new(
                op::READ_REG,
                (reg::EFUSE_RD_BASE + 4).to_le_bytes().to_vec(),
            ),
        )
        .value;
        let w2 = ask(
            &mut c,
            Command::new(
                op::READ_REG,
                (reg::EFUSE_RD_BASE + 8).to_le_bytes().to_vec(),
            ),
        )
        .value;
        let mut mac = (w2 as u16).to_be_bytes().to_vec();
        mac.extend(w1.to_be_bytes());
        assert_eq!(mac, c.mac());
    }

    #[test]
    fn a_block_with_a_bad_checksum_is_refused_and_flash_keeps_its_bits_rule() {
        let (_d, mut c) = chip(Esp32Faults::default());
        let begin = [4u32, 1, 0x400, 0xD000]
            .iter()
            .flat_map(|w| w.to_le_bytes())
            .collect();
        assert_eq!(
            ask(&mut c, Command::new(op::FLASH_BEGIN, begin)).body(0),
            Ok(&[][..])
        );
        let mut bad = Command::block(op::FLASH_DATA, 0, &[1, 2, 3, 4]);
        bad.checksum ^= 1;
        assert_eq!(ask(&mut c, bad).body(0), Err(error::INVALID_CRC));
        let good = Command::block(op::FLASH_DATA, 0, &[1, 2, 3, 4]);
        assert_eq!(ask(&mut c, good).body(0), Ok(&[][..]));
        assert_eq!(c.read_flash(0xD000, 5).unwrap(), vec![1, 2, 3, 4, 0xFF]);
    }

    #[test]
    fn the_efuse_program_sequence_burns_and_is_recorded() {
        let (_d, mut c) = chip(Esp32Faults::default());
        c.write_reg(reg::EFUSE_WDATA_BASE, 1 << 20, u32::MAX);
        c.write_reg(reg::EFUSE_CMD, reg::EFUSE_CMD_PGM, u32::MAX);
        assert!(c.burns().is_empty(), "no burn without EFUSE_CONF = 0x5A5A");
        c.write_reg(reg::EFUSE_WDATA_BASE, 1 << 20, u32::MAX);
        c.write_reg(reg::EFUSE_CONF, reg::EFUSE_CONF_WRITE, u32::MAX);
        c.write_reg(reg::EFUSE_CMD, reg::EFUSE_CMD_PGM, u32::MAX);
        assert_eq!(
            c.burns(),
            &[EfuseBurn {
                word: 0,
                bits: 1 << 20
            }]
        );
        assert!(rom::flash_encryption_on(c.efuse(0)));
    }
}
