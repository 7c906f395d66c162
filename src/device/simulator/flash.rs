//! The simulated device's non-volatile memory, kept as a JSON file so a test or a firmware engineer
//! can look at what the device holds. This is the *device's* storage: like real flash it holds the
//! device's own key; the station never stores device keys.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// Everything a device keeps across reboots.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flash {
    /// Product model.
    pub model: String,
    /// Serial number.
    pub serial: String,
    /// Hardware id.
    pub hardware_id: String,
    /// Firmware version.
    pub firmware: String,
    /// Incremented at every boot.
    pub boot_counter: u64,
    /// The device key: the P-256 scalar, hex.
    pub key: Option<String>,
    /// The certificate chain, base64.
    pub chain: Option<String>,
    /// The symmetric attestation key, hex.
    pub symmetric_key: Option<String>,
    /// The registration config in canonical order (`regid`, `scope`, `endpoint`, `x.*`).
    pub config: Option<Vec<(String, String)>>,
    /// Whether `LOCK` ran.
    pub locked: bool,
    /// The simulated TPM's endorsement key: a P-256 scalar, hex (TPM 2.0 has an ECC P-256 EK template).
    pub tpm_ek: Option<String>,
}

impl Flash {
    /// A factory-fresh device: identity only, nothing provisioned.
    pub fn factory(index: usize) -> Self {
        let tag: u32 = rand::random();
        Self {
            model: "sim-sensor".into(),
            serial: format!("SIM{tag:08X}{index:02}"),
            hardware_id: format!("hw-{:012x}", rand::random::<u64>() & 0xFFFF_FFFF_FFFF),
            firmware: concat!("sim-", env!("CARGO_PKG_VERSION")).into(),
            boot_counter: 0,
            key: None,
            chain: None,
            symmetric_key: None,
            config: None,
            locked: false,
            tpm_ek: None,
        }
    }

    /// Loads a flash file, or `None` if it does not exist yet.
    pub fn load(path: &Path) -> Result<Option<Self>, std::io::Error> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(std::io::Error::other),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Writes the flash file atomically (temp file + rename), as firmware writes a flash page.
    pub fn save(&self, path: &Path) -> Result<(), std::io::Error> {
        let tmp = path.with_extension("json.tmp");
        let json = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(&tmp, json)?;
        std::fs::rename(&tmp, path)
    }
}
