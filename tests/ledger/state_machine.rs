//! The identity state machine: every (state, change) pair, the legal ones applied and audited,
//! the illegal ones refused with a typed error and nothing written.

use dps_station::ledger::*;

use crate::common::*;

/// The states an identity can be in, with how to get there from `issued`.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Start {
    Issued,
    Written,
    Enrolled,
    FailedWrite,
    FailedEnroll,
    Revoked,
}

const STARTS: [Start; 6] = [
    Start::Issued,
    Start::Written,
    Start::Enrolled,
    Start::FailedWrite,
    Start::FailedEnroll,
    Start::Revoked,
];

fn failed(stage: FailureStage) -> Transition {
    Transition::Failed {
        stage,
        reason: "test".into(),
    }
}

fn path_to(start: Start) -> Vec<Transition> {
    use Transition::*;
    match start {
        Start::Issued => vec![],
        Start::Written => vec![Written],
        Start::Enrolled => vec![Written, Enrolled],
        Start::FailedWrite => vec![failed(FailureStage::Write)],
        Start::FailedEnroll => vec![Written, failed(FailureStage::Enroll)],
        Start::Revoked => vec![Revoked {
            reason: "test".into(),
        }],
    }
}

fn changes() -> Vec<Transition> {
    vec![
        Transition::Written,
        Transition::Enrolled,
        failed(FailureStage::Write),
        failed(FailureStage::Enroll),
        Transition::Retry,
        Transition::Revoked {
            reason: "stolen".into(),
        },
    ]
}

/// The whole table of legal changes: (start, change) → new state.
fn expected(start: Start, change: &Transition) -> Option<IdentityState> {
    use IdentityState as S;
    match (start, change) {
        (Start::Issued, Transition::Written) => Some(S::Written),
        (Start::Written, Transition::Enrolled) => Some(S::Enrolled),
        (
            Start::Issued,
            Transition::Failed {
                stage: FailureStage::Write,
                ..
            },
        ) => Some(S::Failed),
        (
            Start::Written,
            Transition::Failed {
                stage: FailureStage::Enroll,
                ..
            },
        ) => Some(S::Failed),
        (Start::FailedWrite, Transition::Retry) => Some(S::Issued),
        (Start::FailedEnroll, Transition::Retry) => Some(S::Written),
        (Start::Revoked, _) => None,
        (_, Transition::Revoked { .. }) => Some(S::Revoked),
        _ => None,
    }
}

#[test]
fn every_change_from_every_state_follows_the_table() {
    let t = test_dir();
    let mut l = open(&t.ledger);
    let mut n = 0;
    let mut illegal = 0;
    for start in STARTS {
        for change in changes() {
            n += 1;
            let reg = format!("dev-{n}");
            l.record_issued(&x509_identity(&reg)).unwrap();
            for step in path_to(start) {
                l.transition(&reg, &step).unwrap();
            }
            let before = latest(&l, &reg);
            let audit_before = l.audit_for(&reg).unwrap().len();
            let result = l.transition(&reg, &change);
            match expected(start, &change) {
                Some(state) => {
                    assert_eq!(result.unwrap(), state, "{start:?} + {change:?}");
                    let after = latest(&l, &reg);
                    assert_eq!(after.state, state);
                    let audit = l.audit_for(&reg).unwrap();
                    assert_eq!(audit.len(), audit_before + 1, "one audit row per change");
                    let last = audit.last().unwrap();
                    assert!(last.details.contains(&format!("\"to\":\"{state}\"")));
                    if let Transition::Failed { stage, .. } = &change {
                        assert_eq!(after.failed_stage, Some(*stage));
                        assert_eq!(after.failed_reason.as_deref(), Some("test"));
                    } else {
                        assert_eq!(after.failed_stage, None);
                    }
                }
                None => {
                    illegal += 1;
                    match result {
                        Err(LedgerError::IllegalTransition {
                            registration_id,
                            from,
                            to,
                        }) => {
                            assert_eq!(registration_id, reg);
                            assert_eq!(from, before.state);
                            assert_eq!(to, state::change_name(&change));
                        }
                        other => panic!(
                            "{start:?} + {change:?}: expected IllegalTransition, got {other:?}"
                        ),
                    }
                    assert_eq!(latest(&l, &reg), before, "row unchanged");
                    assert_eq!(
                        l.audit_for(&reg).unwrap().len(),
                        audit_before,
                        "no audit row"
                    );
                }
            }
        }
    }
    assert_eq!(n, 36);
    assert_eq!(illegal, 25, "the table has 11 legal changes");
    assert!(l.verify_audit_chain().unwrap().is_intact());
}

#[test]
fn an_illegal_change_inside_a_transaction_rolls_back_everything_before_it() {
    let t = test_dir();
    let mut l = open(&t.ledger);
    let rows_before = l.stats().unwrap().audit_rows;
    let err = l
        .transaction(|w| {
            w.record_issued(&x509_identity("dev-a"))?;
            w.transition("dev-a", &Transition::Enrolled)
        })
        .unwrap_err();
    assert!(
        matches!(err, LedgerError::IllegalTransition { .. }),
        "{err}"
    );
    assert!(l.find_identity("dev-a").unwrap().is_none());
    assert_eq!(l.stats().unwrap().audit_rows, rows_before);
    assert!(err.to_string().contains("dev-a"));
}

#[test]
fn unknown_identity_is_a_typed_error() {
    let t = test_dir();
    let mut l = open(&t.ledger);
    let err = l.transition("nobody", &Transition::Written).unwrap_err();
    assert!(matches!(err, LedgerError::UnknownIdentity { .. }), "{err}");
}

