//! The ESP32 ROM serial bootloader's protocol, shared by the driver and the simulator: SLIP framing
//! (RFC 1055: `0xC0` ends a packet, `0xDB 0xDC` stands for `0xC0`, `0xDB 0xDD` for `0xDB`), the
//! command packet (`00 op len16 chk32 data`), the response packet (`01 op len16 val32 data`) whose
//! data ends with the classic ESP32 ROM's four status bytes (`status, error, 0, 0`), the opcodes
//! `esptool` sends without its flasher stub, and the registers it reads.
//!
//! Espressif documents the protocol in "Serial Protocol" of the esptool documentation; the classic
//! ESP32 is the chip here because its ROM alone reads flash back without the stub
//! (`READ_FLASH_SLOW`), which a station needs for an honest read-back check.

/// SLIP's packet end.
pub const END: u8 = 0xC0;
/// SLIP's escape.
pub const ESC: u8 = 0xDB;
/// Escaped `END`.
pub const ESC_END: u8 = 0xDC;
/// Escaped `ESC`.
pub const ESC_ESC: u8 = 0xDD;

/// The seed of the data checksum (XOR of every data byte) of `FLASH_DATA` and friends.
pub const CHECKSUM_SEED: u8 = 0xEF;
/// The payload of `SYNC`: `07 07 12 20` then 32 × `0x55` (auto-baud detection pattern).
pub const SYNC_PAYLOAD: [u8; 36] = {
    let mut p = [0x55u8; 36];
    p[0] = 0x07;
    p[1] = 0x07;
    p[2] = 0x12;
    p[3] = 0x20;
    p
};
/// How many answers the ROM sends to one `SYNC` (esptool reads all eight).
pub const SYNC_ANSWERS: usize = 8;
/// The largest data block `FLASH_DATA` carries (esptool's `FLASH_WRITE_SIZE` for the ROM).
pub const FLASH_WRITE_SIZE: usize = 0x400;
/// What one `READ_FLASH_SLOW` returns (always this many bytes, however many were asked).
pub const READ_SLOW_BLOCK: usize = 64;
/// The flash erase unit.
pub const SECTOR_SIZE: usize = 0x1000;
/// The ROM's speed at reset.
pub const ROM_BAUD: u32 = 115_200;

/// Opcodes (the byte after the direction byte).
pub mod op {
    /// Erase a region and start a flash write.
    pub const FLASH_BEGIN: u8 = 0x02;
    /// One block of a flash write.
    pub const FLASH_DATA: u8 = 0x03;
    /// End a flash write; `0` in the data runs the application (leaves the bootloader).
    pub const FLASH_END: u8 = 0x04;
    /// Auto-baud and handshake.
    pub const SYNC: u8 = 0x08;
    /// Write a 32-bit register (address, value, mask, delay µs; repeated).
    pub const WRITE_REG: u8 = 0x09;
    /// Read a 32-bit register (the value comes in the response's `val`).
    pub const READ_REG: u8 = 0x0A;
    /// Set the SPI flash's geometry.
    pub const SPI_SET_PARAMS: u8 = 0x0B;
    /// Attach the SPI flash (pin configuration).
    pub const SPI_ATTACH: u8 = 0x0D;
    /// Read up to 64 bytes of flash (ROM only).
    pub const READ_FLASH_SLOW: u8 = 0x0E;
    /// Change the UART speed (new baud, 0).
    pub const CHANGE_BAUDRATE: u8 = 0x0F;
    /// Start a zlib-compressed flash write.
    pub const FLASH_DEFL_BEGIN: u8 = 0x10;
    /// One block of compressed data.
    pub const FLASH_DEFL_DATA: u8 = 0x11;
    /// End a compressed write.
    pub const FLASH_DEFL_END: u8 = 0x12;
    /// MD5 of a flash region (the ROM answers 32 lowercase hex digits).
    pub const SPI_FLASH_MD5: u8 = 0x13;
}

