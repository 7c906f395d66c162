//! The local IoT hub: the device identities DPS creates when it assigns a device to it, their
//! twins, and the telemetry they send. Devices reach it over the emulator's MQTT listener
//! (`super::mqtt`), told apart from DPS registrations by the CONNECT username.
//!
//! Like a real hub, an identity is what DPS wrote at assignment: X.509 with the thumbprint of the
//! certificate the device registered with (individual enrollment) or CA-signed (group), a
//! symmetric key (the enrollment's keys, or the group key derived for the registration ID), or
//! a TPM (the key DPS sent wrapped to the EK). Keys are not copied: they are looked up in the
//! enrollment when the device connects, so the state file holds no derived key.

pub mod telemetry;
pub mod twin;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::certinfo;
use super::clock;
use super::enrollment;
use super::ids;
use super::sas;
use super::store::State;
use crate::identity::symmetric::derive_device_key;
use crate::secret::SecretString;

/// api-versions of the hub's device MQTT API the emulator accepts in the CONNECT username.
pub const HUB_API_VERSIONS: &[&str] = &[
    "2016-11-14",
    "2018-06-30",
    "2019-10-01",
    "2020-09-30",
    "2021-04-12",
];

/// One device identity in the local hub.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HubDevice {
    /// The device ID (the enrollment's `deviceId`, else the registration ID).
    pub device_id: String,
    /// The registration ID the device registered with.
    pub registration_id: String,
    /// The enrollment group it came through, if any.
    pub enrollment_group_id: Option<String>,
    /// `x509`, `symmetricKey` or `tpm`: how it authenticates to the hub.
    pub attestation: String,
    /// SHA-256 thumbprint (hex) of the certificate it registered with (individual X.509).
    pub x509_thumbprint: Option<String>,
    /// When DPS created the identity (RFC 3339).
    pub created_date_time_utc: String,
    /// The twin.
    pub twin: twin::Twin,
}

/// What DPS knows when it assigns a device to the local hub.
pub struct Assignment<'a> {
    /// Device ID.
    pub device_id: &'a str,
    /// Registration ID.
    pub registration_id: &'a str,
    /// Group, if any.
    pub enrollment_group_id: Option<&'a str>,
    /// `x509`, `symmetricKey` or `tpm`.
    pub attestation: &'a str,
    /// The leaf certificate the device registered with (X.509).
    pub leaf_certificate: Option<&'a [u8]>,
    /// The enrollment's `initialTwin`.
    pub initial_twin: Option<&'a Value>,
}

/// Creates the identity, or updates how it authenticates when the device registers again; the
/// twin of an existing identity is kept (DPS's default re-provisioning migrates device data).
pub fn assign(state: &mut State, a: &Assignment<'_>) {
    let key = ids::key(a.device_id);
    let thumbprint = (a.attestation == "x509" && a.enrollment_group_id.is_none())
        .then(|| a.leaf_certificate.map(certinfo::sha256_thumbprint))
        .flatten();
    let previous = state.hub_devices.remove(&key);
    let device = HubDevice {
        device_id: a.device_id.to_owned(),
        registration_id: a.registration_id.to_owned(),
        enrollment_group_id: a.enrollment_group_id.map(str::to_owned),
        attestation: a.attestation.to_owned(),
        x509_thumbprint: thumbprint,
        created_date_time_utc: previous
            .as_ref()
            .map(|p| p.created_date_time_utc.clone())
            .unwrap_or_else(clock::now_rfc3339),
        twin: previous
            .map(|p| p.twin)
            .unwrap_or_else(|| twin::Twin::from_initial(a.initial_twin)),
    };
    state.hub_devices.insert(key, device);
}

/// Why the hub refuses a device's CONNECT (CONNACK 5, "not authorized", as IoT Hub answers).
#[derive(Debug, thiserror::Error)]
pub enum HubAuthError {
    /// No identity with that ID.
    #[error("device '{0}' has no identity in the local hub; register it through DPS first")]
    UnknownDevice(String),
    /// A credential that does not prove the identity.
    #[error("device '{device}': {reason}")]
    Refused {
        /// The device ID.
        device: String,
        /// What did not match (never the key or signature).
        reason: String,
    },
}

