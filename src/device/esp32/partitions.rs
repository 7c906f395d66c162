//! Where the `esp_secure_cert` partition is: from the product's ESP-IDF partition table (CSV,
//! `# Name, Type, SubType, Offset, Size, Flags`), or Espressif's default (`0xD000`, 8 KiB).

use thiserror::Error;

use super::secure_cert::DEFAULT_PARTITION_SIZE;

/// Espressif's default offset of `esp_secure_cert`.
pub const DEFAULT_OFFSET: u32 = 0xD000;
/// The partition's name `esp_secure_cert_mgr` looks for.
pub const NAME: &str = "esp_secure_cert";

/// The partition the station writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SecureCertPartition {
    /// Flash offset (a multiple of 4 KiB).
    pub offset: u32,
    /// Size in bytes (a multiple of 4 KiB).
    pub size: u32,
}

impl Default for SecureCertPartition {
    fn default() -> Self {
        Self {
            offset: DEFAULT_OFFSET,
            size: DEFAULT_PARTITION_SIZE as u32,
        }
    }
}

/// Why a partition table cannot be used.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum PartitionError {
    /// No `esp_secure_cert` row.
    #[error(
        "the partition table has no '{NAME}' partition; add `{NAME}, 0x3F, , 0xD000, 0x2000, encrypted` to it (and to the firmware's table)"
    )]
    Missing,
    /// A row whose offset or size is not a number the station can use.
    #[error(
        "line {line} of the partition table: {what} '{text}' is not a 4 KiB-aligned size or offset (0xD000, 8K); give it explicitly"
    )]
    Bad {
        /// 1-based line.
        line: usize,
        /// Which column.
        what: &'static str,
        /// What it says.
        text: String,
    },
}

fn number(text: &str) -> Option<u32> {
    let t = text.trim();
    let (digits, mult) = match t.chars().last()? {
        'K' | 'k' => (&t[..t.len() - 1], 1024),
        'M' | 'm' => (&t[..t.len() - 1], 1024 * 1024),
        _ => (t, 1),
    };
    let value = match digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        Some(hex) => u32::from_str_radix(hex, 16).ok()?,
        None => digits.parse().ok()?,
    };
    value.checked_mul(mult)
}

/// Finds `esp_secure_cert` in a partition table CSV.
pub fn parse_table(csv: &str) -> Result<SecureCertPartition, PartitionError> {
    for (i, line) in csv.lines().enumerate() {
        let line_no = i + 1;
        let line = line.split('#').next().unwrap_or("").trim();
        let cols: Vec<&str> = line.split(',').map(str::trim).collect();
        if cols.len() < 5 || cols[0] != NAME {
            continue;
        }
        let field = |what: &'static str, text: &str| {
            number(text)
                .filter(|v| *v > 0 && v.is_multiple_of(4096))
                .ok_or_else(|| PartitionError::Bad {
                    line: line_no,
                    what,
                    text: text.to_string(),
                })
        };
        return Ok(SecureCertPartition {
            offset: field("offset", cols[3])?,
            size: field("size", cols[4])?,
        });
    }
    Err(PartitionError::Missing)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_row_is_found_with_hex_and_suffixed_numbers() {
        let table = "# Name, Type, SubType, Offset, Size, Flags\nnvs, data, nvs, 0x9000, 0x4000,\nesp_secure_cert, 0x3F, , 0x10000, 12K, encrypted\n";
        assert_eq!(
            parse_table(table),
            Ok(SecureCertPartition {
                offset: 0x10000,
                size: 0x3000
            })
        );
        assert_eq!(
            parse_table("nvs, data, nvs, 0x9000, 0x4000\n"),
            Err(PartitionError::Missing)
        );
        let bad = parse_table("esp_secure_cert, 0x3F, , , 0x2000\n").unwrap_err();
        assert!(bad.to_string().contains("line 1"), "{bad}");
        assert!(parse_table("esp_secure_cert, 0x3F, , 0xD000, 100\n").is_err());
    }
}
