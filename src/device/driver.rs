//! The device-driver trait the station drives every device through, and the values it returns.
//!
//! A driver reports what a device family *can do* ([`Capabilities`]) and offers operations by
//! intent (identify, generate a key, store a bundle, read back, lock, factory reset); how a family
//! does it (our line protocol's sessions, a modem's `sec_tag`s, an SMP file system) stays inside
//! the driver. Policy (which batch mode fits which family, whether a device may be overwritten)
//! stays in the station. What a driver returns is what the device said, never more: only
//! [`Holdings`] tells the station what the device holds.
//!
//! To add a family: a [`Family`] variant with its [`Family::capabilities`], a driver implementing
//! [`DeviceDriver`], a simulator, and a page in `docs/devices/`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::secret::SecretBytes;

use super::error::DeviceError;
pub use super::protocol::DeviceConfig;

/// Which firmware a slot's devices run, so which driver the station speaks to them with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Family {
    /// Our own line protocol (`docs/device-protocol.md`).
    Station,
    /// A Nordic nRF91 modem driven with AT commands (`docs/devices/nrf91.md`).
    Nrf91,
    /// A Zephyr application with MCUmgr's SMP over its UART (`docs/devices/zephyr-smp.md`).
    ZephyrSmp,
    /// An Espressif ESP32 in its ROM serial bootloader (`docs/devices/esp32.md`).
    Esp32,
}

impl Family {
    /// Every family, in the order the documentation lists them.
    pub const ALL: [Family; 4] = [
        Family::Station,
        Family::Nrf91,
        Family::ZephyrSmp,
        Family::Esp32,
    ];

    /// The name used in station.toml and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Family::Station => "station",
            Family::Nrf91 => "nrf91",
            Family::ZephyrSmp => "zephyr-smp",
            Family::Esp32 => "esp32",
        }
    }

    /// Parses a name from station.toml or the command line.
    pub fn parse(text: &str) -> Option<Family> {
        Family::ALL.into_iter().find(|f| f.as_str() == text)
    }

    /// The most a device of this family can do. A device may announce less (our protocol's
    /// `HELLO caps=`); the station checks a batch against this before its first device, so that
    /// a misfit is refused before anything is written.
    pub fn capabilities(self) -> Capabilities {
        match self {
            Family::Station => Capabilities {
                key_generation: KeyGeneration::KeyThenCsr,
                private_key_injection: Injection::Encrypted,
                symmetric_key: Injection::Encrypted,
                endorsement_key: true,
                lock: LockKind::Resettable,
                reads_back_key: true,
                config: ConfigStorage::Written,
            },
            // The modem makes its key and CSR in one `%KEYGEN`; `%CMNG` writes keys in plain
            // over the UART; the AT interface has no lock and nowhere to put the ID scope.
            Family::Nrf91 => Capabilities {
                key_generation: KeyGeneration::CsrWithKey,
                private_key_injection: Injection::Plain,
                symmetric_key: Injection::Plain,
                endorsement_key: false,
                lock: LockKind::None,
                reads_back_key: false,
                config: ConfigStorage::CarriedByFirmware,
            },
            // The application makes its key and CSR in one shell command; SMP carries no secret
            // here (no encrypted channel); files and settings are read back by digest.
            Family::ZephyrSmp => Capabilities {
                key_generation: KeyGeneration::CsrWithKey,
                private_key_injection: Injection::None,
                symmetric_key: Injection::None,
                endorsement_key: false,
                lock: LockKind::None,
                reads_back_key: false,
                config: ConfigStorage::Written,
            },
            // The ROM bootloader makes no key and has no encrypted channel: the station's key
            // (or the derived symmetric key, in a user-data entry) crosses in plain in the
            // esp_secure_cert image. The lock (eFuses) is the batch's explicit choice: the driver
            // reports `Permanent` only then.
            Family::Esp32 => Capabilities {
                key_generation: KeyGeneration::None,
                private_key_injection: Injection::Plain,
                symmetric_key: Injection::Plain,
                endorsement_key: false,
                lock: LockKind::None,
                reads_back_key: true,
                config: ConfigStorage::Written,
            },
        }
    }
}

impl std::fmt::Display for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a device makes its own key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyGeneration {
    /// It cannot.
    None,
    /// It reports the public key, then signs a CSR on a second request (our protocol): the
    /// station can issue while the CSR crosses the wire.
    KeyThenCsr,
    /// One request makes the key and answers with the CSR (nRF91 `%KEYGEN`).
    CsrWithKey,
}

/// How a secret made by the station can reach the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Injection {
    /// Not at all.
    None,
    /// Inside an encrypted session.
    Encrypted,
    /// Only in plain over the cable: the batch must say the cable is trusted.
    Plain,
}