/// The keys a symmetric-key (or TPM) identity's SAS tokens are signed with.
fn keys_of(state: &State, device: &HubDevice) -> Vec<SecretString> {
    match (&device.enrollment_group_id, device.attestation.as_str()) {
        (Some(group), "symmetricKey") => state
            .groups
            .get(&ids::key(group))
            .map(|g| {
                enrollment::symmetric_keys(g)
                    .into_iter()
                    .filter_map(|k| {
                        derive_device_key(&SecretString::new(k), &device.registration_id).ok()
                    })
                    .collect()
            })
            .unwrap_or_default(),
        (None, "symmetricKey") => state
            .enrollments
            .get(&ids::key(&device.registration_id))
            .map(|e| {
                enrollment::symmetric_keys(e)
                    .into_iter()
                    .map(SecretString::new)
                    .collect()
            })
            .unwrap_or_default(),
        (None, "tpm") => state
            .tpm_challenges
            .get(&ids::key(&device.registration_id))
            .map(|c| vec![c.key.clone()])
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

/// Checks a SAS password for `sr={hub}/devices/{deviceId}` against the identity's keys.
pub fn check_sas(
    state: &State,
    hub_host_name: &str,
    device_id: &str,
    password: &str,
) -> Result<HubDevice, HubAuthError> {
    let device = state
        .hub_devices
        .get(&ids::key(device_id))
        .ok_or_else(|| HubAuthError::UnknownDevice(device_id.to_owned()))?;
    let refused = |reason: String| HubAuthError::Refused {
        device: device_id.to_owned(),
        reason,
    };
    if device.attestation == "x509" {
        return Err(refused(
            "the identity is X.509: connect with its client certificate, not a SAS token".into(),
        ));
    }
    let token = sas::parse(Some(password)).map_err(|e| refused(e.to_string()))?;
    let resource = format!("{hub_host_name}/devices/{}", device.device_id);
    if !token.covers(&resource) {
        return Err(refused(format!(
            "the SAS token's sr '{}' is not '{resource}'",
            token.sr_decoded
        )));
    }
    let keys = keys_of(state, device);
    if keys.is_empty() {
        return Err(refused(
            "its enrollment (and so its key) is gone from DPS".into(),
        ));
    }
    let refs: Vec<&SecretString> = keys.iter().collect();
    token
        .verify(&refs, clock::unix_now(), device_id)
        .map_err(|e| refused(e.to_string()))?;
    Ok(device.clone())
}

/// Checks a client certificate chain against an X.509 identity: the thumbprint it registered
/// with (individual), or a chain to its group's CA with the device ID as CN (CA-signed).
pub fn check_x509(
    state: &State,
    device_id: &str,
    chain: &[Vec<u8>],
    chain_to_group: impl Fn(&State, &[Vec<u8>]) -> Option<String>,
) -> Result<HubDevice, HubAuthError> {
    let device = state
        .hub_devices
        .get(&ids::key(device_id))
        .ok_or_else(|| HubAuthError::UnknownDevice(device_id.to_owned()))?;
    let refused = |reason: &str| HubAuthError::Refused {
        device: device_id.to_owned(),
        reason: reason.to_owned(),
    };
    if device.attestation != "x509" {
        return Err(refused(
            "the identity uses a symmetric key: connect with a SAS token",
        ));
    }
    let Some(leaf) = chain.first() else {
        return Err(refused(
            "no client certificate and no password: an X.509 identity needs its certificate",
        ));
    };
    let valid = certinfo::parse(leaf)
        .map(|c| c.validity().is_valid())
        .unwrap_or(false);
    if !valid {
        return Err(refused(
            "the client certificate cannot be parsed or is outside its validity period",
        ));
    }
    match (&device.x509_thumbprint, &device.enrollment_group_id) {
        (Some(thumb), _) => {
            if !certinfo::sha256_thumbprint(leaf).eq_ignore_ascii_case(thumb) {
                return Err(refused(
                    "the client certificate is not the one the identity was created with",
                ));
            }
        }
        (None, Some(group)) => {
            let cn = certinfo::common_name(leaf).unwrap_or_default();
            if ids::key(&cn) != ids::key(&device.device_id) {
                return Err(refused(&format!(
                    "the client certificate's CN '{cn}' is not the device ID"
                )));
            }
            if chain_to_group(state, chain).is_none_or(|g| ids::key(&g) != ids::key(group)) {
                return Err(refused(&format!(
                    "the certificate chain does not verify against enrollment group '{group}'"
                )));
            }
        }
        (None, None) => return Err(refused("the identity holds no certificate")),
    }
    Ok(device.clone())
}

/// The identity as the emulator's API shows it (no keys).
pub fn describe(device: &HubDevice) -> Value {
    json!({
        "deviceId": device.device_id,
        "registrationId": device.registration_id,
        "enrollmentGroupId": device.enrollment_group_id,
        "authentication": match (device.attestation.as_str(), &device.x509_thumbprint) {
            ("x509", Some(_)) => "selfSigned",
            ("x509", None) => "certificateAuthority",
            _ => "sas",
        },
        "x509Thumbprint": device.x509_thumbprint,
        "createdDateTimeUtc": device.created_date_time_utc,
        "twin": {
            "tags": device.twin.tags,
            "properties": device.twin.device_document(),
        },
    })
}
