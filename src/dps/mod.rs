//! Azure IoT Hub Device Provisioning Service: the service API client and enrollment files.
//! The emulator (a server) lives in `crate::emulator`.
//!
//! The client is blocking (the station's workers are threads), paces itself to the instance's
//! quota, retries what is worth retrying, and never overwrites an existing enrollment unless the
//! caller chose re-provisioning. It may use `crate::identity` (registration-ID rules, certificate
//! information) and nothing else of the station.

pub mod bulk;
pub mod ca_certificates;
pub mod client;
pub mod connection_string;
pub mod enrollments;
pub mod error;
pub mod export;
pub mod groups;
pub mod model;
pub mod payload;
pub mod query;
pub mod rate_limit;
pub mod registration_id;
pub mod registrations;
pub mod retry;
pub mod same_content;
pub mod sas;
pub mod transport;

pub use bulk::{BulkReport, ItemFailure, ItemOutcome, ItemResult, MAX_BULK_ITEMS};
pub use client::{ClientStats, DpsClient, DpsClientConfig};
pub use connection_string::{ConnectionString, ConnectionStringError};
pub use enrollments::{CreateOutcome, IfMatch};
pub use error::{DpsError, ServiceError, ServiceErrorKind};
pub use payload::{EnrollmentSettings, PayloadError};
pub use transport::TlsTrust;
