//! The wire types of the DPS service API, api-version 2021-10-01 (`service-2021-10-01.json`).
//!
//! Field names are the OpenAPI ones (camelCase); every optional field is skipped when `None`, so a
//! payload we send holds only what we chose. Unknown fields in answers (newer api-versions add
//! `namespaceName` and friends) are ignored. Symmetric keys are [`SecretString`]s, so no `Debug`
//! of an enrollment prints one.

use serde::{Deserialize, Serialize};

use crate::secret::SecretString;

/// The api-version every request carries; the one the official SDKs and the az CLI speak.
pub const API_VERSION: &str = "2021-10-01";

/// A twin collection: any JSON object (`version`, `count`, `metadata` are ordinary members).
pub type TwinCollection = serde_json::Map<String, serde_json::Value>;

/// One device's enrollment (schema `IndividualEnrollment`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IndividualEnrollment {
    /// The device's identity in DPS (the certificate CN for X.509).
    pub registration_id: String,
    /// The IoT Hub device id to create; DPS uses the registration ID when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    /// Read-only: where the device registered, if it has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration_state: Option<DeviceRegistrationState>,
    /// Extra device information kept with the enrollment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optional_device_information: Option<TwinCollection>,
    /// How the device proves who it is.
    pub attestation: AttestationMechanism,
    /// Device capabilities (IoT Edge).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<DeviceCapabilities>,
    /// Legacy single-hub assignment; superseded by `iotHubs` + `allocationPolicy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iot_hub_host_name: Option<String>,
    /// Tags and desired properties the device twin starts with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_twin: Option<InitialTwin>,
    /// Opaque version tag, for `If-Match`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// `enabled` (default) or `disabled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioning_status: Option<ProvisioningStatus>,
    /// What happens to hub assignment and twin data when the device re-provisions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reprovision_policy: Option<ReprovisionPolicy>,
    /// Read-only creation time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_date_time_utc: Option<String>,
    /// Read-only update time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_updated_date_time_utc: Option<String>,
    /// How DPS picks a hub among `iotHubs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocation_policy: Option<AllocationPolicy>,
    /// Host names of the hubs this enrollment may be assigned to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iot_hubs: Option<Vec<String>>,
    /// The webhook for `custom` allocation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_allocation_definition: Option<CustomAllocationDefinition>,
}

/// Many devices sharing a CA or a group key (schema `EnrollmentGroup`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnrollmentGroup {
    /// The group's id (same character rules as a registration ID).
    pub enrollment_group_id: String,
    /// The signing certificate, CA reference or group key.
    pub attestation: AttestationMechanism,
    /// Device capabilities (IoT Edge).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<DeviceCapabilities>,
    /// Legacy single-hub assignment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iot_hub_host_name: Option<String>,
    /// Tags and desired properties every device of the group starts with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_twin: Option<InitialTwin>,
    /// Opaque version tag, for `If-Match`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// `enabled` (default) or `disabled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioning_status: Option<ProvisioningStatus>,
    /// Re-provisioning behaviour.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reprovision_policy: Option<ReprovisionPolicy>,
    /// Read-only creation time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_date_time_utc: Option<String>,
    /// Read-only update time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_updated_date_time_utc: Option<String>,
    /// How DPS picks a hub among `iotHubs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocation_policy: Option<AllocationPolicy>,
    /// Host names of the hubs the group's devices may be assigned to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iot_hubs: Option<Vec<String>>,
    /// The webhook for `custom` allocation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_allocation_definition: Option<CustomAllocationDefinition>,
}

/// How a device proves its identity (schema `AttestationMechanism`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttestationMechanism {
    /// Which of the members below applies.
    #[serde(rename = "type")]
    pub kind: AttestationType,
    /// TPM endorsement key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpm: Option<TpmAttestation>,
    /// Certificates or CA references.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x509: Option<X509Attestation>,
    /// Symmetric keys (hidden by GET; returned by the attestation-mechanism call).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symmetric_key: Option<SymmetricKeyAttestation>,
}

