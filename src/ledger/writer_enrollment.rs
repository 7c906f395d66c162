//! The enrollment queue's writes: an identity put on a DPS target's queue, and what DPS answered
//! (enrolled, refused, retry later), each with its audit row in the same transaction.

use rusqlite::{OptionalExtension, params};
use serde_json::json;

use super::error::LedgerError;
use super::queries;
use super::types::*;
use super::writer::{LedgerWriter, non_empty};

impl LedgerWriter<'_> {
    /// Puts a `written` identity on the enrollment queue of a DPS target. Queuing again is harmless:
    /// a pending enrollment is returned as it is, a failed one is made pending again.
    pub fn queue_enrollment(
        &self,
        registration_id: &str,
        enrollment: &NewEnrollment,
    ) -> Result<EnrollmentId, LedgerError> {
        non_empty("DPS target", &enrollment.dps_target)?;
        let identity = self.existing(registration_id)?;
        if identity.state != IdentityState::Written {
            return Err(LedgerError::NotEnrollable {
                registration_id: identity.registration_id,
                state: identity.state,
            });
        }
        let existing: Option<(i64, String)> = self
            .tx
            .prepare_cached(
                "SELECT id, state FROM enrollments WHERE identity_id = ?1 AND dps_target = ?2",
            )
            .and_then(|mut s| {
                s.query_row(params![identity.id.0, enrollment.dps_target], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .optional()
            })
            .map_err(self.sql("looking up an enrollment"))?;
        let id = match existing {
            Some((id, state)) if state == "pending" => return Ok(EnrollmentId(id)),
            Some((id, state)) if state == "enrolled" => {
                return Err(LedgerError::AlreadyFinished {
                    what: "enrollment",
                    id,
                    state,
                });
            }
            Some((id, _failed)) => {
                self.tx
                    .execute(
                        "UPDATE enrollments SET state = 'pending', kind = ?2, group_name = ?3,
                           updated_at = ?4 WHERE id = ?1",
                        params![
                            id,
                            enrollment.kind.as_str(),
                            enrollment.group_name,
                            self.now
                        ],
                    )
                    .map_err(self.sql("re-queuing an enrollment"))?;
                id
            }
            None => {
                self.tx
                    .prepare_cached(
                        "INSERT INTO enrollments (identity_id, dps_target, kind, group_name, state,
                           queued_at, updated_at) VALUES (?1, ?2, ?3, ?4, 'pending', ?5, ?5)",
                    )
                    .and_then(|mut s| {
                        s.execute(params![
                            identity.id.0,
                            enrollment.dps_target,
                            enrollment.kind.as_str(),
                            enrollment.group_name,
                            self.now
                        ])
                    })
                    .map_err(self.sql("queuing an enrollment"))?;
                self.tx.last_insert_rowid()
            }
        };
        self.audit(
            "enrollment.queued",
            &identity.registration_id,
            json!({
                "enrollment": id,
                "dps_target": enrollment.dps_target,
                "kind": enrollment.kind.as_str(),
                "group_name": enrollment.group_name,
            }),
        )?;
        Ok(EnrollmentId(id))
    }

    /// Records what DPS answered; on success or final failure the identity follows
    /// (`written → enrolled`, or `→ failed{enroll}`) in the same transaction.
    pub fn record_enrollment_result(
        &self,
        id: EnrollmentId,
        outcome: &EnrollmentOutcome,
    ) -> Result<EnrollmentState, LedgerError> {
        let enrollment = queries::find_enrollment(self.tx, id)
            .map_err(self.sql("looking up an enrollment"))?
            .ok_or_else(|| LedgerError::UnknownRecord {
                path: self.path.to_path_buf(),
                what: "enrollment",
                id: id.0,
            })?;
        if enrollment.state != EnrollmentState::Pending {
            return Err(LedgerError::AlreadyFinished {
                what: "enrollment",
                id: id.0,
                state: enrollment.state.to_string(),
            });
        }
        // The identity follows below by registration ID, which names the live identity: make
        // sure this enrollment is that identity's (revoking one cancels its pending enrollments,
        // so this holds unless the file was edited by hand).
        let owner: i64 = self
            .tx
            .prepare_cached("SELECT identity_id FROM enrollments WHERE id = ?1")
            .and_then(|mut s| s.query_row([id.0], |r| r.get(0)))
            .map_err(self.sql("looking up an enrollment"))?;
        let live = self.existing(&enrollment.registration_id)?;
        if live.id.0 != owner {
            return Err(LedgerError::AlreadyFinished {
                what: "enrollment",
                id: id.0,
                state: format!(
                    "pending for identity #{owner} of {}, which is no longer its live identity (#{} is)",
                    enrollment.registration_id, live.id
                ),
            });
        }
        let (next, etag, error) = match outcome {
            EnrollmentOutcome::Enrolled { etag } => (EnrollmentState::Enrolled, etag.clone(), None),
            EnrollmentOutcome::RetryLater { error } => {
                (EnrollmentState::Pending, None, Some(error.clone()))
            }
            EnrollmentOutcome::Failed { error } => {
                (EnrollmentState::Failed, None, Some(error.clone()))
            }
        };
        self.tx
            .prepare_cached(
                "UPDATE enrollments SET state = ?2, attempts = attempts + 1,
                   last_error = coalesce(?3, last_error), etag = coalesce(?4, etag), updated_at = ?5,
                   enrolled_at = CASE WHEN ?2 = 'enrolled' THEN ?5 ELSE enrolled_at END
                 WHERE id = ?1",
            )
            .and_then(|mut s| {
                s.execute(params![id.0, next.as_str(), error, etag, self.now])
            })
            .map_err(self.sql("recording an enrollment result"))?;
        let action = match outcome {
            EnrollmentOutcome::Enrolled { .. } => "enrollment.enrolled",
            EnrollmentOutcome::RetryLater { .. } => "enrollment.retry_later",
            EnrollmentOutcome::Failed { .. } => "enrollment.failed",
        };
        self.audit(
            action,
            &enrollment.registration_id,
            json!({
                "enrollment": id.0,
                "dps_target": enrollment.dps_target,
                "attempt": enrollment.attempts + 1,
                "etag": etag,
                "error": error,
            }),
        )?;
        match outcome {
            EnrollmentOutcome::Enrolled { .. } => {
                self.transition(&enrollment.registration_id, &Transition::Enrolled)?;
            }
            EnrollmentOutcome::Failed { error } => {
                self.transition(
                    &enrollment.registration_id,
                    &Transition::Failed {
                        stage: FailureStage::Enroll,
                        reason: error.clone(),
                    },
                )?;
            }
            EnrollmentOutcome::RetryLater { .. } => {}
        }
        Ok(next)
    }
}
