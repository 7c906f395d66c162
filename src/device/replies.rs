//! What our line protocol's replies carry (`HELLO`, `stored=`, `READBACK`): the station protocol's
//! own view, below the family-neutral [`super::driver`] values its driver converts them to.

/// What `HELLO` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
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

impl Hello {
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
    /// SHA-256 of the canonical config (see [`super::protocol::DeviceConfig::digest_hex`]).
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
