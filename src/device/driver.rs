//! The device-driver trait the station drives every device through, and the values it returns.
//!
//! Our own line protocol is one implementation ([`super::LineClient`]); drivers for existing firmware
//! (nRF91 AT commands, ESP-AT, Zephyr SMP) implement the same trait. What a driver returns is what
//! the device said, never more: only [`Readback`] tells the station what the device holds.

use std::time::Duration;

use crate::secret::SecretBytes;

use super::error::DeviceError;
pub use super::protocol::DeviceConfig;

/// What `HELLO` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    /// The protocol version the device chose.
    pub protocol: u32,
    /// The product model.
    pub model: String,
    /// The device's serial number (the usual input of the registration-ID template).
    pub serial: String,
    /// A hardware id (chip id, MAC).
    pub hardware_id: String,
    /// The firmware version.
    pub firmware: String,
    /// How many times the device booted; a change between two HELLOs means it restarted.
    pub boot_counter: u64,
    /// Capability names (see [`super::protocol::caps`]).
    pub capabilities: Vec<String>,
    /// The largest frame the device accepts.
    pub max_frame: usize,
    /// Whether the device is locked.
    pub locked: bool,
}

impl DeviceInfo {
    /// Whether the device announced a capability.
    pub fn has(&self, capability: &str) -> bool {
        self.capabilities.iter().any(|c| c == capability)
    }
}

/// The digest a device reports for an item it just stored (lowercase hex SHA-256).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredItem {
    /// The digest as reported, already checked against what was sent.
    pub sha256: String,
}

/// What the device holds, as it reports it: lowercase hex SHA-256 digests, `None` where empty.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Readback {
    /// SHA-256 of the device key's uncompressed public point (65 bytes).
    pub key: Option<String>,
    /// SHA-256 of the stored certificate chain bytes.
    pub chain: Option<String>,
    /// SHA-256 of the stored symmetric key.
    pub symmetric_key: Option<String>,
    /// SHA-256 of the canonical config (see [`DeviceConfig::digest_hex`]).
    pub config: Option<String>,
    /// Whether the device is locked.
    pub locked: bool,
}

/// What the station expects a device to hold after writing it; compared with a [`Readback`].
#[derive(Debug, Clone, Default)]
pub struct Expected {
    /// SHA-256 of the public point, if the station knows the key.
    pub key: Option<String>,
    /// SHA-256 of the chain that was sent.
    pub chain: Option<String>,
    /// SHA-256 of the symmetric key that was sent.
    pub symmetric_key: Option<String>,
    /// Digest of the config that was sent.
    pub config: Option<String>,
}

impl Readback {
    /// The items whose readback differs from what was expected, named for the operator.
    /// Empty means the device holds exactly what was written.
    pub fn differences(&self, expected: &Expected) -> Vec<&'static str> {
        let mut out = Vec::new();
        let pairs = [
            ("device key", &expected.key, &self.key),
            ("certificate chain", &expected.chain, &self.chain),
            (
                "symmetric key",
                &expected.symmetric_key,
                &self.symmetric_key,
            ),
            ("registration config", &expected.config, &self.config),
        ];
        for (name, want, got) in pairs {
            if want.is_some() && want != got {
                out.push(name);
            }
        }
        out
    }
}

/// The TPM endorsement key a device reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TpmEk {
    /// The public endorsement key as DER SubjectPublicKeyInfo.
    pub public_der: Vec<u8>,
    /// The registration ID the device suggests, if it has one.
    pub suggested_registration_id: Option<String>,
}

/// One device on one port. Blocking: the station runs one worker thread per slot.
pub trait DeviceDriver: Send {
    /// The port this driver talks through (for messages and the ledger).
    fn port(&self) -> &str;
    /// Identifies the device and negotiates the protocol version.
    fn hello(&mut self) -> Result<DeviceInfo, DeviceError>;
    /// Checks the device answers; returns the round-trip time.
    fn ping(&mut self) -> Result<Duration, DeviceError>;
    /// Has the device make its own P-256 key; returns the uncompressed public point (65 bytes).
    fn keygen(&mut self) -> Result<Vec<u8>, DeviceError>;
    /// Has the device sign a PKCS#10 request with subject CN `subject_cn`; returns its DER.
    fn csr(&mut self, subject_cn: &str) -> Result<Vec<u8>, DeviceError>;
    /// Opens the encrypted session every secret travels in.
    fn open_session(&mut self) -> Result<(), DeviceError>;
    /// Writes the certificate chain (as the device stores it, PEM or DER).
    fn put_certificate_chain(&mut self, chain: &[u8]) -> Result<StoredItem, DeviceError>;
    /// Injects a station-made P-256 private key (32-byte scalar), encrypted in the session.
    fn put_private_key(&mut self, scalar: &SecretBytes) -> Result<StoredItem, DeviceError>;
    /// Injects a symmetric attestation key, encrypted in the session.
    fn put_symmetric_key(&mut self, key: &SecretBytes) -> Result<StoredItem, DeviceError>;
    /// Writes registration ID, ID scope, global endpoint and product key/values.
    fn config(&mut self, config: &DeviceConfig) -> Result<StoredItem, DeviceError>;
    /// Reads back the digests of what the device holds.
    fn readback(&mut self) -> Result<Readback, DeviceError>;
    /// Reads the TPM endorsement key.
    fn tpm_ek(&mut self) -> Result<TpmEk, DeviceError>;
    /// Locks the device against further writes.
    fn lock(&mut self) -> Result<(), DeviceError>;
    /// The guarded factory reset (nonce, then nonce + serial): wipes what the station wrote and
    /// the lock, for an explicit re-provisioning. A device whose physical reset input is not
    /// asserted refuses with `GUARDED`.
    fn factory_reset(&mut self) -> Result<(), DeviceError>;
    /// Waits up to `wait` for a device to announce itself on the open port (a firmware that
    /// prints a boot banner); `true` as soon as one did. A slot whose port stays open between
    /// devices calls this instead of sleeping, so a new device is taken the moment it boots.
    /// Drivers of firmware without a banner just wait.
    fn wait_for_boot(&mut self, wait: Duration) -> Result<bool, DeviceError> {
        std::thread::sleep(wait);
        Ok(false)
    }
    /// Whether a device announced itself (`BOOT`) on the port since the last call, also one that
    /// another request read past (a `HELLO` skips a banner). A slot asks so that a device
    /// re-plugged while the station was talking is still seen as plugged in again.
    fn take_boot_seen(&mut self) -> bool {
        false
    }
}