#[test]
fn registration_ids_are_unique_case_insensitively() {
    let t = test_dir();
    let mut l = open(&t.ledger);
    l.record_issued(&x509_identity("sensor-abc")).unwrap();
    let err = l
        .record_issued(&symmetric_identity("SENSOR-ABC", &[1; 32]))
        .unwrap_err();
    match err {
        LedgerError::DuplicateRegistrationId {
            existing, state, ..
        } => {
            assert_eq!(existing, "sensor-abc");
            assert_eq!(state, IdentityState::Issued);
        }
        other => panic!("{other:?}"),
    }
    // Even a raw INSERT cannot get past the unique index.
    drop(l);
    let c = rusqlite::Connection::open(&t.ledger).unwrap();
    let raw = c.execute(
        "INSERT INTO identities (registration_id, attestation, key_fingerprint, state, created_at, updated_at)
         VALUES ('Sensor-ABC', 'symmetric-key', 'x', 'issued', 'now', 'now')",
        [],
    );
    assert!(raw.is_err());
}

#[test]
fn reissue_is_allowed_only_before_the_device_holds_the_identity() {
    let t = test_dir();
    let mut l = open(&t.ledger);
    l.record_issued(&x509_identity("r-1")).unwrap();
    let first = l
        .find_identity("r-1")
        .unwrap()
        .unwrap()
        .certificate
        .unwrap();
    l.reissue(&x509_identity("r-1")).unwrap();
    let second = l.find_identity("r-1").unwrap().unwrap();
    assert_ne!(
        second.certificate.unwrap().sha256_thumbprint,
        first.sha256_thumbprint
    );
    l.transition("r-1", &failed(FailureStage::Write)).unwrap();
    l.reissue(&x509_identity("r-1")).unwrap();
    assert_eq!(
        l.find_identity("r-1").unwrap().unwrap().state,
        IdentityState::Issued
    );
    l.transition("r-1", &Transition::Written).unwrap();
    let err = l.reissue(&x509_identity("r-1")).unwrap_err();
    assert!(
        matches!(
            err,
            LedgerError::IllegalTransition {
                from: IdentityState::Written,
                to: "reissue",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn enrollment_results_move_the_identity() {
    let t = test_dir();
    let mut l = open(&t.ledger);
    let q = NewEnrollment {
        dps_target: "dps".into(),
        kind: EnrollmentKind::Individual,
        group_name: None,
    };
    l.record_issued(&x509_identity("e-1")).unwrap();
    let err = l.queue_enrollment("e-1", &q).unwrap_err();
    assert!(matches!(err, LedgerError::NotEnrollable { .. }), "{err}");
    l.transition("e-1", &Transition::Written).unwrap();
    let id = l.queue_enrollment("e-1", &q).unwrap();
    assert_eq!(
        l.queue_enrollment("e-1", &q).unwrap(),
        id,
        "queuing twice is harmless"
    );
    l.record_enrollment_result(
        id,
        &EnrollmentOutcome::Failed {
            error: "400 bad cert".into(),
        },
    )
    .unwrap();
    let i = l.find_identity("e-1").unwrap().unwrap();
    assert_eq!(
        (i.state, i.failed_stage),
        (IdentityState::Failed, Some(FailureStage::Enroll))
    );
    let err = l
        .record_enrollment_result(id, &EnrollmentOutcome::Enrolled { etag: None })
        .unwrap_err();
    assert!(matches!(err, LedgerError::AlreadyFinished { .. }), "{err}");
    l.transition("e-1", &Transition::Retry).unwrap();
    assert_eq!(
        l.queue_enrollment("e-1", &q).unwrap(),
        id,
        "the failed enrollment is re-queued"
    );
    l.record_enrollment_result(
        id,
        &EnrollmentOutcome::Enrolled {
            etag: Some("e".into()),
        },
    )
    .unwrap();
    assert_eq!(
        l.find_identity("e-1").unwrap().unwrap().state,
        IdentityState::Enrolled
    );
    assert!(l.pending_enrollments("dps", 10).unwrap().is_empty());
    let e = &l.enrollments_for("e-1").unwrap()[0];
    assert_eq!(e.attempts, 2);
    assert_eq!(e.last_error.as_deref(), Some("400 bad cert"));
    assert!(e.enrolled_at.is_some());
}

#[test]
fn revoking_ends_the_identitys_pending_enrollments() {
    let t = test_dir();
    let mut l = open(&t.ledger);
    l.record_issued(&x509_identity("v-1")).unwrap();
    l.transition("v-1", &Transition::Written).unwrap();
    let id = l
        .queue_enrollment(
            "v-1",
            &NewEnrollment {
                dps_target: "dps".into(),
                kind: EnrollmentKind::Individual,
                group_name: None,
            },
        )
        .unwrap();
    l.transition(
        "v-1",
        &Transition::Revoked {
            reason: "returned by customer".into(),
        },
    )
    .unwrap();
    assert!(l.pending_enrollments("dps", 10).unwrap().is_empty());
    let e = &l.enrollments_for("v-1").unwrap()[0];
    assert_eq!(e.state, EnrollmentState::Failed);
    assert_eq!(e.last_error.as_deref(), Some("identity revoked"));
    let err = l
        .record_enrollment_result(id, &EnrollmentOutcome::Enrolled { etag: None })
        .unwrap_err();
    assert!(matches!(err, LedgerError::AlreadyFinished { .. }), "{err}");
    let i = latest(&l, "v-1");
    assert_eq!(i.revoked_reason.as_deref(), Some("returned by customer"));
}

/// The newest identity of a registration ID, revoked or not (`find_identity` gives live ones only).
fn latest(l: &Ledger, registration_id: &str) -> IdentityRecord {
    l.identity_history(registration_id).unwrap().pop().unwrap()
}
