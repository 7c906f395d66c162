//! What an engineer may do to one identity after the line made it, shared by the ledger screen
//! and `dps-station ledger revoke`: re-queue a failed enrollment, and revoke an identity together
//! with its DPS individual enrollment. Each takes the engineer's reason and is audited in the same
//! transaction as the change.
//!
//! Revoking touches DPS before the ledger: the individual enrollment is deleted first, so a
//! revoked device cannot provision again. When DPS cannot be reached the ledger is still revoked
//! (the station's record must not wait for the network) and a `dps.delete_deferred` audit row
//! marks the enrollment for later: revoking the same registration ID again retries the delete.

use std::path::Path;

use serde::Serialize;

use crate::ledger::{
    EnrollmentKind, EnrollmentState, FailureStage, IdentityState, Ledger, LedgerError,
    NewEnrollment, Transition, WriterIdentity,
};

use super::config::StationConfig;
use super::operator::handle::connect_dps;

/// Why an action on an identity was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum IdentityActionError {
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("give a reason: it goes into the audit log with your name")]
    NoReason,
    #[error("{registration_id} is not in the ledger; check the registration ID")]
    NotFound { registration_id: String },
    #[error(
        "{registration_id} is {state}; only an identity whose enrollment failed can be re-queued"
    )]
    NotRequeueable {
        registration_id: String,
        state: String,
    },
    #[error("{registration_id} has no enrollment to re-queue; run the batch's enrollment instead")]
    NoEnrollment { registration_id: String },
}

/// What happened to one DPS enrollment when its identity was revoked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum DpsCleanup {
    /// Deleted at DPS (or already gone).
    Deleted { target: String },
    /// DPS could not be reached or refused: marked in the audit log for a later revoke.
    Deferred { target: String, error: String },
}

/// What a revoke did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RevokeOutcome {
    pub registration_id: String,
    /// False when the identity was already revoked (only DPS deletes were retried).
    pub revoked_now: bool,
    pub dps: Vec<DpsCleanup>,
}

fn reason_of(reason: &str) -> Result<String, IdentityActionError> {
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(IdentityActionError::NoReason);
    }
    Ok(reason.to_string())
}

/// Puts a `failed{enroll}` identity back on its DPS target's queue (identity back to `written`,
/// enrollment `pending`), audited with `reason`. The enrollment worker sends it next time.
pub fn requeue_enrollment(
    ledger_path: &Path,
    writer: &WriterIdentity,
    registration_id: &str,
    reason: &str,
) -> Result<(), IdentityActionError> {
    let reason = reason_of(reason)?;
    let mut ledger = Ledger::open(ledger_path, writer)?;
    let identity =
        ledger
            .find_identity(registration_id)?
            .ok_or_else(|| IdentityActionError::NotFound {
                registration_id: registration_id.to_string(),
            })?;
    if identity.state != IdentityState::Failed
        || identity.failed_stage != Some(FailureStage::Enroll)
    {
        return Err(IdentityActionError::NotRequeueable {
            registration_id: identity.registration_id,
            state: identity.state.to_string(),
        });
    }
    let enrollment = ledger
        .enrollments_for(registration_id)?
        .into_iter()
        .rfind(|e| e.state == EnrollmentState::Failed)
        .ok_or_else(|| IdentityActionError::NoEnrollment {
            registration_id: identity.registration_id.clone(),
        })?;
    ledger.transaction(|w| {
        w.transition(registration_id, &Transition::Retry)?;
        w.queue_enrollment(
            registration_id,
            &NewEnrollment {
                dps_target: enrollment.dps_target.clone(),
                kind: enrollment.kind,
                group_name: enrollment.group_name.clone(),
            },
        )?;
        // The stored spelling: the audit trail of an identity is found by it.
        w.append_audit(
            &writer.operator,
            "enrollment.requeued",
            &identity.registration_id,
            &serde_json::json!({ "dps_target": enrollment.dps_target, "reason": reason }),
        )?;
        Ok(())
    })?;
    tracing::info!(registration_id, target = %enrollment.dps_target, "enrollment re-queued");
    Ok(())
}

/// Revokes `registration_id` for `reason`: deletes its individual enrollments at DPS, then moves
/// the identity to `revoked` (its pending enrollments end). Already revoked: retries the DPS
/// deletes a previous revoke had to defer.
pub fn revoke_identity(
    config: &StationConfig,
    writer: &WriterIdentity,
    registration_id: &str,
    reason: &str,
) -> Result<RevokeOutcome, IdentityActionError> {
    let reason = reason_of(reason)?;
    let mut ledger = Ledger::open(&config.ledger, writer)?;
    let identity = ledger
        .live_or_last_revoked(registration_id)?
        .ok_or_else(|| IdentityActionError::NotFound {
            registration_id: registration_id.to_string(),
        })?;
    let revoked_now = identity.state != IdentityState::Revoked;
    // Only an individual enrollment that DPS accepted exists there; a group covers many devices
    // and stays (the revoked certificate's chain is the group's business, not one device's).
    let targets: Vec<String> = if revoked_now {
        ledger
            .enrollments_for(registration_id)?
            .into_iter()
            .filter(|e| {
                e.kind == EnrollmentKind::Individual && e.state == EnrollmentState::Enrolled
            })
            .map(|e| e.dps_target)
            .collect()
    } else {
        deferred_targets(&ledger, &identity.registration_id)?
    };
    let dps: Vec<DpsCleanup> = targets
        .into_iter()
        .map(
            |target| match delete_at_dps(config, &target, registration_id) {
                Ok(()) => DpsCleanup::Deleted { target },
                Err(error) => DpsCleanup::Deferred { target, error },
            },
        )
        .collect();
    ledger.transaction(|w| {
        if revoked_now {
            w.transition(
                registration_id,
                &Transition::Revoked {
                    reason: reason.clone(),
                },
            )?;
        }
        for cleanup in &dps {
            let (action, details) = match cleanup {
                DpsCleanup::Deleted { target } => (
                    "dps.enrollment_deleted",
                    serde_json::json!({ "dps_target": target, "reason": reason }),
                ),
                DpsCleanup::Deferred { target, error } => (
                    "dps.delete_deferred",
                    serde_json::json!({ "dps_target": target, "error": error, "reason": reason }),
                ),
            };
            w.append_audit(
                &writer.operator,
                action,
                &identity.registration_id,
                &details,
            )?;
        }
        Ok(())
    })?;
    tracing::info!(registration_id, revoked_now, dps = ?dps, "identity revoked");
    Ok(RevokeOutcome {
        registration_id: identity.registration_id,
        revoked_now,
        dps,
    })
}

/// DPS targets whose delete a revoke deferred and no later revoke finished.
fn deferred_targets(ledger: &Ledger, registration_id: &str) -> Result<Vec<String>, LedgerError> {
    let mut open: Vec<String> = Vec::new();
    for row in ledger.audit_for(registration_id)? {
        let target = serde_json::from_str::<serde_json::Value>(&row.details)
            .ok()
            .and_then(|d| d["dps_target"].as_str().map(str::to_string));
        match (row.action.as_str(), target) {
            ("dps.delete_deferred", Some(t)) if !open.contains(&t) => open.push(t),
            ("dps.enrollment_deleted", Some(t)) => open.retain(|o| *o != t),
            _ => {}
        }
    }
    Ok(open)
}

fn delete_at_dps(
    config: &StationConfig,
    target: &str,
    registration_id: &str,
) -> Result<(), String> {
    let client = connect_dps(config, target).map_err(|e| e.to_string())?;
    client
        .delete_enrollment(registration_id, None)
        .map_err(|e| e.to_string())
}