/// Error codes in the response's second status byte.
pub mod error {
    /// The message is not one the ROM knows, or its length is wrong.
    pub const INVALID_MESSAGE: u8 = 0x05;
    /// The command failed to act.
    pub const FAILED_TO_ACT: u8 = 0x06;
    /// The data checksum does not match.
    pub const INVALID_CRC: u8 = 0x07;
    /// The flash write failed.
    pub const FLASH_WRITE: u8 = 0x08;
    /// The flash read failed.
    pub const FLASH_READ: u8 = 0x09;
    /// A flash read longer than the command allows.
    pub const READ_LENGTH: u8 = 0x0A;
    /// The compressed data does not inflate.
    pub const DEFLATE: u8 = 0x0B;
}

/// Registers the station and esptool read on a classic ESP32.
pub mod reg {
    /// A ROM word whose value names the chip.
    pub const CHIP_DETECT_MAGIC: u32 = 0x4000_1000;
    /// The classic ESP32's magic value.
    pub const ESP32_MAGIC: u32 = 0x00F0_1D83;
    /// eFuse read words: word *n* is at `EFUSE_RD_BASE + 4n` (block 0 is words 0..=6).
    pub const EFUSE_RD_BASE: u32 = 0x3FF5_A000;
    /// eFuse block-0 program words (`EFUSE_BLK0_WDATA0_REG`..): bits set here are burnt by `PGM`.
    pub const EFUSE_WDATA_BASE: u32 = 0x3FF5_A01C;
    /// `EFUSE_CONF_REG`: `0x5A5A` before a program command, `0x5AA5` before a read.
    pub const EFUSE_CONF: u32 = 0x3FF5_A0FC;
    /// `EFUSE_CMD_REG`: `2` programs, `1` reloads; reads back 0 when done.
    pub const EFUSE_CMD: u32 = 0x3FF5_A104;
    /// The `EFUSE_CONF` value that allows programming.
    pub const EFUSE_CONF_WRITE: u32 = 0x5A5A;
    /// The `EFUSE_CMD` program command.
    pub const EFUSE_CMD_PGM: u32 = 0x2;
    /// `FLASH_CRYPT_CNT` in eFuse word 0: flash encryption is on when an odd number of bits is set.
    pub const FLASH_CRYPT_CNT_MASK: u32 = 0x7F << 20;
    /// eFuse word 6 holds `ABS_DONE_0` (secure boot v1) at bit 4 and `ABS_DONE_1` (v2) at bit 5.
    pub const ABS_DONE_WORD: usize = 6;
    /// `ABS_DONE_0`.
    pub const ABS_DONE_0: u32 = 1 << 4;
    /// `ABS_DONE_1`.
    pub const ABS_DONE_1: u32 = 1 << 5;
    /// `APB_CTL_DATE`: bit 31 is one of the chip revision bits.
    pub const APB_CTL_DATE: u32 = 0x3FF6_607C;
    /// The UART0 clock divider: `APB clock / baud`.
    pub const UART_CLKDIV: u32 = 0x3FF4_0014;
    /// The SPI flash controller (SPI1) whose user command esptool runs to read the flash id.
    pub const SPI_BASE: u32 = 0x3FF4_2000;
    /// `SPI_CMD_REG`: writing `SPI_CMD_USR` runs the user command; reads back 0 when done.
    pub const SPI_CMD: u32 = SPI_BASE;
    /// `SPI_USER2_REG`: the command byte in the low bits.
    pub const SPI_USR2: u32 = SPI_BASE + 0x24;
    /// `SPI_W0_REG`: the first data word.
    pub const SPI_W0: u32 = SPI_BASE + 0x80;
    /// The "run the user command" bit.
    pub const SPI_CMD_USR: u32 = 1 << 18;
}

/// XOR checksum of `data` as the ROM checks it.
pub fn checksum(data: &[u8]) -> u8 {
    data.iter().fold(CHECKSUM_SEED, |acc, b| acc ^ b)
}

/// Whether eFuse word 0 says flash encryption is on (an odd count of `FLASH_CRYPT_CNT` bits).
pub fn flash_encryption_on(word0: u32) -> bool {
    (word0 & reg::FLASH_CRYPT_CNT_MASK).count_ones() % 2 == 1
}

/// Whether eFuse word 6 says secure boot is on.
pub fn secure_boot_on(word6: u32) -> bool {
    word6 & (reg::ABS_DONE_0 | reg::ABS_DONE_1) != 0
}

