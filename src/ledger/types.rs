//! The plain Rust types of the ledger's API: what callers hand in (`New*`) and what they get back
//! (`*Record`). None of them has a field for a private key, a PIN, a group key or a DPS shared
//! access key, so no caller can store one by mistake.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::Serialize;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(pub i64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

id_type!(
    /// Row id of a batch; stable for the life of the ledger.
    BatchId
);
id_type!(
    /// Row id of a device (one per model + serial number).
    DeviceId
);
id_type!(
    /// Row id of an identity; the registration ID is the name users know.
    IdentityId
);
id_type!(
    /// Row id of an enrollment (one identity at one DPS target).
    EnrollmentId
);
id_type!(
    /// Row id of an HSM key-injection session.
    KeySessionId
);
id_type!(
    /// Row id of a recorded CA certificate.
    CaCertificateId
);
id_type!(
    /// Row id of an audit row; ids are contiguous from 1, which `verify` checks.
    AuditId
);

/// Error of parsing one of the ledger's enum names (from the CLI or from a row).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {value:?}; expected one of: {expected}")]
pub struct ParseNameError {
    what: &'static str,
    value: String,
    expected: &'static str,
}

macro_rules! named_enum {
    ($(#[$doc:meta])* $name:ident, $what:literal, { $($(#[$vdoc:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
        pub enum $name {
            $($(#[$vdoc])* #[serde(rename = $text)] $variant),+
        }

        impl $name {
            /// Every value, in the order of the state machine or of the docs.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The name stored in the ledger and shown to users.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                // `pad`, not `write_str`: a width (`{:<14}`) must line up table columns.
                f.pad(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = ParseNameError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(ParseNameError {
                        what: $what,
                        value: s.to_string(),
                        expected: concat!($($text, " "),+),
                    }),
                }
            }
        }
    };
}

named_enum!(
    /// Where an identity is in its life: `issued → written → enrolled`, or `failed`, or `revoked`.
    IdentityState, "identity state", {
        /// Recorded before anything is written to the device (write-ahead).
        Issued => "issued",
        /// The device holds it and read it back correctly.
        Written => "written",
        /// DPS knows it (individual enrollment made, or the group exists).
        Enrolled => "enrolled",
        /// A stage failed; `failed_stage` and `failed_reason` say which and why.
        Failed => "failed",
        /// Withdrawn for good. Its registration ID gets a new identity only through an explicit,
        /// audited re-provisioning; the revoked one stays as history.
        Revoked => "revoked",
    }
);

named_enum!(
    /// How the device proves its identity to DPS.
    AttestationKind, "attestation kind", {
        /// An X.509 certificate (CN = registration ID).
        X509 => "x509",
        /// A symmetric key (individual or derived from a group key); the ledger holds a fingerprint only.
        SymmetricKey => "symmetric-key",
        /// A TPM endorsement key.
        Tpm => "tpm",
    }
);

named_enum!(
    /// Individual enrollment (one device) or an enrollment group (many devices, one CA or group key).
    EnrollmentKind, "enrollment kind", {
        /// One DPS enrollment per device.
        Individual => "individual",
        /// The device is covered by an enrollment group.
        Group => "group",
    }
);

named_enum!(
    /// Where one enrollment with DPS stands.
    EnrollmentState, "enrollment state", {
        /// Waiting for (another) attempt.
        Pending => "pending",
        /// DPS accepted it.
        Enrolled => "enrolled",
        /// DPS refused it for good; `last_error` says why.
        Failed => "failed",
    }
);

named_enum!(
    /// The stage of the device pipeline that failed.
    FailureStage, "failure stage", {
        /// Writing the identity to the device, reading it back or locking it.
        Write => "write",
        /// Enrolling with DPS.
        Enroll => "enroll",
    }
);

named_enum!(
    /// The place of a CA certificate in the chain.
    CaRole, "CA role", {
        /// Self-signed root.
        Root => "root",
        /// Signed by a root or another intermediate; signs device certificates.
        Intermediate => "intermediate",
    }
);

/// Who writes: recorded on every identity and audit row, and named in the lock file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriterIdentity {
    /// The station's name (defaults to the host name in the CLI).
    pub station: String,
    /// The operator at the station (a login name).
    pub operator: String,
}

/// A production batch: the unit an engineer sets up and an operator starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewBatch {
    /// Unique name, e.g. `sensor-2026-11-24`.
    pub name: String,
    /// Product name used in registration-ID templates.
    pub product: String,
    /// How the batch's devices attest.
    pub attestation: AttestationKind,
    /// Individual enrollments or an enrollment group.
    pub enrollment_kind: EnrollmentKind,
    /// The DPS instance (host name or a name from the station config).
    pub dps_target: String,
    /// The registration-ID template, e.g. `{product}-{serial:06}`.
    pub registration_id_template: String,
}

/// A batch as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BatchRecord {
    pub id: BatchId,
    pub name: String,
    pub product: String,
    pub attestation: AttestationKind,
    pub enrollment_kind: EnrollmentKind,
    pub dps_target: String,
    pub registration_id_template: String,
    pub created_at: String,
}

