//! MCUmgr's console framing (Zephyr's SMP over a UART shared with the console): a packet is
//! `length (u16 BE, packet + CRC) ‖ packet ‖ CRC-16/XMODEM (u16 BE)`, base64, cut into lines of at
//! most `line_length` bytes; the first line starts with `0x06 0x09`, the others with `0x04 0x14`,
//! each ends with `\n`. Anything else on the console (log lines) is not SMP and is skipped.

use base64::Engine;

/// Start of a packet's first line.
pub const START: [u8; 2] = [0x06, 0x09];
/// Start of its following lines.
pub const CONTINUE: [u8; 2] = [0x04, 0x14];
/// Zephyr's default line length (`CONFIG_UART_MCUMGR_RX_BUF_SIZE` lines of 128 bytes).
pub const LINE_LENGTH: usize = 128;
/// The largest packet the station accepts (a reply bigger than any SMP buffer is line noise).
pub const MAX_PACKET: usize = 64 * 1024;

/// CRC-16/XMODEM, shared with the line protocol's CRC in `device::crc`.
pub use crate::device::crc::crc16_xmodem;

/// The console lines carrying `packet`, each at most `line_length` bytes with its delimiter and
/// newline (base64 cut at multiples of 4, as Zephyr and smpclient do).
pub fn encode(packet: &[u8], line_length: usize) -> Vec<u8> {
    encode_with_crc(packet, crc16_xmodem(packet), line_length)
}

/// [`encode`] with a given CRC (a simulator's corrupted-frame fault).
pub fn encode_with_crc(packet: &[u8], crc: u16, line_length: usize) -> Vec<u8> {
    let mut raw = Vec::with_capacity(packet.len() + 4);
    raw.extend_from_slice(&((packet.len() + 2) as u16).to_be_bytes());
    raw.extend_from_slice(packet);
    raw.extend_from_slice(&crc.to_be_bytes());
    let b64 = base64::engine::general_purpose::STANDARD.encode(&raw);
    let chunk = (line_length.saturating_sub(4) / 4 * 4).max(4);
    let mut out = Vec::with_capacity(b64.len() + b64.len() / chunk * 3 + 3);
    for (i, part) in b64.as_bytes().chunks(chunk).enumerate() {
        out.extend_from_slice(if i == 0 { &START } else { &CONTINUE });
        out.extend_from_slice(part);
        out.push(b'\n');
    }
    out
}

/// Why a packet could not be taken from the console.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// A line that is not base64.
    #[error("a frame line that is not base64")]
    Base64,
    /// A length under the CRC's two bytes or over any SMP buffer.
    #[error("an impossible frame length {0}")]
    Length(usize),
    /// The CRC does not match.
    #[error("a frame whose CRC does not match (sent {sent:#06x}, computed {computed:#06x})")]
    Crc {
        /// The CRC in the frame.
        sent: u16,
        /// The CRC of what arrived.
        computed: u16,
    },
}

/// Reassembles packets from console lines.
#[derive(Default)]
pub struct Reassembler {
    b64: Vec<u8>,
    active: bool,
}

impl Reassembler {
    /// Takes one console line (without its `\n`); a complete packet when this line ends one.
    pub fn line(&mut self, line: &[u8]) -> Option<Result<Vec<u8>, FrameError>> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if let Some(rest) = line.strip_prefix(&START) {
            self.b64.clear();
            self.b64.extend_from_slice(rest);
            self.active = true;
        } else if let Some(rest) = line.strip_prefix(&CONTINUE) {
            if !self.active {
                return None;
            }
            self.b64.extend_from_slice(rest);
        } else {
            return None;
        }
        if self.b64.len() > MAX_PACKET * 4 / 3 + 8 {
            self.active = false;
            return Some(Err(FrameError::Length(self.b64.len() * 3 / 4)));
        }
        // The first 2 bytes (4 base64 characters hold them) give the length of the rest.
        let Ok(head) = base64::engine::general_purpose::STANDARD.decode(self.b64.get(..4)?) else {
            self.active = false;
            return Some(Err(FrameError::Base64));
        };
        let [hi, lo, ..] = head[..] else {
            self.active = false;
            return Some(Err(FrameError::Length(head.len())));
        };
        let want = usize::from(u16::from_be_bytes([hi, lo]));
        if !(2..=MAX_PACKET).contains(&want) {
            self.active = false;
            return Some(Err(FrameError::Length(want)));
        }
        let total_b64 = (2 + want).div_ceil(3) * 4;
        if self.b64.len() < total_b64 {
            return None;
        }
        self.active = false;
        let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(&self.b64) else {
            return Some(Err(FrameError::Base64));
        };
        if raw.len() != 2 + want {
            return Some(Err(FrameError::Length(raw.len().saturating_sub(2))));
        }
        let (packet, crc) = raw[2..].split_at(want - 2);
        let sent = u16::from_be_bytes([crc[0], crc[1]]);
        let computed = crc16_xmodem(packet);
        if sent != computed {
            return Some(Err(FrameError::Crc { sent, computed }));
        }
        Some(Ok(packet.to_vec()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_across_lines_and_refuses_bad_crc_and_length() {
        assert_eq!(crc16_xmodem(b"123456789"), 0x31C3);
        let packet: Vec<u8> = (0..300u16).map(|i| i as u8).collect();
        let lines = encode(&packet, LINE_LENGTH);
        let mut r = Reassembler::default();
        let mut got = None;
        for line in lines.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            assert!(line.len() < LINE_LENGTH);
            got = r.line(line).or(got);
        }
        assert_eq!(got, Some(Ok(packet.clone())));
        // smpclient's own example line: "Hello, world!".
        assert_eq!(
            encode(b"Hello, world!", 127),
            b"\x06\tAA9IZWxsbywgd29ybGQhet4=\n"
        );
        let mut bad = encode(b"Hello, world!", 127);
        bad[10] ^= 0x01;
        let line = &bad[..bad.len() - 1];
        assert!(matches!(
            Reassembler::default().line(line),
            Some(Err(FrameError::Crc { .. } | FrameError::Base64))
        ));
        // A first quad that holds under two bytes, or is not base64: refused, never a panic.
        assert!(Reassembler::default().line(b"\x06\tAA==").unwrap().is_err());
        assert!(Reassembler::default().line(b"\x06\t!!!!").unwrap().is_err());
        let mut r = Reassembler::default();
        let mut seed = 1u64;
        for _ in 0..20_000 {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
            let len = (seed >> 59) as usize;
            let mut line = if seed & 1 == 0 {
                START.to_vec()
            } else {
                CONTINUE.to_vec()
            };
            line.extend((0..len).map(|i| b"AB+/=9zQ"[((seed >> ((i * 3 + 8) % 60)) & 7) as usize]));
            let _ = r.line(&line);
        }
        // A length of 0 (under the CRC) is impossible.
        assert_eq!(
            Reassembler::default().line(b"\x06\tAAA="),
            Some(Err(FrameError::Length(0)))
        );
    }
}