/// SLIP-encodes one packet, delimiters included.
pub fn slip_encode(packet: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(packet.len() + 8);
    out.push(END);
    for &b in packet {
        match b {
            END => out.extend_from_slice(&[ESC, ESC_END]),
            ESC => out.extend_from_slice(&[ESC, ESC_ESC]),
            _ => out.push(b),
        }
    }
    out.push(END);
    out
}

/// Reassembles SLIP packets from a byte stream. Bytes outside a packet (a boot log) are skipped;
/// a packet longer than `limit` is dropped whole.
#[derive(Debug)]
pub struct SlipDecoder {
    buf: Vec<u8>,
    in_packet: bool,
    escaped: bool,
    limit: usize,
}

impl SlipDecoder {
    /// A decoder keeping packets up to `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self {
            buf: Vec::new(),
            in_packet: false,
            escaped: false,
            limit,
        }
    }

    /// Feeds one byte; returns a whole packet when this byte ends one.
    pub fn push(&mut self, b: u8) -> Option<Vec<u8>> {
        if !self.in_packet {
            if b == END {
                self.in_packet = true;
                self.buf.clear();
            }
            return None;
        }
        if b == END {
            if self.buf.is_empty() {
                // Two ENDs in a row: the second starts the packet.
                return None;
            }
            self.in_packet = false;
            self.escaped = false;
            return Some(std::mem::take(&mut self.buf));
        }
        let byte = if self.escaped {
            self.escaped = false;
            match b {
                ESC_END => END,
                ESC_ESC => ESC,
                other => other,
            }
        } else if b == ESC {
            self.escaped = true;
            return None;
        } else {
            b
        };
        if self.buf.len() >= self.limit {
            self.in_packet = false;
            self.buf.clear();
            return None;
        }
        self.buf.push(byte);
        None
    }
}

/// A command packet (station → chip).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// The opcode.
    pub op: u8,
    /// The checksum field (meaningful for data blocks only).
    pub checksum: u32,
    /// The data.
    pub data: Vec<u8>,
}

impl Command {
    /// A command without a data checksum.
    pub fn new(op: u8, data: Vec<u8>) -> Self {
        Self {
            op,
            checksum: 0,
            data,
        }
    }

    /// A data-block command (`FLASH_DATA`, `FLASH_DEFL_DATA`): a 16-byte header (length,
    /// sequence, 0, 0) then the block, the checksum over the block.
    pub fn block(op: u8, seq: u32, block: &[u8]) -> Self {
        let mut data = Vec::with_capacity(16 + block.len());
        for word in [block.len() as u32, seq, 0, 0] {
            data.extend_from_slice(&word.to_le_bytes());
        }
        data.extend_from_slice(block);
        Self {
            op,
            checksum: u32::from(checksum(block)),
            data,
        }
    }

    /// The unframed packet.
    pub fn encode(&self) -> Vec<u8> {
        let mut p = Vec::with_capacity(8 + self.data.len());
        p.push(0x00);
        p.push(self.op);
        p.extend_from_slice(&(self.data.len() as u16).to_le_bytes());
        p.extend_from_slice(&self.checksum.to_le_bytes());
        p.extend_from_slice(&self.data);
        p
    }

    /// Parses an unframed packet; `None` if it is not a well-formed command.
    pub fn parse(packet: &[u8]) -> Option<Self> {
        if packet.len() < 8 || packet[0] != 0x00 {
            return None;
        }
        let len = usize::from(u16::from_le_bytes([packet[2], packet[3]]));
        if packet.len() != 8 + len {
            return None;
        }
        Some(Self {
            op: packet[1],
            checksum: u32::from_le_bytes([packet[4], packet[5], packet[6], packet[7]]),
            data: packet[8..].to_vec(),
        })
    }
}

/// A response packet (chip → station).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The opcode answered.
    pub op: u8,
    /// The value field (`READ_REG`'s register value).
    pub value: u32,
    /// The data, status bytes included.
    pub data: Vec<u8>,
}

impl Response {
    /// A successful answer: `body` then the status bytes `00 00 00 00`.
    pub fn ok(op: u8, value: u32, body: &[u8]) -> Self {
        let mut data = body.to_vec();
        data.extend_from_slice(&[0, 0, 0, 0]);
        Self { op, value, data }
    }

