//! The `[esp32]` table of `batch.toml`: where the product's `esp_secure_cert` partition is, the
//! speed to flash at, and the eFuse policy. Burning is permanent, so it takes two keys: the wish
//! (`burn_flash_encryption = true`) and its confirmation (`confirm_burn` = the batch's name).
//!
//! ```toml
//! [esp32]
//! partition_table = "partitions.csv"   # ESP-IDF CSV, relative to batch.toml; default 0xD000, 8 KiB
//! flash_baud = 921600                  # after sync; default: stay at 115200
//! burn_flash_encryption = false        # default; true burns FLASH_CRYPT_CNT as the lock
//! confirm_burn = "<the batch name>"    # required with burn_flash_encryption = true
//! ```

use std::path::Path;

use serde::Deserialize;

use super::config::{BatchConfig, ConfigError, Mode};
use crate::device::esp32::driver::Esp32Options;
use crate::device::esp32::partitions::{SecureCertPartition, parse_table};
use crate::device::esp32::room::{IdentityKind, least_image_len};

/// `[esp32]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEsp32 {
    #[serde(default)]
    partition_table: Option<String>,
    #[serde(default)]
    flash_baud: Option<u32>,
    #[serde(default)]
    burn_flash_encryption: bool,
    #[serde(default)]
    confirm_burn: Option<String>,
}

fn invalid(path: &Path, key: &str, message: String) -> ConfigError {
    ConfigError::Invalid {
        path: path.to_path_buf(),
        key: format!("esp32.{key}"),
        message,
    }
}

/// Checks `[esp32]` of the batch at `path` named `batch_name`; the driver's options for its ESP32
/// slots (the port speed is the fixture's).
pub fn validate(path: &Path, raw: RawEsp32, batch_name: &str) -> Result<Esp32Options, ConfigError> {
    let partition = match &raw.partition_table {
        None => SecureCertPartition::default(),
        Some(file) => {
            let table = path.parent().unwrap_or(Path::new(".")).join(file);
            let text = std::fs::read_to_string(&table).map_err(|source| ConfigError::Read {
                path: table.clone(),
                source,
            })?;
            parse_table(&text).map_err(|e| {
                invalid(path, "partition_table", format!("{}: {e}", table.display()))
            })?
        }
    };
    if let Some(baud) = raw.flash_baud
        && !(9_600..=2_000_000).contains(&baud)
    {
        return Err(invalid(
            path,
            "flash_baud",
            format!("{baud} is not a speed the ESP32 ROM runs at; use 115200, 460800 or 921600"),
        ));
    }
    if raw.burn_flash_encryption && raw.confirm_burn.as_deref() != Some(batch_name) {
        return Err(invalid(
            path,
            "confirm_burn",
            format!(
                "burning the flash-encryption eFuse is permanent: confirm it with confirm_burn = \"{batch_name}\" (the batch's name), or remove burn_flash_encryption"
            ),
        ));
    }
    Ok(Esp32Options {
        flash_baud: raw.flash_baud,
        partition,
        burn_flash_encryption: raw.burn_flash_encryption,
        ..Esp32Options::default()
    })
}

/// Whether the batch's identities can fit its `esp_secure_cert` partition at all (checked before
/// the first device of an ESP32 slot); otherwise what to change, naming the batch's fields.
pub fn check_room(batch: &BatchConfig) -> Result<(), String> {
    let kind = match batch.mode {
        Mode::SymmetricGroup | Mode::SymmetricIndividual => IdentityKind::Symmetric,
        // Other modes have no image of their own here (the family fit refuses them).
        _ => match batch.ca_chain_pem.as_deref() {
            Some(ca_chain_pem) if batch.mode == Mode::X509Inject => {
                IdentityKind::X509 { ca_chain_pem }
            }
            _ => return Ok(()),
        },
    };
    let partition = batch.esp32.partition;
    let least = least_image_len(kind, &batch.id_scope, &batch.global_endpoint)
        .map_err(|e| format!("keys.ca_chain: {e}"))?;
    if least > partition.size as usize {
        return Err(format!(
            "an identity of mode {} takes at least {least} bytes{} but the esp_secure_cert partition (esp32.partition_table: 0x{:X} at 0x{:X}) holds {}; give the batch (and the product) a partition table with a larger esp_secure_cert partition",
            batch.mode,
            if matches!(kind, IdentityKind::X509 { .. }) {
                " with the CA of keys.ca_chain"
            } else {
                ""
            },
            partition.size,
            partition.offset,
            partition.size
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(text: &str) -> RawEsp32 {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn defaults_burn_nothing_and_use_0xd000() {
        let o = validate(Path::new("b.toml"), RawEsp32::default(), "b1").unwrap();
        assert!(!o.burn_flash_encryption);
        assert_eq!(o.partition, SecureCertPartition::default());
    }

    #[test]
    fn a_burn_needs_the_batch_name_as_confirmation() {
        let err = validate(
            Path::new("b.toml"),
            raw("burn_flash_encryption = true"),
            "b1",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("confirm_burn = \"b1\""), "{err}");
        let wrong = raw("burn_flash_encryption = true\nconfirm_burn = \"yes\"");
        assert!(validate(Path::new("b.toml"), wrong, "b1").is_err());
        let ok = raw("burn_flash_encryption = true\nconfirm_burn = \"b1\"");
        assert!(
            validate(Path::new("b.toml"), ok, "b1")
                .unwrap()
                .burn_flash_encryption
        );
    }

    #[test]
    fn the_partition_comes_from_the_table_next_to_the_batch() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("p.csv"),
            "esp_secure_cert, 0x3F, , 0x11000, 0x3000, encrypted\n",
        )
        .unwrap();
        let batch = dir.path().join("batch.toml");
        let o = validate(&batch, raw("partition_table = \"p.csv\""), "b1").unwrap();
        assert_eq!(o.partition.offset, 0x11000);
        std::fs::write(dir.path().join("q.csv"), "nvs, data, nvs, 0x9000, 0x4000\n").unwrap();
        let err = validate(&batch, raw("partition_table = \"q.csv\""), "b1")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("esp_secure_cert") && err.contains("q.csv"),
            "{err}"
        );
    }
}