/// The attestation kinds of the 2021-10-01 schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum AttestationType {
    /// No attestation (only valid in examples).
    None,
    /// TPM endorsement key.
    Tpm,
    /// X.509 certificates.
    X509,
    /// Symmetric keys.
    SymmetricKey,
}

/// TPM attestation (schema `TpmAttestation`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TpmAttestation {
    /// The TPM's endorsement key, base64.
    pub endorsement_key: String,
    /// The storage root key, base64 (optional).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_root_key: Option<String>,
}

/// X.509 attestation (schema `X509Attestation`): one of its three members is set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct X509Attestation {
    /// Individual enrollments: the device (leaf) certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificates: Option<X509Certificates>,
    /// Groups: the root or intermediate CA certificate devices chain to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_certificates: Option<X509Certificates>,
    /// Groups: names of CA certificates already verified in the DPS instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_references: Option<X509CaReferences>,
}

/// A primary and optional secondary certificate (schema `X509Certificates`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct X509Certificates {
    /// The certificate in use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary: Option<X509CertificateWithInfo>,
    /// The one that takes over at rotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secondary: Option<X509CertificateWithInfo>,
}

/// A certificate as sent (PEM) and as DPS describes it back (`info`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct X509CertificateWithInfo {
    /// PEM text; the service may not echo it back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<String>,
    /// Computed by the service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub info: Option<X509CertificateInfo>,
}

/// What DPS reports about a certificate (schema `X509CertificateInfo`); the identity module
/// computes the same from a certificate, so both sides of a comparison use one definition.
pub use crate::identity::cert_info::X509CertificateInfo;

/// CA certificate names for a group (schema `X509CAReferences`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct X509CaReferences {
    /// Name of the primary CA certificate in the DPS instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary: Option<String>,
    /// Name of the secondary one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secondary: Option<String>,
}

/// Symmetric keys, base64 of 16–64 bytes; DPS generates them when both are omitted.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SymmetricKeyAttestation {
    /// The primary key (a device key, or the group key of a group).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "secret_option"
    )]
    pub primary_key: Option<SecretString>,
    /// The secondary key.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "secret_option"
    )]
    pub secondary_key: Option<SecretString>,
}

/// Capabilities (schema `DeviceCapabilities`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceCapabilities {
    /// Whether the device is an IoT Edge device.
    #[serde(default)]
    pub iot_edge: bool,
}

/// The initial device twin (schema `InitialTwin`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InitialTwin {
    /// Twin tags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<TwinCollection>,
    /// Desired properties.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub properties: Option<InitialTwinProperties>,
}

/// The properties part of an initial twin.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InitialTwinProperties {
    /// Desired properties.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired: Option<TwinCollection>,
}

/// Enrollment switch (schema `ProvisioningStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ProvisioningStatus {
    /// Devices may register.
    Enabled,
    /// Devices are refused.
    Disabled,
}

/// Re-provisioning behaviour (schema `ReprovisionPolicy`; both required when present).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReprovisionPolicy {
    /// Let DPS move the device to another hub on re-provisioning.
    pub update_hub_assignment: bool,
    /// Carry twin data to the new hub.
    pub migrate_device_data: bool,
}

/// Hub selection (schema `AllocationPolicy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum AllocationPolicy {
    /// Evenly weighted hashing.
    Hashed,
    /// Closest hub.
    GeoLatency,
    /// One fixed hub.
    Static,
    /// A webhook decides.
    Custom,
}

/// The webhook of a `custom` allocation (schema `CustomAllocationDefinition`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CustomAllocationDefinition {
    /// The Azure Function (or other) URL.
    pub webhook_url: String,
    /// The webhook's api-version.
    pub api_version: String,
}

