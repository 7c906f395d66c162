//! Enrollment groups: create (never overwriting), get, replace (etag or `*`), delete, and the
//! attestation mechanism (which returns a symmetric-key group's keys).

use reqwest::Method;

use super::client::{DpsClient, Executed, Op, decode, to_body};
use super::enrollments::{CreateOutcome, IfMatch, request};
use super::error::{DpsError, ServiceErrorKind, group_target};
use super::model::{AttestationMechanism, EnrollmentGroup};
use super::registration_id::validate_group_id;
use super::same_content::same_attestation;
use super::sas::percent_encode;

fn path(group_id: &str) -> String {
    format!("/enrollmentGroups/{}", percent_encode(group_id))
}

impl DpsClient {
    /// Reads a group (symmetric keys hidden; see [`Self::group_attestation`]).
    pub fn get_group(&self, group_id: &str) -> Result<EnrollmentGroup, DpsError> {
        let target = group_target(group_id);
        let op = Op {
            operation: "read",
            target: &target,
        };
        self.execute_json(&op, &request(Method::GET, path(group_id), None, None))
    }

    /// Reads a group, `None` when DPS has none (a batch checks its group exists once).
    pub fn find_group(&self, group_id: &str) -> Result<Option<EnrollmentGroup>, DpsError> {
        match self.get_group(group_id) {
            Ok(g) => Ok(Some(g)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Creates a group; an existing one is never overwritten (same rules as
    /// [`Self::create_enrollment`]).
    pub fn create_group(
        &self,
        group: &EnrollmentGroup,
    ) -> Result<CreateOutcome<EnrollmentGroup>, DpsError> {
        let id = group.enrollment_group_id.as_str();
        validate_group_id(id)?;
        let target = group_target(id);
        let op = Op {
            operation: "create",
            target: &target,
        };
        let body = to_body(
            &op,
            &EnrollmentGroup {
                etag: None,
                ..group.clone()
            },
        )?;
        let req = request(Method::PUT, path(id), None, Some(body));
        let check = || self.holds_same_group(group);
        match self.execute(&op, &req, Some(&check)) {
            Ok(Executed::Answer(answer)) => Ok(CreateOutcome::Created(decode(&op, &answer)?)),
            Ok(Executed::AlreadyApplied) => Ok(CreateOutcome::AlreadyPresent(self.get_group(id)?)),
            Err(err) if err.kind() == Some(ServiceErrorKind::Conflict) => {
                if self.holds_same_group(group)? {
                    Ok(CreateOutcome::AlreadyPresent(self.get_group(id)?))
                } else {
                    Err(DpsError::ExistsWithDifferentContent { target })
                }
            }
            Err(err) => Err(err),
        }
    }

    /// Replaces (or creates) a group with its etag or `If-Match: *`.
    pub fn replace_group(
        &self,
        group: &EnrollmentGroup,
        if_match: &IfMatch,
    ) -> Result<EnrollmentGroup, DpsError> {
        let id = group.enrollment_group_id.as_str();
        validate_group_id(id)?;
        let target = group_target(id);
        let op = Op {
            operation: "replace",
            target: &target,
        };
        let body = to_body(&op, group)?;
        self.execute_json(
            &op,
            &request(Method::PUT, path(id), Some(if_match.header()), Some(body)),
        )
    }

    /// Deletes a group (with an etag, only that version).
    pub fn delete_group(&self, group_id: &str, if_match: Option<&IfMatch>) -> Result<(), DpsError> {
        let target = group_target(group_id);
        let op = Op {
            operation: "delete",
            target: &target,
        };
        let req = request(
            Method::DELETE,
            path(group_id),
            if_match.map(IfMatch::header),
            None,
        );
        let check = || Ok(self.find_group(group_id)?.is_none());
        self.execute(&op, &req, Some(&check)).map(|_| ())
    }

    /// The group's attestation with its symmetric keys.
    pub fn group_attestation(&self, group_id: &str) -> Result<AttestationMechanism, DpsError> {
        let target = group_target(group_id);
        let op = Op {
            operation: "read the attestation of",
            target: &target,
        };
        let req = request(
            Method::POST,
            format!("{}/attestationmechanism", path(group_id)),
            None,
            None,
        );
        self.execute_json(&op, &req)
    }

    /// Whether DPS holds this group ID with the same attestation as `wanted`.
    pub(crate) fn holds_same_group(&self, wanted: &EnrollmentGroup) -> Result<bool, DpsError> {
        let id = wanted.enrollment_group_id.as_str();
        let Some(found) = self.find_group(id)? else {
            return Ok(false);
        };
        same_attestation(&wanted.attestation, &found.attestation, || {
            self.group_attestation(id)
        })
    }
}