    /// A failed answer: status `01`, then the error code.
    pub fn failed(op: u8, code: u8) -> Self {
        Self {
            op,
            value: 0,
            data: vec![1, code, 0, 0],
        }
    }

    /// The unframed packet.
    pub fn encode(&self) -> Vec<u8> {
        let mut p = Vec::with_capacity(8 + self.data.len());
        p.push(0x01);
        p.push(self.op);
        p.extend_from_slice(&(self.data.len() as u16).to_le_bytes());
        p.extend_from_slice(&self.value.to_le_bytes());
        p.extend_from_slice(&self.data);
        p
    }

    /// Parses an unframed packet; `None` if it is not a response.
    pub fn parse(packet: &[u8]) -> Option<Self> {
        if packet.len() < 8 || packet[0] != 0x01 {
            return None;
        }
        Some(Self {
            op: packet[1],
            value: u32::from_le_bytes([packet[4], packet[5], packet[6], packet[7]]),
            data: packet[8..].to_vec(),
        })
    }

    /// The body before the status bytes, or the error code if the status says failure.
    /// `body_len` is how many bytes the command answers before its status.
    pub fn body(&self, body_len: usize) -> Result<&[u8], u8> {
        if self.data.len() < body_len + 2 {
            return Err(match self.data.first() {
                Some(&s) if s != 0 => self.data.get(1).copied().unwrap_or(0),
                _ => error::INVALID_MESSAGE,
            });
        }
        let status = &self.data[body_len..body_len + 2];
        if status[0] != 0 {
            return Err(status[1]);
        }
        Ok(&self.data[..body_len])
    }
}

/// What an error code means, for messages.
pub fn error_name(code: u8) -> &'static str {
    match code {
        error::INVALID_MESSAGE => "invalid message",
        error::FAILED_TO_ACT => "failed to act",
        error::INVALID_CRC => "data checksum mismatch",
        error::FLASH_WRITE => "flash write error",
        error::FLASH_READ => "flash read error",
        error::READ_LENGTH => "flash read length error",
        error::DEFLATE => "deflate error",
        _ => "unknown error",
    }
}

/// Little-endian u32 at `at` in `data` (0 past the end: the ROM reads uninitialised as 0 too,
/// and every caller checks the length first).
pub fn le32(data: &[u8], at: usize) -> u32 {
    data.get(at..at + 4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slip_round_trips_the_escaped_bytes() {
        let packet = vec![0x00, END, 0x01, ESC, END, ESC, 0x02];
        let framed = slip_encode(&packet);
        assert_eq!(framed.iter().filter(|&&b| b == END).count(), 2);
        let mut d = SlipDecoder::new(64);
        let out: Vec<_> = b"boot log\r\n"
            .iter()
            .chain(framed.iter())
            .filter_map(|&b| d.push(b))
            .collect();
        assert_eq!(out, vec![packet]);
    }

    #[test]
    fn a_block_command_carries_its_checksum_and_parses_back() {
        let c = Command::block(op::FLASH_DATA, 3, &[1, 2, 3]);
        assert_eq!(c.checksum, u32::from(0xEFu8 ^ 1 ^ 2 ^ 3));
        assert_eq!(Command::parse(&c.encode()), Some(c));
        assert_eq!(Command::parse(&[0, 1, 5, 0, 0, 0, 0, 0]), None);
    }

    #[test]
    fn a_response_gives_its_body_or_its_error() {
        let ok = Response::ok(op::SPI_FLASH_MD5, 0, b"0123");
        assert_eq!(
            Response::parse(&ok.encode()).unwrap().body(4),
            Ok(&b"0123"[..])
        );
        let failed = Response::failed(op::FLASH_DATA, error::INVALID_CRC);
        assert_eq!(failed.body(0), Err(error::INVALID_CRC));
        assert_eq!(failed.body(32), Err(error::INVALID_CRC));
    }

    #[test]
    fn efuse_words_say_when_the_chip_is_locked() {
        assert!(!flash_encryption_on(0));
        assert!(flash_encryption_on(1 << 20));
        assert!(!flash_encryption_on(3 << 20), "an even count is off again");
        assert!(secure_boot_on(reg::ABS_DONE_0));
        assert!(!secure_boot_on(0));
    }
}
