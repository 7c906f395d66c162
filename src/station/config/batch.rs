//! `batch.toml`: what to make now (the mode, the registration ID template, the keys, how many
//! devices, when to enroll), parsed with unknown keys refused and validated against the station
//! that will run it.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{ConfigError, StationConfig, invalid, read_toml, resolve};
use crate::dps::model::AllocationPolicy;
use crate::identity::registration_id::IdUse;
use crate::identity::template::{Field, RegistrationIdTemplate};
use crate::keystore::Pkcs11Uri;

/// How devices prove who they are, and how the station gives them their identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Device key + CSR, HSM-signed certificate, individual X.509 enrollment.
    X509Csr,
    /// Device key + CSR, certificates under an intermediate; one enrollment group.
    X509Group,
    /// Station-made key injected encrypted, HSM-signed certificate, individual enrollment.
    X509Inject,
    /// Device key derived in the HSM from the group key, injected encrypted; one enrollment group.
    SymmetricGroup,
    /// One key per device, injected encrypted, individual enrollment.
    SymmetricIndividual,
    /// TPM endorsement key read from the device, individual TPM enrollment.
    Tpm,
}

impl Mode {
    /// The name used in `batch.toml`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::X509Csr => "x509-csr",
            Mode::X509Group => "x509-group",
            Mode::X509Inject => "x509-inject",
            Mode::SymmetricGroup => "symmetric-group",
            Mode::SymmetricIndividual => "symmetric-individual",
            Mode::Tpm => "tpm",
        }
    }

    /// Every mode the station knows.
    pub const ALL: [Mode; 6] = [
        Mode::X509Csr,
        Mode::X509Group,
        Mode::X509Inject,
        Mode::SymmetricGroup,
        Mode::SymmetricIndividual,
        Mode::Tpm,
    ];

    /// Modes that work end to end in this build: all of them (kept as its own name so that
    /// callers iterate "what this build offers", not "what the enum lists").
    pub const WORKING: [Mode; 6] = Mode::ALL;

    /// Whether devices share one enrollment group (no per-device enrollment).
    pub fn is_group(self) -> bool {
        matches!(self, Mode::X509Group | Mode::SymmetricGroup)
    }

    /// Whether the identity is an X.509 certificate.
    pub fn is_x509(self) -> bool {
        matches!(self, Mode::X509Csr | Mode::X509Group | Mode::X509Inject)
    }

    fn parse(text: &str) -> Option<Mode> {
        Mode::ALL.into_iter().find(|m| m.as_str() == text)
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// When identities are enrolled with DPS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnrollTiming {
    /// While the batch runs, in the background.
    Immediately,
    /// After the last device.
    BatchEnd,
    /// Not by this station: identities stay queued for `dps-station export`/`enroll`.
    Offline,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBatch {
    name: String,
    product: String,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    count: Option<u64>,
    #[serde(default)]
    serial_range: Option<[String; 2]>,
    registration_id: String,
    mode: String,
    keys: RawKeys,
    id_scope: String,
    #[serde(default = "default_endpoint")]
    global_endpoint: String,
    #[serde(default)]
    iot_hubs: Vec<String>,
    #[serde(default)]
    allocation_policy: Option<String>,
    #[serde(default)]
    initial_twin: Option<RawTwin>,
    #[serde(default = "default_validity")]
    certificate_validity_days: i64,
    dps_target: String,
    #[serde(default)]
    enrollment_group: Option<String>,
    #[serde(default = "default_timing")]
    enrollment: String,
    #[serde(default)]
    reprovision: Option<String>,
    #[serde(default)]
    plaintext_cable: bool,
    #[serde(default)]
    serial_from: Option<String>,
    esp32: Option<crate::station::batch_esp32::RawEsp32>,
    #[serde(default)]
    manifest: Option<crate::station::manifest_line::RawManifest>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTwin {
    #[serde(default)]
    tags: Option<toml::Table>,
    #[serde(default)]
    desired: Option<toml::Table>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKeys {
    #[serde(default)]
    ca_key: Option<String>,
    #[serde(default)]
    ca_chain: Option<PathBuf>,
    #[serde(default)]
    group_key: Option<String>,
    #[serde(default)]
    device_key_master: Option<String>,
}

fn default_endpoint() -> String {
    "global.azure-devices-provisioning.net".into()
}
fn default_validity() -> i64 {
    365
}
fn default_timing() -> String {
    "immediately".into()
}

/// A key named in a batch: a PKCS#11 URI, or a file name in the software store's directory
/// (`<label>.key.pem` for a CA key, `<label>.secret` for a secret: that store's layout).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyRef {
    /// In a token.
    Pkcs11(Pkcs11Uri),
    /// `file:NAME` in the software store (`file:intermediate.key.pem`, `file:group.secret`).
    File(String),
}

impl std::fmt::Display for KeyRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyRef::Pkcs11(u) => write!(f, "{u}"),
            KeyRef::File(n) => write!(f, "file:{n}"),
        }
    }
}

