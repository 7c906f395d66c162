//! What stations and the central service say to each other, as JSON over HTTPS (mutual TLS).
//!
//! Version 1. Every request from a joined station is authenticated by its client certificate; the
//! `station_id` fields below must equal the certificate's station (the service refuses a mismatch).
//! Every body carries the station's clock (`station_time`) so the service can refuse a station whose
//! clock is far off ([`MAX_CLOCK_SKEW_SECONDS`]): receipts and leases carry expiry times.

use serde::{Deserialize, Serialize};

/// URL paths of the API, relative to the service's base URL.
pub mod paths {
    /// `POST` [`super::JoinRequest`] → [`super::JoinResponse`]. The only path without a client
    /// certificate: the one-time token authenticates it.
    pub const JOIN: &str = "/v1/join";
    /// `POST` [`super::IngestBatch`] → `Signed<Receipt>`.
    pub const INGEST: &str = "/v1/ingest";
    /// `POST` [`super::LeaseRequest`] → `Signed<Lease>`.
    pub const LEASES: &str = "/v1/leases";
    /// `POST` [`super::LeaseReturn`] → `Signed<LeaseReturned>`.
    pub const LEASE_RETURN: &str = "/v1/leases/return";
    /// `GET` → [`super::StatusReport`] (every station's row; for `central status` and the panel).
    pub const STATUS: &str = "/v1/status";
    /// `GET` → [`super::Health`], no authentication: for load balancers.
    pub const HEALTH: &str = "/v1/health";
}

/// How far a station's clock may be from the service's before its requests are refused.
pub const MAX_CLOCK_SKEW_SECONDS: i64 = 300;

/// The most outbox rows one ingest request may carry; the service refuses larger batches.
pub const MAX_INGEST_ROWS: usize = 1000;

/// A station asks to join with a one-time token and a certificate signing request for a key it
/// made (in its HSM where it has one).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct JoinRequest {
    /// The token `central token create` printed (the whole string).
    pub token: String,
    /// The station's id as in its `station.toml` (becomes the certificate's CN).
    pub station_id: String,
    /// PKCS#10, PEM.
    pub csr_pem: String,
    /// RFC 3339 UTC.
    pub station_time: String,
}

/// What a station keeps after joining.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct JoinResponse {
    pub station_id: String,
    /// The station's client certificate, PEM, issued by the service's CA.
    pub client_certificate_pem: String,
    /// The service's CA certificate, PEM: the station trusts the service's TLS certificate through it.
    pub ca_certificate_pem: String,
    /// The certificate whose key signs receipts and leases, PEM (issued by the same CA).
    pub signer_certificate_pem: String,
}

/// One outbox row: one row of the station's audit chain, exactly as hashed (see `ledger::audit`),
/// with a snapshot of the identity it changed, if it changed one.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OutboxRow {
    /// The audit row's id: contiguous from 1 per station.
    pub seq: i64,
    /// 64 lowercase hex digits.
    pub prev_hash: String,
    /// 64 lowercase hex digits; `SHA-256(prev ‖ canonical(seq, content))`.
    pub hash: String,
    pub at: String,
    pub station: String,
    pub actor: String,
    pub action: String,
    pub subject: String,
    /// The JSON text exactly as stored and hashed.
    pub details: String,
    /// Present when this row records an identity state change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<IdentitySnapshot>,
}

/// An identity as it stands after the change its row records.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct IdentitySnapshot {
    pub registration_id: String,
    pub device_model: String,
    pub device_serial: String,
    pub batch: String,
    /// The ledger's state name (`issued`, `written`, `enrolled`, `revoked`, ...).
    pub state: String,
    /// `x509`, `symmetric` or `tpm`.
    pub attestation: String,
    /// The device certificate, PEM, for X.509 identities (central enrollment needs it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_pem: Option<String>,
    /// The TPM endorsement key, base64, for TPM identities.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endorsement_key: Option<String>,
    /// The lease this identity was issued from (joined stations only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_id: Option<String>,
    /// Whether the station enrolls this identity itself or leaves it to the service.
    #[serde(default)]
    pub central_enrollment: bool,
}

/// A batch of outbox rows, in order, contiguous, starting right after what the station believes
/// the service last acknowledged (a re-send of rows already held is fine: ingest is idempotent).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct IngestBatch {
    pub station_id: String,
    pub station_time: String,
    pub rows: Vec<OutboxRow>,
}

/// The service's answer to an ingest, signed: what it holds of the station's chain now.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Receipt {
    pub station_id: String,
    /// First and last `seq` of the batch this receipt answers.
    pub first_seq: i64,
    pub last_seq: i64,
    /// The station's chain head the service holds after this ingest (seq and hash).
    pub head_seq: i64,
    pub head_hash: String,
    /// The service's position (a global, increasing number) of the last row stored.
    pub central_position: i64,
    /// Rows stored by this request (a re-send stores none).
    pub stored: u32,
    /// Identities refused because another station holds the device or registration ID.
    #[serde(default)]
    pub quarantined: Vec<Quarantined>,
    /// Central enrollment results not yet reported to this station.
    #[serde(default)]
    pub enrollments: Vec<EnrollmentOutcome>,
    pub issued_at: String,
}

/// One identity the service refused to take as live.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Quarantined {
    pub seq: i64,
    pub registration_id: String,
    pub device_model: String,
    pub device_serial: String,
    /// Why, in words for the operator and engineer ("serial ... already provisioned on station ...").
    pub reason: String,
    /// The station that holds it.
    pub held_by: String,
}

/// The outcome of one central enrollment, for the station's ledger.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EnrollmentOutcome {
    pub registration_id: String,
    /// `enrolled` or `failed`.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub at: String,
}

/// A station asks for identities of a batch.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LeaseRequest {
    pub station_id: String,
    pub station_time: String,
    /// The batch name (unique per site); the service must know its cap (`central batch set-cap`).
    pub batch: String,
    /// How many identities the station would like; the service may grant fewer, or none.
    pub count: u32,
}

/// Permission to issue up to `count` identities of `batch` until `expires_at`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Lease {
    pub lease_id: String,
    pub station_id: String,
    pub batch: String,
    pub count: u32,
    pub issued_at: String,
    pub expires_at: String,
}

/// Unused parts of a lease given back (at batch close).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LeaseReturn {
    pub station_id: String,
    pub station_time: String,
    pub lease_id: String,
    /// How many the station used; the rest returns to the batch.
    pub used: u32,
}

/// The service's acknowledgement of a [`LeaseReturn`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LeaseReturned {
    pub lease_id: String,
    pub returned: u32,
    pub at: String,
}

/// `central status`: one line per station.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StatusReport {
    pub service_time: String,
    pub stations: Vec<StationStatus>,
}

/// What the service knows of one station.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StationStatus {
    pub station_id: String,
    pub revoked: bool,
    /// Last seq the service holds, and when it last heard from the station.
    pub head_seq: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<String>,
    /// Identities left on the station's open leases.
    pub lease_left: u64,
    /// Identities of this station in quarantine.
    pub conflicts: u64,
}

/// `GET /v1/health`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Health {
    pub ok: bool,
    /// The schema version the database is at.
    pub schema_version: i64,
    /// `false` when the database refuses writes (a read-only replica).
    pub writable: bool,
}

/// The error body of every refusal: the station shows `message` to its engineer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Refusal {
    /// A stable code (`clock_skew`, `unknown_station`, `revoked`, `chain_gap`, `tampered`, ...).
    pub code: String,
    pub message: String,
}
