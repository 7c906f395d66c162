//! The identity state machine, as one pure function so that it can be read (and tested) at a glance:
//!
//! ```text
//! issued ──► written ──► enrolled
//!   │  ▲        │  ▲         │
//!   ▼  │retry   ▼  │retry    │
//! failed{write} failed{enroll}│
//!
//! every state but revoked ──► revoked (for good)
//! issued | failed{write} ──reissue──► issued (new certificate or key, same registration ID)
//! ```

use super::types::{FailureStage, IdentityState, Transition};

/// The name of a requested change, as shown in `IllegalTransition` errors and audit rows.
pub fn change_name(transition: &Transition) -> &'static str {
    match transition {
        Transition::Written => "written",
        Transition::Enrolled => "enrolled",
        Transition::Failed { .. } => "failed",
        Transition::Retry => "retry",
        Transition::Revoked { .. } => "revoked",
    }
}

/// The state after `transition`, or `None` when the state machine forbids it.
pub fn next_state(
    current: IdentityState,
    failed_stage: Option<FailureStage>,
    transition: &Transition,
) -> Option<IdentityState> {
    use IdentityState as S;
    match (current, transition) {
        (S::Issued, Transition::Written) => Some(S::Written),
        (S::Written, Transition::Enrolled) => Some(S::Enrolled),
        // A stage fails while it runs: the write while `issued`, the enrollment while `written`.
        (
            S::Issued,
            Transition::Failed {
                stage: FailureStage::Write,
                ..
            },
        ) => Some(S::Failed),
        (
            S::Written,
            Transition::Failed {
                stage: FailureStage::Enroll,
                ..
            },
        ) => Some(S::Failed),
        (S::Failed, Transition::Retry) => match failed_stage {
            Some(FailureStage::Write) => Some(S::Issued),
            Some(FailureStage::Enroll) => Some(S::Written),
            None => None,
        },
        (S::Issued | S::Written | S::Enrolled | S::Failed, Transition::Revoked { .. }) => {
            Some(S::Revoked)
        }
        _ => None,
    }
}

/// Whether a new certificate or key may replace the recorded one under the same registration ID:
/// only before the device holds it for good (still `issued`, or its write failed).
pub fn may_reissue(current: IdentityState, failed_stage: Option<FailureStage>) -> bool {
    matches!(
        (current, failed_stage),
        (IdentityState::Issued, _) | (IdentityState::Failed, Some(FailureStage::Write))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_happy_path_is_allowed() {
        let s = next_state(IdentityState::Issued, None, &Transition::Written).unwrap();
        let s = next_state(s, None, &Transition::Enrolled).unwrap();
        assert_eq!(s, IdentityState::Enrolled);
    }

    #[test]
    fn revoked_is_final() {
        for t in [
            Transition::Written,
            Transition::Enrolled,
            Transition::Retry,
            Transition::Revoked { reason: "x".into() },
            Transition::Failed {
                stage: FailureStage::Write,
                reason: "x".into(),
            },
        ] {
            assert_eq!(next_state(IdentityState::Revoked, None, &t), None, "{t:?}");
        }
    }

    #[test]
    fn retry_goes_back_to_the_start_of_the_failed_stage() {
        let retry = |stage| next_state(IdentityState::Failed, Some(stage), &Transition::Retry);
        assert_eq!(retry(FailureStage::Write), Some(IdentityState::Issued));
        assert_eq!(retry(FailureStage::Enroll), Some(IdentityState::Written));
    }
}