/// Whether and how a device can be locked against further writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockKind {
    /// No lock: "done" means written and verified, not locked.
    None,
    /// A lock that the guarded factory reset undoes.
    Resettable,
    /// A lock nothing undoes (eFuses).
    Permanent,
}

/// Where the registration data (registration ID, ID scope, global endpoint) ends up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConfigStorage {
    /// The driver writes it and reads its digest back.
    Written,
    /// The device has no place for it: the product's firmware carries the ID scope and endpoint,
    /// and the registration ID is the certificate's subject CN. The batch report says so.
    CarriedByFirmware,
}

/// What a device (family) can do: what the station's policy checks a batch against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// Device key generation.
    pub key_generation: KeyGeneration,
    /// A station-made private key (`x509-inject`).
    pub private_key_injection: Injection,
    /// A symmetric attestation key (`symmetric-*`).
    pub symmetric_key: Injection,
    /// A TPM endorsement key.
    pub endorsement_key: bool,
    /// The lock.
    pub lock: LockKind,
    /// Whether read-back reports a digest of the device key's public point.
    pub reads_back_key: bool,
    /// Where the registration data goes.
    pub config: ConfigStorage,
}

impl Capabilities {
    /// What a device of `self` and `other` can both do (a device announcing less than its family).
    pub fn intersect(self, other: Capabilities) -> Capabilities {
        let inj = |a: Injection, b: Injection| if a == b { a } else { Injection::None };
        Capabilities {
            key_generation: if self.key_generation == other.key_generation {
                self.key_generation
            } else {
                KeyGeneration::None
            },
            private_key_injection: inj(self.private_key_injection, other.private_key_injection),
            symmetric_key: inj(self.symmetric_key, other.symmetric_key),
            endorsement_key: self.endorsement_key && other.endorsement_key,
            lock: if self.lock == other.lock {
                self.lock
            } else {
                LockKind::None
            },
            reads_back_key: self.reads_back_key && other.reads_back_key,
            config: self.config,
        }
    }
}

/// Who a device is, family-neutral: what the station records and renders registration IDs from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    /// The driver's family.
    pub family: Family,
    /// The product model.
    pub model: String,
    /// The device's serial number (the usual input of the registration-ID template; an nRF91's
    /// IMEI).
    pub serial: String,
    /// A hardware id (chip id, MAC, a modem's device UUID).
    pub hardware_id: String,
    /// The firmware version.
    pub firmware: String,
    /// How many times the device booted, where it says; a change means it restarted.
    pub boot_counter: u64,
    /// What this device can do (its family's, less what it did not announce).
    pub capabilities: Capabilities,
    /// Whether the device is locked.
    pub locked: bool,
}

/// A key the device made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GeneratedKey {
    /// The uncompressed public point (65 bytes); the CSR follows on [`DeviceDriver::csr`].
    Public(Vec<u8>),
    /// The device answered with a CSR at once (the station verifies it and takes the key from
    /// it), with the device's attestation of that CSR if it gives one.
    Csr {
        /// The PKCS#10 request, DER.
        der: Vec<u8>,
        /// The attestation the device signed over the CSR, already checked by the driver to name
        /// this CSR's digest.
        attestation: Option<KeyAttestation>,
    },
}

/// A device's signed statement about a key it made (an nRF91's COSE_Sign1 over the CSR digest).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyAttestation {
    /// The encoded attestation as the device sent it (COSE_Sign1, CBOR), kept in the ledger.
    pub encoded: Vec<u8>,
    /// The device UUID it names, if any (hex).
    pub device_uuid: Option<String>,
}

/// Everything the station writes to one device, in one call. Secrets only cross the wire as the
/// driver's family allows (the station checked the batch against [`Capabilities`] first).
pub struct Bundle<'a> {
    /// The device certificate, PEM.
    pub certificate_pem: Option<&'a str>,
    /// The CA chain above it, PEM, issuer first.
    pub ca_chain_pem: Option<&'a str>,
    /// A station-made P-256 private key (32-byte scalar).
    pub private_key: Option<&'a SecretBytes>,
    /// A symmetric attestation key.
    pub symmetric_key: Option<&'a SecretBytes>,
    /// The registration data.
    pub config: &'a DeviceConfig,
    /// Whether what the device already holds may be replaced (re-provisioning was chosen);
    /// otherwise a credential slot already holding something is refused.
    pub overwrite: bool,
}

/// A thing a device holds, as the station compares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Held {
    /// The device key (digest of its public point, where the family reports one).
    DeviceKey,
    /// The device certificate (in our protocol: the whole chain as one item).
    Certificate,
    /// The CA chain, where the family stores it apart from the certificate.
    CaChain,
    /// The symmetric key.
    SymmetricKey,
    /// The registration data.
    Config,
}

