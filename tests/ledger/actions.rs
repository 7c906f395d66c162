//! The engineer's actions on one identity (library side of the ledger screen): re-queue a failed
//! enrollment with a reason, and export what the browser shows as CSV.

use dps_station::ledger::browse::BrowseQuery;
use dps_station::ledger::{
    EnrollmentKind, EnrollmentOutcome, EnrollmentState, IdentityState, Ledger, NewEnrollment,
    Transition,
};
use dps_station::station::identity_actions::{IdentityActionError, requeue_enrollment};

use super::common::{open, symmetric_identity, test_dir, writer, x509_identity};

#[test]
fn a_failed_enrollment_is_requeued_with_its_reason_and_only_then() {
    let dir = test_dir();
    {
        let mut l = open(&dir.ledger);
        l.record_issued(&x509_identity("dev-1")).unwrap();
        l.transition("dev-1", &Transition::Written).unwrap();
        let e = l
            .queue_enrollment(
                "dev-1",
                &NewEnrollment {
                    dps_target: "dps-a".into(),
                    kind: EnrollmentKind::Individual,
                    group_name: None,
                },
            )
            .unwrap();
        l.record_enrollment_result(
            e,
            &EnrollmentOutcome::Failed {
                error: "400 bad certificate".into(),
            },
        )
        .unwrap();
        l.record_issued(&symmetric_identity("dev-2", b"k")).unwrap();
    }
    let err = requeue_enrollment(&dir.ledger, &writer(), "dev-1", " ").unwrap_err();
    assert!(matches!(err, IdentityActionError::NoReason), "{err}");
    let err = requeue_enrollment(&dir.ledger, &writer(), "dev-2", "retry").unwrap_err();
    assert!(
        matches!(err, IdentityActionError::NotRequeueable { .. }),
        "{err}"
    );
    requeue_enrollment(&dir.ledger, &writer(), "DEV-1", "DPS fixed the CA").unwrap();
    let r = Ledger::open_read_only(&dir.ledger).unwrap();
    assert_eq!(
        r.find_identity("dev-1").unwrap().unwrap().state,
        IdentityState::Written
    );
    let e = &r.enrollments_for("dev-1").unwrap()[0];
    assert_eq!(e.state, EnrollmentState::Pending);
    assert_eq!(r.pending_enrollments("dps-a", 10).unwrap().len(), 1);
    let last = r.audit_for("dev-1").unwrap().pop().unwrap();
    assert_eq!(last.action, "enrollment.requeued");
    assert!(
        last.details.contains("DPS fixed the CA"),
        "{}",
        last.details
    );
    assert!(r.verify_audit_chain().unwrap().is_intact());
}

#[test]
fn the_browser_exports_what_its_query_shows_as_csv() {
    let dir = test_dir();
    {
        let mut l = open(&dir.ledger);
        for i in 0..1_500 {
            l.record_issued(&symmetric_identity(&format!("a-{i:04}"), &[1]))
                .unwrap_or_else(|e| panic!("{e}"));
        }
        l.record_issued(&symmetric_identity("b-1", &[2])).unwrap();
    }
    let r = Ledger::open_read_only(&dir.ledger).unwrap();
    let mut out = Vec::new();
    let n = r
        .export_browse_csv(
            &BrowseQuery {
                search: "A-".into(),
                ..BrowseQuery::default()
            },
            &mut out,
        )
        .unwrap();
    assert_eq!(n, 1_500, "more than one page of 1,000");
    let text = String::from_utf8(out).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1_501);
    assert!(lines[0].starts_with("registration_id,state,"));
    assert!(
        lines[1].starts_with("a-1499,issued,"),
        "newest first: {}",
        lines[1]
    );
    assert!(!text.contains("b-1"));
}