fn parse_key_ref(path: &Path, key: &str, text: &str) -> Result<KeyRef, ConfigError> {
    if let Some(name) = text.strip_prefix("file:") {
        if name.is_empty() || name.contains('/') {
            return Err(invalid(
                path,
                key,
                "a software key is `file:NAME`, NAME a file in the software store's directory",
            ));
        }
        return Ok(KeyRef::File(name.to_string()));
    }
    text.parse::<Pkcs11Uri>()
        .map(KeyRef::Pkcs11)
        .map_err(|e| invalid(path, key, format!("not a PKCS#11 URI or file:NAME: {e}")))
}

/// Which devices belong to the batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchSize {
    /// Any `n` devices of the product.
    Count(u64),
    /// Devices whose serial is within `first..=last` (same length, compared as text); each once.
    SerialRange {
        /// First serial.
        first: String,
        /// Last serial.
        last: String,
    },
}

/// A validated `batch.toml`.
#[derive(Debug, Clone)]
pub struct BatchConfig {
    /// The file (or `demo`).
    pub path: PathBuf,
    /// The batch name (unique in the ledger).
    pub name: String,
    /// Product name (template field `{product}`).
    pub product: String,
    /// Device model that must answer `HELLO`, if set.
    pub model: Option<String>,
    /// Which devices.
    pub size: BatchSize,
    /// Registration-ID template.
    pub template: RegistrationIdTemplate,
    /// Attestation mode.
    pub mode: Mode,
    /// The CA key that signs device certificates (X.509 modes).
    pub ca_key: Option<KeyRef>,
    /// The CA chain, issuer first (PEM), written after each leaf.
    pub ca_chain_pem: Option<String>,
    /// The group key (symmetric-group).
    pub group_key: Option<KeyRef>,
    /// The secret device keys are derived from (symmetric-individual).
    pub device_key_master: Option<KeyRef>,
    /// ID scope written to devices.
    pub id_scope: String,
    /// Global endpoint written to devices.
    pub global_endpoint: String,
    /// IoT hubs of the enrollments.
    pub iot_hubs: Vec<String>,
    /// Allocation policy.
    pub allocation_policy: Option<AllocationPolicy>,
    /// Initial twin tags.
    pub twin_tags: Option<serde_json::Map<String, serde_json::Value>>,
    /// Initial twin desired properties.
    pub twin_desired: Option<serde_json::Map<String, serde_json::Value>>,
    /// Device certificate validity in days.
    pub certificate_validity_days: i64,
    /// The DPS target's name in `station.toml`.
    pub dps_target: String,
    /// The enrollment group's name (group modes).
    pub enrollment_group: Option<String>,
    /// When to enroll.
    pub timing: EnrollTiming,
    /// The operator's reason when this run re-provisions devices seen before (`--reprovision`,
    /// or `reprovision = "..."` in batch.toml): each such device is factory-reset if locked,
    /// its old identity revoked and a new one issued, all audited. `None`: they are refused.
    pub reprovision: Option<String>,
    /// The fixture's cable is trusted (`plaintext_cable = true`): families that take injected
    /// keys only in plain (nRF91 `%CMNG`) may be sent them. Off unless said.
    pub plain_secrets: bool,
    /// Where a device's serial comes from: what it reports, or its label scanned by the operator.
    pub serial_from: crate::station::labels::SerialFrom,
    /// `[esp32]`: the ESP32 driver's partition, flash speed and eFuse policy.
    pub esp32: crate::device::esp32::driver::Esp32Options,
    /// `[manifest] require = true`: pre-provisioned secure elements (Trust&GO); the station
    /// writes nothing and passes only devices listed in an imported manifest.
    pub manifest_required: bool,
}

/// Why a batch cannot re-provision (from `batch.toml` or `run --reprovision`).
#[derive(Debug, thiserror::Error)]
pub enum ReprovisionRefused {
    /// The reason is audited with every revoked identity: an empty one says nothing.
    #[error(
        "re-provisioning needs a reason (an RMA number, a ticket): it is recorded in the ledger's audit log"
    )]
    NoReason,
    /// A group enrollment has nothing per device to revoke at DPS.
    #[error(
        "mode '{0}' cannot re-provision: with a group enrollment nothing of the old identity is revoked at DPS (symmetric-group derives the same device key again; an x509-group device's old certificate still chains to the group's CA). Re-provision the devices in a batch of an individual-enrollment mode (x509-csr, x509-inject, symmetric-individual, tpm), or shut out an old credential at DPS with a disabled individual enrollment for its registration ID"
    )]
    GroupMode(Mode),
}