/// Where a device registered (schema `DeviceRegistrationState`; all read-only).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceRegistrationState {
    /// The device's registration ID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration_id: Option<String>,
    /// First registration time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_date_time_utc: Option<String>,
    /// The hub it was assigned to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assigned_hub: Option<String>,
    /// Its device id in that hub.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    /// `unassigned|assigning|assigned|failed|disabled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// How the assignment came about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub substatus: Option<String>,
    /// Why registration failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<i64>,
    /// Why registration failed, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    /// Last update.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_updated_date_time_utc: Option<String>,
    /// Opaque version tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// Custom allocation payload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<serde_json::Value>,
}

/// Bulk modes (schema `OperationMode`). `create` never overwrites; the station uses it by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BulkMode {
    /// Create; existing ids fail per item.
    #[serde(rename = "create")]
    Create,
    /// Create or replace.
    #[serde(rename = "update")]
    Update,
    /// Replace only where each item's etag matches.
    #[serde(rename = "updateIfMatchETag")]
    UpdateIfMatchETag,
    /// Delete.
    #[serde(rename = "delete")]
    Delete,
}

/// Body of `POST /enrollments` (schema `BulkEnrollmentOperation`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BulkEnrollmentOperation {
    /// At most 10.
    pub enrollments: Vec<IndividualEnrollment>,
    /// What to do with them.
    pub mode: BulkMode,
}

/// Body of `POST /enrollmentGroups` (schema `BulkEnrollmentGroupOperation`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BulkEnrollmentGroupOperation {
    /// At most 10.
    pub enrollment_groups: Vec<EnrollmentGroup>,
    /// What to do with them.
    pub mode: BulkMode,
}

/// Answer to a bulk operation (schema `BulkEnrollmentOperationResult`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BulkEnrollmentOperationResult {
    /// False if any item failed.
    pub is_successful: bool,
    /// Per-item outcomes; may also list successes (`errorCode` 200).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<BulkEnrollmentOperationError>,
}

/// One item's outcome in a bulk answer (schema `BulkEnrollmentOperationError`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BulkEnrollmentOperationError {
    /// Which enrollment.
    pub registration_id: String,
    /// DPS error code (HTTP status × 1000 + sub-code), or 200 for success.
    pub error_code: i64,
    /// The service's words.
    pub error_status: String,
}

/// Answer to a group bulk operation (schema `BulkEnrollmentGroupOperationResult`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BulkEnrollmentGroupOperationResult {
    /// False if any item failed.
    pub is_successful: bool,
    /// Per-item outcomes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<BulkEnrollmentGroupOperationError>,
}

/// One group's outcome in a bulk answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BulkEnrollmentGroupOperationError {
    /// Which group.
    pub enrollment_group_id: String,
    /// DPS error code.
    pub error_code: i64,
    /// The service's words.
    pub error_status: String,
}

/// Body of the query operations (schema `QuerySpecification`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuerySpecification {
    /// E.g. `SELECT * FROM enrollments`.
    pub query: String,
}

/// The error body of every failed call (schema `ProvisioningServiceErrorDetails`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProvisioningServiceErrorDetails {
    /// HTTP status × 1000 + sub-code, e.g. 404201. The C# client also accepts `code`.
    #[serde(default, alias = "code", skip_serializing_if = "Option::is_none")]
    pub error_code: Option<i64>,
    /// The id Microsoft support asks for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracking_id: Option<String>,
    /// The service's words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Extra details.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub info: Option<serde_json::Value>,
    /// When it happened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp_utc: Option<String>,
}

/// Serde for `Option<SecretString>`: keys travel as plain JSON strings but live as secrets.
mod secret_option {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::secret::SecretString;

    pub fn serialize<S: Serializer>(
        value: &Option<SecretString>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(secret) => serializer.serialize_str(secret.expose()),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<SecretString>, D::Error> {
        Ok(Option::<String>::deserialize(deserializer)?.map(SecretString::new))
    }
}
