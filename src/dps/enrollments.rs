//! Individual enrollments: create (never overwriting), get, replace (etag or `*`), delete, and the
//! attestation mechanism (the only call that returns symmetric keys).

use reqwest::Method;

use super::client::{DpsClient, Executed, Op, decode, to_body};
use super::error::{DpsError, enrollment_target};
use super::model::{AttestationMechanism, AttestationType, IndividualEnrollment};
use super::registration_id::{MAX_LEN, MAX_LEN_X509, validate_registration_id};
use super::same_content::same_attestation;
use super::sas::percent_encode;
use super::transport::Request;

/// The `If-Match` of an update or delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IfMatch {
    /// Only if the stored version still has this etag.
    Etag(String),
    /// Whatever the stored version (`If-Match: *`): the caller chose to replace.
    Any,
}

impl IfMatch {
    pub(crate) fn header(&self) -> &str {
        match self {
            Self::Etag(e) => e,
            Self::Any => "*",
        }
    }
}

/// What a create found.
#[derive(Debug, Clone, PartialEq)]
pub enum CreateOutcome<T> {
    /// DPS created it now.
    Created(T),
    /// It was already there with the same attestation (an earlier send landed, or an earlier run
    /// enrolled it): nothing was changed, and the enrollment is confirmed.
    AlreadyPresent(T),
}

impl<T> CreateOutcome<T> {
    /// The enrollment as DPS holds it.
    pub fn into_inner(self) -> T {
        match self {
            Self::Created(t) | Self::AlreadyPresent(t) => t,
        }
    }
}

/// The DPS length limit for this enrollment's registration ID.
pub(crate) fn max_len_for(enrollment: &IndividualEnrollment) -> usize {
    if enrollment.attestation.kind == AttestationType::X509 {
        MAX_LEN_X509
    } else {
        MAX_LEN
    }
}

fn path(registration_id: &str) -> String {
    format!("/enrollments/{}", percent_encode(registration_id))
}

impl DpsClient {
    /// Reads an enrollment (symmetric keys are hidden by DPS; see [`Self::enrollment_attestation`]).
    pub fn get_enrollment(&self, registration_id: &str) -> Result<IndividualEnrollment, DpsError> {
        let target = enrollment_target(registration_id);
        let op = Op {
            operation: "read",
            target: &target,
        };
        self.execute_json(
            &op,
            &request(Method::GET, path(registration_id), None, None),
        )
    }

    /// Reads an enrollment, `None` when DPS has none.
    pub fn find_enrollment(
        &self,
        registration_id: &str,
    ) -> Result<Option<IndividualEnrollment>, DpsError> {
        match self.get_enrollment(registration_id) {
            Ok(e) => Ok(Some(e)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Creates an enrollment; an existing one is never overwritten.
    ///
    /// A send that may have landed (timeout, dropped connection, 5xx) is checked with a GET
    /// before re-sending; a 409 is checked the same way. If DPS already holds the same
    /// attestation the result is [`CreateOutcome::AlreadyPresent`]; if it holds another, the
    /// error is [`DpsError::ExistsWithDifferentContent`] and DPS is left untouched.
    pub fn create_enrollment(
        &self,
        enrollment: &IndividualEnrollment,
    ) -> Result<CreateOutcome<IndividualEnrollment>, DpsError> {
        let id = enrollment.registration_id.as_str();
        validate_registration_id(id, max_len_for(enrollment))?;
        let target = enrollment_target(id);
        let op = Op {
            operation: "create",
            target: &target,
        };
        let body = to_body(&op, &without_etag(enrollment))?;
        let req = request(Method::PUT, path(id), None, Some(body));
        let check = || self.holds_same_enrollment(enrollment);
        match self.execute(&op, &req, Some(&check)) {
            Ok(Executed::Answer(answer)) => Ok(CreateOutcome::Created(decode(&op, &answer)?)),
            Ok(Executed::AlreadyApplied) => {
                Ok(CreateOutcome::AlreadyPresent(self.get_enrollment(id)?))
            }
            Err(err) if err.kind() == Some(super::error::ServiceErrorKind::Conflict) => {
                if self.holds_same_enrollment(enrollment)? {
                    Ok(CreateOutcome::AlreadyPresent(self.get_enrollment(id)?))
                } else {
                    Err(DpsError::ExistsWithDifferentContent { target })
                }
            }
            Err(err) => Err(err),
        }
    }

    /// Replaces (or creates) an enrollment: only when the caller chose re-provisioning, with the
    /// etag it read or `If-Match: *`. A changed etag gives a 412 error.
    pub fn replace_enrollment(
        &self,
        enrollment: &IndividualEnrollment,
        if_match: &IfMatch,
    ) -> Result<IndividualEnrollment, DpsError> {
        let id = enrollment.registration_id.as_str();
        validate_registration_id(id, max_len_for(enrollment))?;
        let target = enrollment_target(id);
        let op = Op {
            operation: "replace",
            target: &target,
        };
        let body = to_body(&op, enrollment)?;
        self.execute_json(
            &op,
            &request(Method::PUT, path(id), Some(if_match.header()), Some(body)),
        )
    }

    /// Deletes an enrollment (with an etag, only that version). A delete that may have landed
    /// before a retry finds it gone: that counts as deleted.
    pub fn delete_enrollment(
        &self,
        registration_id: &str,
        if_match: Option<&IfMatch>,
    ) -> Result<(), DpsError> {
        let target = enrollment_target(registration_id);
        let op = Op {
            operation: "delete",
            target: &target,
        };
        let req = request(
            Method::DELETE,
            path(registration_id),
            if_match.map(IfMatch::header),
            None,
        );
        let check = || Ok(self.find_enrollment(registration_id)?.is_none());
        self.execute(&op, &req, Some(&check)).map(|_| ())
    }

    /// The attestation with its symmetric keys (GET hides them).
    pub fn enrollment_attestation(
        &self,
        registration_id: &str,
    ) -> Result<AttestationMechanism, DpsError> {
        let target = enrollment_target(registration_id);
        let op = Op {
            operation: "read the attestation of",
            target: &target,
        };
        let req = request(
            Method::POST,
            format!("{}/attestationmechanism", path(registration_id)),
            None,
            None,
        );
        self.execute_json(&op, &req)
    }

    /// Whether DPS holds this registration ID with the same attestation as `wanted`.
    pub(crate) fn holds_same_enrollment(
        &self,
        wanted: &IndividualEnrollment,
    ) -> Result<bool, DpsError> {
        let id = wanted.registration_id.as_str();
        let Some(found) = self.find_enrollment(id)? else {
            return Ok(false);
        };
        same_attestation(&wanted.attestation, &found.attestation, || {
            self.enrollment_attestation(id)
        })
    }
}

/// A create carries no etag (it would be ignored or refused).
fn without_etag(enrollment: &IndividualEnrollment) -> IndividualEnrollment {
    IndividualEnrollment {
        etag: None,
        ..enrollment.clone()
    }
}

pub(crate) fn request<'a>(
    method: Method,
    path: String,
    if_match: Option<&'a str>,
    json_body: Option<Vec<u8>>,
) -> Request<'a> {
    Request {
        method,
        path,
        if_match,
        max_item_count: None,
        continuation: None,
        json_body,
    }
}