impl BatchConfig {
    /// Checks the operator's re-provisioning choice for a batch of `mode` and returns the reason
    /// as audited: one rule for `batch.toml` and for `run --reprovision`.
    pub fn reprovision_reason(mode: Mode, reason: &str) -> Result<String, ReprovisionRefused> {
        let reason = reason.trim();
        if reason.is_empty() {
            return Err(ReprovisionRefused::NoReason);
        }
        if mode.is_group() {
            return Err(ReprovisionRefused::GroupMode(mode));
        }
        Ok(reason.to_string())
    }

    /// Reads and validates `batch.toml` against the station it will run on.
    pub fn load(path: &Path, station: &StationConfig) -> Result<Self, ConfigError> {
        let raw: RawBatch = read_toml(path)?;
        Self::validate(path, raw, station)
    }

    /// Validates a batch given as TOML text (the demo and tests build theirs in memory).
    pub fn from_toml(
        origin: &Path,
        text: &str,
        station: &StationConfig,
    ) -> Result<Self, ConfigError> {
        let raw: RawBatch = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_path_buf(),
            message: e.to_string(),
        })?;
        Self::validate(origin, raw, station)
    }

    fn validate(path: &Path, raw: RawBatch, station: &StationConfig) -> Result<Self, ConfigError> {
        let base = path.parent().unwrap_or(Path::new("."));
        let mode = Mode::parse(&raw.mode).ok_or_else(|| {
            invalid(
                path,
                "mode",
                format!(
                    "unknown mode '{}'; use one of: {}",
                    raw.mode,
                    Mode::ALL.map(|m| m.as_str()).join(", ")
                ),
            )
        })?;
        if raw.name.trim().is_empty() {
            return Err(invalid(path, "name", "give the batch a name"));
        }
        if raw.product.trim().is_empty() {
            return Err(invalid(path, "product", "give the product name"));
        }
        let size = match (raw.count, raw.serial_range) {
            (Some(n), None) if n > 0 => BatchSize::Count(n),
            (None, Some([first, last])) => {
                if first.len() != last.len() || first > last || first.is_empty() {
                    return Err(invalid(
                        path,
                        "serial_range",
                        "give [first, last] of the same length with first <= last",
                    ));
                }
                BatchSize::SerialRange { first, last }
            }
            _ => {
                return Err(invalid(
                    path,
                    "count",
                    "give either count = N (N > 0) or serial_range = [\"first\", \"last\"]",
                ));
            }
        };
        let template = RegistrationIdTemplate::parse(&raw.registration_id)
            .map_err(|e| invalid(path, "registration_id", e.to_string()))?;
        if mode != Mode::Tpm && template.fields().contains(&Field::DeviceSuggestion) {
            return Err(invalid(
                path,
                "registration_id",
                format!(
                    "{{regid}} is the registration ID a TPM device suggests in its TPM-EK reply; mode '{mode}' has none, use {{serial}} or {{hwid}}"
                ),
            ));
        }
        let _ = IdUse::Any;
        let key = |k: &str, v: &Option<String>| {
            v.as_deref().map(|t| parse_key_ref(path, k, t)).transpose()
        };
        let ca_key = key("keys.ca_key", &raw.keys.ca_key)?;
        let group_key = key("keys.group_key", &raw.keys.group_key)?;
        let device_key_master = key("keys.device_key_master", &raw.keys.device_key_master)?;
        let ca_chain_pem = match &raw.keys.ca_chain {
            Some(p) => {
                let p = resolve(base, p);
                let text = std::fs::read_to_string(&p).map_err(|e| {
                    invalid(
                        path,
                        "keys.ca_chain",
                        format!("cannot read {}: {e}", p.display()),
                    )
                })?;
                if !text.contains("-----BEGIN CERTIFICATE-----") {
                    return Err(invalid(
                        path,
                        "keys.ca_chain",
                        format!("{} holds no PEM certificate", p.display()),
                    ));
                }
                Some(text)
            }
            None => None,
        };
        let manifest_required =
            crate::station::manifest_line::validate(path, raw.manifest.as_ref(), mode)?;
        if mode.is_x509() && !manifest_required && (ca_key.is_none() || ca_chain_pem.is_none()) {
            return Err(invalid(
                path,
                "keys",
                format!(
                    "mode {mode} needs keys.ca_key (the signing CA key) and keys.ca_chain (its certificate chain, PEM)"
                ),
            ));
        }
        if mode == Mode::SymmetricGroup && group_key.is_none() {
            return Err(invalid(
                path,
                "keys.group_key",
                "mode symmetric-group needs the group key's URI",
            ));
        }
        if mode == Mode::SymmetricIndividual && device_key_master.is_none() {
            return Err(invalid(
                path,
                "keys.device_key_master",
                "mode symmetric-individual needs the HSM secret the per-device keys are derived from (so they can be recomputed for enrollment, never stored)",
            ));
        }
        let enrollment_group = raw.enrollment_group.filter(|g| !g.trim().is_empty());
        if mode.is_group() && enrollment_group.is_none() {
            return Err(invalid(
                path,
                "enrollment_group",
                format!("mode {mode} enrolls through one enrollment group: name it"),
            ));
        }
        let id_scope = raw.id_scope.trim().to_string();
        if id_scope.is_empty() || !id_scope.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(invalid(
                path,
                "id_scope",
                "give the DPS instance's ID scope (0ne...)",
            ));
        }
        if raw.global_endpoint.trim().is_empty() {
            return Err(invalid(path, "global_endpoint", "give the global endpoint"));
        }
        if !(1..=36500).contains(&raw.certificate_validity_days) {
            return Err(invalid(
                path,
                "certificate_validity_days",
                "give 1 to 36500 days",
            ));
        }
        if !station.dps.contains_key(&raw.dps_target) {
            return Err(invalid(
                path,
                "dps_target",
                format!(
                    "DPS target '{}' is not in {}; it has: {}",
                    raw.dps_target,
                    station.path.display(),
                    station.dps.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            ));
        }
        let allocation_policy = match raw.allocation_policy.as_deref() {
            None => None,
            Some("hashed") => Some(AllocationPolicy::Hashed),
            Some("geoLatency") | Some("geo-latency") => Some(AllocationPolicy::GeoLatency),
            Some("static") => Some(AllocationPolicy::Static),
            Some(other) => {
                return Err(invalid(
                    path,
                    "allocation_policy",
                    format!("unknown policy '{other}'; use hashed, geoLatency or static"),
                ));
            }
        };
        if allocation_policy == Some(AllocationPolicy::Static) && raw.iot_hubs.len() != 1 {
            return Err(invalid(
                path,
                "iot_hubs",
                "the static allocation policy needs exactly one IoT hub",
            ));
        }
        let timing = match raw.enrollment.as_str() {
            "immediately" => EnrollTiming::Immediately,
            "batch-end" => EnrollTiming::BatchEnd,
            "offline" => EnrollTiming::Offline,
            other => {
                return Err(invalid(
                    path,
                    "enrollment",
                    format!("unknown timing '{other}'; use immediately, batch-end or offline"),
                ));
            }
        };
        let reprovision = raw
            .reprovision
            .as_deref()
            .map(|reason| Self::reprovision_reason(mode, reason))
            .transpose()
            .map_err(|e| invalid(path, "reprovision", e.to_string()))?;
        let to_json = |t: Option<toml::Table>| {
            t.and_then(|t| serde_json::to_value(t).ok())
                .and_then(|v| v.as_object().cloned())
        };
        let (twin_tags, twin_desired) = match raw.initial_twin {
            Some(t) => (to_json(t.tags), to_json(t.desired)),
            None => (None, None),
        };
        let esp32 =
            crate::station::batch_esp32::validate(path, raw.esp32.unwrap_or_default(), &raw.name)?;
        Ok(Self {
            path: path.to_path_buf(),
            name: raw.name,
            product: raw.product,
            model: raw.model,
            size,
            template,
            mode,
            ca_key,
            ca_chain_pem,
            group_key,
            device_key_master,
            id_scope,
            global_endpoint: raw.global_endpoint.trim().to_string(),
            iot_hubs: raw.iot_hubs,
            allocation_policy,
            twin_tags,
            twin_desired,
            certificate_validity_days: raw.certificate_validity_days,
            dps_target: raw.dps_target,
            enrollment_group,
            timing,
            reprovision,
            plain_secrets: raw.plaintext_cable,
            serial_from: crate::station::labels::SerialFrom::parse(raw.serial_from.as_deref())
                .map_err(|why| invalid(path, "serial_from", why))?,
            esp32,
            manifest_required,
        })
    }

    /// How many devices the batch makes, if it is bounded by a count or a range of numbers.
    pub fn target(&self) -> Option<u64> {
        match &self.size {
            BatchSize::Count(n) => Some(*n),
            BatchSize::SerialRange { .. } => None,
        }
    }

    /// Whether a serial belongs to the batch.
    pub fn accepts_serial(&self, serial: &str) -> bool {
        match &self.size {
            BatchSize::Count(_) => true,
            BatchSize::SerialRange { first, last } => {
                serial.len() == first.len() && serial >= first.as_str() && serial <= last.as_str()
            }
        }
    }
}