impl Held {
    /// The name an operator reads.
    pub fn name(self) -> &'static str {
        match self {
            Held::DeviceKey => "device key",
            Held::Certificate => "certificate chain",
            Held::CaChain => "CA chain",
            Held::SymmetricKey => "symmetric key",
            Held::Config => "registration config",
        }
    }
}

/// Lowercase hex SHA-256 digests of what a device holds (or was sent), by item.
pub type Digests = BTreeMap<Held, String>;

/// What a [`DeviceDriver::store`] wrote: the digest of each item as the device stores it (the
/// driver knows the form: PEM with the line endings the device keeps), already compared with
/// what the device reported on the write where the wire reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// The digests to find on read-back.
    pub digests: Digests,
    /// Where the registration data went.
    pub config: ConfigStorage,
}

/// What a device holds, as it reports it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Holdings {
    /// Digests of the items it reports.
    pub digests: Digests,
    /// Whether the device is locked.
    pub locked: bool,
}

impl Holdings {
    /// The items whose read-back differs from `expected`, named for the operator. Empty means
    /// the device holds exactly what was written.
    pub fn differences(&self, expected: &Digests) -> Vec<&'static str> {
        expected
            .iter()
            .filter(|(item, want)| self.digests.get(item) != Some(want))
            .map(|(item, _)| item.name())
            .collect()
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

/// What a vendor-provisioned secure element says about itself (a Trust&GO ATECC608): matched
/// against the vendor's manifest before the device may pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecureElementInfo {
    /// Its serial number (the manifest's `uniqueId`), lowercase hex.
    pub serial: String,
    /// Its device key's public part, an uncompressed P-256 point (65 bytes).
    pub public_key: Vec<u8>,
}

/// One device on one port, of one family. Blocking: the station runs one worker thread per slot.
pub trait DeviceDriver: Send {
    /// The port this driver talks through (for messages and the ledger).
    fn port(&self) -> &str;
    /// The family this driver speaks.
    fn family(&self) -> Family;
    /// Identifies the device (and readies it for credential work, as the family needs).
    fn identify(&mut self) -> Result<DeviceInfo, DeviceError>;
    /// Checks the device answers; returns the round-trip time.
    fn ping(&mut self) -> Result<Duration, DeviceError>;
    /// Has the device make its own P-256 key for a certificate with subject CN `subject_cn`.
    /// A key slot already holding a key is refused ([`DeviceError::Occupied`]) unless
    /// `overwrite` (re-provisioning, or redoing the station's own unfinished write).
    fn generate_key(
        &mut self,
        subject_cn: &str,
        overwrite: bool,
    ) -> Result<GeneratedKey, DeviceError>;
    /// Has the device sign a PKCS#10 request with subject CN `subject_cn` for the key it made
    /// (families with [`KeyGeneration::KeyThenCsr`]); returns its DER.
    fn csr(&mut self, subject_cn: &str) -> Result<Vec<u8>, DeviceError>;
    /// Reads the TPM endorsement key.
    fn endorsement_key(&mut self) -> Result<TpmEk, DeviceError>;
    /// Writes the bundle; returns what was stored with its digests. Never reports an item stored
    /// that the device did not confirm.
    fn store(&mut self, bundle: &Bundle<'_>) -> Result<Stored, DeviceError>;
    /// The digests [`DeviceDriver::store`] would report for `bundle`, without writing (to check
    /// a device found holding an identity an interrupted run wrote).
    fn digests_of(&self, bundle: &Bundle<'_>) -> Result<Digests, DeviceError>;
    /// Reads back the digests of what the device holds.
    fn read_back(&mut self) -> Result<Holdings, DeviceError>;
    /// Locks the device against further writes (families whose lock is not `None`).
    fn lock(&mut self) -> Result<(), DeviceError>;
    /// Wipes what the station wrote (and the lock), for an explicit re-provisioning. A device
    /// that guards its reset with a physical input refuses with `GUARDED` until it is asserted.
    fn factory_reset(&mut self) -> Result<(), DeviceError>;
    /// Waits up to `wait` for a device to announce itself on the open port (a firmware that
    /// prints a boot banner); `true` as soon as one did. Drivers of firmware without a banner
    /// just wait.
    fn wait_for_boot(&mut self, wait: Duration) -> Result<bool, DeviceError> {
        std::thread::sleep(wait);
        Ok(false)
    }
    /// Whether a device announced itself on the port since the last call (also one another
    /// request read past), so that a re-plugged device is seen as new.
    fn take_boot_seen(&mut self) -> bool {
        false
    }
    /// The vendor-provisioned secure element's serial and public key, for families whose devices
    /// carry one (a Trust&GO ATECC608); others answer `Unsupported`.
    fn secure_element(&mut self) -> Result<SecureElementInfo, DeviceError> {
        Err(DeviceError::Unsupported {
            port: self.port().to_string(),
            step: super::error::Step::SecureElement,
            capability: super::protocol::caps::SECURE_ELEMENT,
        })
    }
}
