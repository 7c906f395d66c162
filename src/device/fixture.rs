//! The fixture map: which stable port path each slot of the fixture is, as written in `station.toml`:
//!
//! ```toml
//! [fixture]
//! family = "station"          # the driver of every slot (optional; default "station")
//!
//! [fixture.slots]
//! A1 = "/dev/serial/by-id/usb-FTDI_FT232R_USB_UART_A10K4XYZ-if00-port0"
//! A2 = "/dev/serial/by-id/usb-FTDI_FT232R_USB_UART_A10K4XZ0-if00-port0"
//!
//! [fixture.families]          # per slot, overriding `family` (optional)
//! A2 = "nrf91"
//! ```
//!
//! `family = "station" | "nrf91" | "zephyr-smp" | "esp32"` in `[fixture]` says which driver every slot
//! uses (default `station`); `[fixture.families]` names the slots that differ, for a fixture with
//! mixed products.
//!
//! Slots are named by `/dev/serial/by-id` paths, which udev derives from the adapter's USB serial
//! number, so a cable plugged back into another USB socket keeps its slot; `/dev/ttyUSB*` numbers do not.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::driver::Family;

/// Slot name → stable port path.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FixtureMap {
    /// The family of every slot not named in `families` (`None`: `station`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family: Option<Family>,
    /// The slots, sorted by name.
    #[serde(default)]
    pub slots: BTreeMap<String, PathBuf>,
    /// Slots whose family differs from `family`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub families: BTreeMap<String, Family>,
}

/// A fixture map that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum FixtureError {
    /// The TOML did not parse.
    #[error("the fixture map is not valid TOML: {0}")]
    Toml(#[from] toml::de::Error),
    /// A slot name that would be unreadable in the GUI and the ledger.
    #[error("fixture slot name '{0}' must be 1-32 characters of letters, digits, '-' or '_'")]
    SlotName(String),
    /// A family given for a slot the map does not have.
    #[error(
        "fixture.families names slot '{0}', which is not in fixture.slots; add the slot or remove its family"
    )]
    UnknownSlot(String),
    /// Two slots name the same port.
    #[error("fixture slots '{0}' and '{1}' both name port {2}; give each slot its own port")]
    Duplicate(String, String, PathBuf),
    /// A slot names an unstable path.
    #[error(
        "fixture slot '{slot}' names {path}, which changes when cables are re-plugged; use the /dev/serial/by-id/... path that `dps-station device list` shows"
    )]
    Unstable {
        /// The slot.
        slot: String,
        /// Its path.
        path: PathBuf,
    },
}

/// A slot whose port is plugged in right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedSlot {
    /// The slot name.
    pub slot: String,
    /// The stable path from the map.
    pub stable: PathBuf,
    /// The device node it points at now (`/dev/ttyUSB3`).
    pub device: PathBuf,
}

impl FixtureMap {
    /// Parses and validates a `[fixture]` table's content (`slots = { ... }` or `[slots]`).
    pub fn from_toml(text: &str) -> Result<Self, FixtureError> {
        let map: FixtureMap = toml::from_str(text)?;
        map.validate()?;
        Ok(map)
    }

    /// The TOML text of this map.
    pub fn to_toml(&self) -> String {
        // A map of strings to paths always serializes.
        toml::to_string(self).unwrap_or_default()
    }

    /// The family of `slot`'s devices: its own, else the fixture's, else `station`.
    pub fn family_of(&self, slot: &str) -> Family {
        self.families
            .get(slot)
            .copied()
            .or(self.family)
            .unwrap_or(Family::Station)
    }

    /// Checks slot names, duplicates, that `/dev/ttyUSB*`/`ttyACM*` names are not used, and that
    /// per-slot families name slots of the map.
    pub fn validate(&self) -> Result<(), FixtureError> {
        if let Some(slot) = self.families.keys().find(|s| !self.slots.contains_key(*s)) {
            return Err(FixtureError::UnknownSlot(slot.clone()));
        }
        let mut seen: BTreeMap<&Path, &str> = BTreeMap::new();
        for (slot, path) in &self.slots {
            let ok = (1..=32).contains(&slot.len())
                && slot
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !ok {
                return Err(FixtureError::SlotName(slot.clone()));
            }
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if path.starts_with("/dev")
                && (name.starts_with("ttyUSB") || name.starts_with("ttyACM"))
            {
                return Err(FixtureError::Unstable {
                    slot: slot.clone(),
                    path: path.clone(),
                });
            }
            if let Some(other) = seen.insert(path, slot) {
                return Err(FixtureError::Duplicate(
                    other.to_string(),
                    slot.clone(),
                    path.clone(),
                ));
            }
        }
        Ok(())
    }

