//! Errors of the DPS client, typed by HTTP status and DPS `errorCode`, each naming the enrollment
//! (or group, or registration) concerned and saying what to do.

use std::fmt;

use super::connection_string::ConnectionStringError;
use super::payload::PayloadError;
use super::registration_id::RegistrationIdError;
use super::sas::SasError;

/// The class of a refusal, from the HTTP status; callers branch on this, not on numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceErrorKind {
    /// 400: the service refused the content.
    BadRequest,
    /// 401: wrong key, wrong policy name, expired or not-yet-valid token.
    Unauthorized,
    /// 403: the policy lacks a permission, or a quota is reached.
    Forbidden,
    /// 404: no such enrollment, group or registration.
    NotFound,
    /// 409: it already exists.
    Conflict,
    /// 412: the etag does not match.
    PreconditionFailed,
    /// 429: throttled.
    Throttled,
    /// 5xx: the service failed.
    Server,
    /// Anything else.
    Other,
}

impl ServiceErrorKind {
    /// Classifies an HTTP status.
    pub fn from_status(status: u16) -> Self {
        match status {
            400 => Self::BadRequest,
            401 => Self::Unauthorized,
            403 => Self::Forbidden,
            404 => Self::NotFound,
            409 => Self::Conflict,
            412 => Self::PreconditionFailed,
            429 => Self::Throttled,
            500..=599 => Self::Server,
            _ => Self::Other,
        }
    }

    fn hint(self) -> &'static str {
        match self {
            Self::BadRequest => {
                "DPS refused the content: check the registration ID, certificate or key"
            }
            Self::Unauthorized => {
                "check the key and policy name of DPS_CONNECTION_STRING, and the station's clock \
                 (DPS refuses expired and not-yet-valid tokens)"
            }
            Self::Forbidden => {
                "the shared access policy lacks a permission (EnrollmentRead/EnrollmentWrite/\
                 RegistrationStatusRead/RegistrationStatusWrite) or a DPS quota is reached"
            }
            Self::NotFound => "it does not exist in this DPS instance",
            Self::Conflict => {
                "it already exists in DPS; choose re-provisioning to replace it, or delete it first"
            }
            Self::PreconditionFailed => "it changed since it was read: read it again and retry",
            Self::Throttled => {
                "DPS kept throttling after the retries: lower the operations-per-minute setting to \
                 the instance's quota"
            }
            Self::Server => "DPS failed after the retries: try again later",
            Self::Other => "unexpected answer from DPS",
        }
    }
}

/// A refusal by the service, with everything support needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceError {
    /// What we were doing, e.g. `create individual enrollment`.
    pub operation: String,
    /// What it was about, e.g. `enrollment 'dev-1'`.
    pub target: String,
    /// HTTP status.
    pub status: u16,
    /// DPS `errorCode` (e.g. 404201), from the body or the `x-ms-error-code` header.
    pub error_code: Option<i64>,
    /// DPS `trackingId`.
    pub tracking_id: Option<String>,
    /// The service's message.
    pub message: String,
    /// How many times the request was sent.
    pub attempts: u32,
}

impl ServiceError {
    /// The class of the refusal.
    pub fn kind(&self) -> ServiceErrorKind {
        ServiceErrorKind::from_status(self.status)
    }
}

impl fmt::Display for ServiceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "DPS refused to {} {}: HTTP {}",
            self.operation, self.target, self.status
        )?;
        if let Some(code) = self.error_code {
            write!(f, ", errorCode {code}")?;
        }
        if let Some(id) = &self.tracking_id {
            write!(f, ", trackingId {id}")?;
        }
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        if self.attempts > 1 {
            write!(f, " (after {} attempts)", self.attempts)?;
        }
        write!(f, ". {}", self.kind().hint())
    }
}

/// Everything the DPS client can fail with.
#[derive(Debug, thiserror::Error)]
pub enum DpsError {
    /// The connection string is malformed.
    #[error(transparent)]
    ConnectionString(#[from] ConnectionStringError),
    /// A token could not be made.
    #[error(transparent)]
    Sas(#[from] SasError),
    /// A registration or group ID DPS would refuse; caught before sending.
    #[error(transparent)]
    RegistrationId(#[from] RegistrationIdError),
    /// An enrollment payload is inconsistent (a certificate whose CN is not the registration ID...).
    #[error(transparent)]
    Payload(#[from] PayloadError),
    /// The HTTPS client could not be set up.
    #[error("cannot set up HTTPS for DPS: {0}")]
    Tls(String),
    /// The endpoint override is not a usable URL.
    #[error(
        "the DPS endpoint '{0}' is not an http(s) URL with a host, e.g. https://mydps.azure-devices-provisioning.net"
    )]
    Endpoint(String),
    /// DPS answered with an error status.
    #[error("{0}")]
    Service(Box<ServiceError>),
    /// DPS could not be reached, or the connection broke, after all retries.
    #[error(
        "could not {operation} {target}: {detail} (after {attempts} attempts to reach {endpoint}); \
         check the network, proxy and firewall of the station"
    )]
    Transport {
        /// What we were doing.
        operation: String,
        /// What it was about.
        target: String,
        /// The base URL.
        endpoint: String,
        /// reqwest's description (timeout, connection reset...).
        detail: String,
        /// How many times it was sent.
        attempts: u32,
    },
    /// DPS answered, but not with the JSON the API defines.
    #[error(
        "DPS answered {operation} {target} with HTTP {status} and a body that is not the expected \
         JSON ({detail}); is the endpoint really a DPS instance (a proxy or captive portal may answer)?"
    )]
    UnexpectedAnswer {
        /// What we were doing.
        operation: String,
        /// What it was about.
        target: String,
        /// HTTP status.
        status: u16,
        /// The parse error and the start of the body.
        detail: String,
    },
    /// A create found the enrollment already there with other content: never overwritten silently.
    #[error(
        "{target} already exists in DPS with a different attestation; it was left untouched. \
         Choose re-provisioning to replace it, or delete it in DPS first"
    )]
    ExistsWithDifferentContent {
        /// Which enrollment.
        target: String,
    },
}

impl DpsError {
    /// The service refusal, if this is one.
    pub fn service(&self) -> Option<&ServiceError> {
        match self {
            Self::Service(e) => Some(e),
            _ => None,
        }
    }

    /// The refusal class, if DPS answered with an error status.
    pub fn kind(&self) -> Option<ServiceErrorKind> {
        self.service().map(ServiceError::kind)
    }

    /// True for a 404 from DPS.
    pub fn is_not_found(&self) -> bool {
        self.kind() == Some(ServiceErrorKind::NotFound)
    }
}

/// Describes an individual enrollment for error messages.
pub(crate) fn enrollment_target(registration_id: &str) -> String {
    format!("individual enrollment '{registration_id}'")
}

/// Describes an enrollment group for error messages.
pub(crate) fn group_target(group_id: &str) -> String {
    format!("enrollment group '{group_id}'")
}

/// Describes a registration state for error messages.
pub(crate) fn registration_target(registration_id: &str) -> String {
    format!("registration state of '{registration_id}'")
}
