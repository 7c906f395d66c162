//! The service's error answer: `ProvisioningServiceErrorDetails` plus the `x-ms-error-code` header.
//!
//! Numeric codes are HTTP status × 1000 + a sub-code (REFERENCE.md §8). Only 404201 and 404204
//! are confirmed; the other sub-codes are this emulator's choice (see docs/dps-emulator.md).

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Sub-codes used by the emulator, named so handlers read like the table in the docs.
pub mod code {
    /// Malformed body, id or header.
    pub const BAD_REQUEST: u32 = 400_004;
    /// `api-version` missing or not one the emulator speaks.
    pub const BAD_API_VERSION: u32 = 400_001;
    /// Bulk call with too many or no items.
    pub const BAD_BULK: u32 = 400_012;
    /// SAS token missing, malformed, expired or signed with a wrong key.
    pub const UNAUTHORIZED: u32 = 401_002;
    /// A device's attestation does not match its enrollment.
    pub const DEVICE_UNAUTHORIZED: u32 = 401_002;
    /// A quota of the instance is reached.
    pub const QUOTA: u32 = 403_002;
    /// Individual enrollment (or a device registering with an unknown id) not found.
    pub const ENROLLMENT_NOT_FOUND: u32 = 404_201;
    /// Device registration state not found.
    pub const REGISTRATION_NOT_FOUND: u32 = 404_202;
    /// Registration operation not found.
    pub const OPERATION_NOT_FOUND: u32 = 404_203;
    /// Enrollment group not found.
    pub const GROUP_NOT_FOUND: u32 = 404_204;
    /// No such route.
    pub const NOT_FOUND: u32 = 404_000;
    /// Known path, wrong method.
    pub const METHOD_NOT_ALLOWED: u32 = 405_000;
    /// PUT over an existing enrollment without `If-Match`.
    pub const ENROLLMENT_EXISTS: u32 = 409_201;
    /// PUT over an existing group without `If-Match`.
    pub const GROUP_EXISTS: u32 = 409_204;
    /// `If-Match` does not match the current etag.
    pub const PRECONDITION_FAILED: u32 = 412_002;
    /// Body over the maximum message size.
    pub const TOO_LARGE: u32 = 413_002;
    /// Throttled.
    pub const THROTTLED: u32 = 429_001;
    /// Injected fault.
    pub const INTERNAL: u32 = 500_000;
}

/// One error answer of the service or device API.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Six-digit DPS error code.
    pub code: u32,
    /// Human-readable message, naming the enrollment or header at fault.
    pub message: String,
    /// Seconds for `Retry-After` (429 only).
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// An error with the status implied by the code's first three digits.
    pub fn new(code: u32, message: impl Into<String>) -> Self {
        let status = u16::try_from(code / 1000)
            .ok()
            .and_then(|s| StatusCode::from_u16(s).ok())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// 400 with the generic bad-request code.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(code::BAD_REQUEST, message)
    }

    /// 401.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(code::UNAUTHORIZED, message)
    }

    /// 429 with the seconds after which a retry will pass.
    pub fn throttled(retry_after: u64) -> Self {
        Self {
            retry_after: Some(retry_after),
            ..Self::new(
                code::THROTTLED,
                "Operations are being throttled by the service. Retry after the time in Retry-After.",
            )
        }
    }
}

impl ApiError {
    /// The JSON body DPS sends with the error (over HTTPS and over MQTT alike).
    pub fn body(&self) -> serde_json::Value {
        json!({
            "errorCode": self.code,
            "trackingId": uuid::Uuid::new_v4().simple().to_string(),
            "message": self.message,
            "timestampUtc": super::clock::now_rfc3339(),
        })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = self.body();
        let mut response = (self.status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert("x-ms-error-code", HeaderValue::from(self.code));
        if let Some(seconds) = self.retry_after {
            headers.insert("retry-after", HeaderValue::from(seconds));
        }
        response
    }
}