    /// The slots whose stable path exists now, with the device node it resolves to. Slots whose
    /// cable is unplugged are left out (the station shows them as empty).
    pub fn resolve(&self) -> Vec<ResolvedSlot> {
        self.slots
            .iter()
            .filter_map(|(slot, stable)| {
                std::fs::canonicalize(stable)
                    .ok()
                    .map(|device| ResolvedSlot {
                        slot: slot.clone(),
                        stable: stable.clone(),
                        device,
                    })
            })
            .collect()
    }

    /// The slot a device node belongs to (after a re-plug, `/dev/ttyUSB0` may now be `ttyUSB4`).
    pub fn slot_of(&self, device: &Path) -> Option<String> {
        let device = std::fs::canonicalize(device).ok()?;
        self.resolve()
            .into_iter()
            .find(|r| r.device == device)
            .map(|r| r.slot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_validates_and_follows_a_replugged_link() {
        let dir = tempfile::tempdir().unwrap();
        let (dev0, dev4) = (dir.path().join("ttyX0"), dir.path().join("ttyX4"));
        std::fs::write(&dev0, "").unwrap();
        std::fs::write(&dev4, "").unwrap();
        let link = dir.path().join("usb-FTDI_A10K4XYZ-if00-port0");
        std::os::unix::fs::symlink(&dev0, &link).unwrap();
        let text = format!("[slots]\nA1 = {:?}\n", link.display().to_string());
        let map = FixtureMap::from_toml(&text).unwrap();
        assert_eq!(FixtureMap::from_toml(&map.to_toml()).unwrap(), map);
        assert_eq!(map.slot_of(&dev0).as_deref(), Some("A1"));
        // Re-plugged: the same stable link now points at another node; the slot follows it.
        std::fs::remove_file(&link).unwrap();
        std::os::unix::fs::symlink(&dev4, &link).unwrap();
        assert_eq!(map.slot_of(&dev4).as_deref(), Some("A1"));
        assert_eq!(map.slot_of(&dev0), None);
    }

    #[test]
    fn refuses_unstable_paths_duplicates_and_bad_names() {
        let unstable = FixtureMap::from_toml("[slots]\nA1 = \"/dev/ttyUSB0\"\n").unwrap_err();
        assert!(
            unstable.to_string().contains("/dev/serial/by-id"),
            "{unstable}"
        );
        let dup = FixtureMap::from_toml("[slots]\nA1 = \"/x\"\nA2 = \"/x\"\n").unwrap_err();
        assert!(matches!(dup, FixtureError::Duplicate(..)));
        assert!(matches!(
            FixtureMap::from_toml("[slots]\n\"a b\" = \"/x\"\n"),
            Err(FixtureError::SlotName(_))
        ));
    }

    #[test]
    fn families_default_per_fixture_and_per_slot() {
        let plain = FixtureMap::from_toml("[slots]\nA1 = \"/x\"\n").unwrap();
        assert_eq!(plain.family_of("A1"), Family::Station);
        let mixed = FixtureMap::from_toml(
            "family = \"nrf91\"\n[slots]\nA1 = \"/x\"\nA2 = \"/y\"\n[families]\nA2 = \"station\"\n",
        )
        .unwrap();
        assert_eq!(mixed.family_of("A1"), Family::Nrf91);
        assert_eq!(mixed.family_of("A2"), Family::Station);
        assert_eq!(FixtureMap::from_toml(&mixed.to_toml()).unwrap(), mixed);
        let unknown = FixtureMap::from_toml("[slots]\nA1 = \"/x\"\n[families]\nB9 = \"nrf91\"\n")
            .unwrap_err();
        assert!(unknown.to_string().contains("'B9'"), "{unknown}");
        let typo =
            FixtureMap::from_toml("family = \"nrf9160\"\n[slots]\nA1 = \"/x\"\n").unwrap_err();
        assert!(typo.to_string().contains("nrf91"), "{typo}");
    }
}
