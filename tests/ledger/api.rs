//! The API the station's engine uses: batches, devices, identities, enrollments, HSM records.

use dps_station::ledger::*;
use serde_json::json;

use crate::common::*;

#[test]
fn an_identity_goes_from_issued_to_enrolled_with_audit_rows() {
    let t = test_dir();
    let mut l = open(&t.ledger);
    let batch = l
        .create_batch(&NewBatch {
            name: "b1".into(),
            product: "sensor".into(),
            attestation: AttestationKind::X509,
            enrollment_kind: EnrollmentKind::Individual,
            dps_target: "dps-test".into(),
            registration_id_template: "{product}-{serial:06}".into(),
        })
        .unwrap();
    let device = l
        .upsert_device(&NewDevice {
            model: "S1".into(),
            serial_number: "000001".into(),
            hardware_id: Some("hw-1".into()),
            firmware: None,
            batch: Some(batch),
        })
        .unwrap();
    let mut new = x509_identity("sensor-000001");
    new.batch = Some(batch);
    new.device = Some(device);
    l.record_issued(&new).unwrap();
    assert_eq!(
        l.transition("sensor-000001", &Transition::Written).unwrap(),
        IdentityState::Written
    );
    let e = l
        .queue_enrollment(
            "sensor-000001",
            &NewEnrollment {
                dps_target: "dps-test".into(),
                kind: EnrollmentKind::Individual,
                group_name: None,
            },
        )
        .unwrap();
    let pending = l.pending_enrollments("dps-test", 10).unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].enrollment.id, e);
    l.record_enrollment_result(
        e,
        &EnrollmentOutcome::RetryLater {
            error: "429".into(),
        },
    )
    .unwrap();
    l.record_enrollment_result(
        e,
        &EnrollmentOutcome::Enrolled {
            etag: Some("\"e1\"".into()),
        },
    )
    .unwrap();
    let id = l.find_identity("SENSOR-000001").unwrap().unwrap();
    assert_eq!(id.state, IdentityState::Enrolled);
    assert_eq!(id.batch.as_deref(), Some("b1"));
    assert_eq!(
        id.device.as_ref().unwrap().hardware_id.as_deref(),
        Some("hw-1")
    );
    let cert = id.certificate.unwrap();
    assert_eq!(cert.sha256_thumbprint.len(), 64);
    let enrollments = l.enrollments_for("sensor-000001").unwrap();
    assert_eq!(enrollments[0].attempts, 2);
    assert_eq!(enrollments[0].etag.as_deref(), Some("\"e1\""));
    let actions: Vec<String> = l
        .audit_for("sensor-000001")
        .unwrap()
        .into_iter()
        .map(|a| a.action)
        .collect();
    assert_eq!(
        actions,
        [
            "identity.issued",
            "identity.written",
            "enrollment.queued",
            "enrollment.retry_later",
            "enrollment.enrolled",
            "identity.enrolled"
        ]
    );
    assert!(l.verify_audit_chain().unwrap().is_intact());
    l.append_audit("ann", "note", "b1", &json!({"text": "hello"}))
        .unwrap();
    assert!(l.verify_audit_chain().unwrap().is_intact());
}