/// A device as the station saw it (`HELLO`): model + serial number identify it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDevice {
    pub model: String,
    pub serial_number: String,
    /// A hardware id the device reports (chip id, MAC), if any.
    pub hardware_id: Option<String>,
    pub firmware: Option<String>,
    pub batch: Option<BatchId>,
}

/// A device as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeviceRecord {
    pub id: DeviceId,
    pub model: String,
    pub serial_number: String,
    pub hardware_id: Option<String>,
    pub firmware: Option<String>,
    pub batch_id: Option<BatchId>,
    pub first_seen: String,
}

/// SHA-256 fingerprint of a symmetric key: lets a key be recognised later without storing it.
///
/// Made only from the key bytes ([`KeyFingerprint::of_key`]) or parsed from its hex form, so the
/// ledger never sees the key itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct KeyFingerprint(String);

impl KeyFingerprint {
    /// Fingerprint of the raw key bytes (the base64-decoded DPS key): `sha256:` + lowercase hex.
    pub fn of_key(key: &[u8]) -> Self {
        use sha2::Digest;
        Self(format!("sha256:{}", hex::encode(sha2::Sha256::digest(key))))
    }

    /// Parses the stored form `sha256:<64 hex digits>`.
    pub fn parse(text: &str) -> Result<Self, ParseNameError> {
        let ok = text
            .strip_prefix("sha256:")
            .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()));
        if ok {
            Ok(Self(text.to_ascii_lowercase()))
        } else {
            Err(ParseNameError {
                what: "key fingerprint",
                value: text.chars().take(80).collect(),
                expected: "sha256:<64 hex digits>",
            })
        }
    }

    /// The stored form.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The 16 random bytes a `symmetric-individual` key is computed from, with the registration ID,
/// inside the HSM. Not secret (without the HSM's master secret it yields nothing), so the ledger
/// keeps it: every identity, and every re-provisioning, gets a new random key that the station
/// can still recompute after a crash and for enrollment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyNonce(pub [u8; 16]);

impl KeyNonce {
    /// Its length in bytes.
    pub const LEN: usize = 16;

    /// A fresh nonce from the operating system's random source.
    pub fn random() -> Self {
        Self(rand::random())
    }

    /// From stored bytes; `None` unless exactly 16.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        <[u8; 16]>::try_from(bytes).ok().map(Self)
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Display for KeyNonce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl Serialize for KeyNonce {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(self.0))
    }
}

/// The public attestation material of an identity; never a private or shared key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attestation {
    /// The device certificate (DER). The ledger derives thumbprints, issuer, serial and validity
    /// from it, so they always match the certificate.
    X509 { certificate_der: Vec<u8> },
    /// A symmetric key, known only by its fingerprint; `key_nonce` is the random input it was
    /// computed from in the HSM (`symmetric-individual`), `None` for group-derived keys.
    SymmetricKey {
        key_fingerprint: KeyFingerprint,
        key_nonce: Option<KeyNonce>,
    },
    /// The public part of the TPM endorsement key.
    Tpm { endorsement_key: Vec<u8> },
}

impl Attestation {
    /// The kind of this attestation.
    pub fn kind(&self) -> AttestationKind {
        match self {
            Attestation::X509 { .. } => AttestationKind::X509,
            Attestation::SymmetricKey { .. } => AttestationKind::SymmetricKey,
            Attestation::Tpm { .. } => AttestationKind::Tpm,
        }
    }
}

/// What the station records before it touches the device (the write-ahead record).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewIdentity {
    /// The DPS registration ID (the station writes lowercase IDs).
    pub registration_id: String,
    pub batch: Option<BatchId>,
    pub device: Option<DeviceId>,
    pub attestation: Attestation,
}

/// Facts read from a certificate, in the shape DPS reports them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CertificateFacts {
    /// Uppercase hex, as DPS shows thumbprints.
    pub sha1_thumbprint: String,
    pub sha256_thumbprint: String,
    pub subject: String,
    pub issuer: String,
    /// Serial number, uppercase hex.
    pub serial: String,
    /// RFC 3339, UTC.
    pub not_before: String,
    pub not_after: String,
}

/// An identity as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IdentityRecord {
    pub id: IdentityId,
    pub registration_id: String,
    pub state: IdentityState,
    pub failed_stage: Option<FailureStage>,
    pub failed_reason: Option<String>,
    pub revoked_reason: Option<String>,
    pub attestation: AttestationKind,
    pub batch: Option<String>,
    pub device: Option<DeviceRecord>,
    #[serde(skip)]
    pub certificate_der: Option<Vec<u8>>,
    pub certificate: Option<CertificateFacts>,
    pub key_fingerprint: Option<KeyFingerprint>,
    #[serde(serialize_with = "serialize_opt_hex")]
    pub endorsement_key: Option<Vec<u8>>,
    /// The random input of a `symmetric-individual` key (not the key).
    pub key_nonce: Option<KeyNonce>,
    pub station: Option<String>,
    pub operator: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

fn serialize_opt_hex<S: serde::Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(bytes) => s.serialize_some(&hex::encode(bytes)),
        None => s.serialize_none(),
    }
}

