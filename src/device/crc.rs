//! CRC-16/CCITT-FALSE, the frame check of the line protocol: chosen because every MCU SDK ships it
//! (and a table-free version is ten lines), and 16 bits is plenty for frames of at most 1024 bytes.

/// CRC-16/CCITT-FALSE: polynomial 0x1021, initial value 0xFFFF, no reflection, no final XOR.
/// Check value: `crc16(b"123456789") == 0x29B1`.
pub fn crc16(bytes: &[u8]) -> u16 {
    crc16_1021(0xFFFF, bytes)
}

/// CRC-16/XMODEM, the frame check of MCUmgr's console framing (Zephyr SMP): the same polynomial
/// 0x1021 from an initial value of 0. Check value: `crc16_xmodem(b"123456789") == 0x31C3`.
pub fn crc16_xmodem(bytes: &[u8]) -> u16 {
    crc16_1021(0, bytes)
}

/// Polynomial 0x1021, MSB first, no reflection, no final XOR, from `init`.
fn crc16_1021(init: u16, bytes: &[u8]) -> u16 {
    let mut crc = init;
    for &byte in bytes {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::crc16;

    #[test]
    fn matches_the_published_check_value() {
        assert_eq!(crc16(b"123456789"), 0x29B1);
        assert_eq!(crc16(b""), 0xFFFF);
    }
}
