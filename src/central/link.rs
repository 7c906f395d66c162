//! The station's view of the central service: one method per API call, blocking (the sync worker and
//! the lease keeper are threads; the line never calls these).
//!
//! The HTTPS implementation (mutual TLS, the station's key in its HSM where it has one) lives in the
//! station side; tests run station code against the real service through it.

use super::signing::Signed;
use super::wire::{
    IngestBatch, Lease, LeaseRequest, LeaseReturn, LeaseReturned, Receipt, StatusReport,
};

/// Why a call to the central service did not get an answer it could use.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// No connection, a timeout, a 5xx, a database the service cannot reach: try again later.
    #[error(
        "the central service at {url} cannot be reached ({reason}); the station keeps working and retries"
    )]
    Unreachable { url: String, reason: String },
    /// The service answered and refused (4xx): retrying the same request will not help.
    #[error("the central service refused the request ({code}): {message}")]
    Refused { code: String, message: String },
    /// The answer was not what the API promises (bad JSON, bad signature).
    #[error("the central service's answer cannot be used: {reason}")]
    BadAnswer { reason: String },
}

impl LinkError {
    /// Worth retrying with backoff (as opposed to a refusal that needs a person).
    pub fn is_transient(&self) -> bool {
        matches!(self, LinkError::Unreachable { .. })
    }
}

/// The calls a joined station makes.
pub trait CentralLink: Send + Sync {
    /// Uploads outbox rows; the receipt is verified by the caller.
    fn ingest(&self, batch: &IngestBatch) -> Result<Signed<Receipt>, LinkError>;
    /// Asks for a lease of identities of a batch.
    fn lease(&self, request: &LeaseRequest) -> Result<Signed<Lease>, LinkError>;
    /// Gives back what a lease did not use.
    fn return_lease(&self, request: &LeaseReturn) -> Result<Signed<LeaseReturned>, LinkError>;
    /// Every station's state, as the service sees it.
    fn status(&self) -> Result<StatusReport, LinkError>;
}