/// A change of an identity's state. The ledger checks it against the state machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    /// `issued → written`: the device stored the identity and read it back.
    Written,
    /// `written → enrolled`: DPS knows the device.
    Enrolled,
    /// `issued → failed{write}` or `written → failed{enroll}`: the stage that was running.
    Failed { stage: FailureStage, reason: String },
    /// `failed → issued` (failed at write) or `failed → written` (failed at enroll): try the stage again.
    Retry,
    /// Any state but `revoked` → `revoked`, for good.
    Revoked { reason: String },
}

/// An explicit, audited re-provisioning of one device: the operator chose it for this run and
/// said why. [`crate::ledger::LedgerWriter::reprovision`] revokes the device's current identity
/// and records the new one in one transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reprovisioning {
    /// The operator's reason, e.g. `RMA 123`.
    pub reason: String,
    /// The batch that re-provisions the device.
    pub batch: String,
    /// The device's serial number (for the audit row).
    pub device_serial: String,
}

/// Filter for [`crate::ledger::Ledger::list_identities`]; `None` fields match everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdentityFilter {
    pub batch: Option<String>,
    pub state: Option<IdentityState>,
    pub attestation: Option<AttestationKind>,
    /// At most this many rows (newest last); `None` = all.
    pub limit: Option<u32>,
}

/// Put an identity on the enrollment queue of one DPS target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEnrollment {
    pub dps_target: String,
    pub kind: EnrollmentKind,
    /// The enrollment group's name, for `Group`.
    pub group_name: Option<String>,
}

/// An enrollment as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EnrollmentRecord {
    pub id: EnrollmentId,
    pub registration_id: String,
    pub dps_target: String,
    pub kind: EnrollmentKind,
    pub group_name: Option<String>,
    pub state: EnrollmentState,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub etag: Option<String>,
    pub queued_at: String,
    pub updated_at: String,
    pub enrolled_at: Option<String>,
}

/// An enrollment waiting for DPS, with what the DPS request needs (public material only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingEnrollment {
    pub enrollment: EnrollmentRecord,
    pub attestation: AttestationKind,
    pub certificate_der: Option<Vec<u8>>,
    pub endorsement_key: Option<Vec<u8>>,
    /// The random input of a `symmetric-individual` key, to recompute it in the HSM.
    pub key_nonce: Option<KeyNonce>,
    /// The revoked identity this one replaced by an explicit re-provisioning, if any: DPS may
    /// still hold an individual enrollment with that identity's credential, which this one's
    /// enrollment must replace (a create would be refused as a conflict).
    pub replaces: Option<IdentityId>,
    /// The fingerprint of a symmetric key: a key recomputed for enrollment away from the run
    /// that made it is checked against it before it is sent (a wrong master key is caught).
    pub key_fingerprint: Option<KeyFingerprint>,
}

/// What DPS answered for one enrollment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnrollmentOutcome {
    /// Accepted: enrollment `enrolled`, identity `written → enrolled`.
    Enrolled { etag: Option<String> },
    /// A transient failure (429, 5xx, network): stays pending, attempts + 1.
    RetryLater { error: String },
    /// Refused for good (400, 409 that will not clear): enrollment `failed`, identity `failed{enroll}`.
    Failed { error: String },
}

/// Start of an HSM key-injection session (a security officer at a token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewKeySession {
    pub operator: String,
    pub token_label: String,
    pub token_serial: String,
    pub token_model: String,
}

/// A key-injection session as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeySessionRecord {
    pub id: KeySessionId,
    pub operator: String,
    pub token_label: String,
    pub token_serial: String,
    pub token_model: String,
    pub opened_at: String,
    pub closed_at: Option<String>,
}

/// A CA certificate made or imported in an HSM session. The key stays in the HSM; the ledger
/// keeps its PKCS#11 URI (without any PIN) and the certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCaCertificate {
    pub name: String,
    pub role: CaRole,
    pub key_uri: String,
    pub certificate_der: Vec<u8>,
}

/// A CA certificate as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CaCertificateRecord {
    pub id: CaCertificateId,
    pub name: String,
    pub role: CaRole,
    pub key_uri: String,
    #[serde(skip)]
    pub certificate_der: Vec<u8>,
    pub certificate: CertificateFacts,
    pub created_at: String,
}

/// One audit row as stored, with its chain hashes (hex).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditRecord {
    pub id: AuditId,
    pub at: String,
    pub station: String,
    pub actor: String,
    pub action: String,
    pub subject: String,
    /// JSON text, as hashed.
    pub details: String,
    pub prev_hash: String,
    pub hash: String,
}

/// Counts for `ledger stats`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LedgerStats {
    pub path: String,
    pub schema_version: i64,
    pub file_bytes: u64,
    pub stations: i64,
    pub operators: i64,
    pub batches: i64,
    pub devices: i64,
    pub identities: i64,
    pub identities_by_state: BTreeMap<String, i64>,
    pub identities_by_attestation: BTreeMap<String, i64>,
    pub enrollments_by_state: BTreeMap<String, i64>,
    pub key_sessions: i64,
    pub ca_certificates: i64,
    pub audit_rows: i64,
}
