//! Re-provisioning in the ledger: a registration ID has at most one live identity, revoked ones
//! stay as history, and a second identity comes only through the explicit, audited
//! `reprovision` (revoke + audit + issue in one transaction).

use dps_station::ledger::*;
use rusqlite::Connection;

use crate::common::*;

fn enrolled(l: &mut Ledger, rid: &str, device: Option<DeviceId>) -> IdentityId {
    let mut n = x509_identity(rid);
    n.device = device;
    let id = l.record_issued(&n).unwrap();
    l.transition(rid, &Transition::Written).unwrap();
    let e = l.queue_enrollment(rid, &queue()).unwrap();
    l.record_enrollment_result(e, &EnrollmentOutcome::Enrolled { etag: None })
        .unwrap();
    id
}

fn queue() -> NewEnrollment {
    NewEnrollment {
        dps_target: "dps".into(),
        kind: EnrollmentKind::Individual,
        group_name: None,
    }
}

fn why() -> Reprovisioning {
    Reprovisioning {
        reason: "RMA 123".into(),
        batch: "rma-1".into(),
        device_serial: "SN-0001".into(),
    }
}

#[test]
fn a_revoked_and_a_new_identity_share_a_registration_id_but_two_live_ones_cannot() {
    let t = test_dir();
    let mut l = open(&t.ledger);
    let old = enrolled(&mut l, "sensor-1", None);
    // Two live identities: refused by the API...
    let err = l.record_issued(&x509_identity("sensor-1")).unwrap_err();
    assert!(
        matches!(
            err,
            LedgerError::DuplicateRegistrationId {
                state: IdentityState::Enrolled,
                ..
            }
        ),
        "{err}"
    );
    // ... and by the file itself, case-insensitively, whoever writes to it.
    drop(l);
    {
        let c = Connection::open(&t.ledger).unwrap();
        let err = c
            .execute(
                "INSERT INTO identities (registration_id, attestation, key_fingerprint, state,
                   created_at, updated_at)
                 VALUES ('SENSOR-1', 'symmetric-key', 'sha256:' || hex(zeroblob(32)), 'issued', 'x', 'x')",
                [],
            )
            .unwrap_err();
        assert!(err.to_string().contains("UNIQUE"), "{err}");
        // A revoked row under the same registration ID is history, and allowed.
        c.execute(
            "INSERT INTO identities (registration_id, attestation, key_fingerprint, state,
               revoked_reason, created_at, updated_at)
             VALUES ('Sensor-1', 'symmetric-key', 'sha256:' || hex(zeroblob(32)), 'revoked', 'test', 'x', 'x')",
            [],
        )
        .unwrap();
    }
    let mut l = open(&t.ledger);
    // The explicit way: the live one is revoked, the new one recorded.
    let new = l.reprovision(&x509_identity("sensor-1"), &why()).unwrap();
    assert_ne!(new, old);
    let history = l.identity_history("sensor-1").unwrap();
    assert_eq!(history.len(), 3);
    assert_eq!(history[0].id, old);
    assert_eq!(history[0].state, IdentityState::Revoked);
    assert_eq!(history[2].id, new);
    assert_eq!(history[2].state, IdentityState::Issued);
    assert_eq!(l.find_identity("SENSOR-1").unwrap().unwrap().id, new);
    // `list` keeps the history.
    let all = l.list_identities(&IdentityFilter::default()).unwrap();
    assert_eq!(
        all.iter()
            .filter(|i| i.registration_id.eq_ignore_ascii_case("sensor-1"))
            .count(),
        3
    );
}

#[test]
fn reprovision_revokes_audits_and_issues_in_one_transaction() {
    let t = test_dir();
    let mut l = open(&t.ledger);
    let device = l
        .upsert_device(&NewDevice {
            model: "m".into(),
            serial_number: "SN-0001".into(),
            hardware_id: None,
            firmware: None,
            batch: None,
        })
        .unwrap();
    let old = enrolled(&mut l, "sensor-1", Some(device));
    let nonce = KeyNonce([9; 16]);
    let new = l
        .reprovision(
            &NewIdentity {
                registration_id: "sensor-1".into(),
                batch: None,
                device: Some(device),
                attestation: Attestation::SymmetricKey {
                    key_fingerprint: KeyFingerprint::of_key(&[1; 32]),
                    key_nonce: Some(nonce),
                },
            },
            &why(),
        )
        .unwrap();
    let history = l.identity_history("sensor-1").unwrap();
    let revoked = &history[0];
    assert_eq!(revoked.state, IdentityState::Revoked);
    let reason = revoked.revoked_reason.as_deref().unwrap();
    assert!(
        reason.contains("re-provisioned") && reason.contains("rma-1") && reason.contains("RMA 123"),
        "{reason}"
    );
    let live = l.find_identity("sensor-1").unwrap().unwrap();
    assert_eq!(live.id, new);
    assert_eq!(
        live.key_nonce,
        Some(nonce),
        "the nonce is recorded with the issued row"
    );

    let audit = l.audit_for("sensor-1").unwrap();
    let actions: Vec<&str> = audit.iter().map(|a| a.action.as_str()).collect();
    let tail = &actions[actions.len() - 3..];
    assert_eq!(tail, ["identity.revoked", "reprovision", "identity.issued"]);
    let row = audit.iter().find(|a| a.action == "reprovision").unwrap();
    let d: serde_json::Value = serde_json::from_str(&row.details).unwrap();
    assert_eq!(d["device_serial"], "SN-0001");
    assert_eq!(d["old_identity"], old.0);
    assert_eq!(d["operator"], "ann");
    assert_eq!(d["reason"], "RMA 123");
    assert_eq!(row.actor, "ann");
    // One transaction: the three rows carry one timestamp.
    let last3: Vec<&str> = audit[audit.len() - 3..]
        .iter()
        .map(|a| a.at.as_str())
        .collect();
    assert!(last3.iter().all(|at| *at == last3[0]), "{last3:?}");
    assert!(l.verify_audit_chain().unwrap().is_intact());

    // Its enrollment says it replaces the revoked identity (DPS holds that one's credential).
    l.transition("sensor-1", &Transition::Written).unwrap();
    l.queue_enrollment("sensor-1", &queue()).unwrap();
    let pending = l.pending_enrollments("dps", 10).unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].replaces, Some(old));
    assert_eq!(pending[0].key_nonce, Some(nonce));
}

#[test]
fn a_registration_id_with_only_revoked_history_needs_the_explicit_choice() {
    let t = test_dir();
    let mut l = open(&t.ledger);
    let old = l.record_issued(&x509_identity("sensor-1")).unwrap();
    l.transition(
        "sensor-1",
        &Transition::Revoked {
            reason: "lost".into(),
        },
    )
    .unwrap();
    assert!(l.find_identity("sensor-1").unwrap().is_none());
    let err = l.record_issued(&x509_identity("sensor-1")).unwrap_err();
    assert!(
        matches!(
            err,
            LedgerError::DuplicateRegistrationId {
                state: IdentityState::Revoked,
                ..
            }
        ),
        "{err}"
    );
    l.reprovision(&x509_identity("sensor-1"), &why()).unwrap();
    let row = l
        .audit_for("sensor-1")
        .unwrap()
        .into_iter()
        .find(|a| a.action == "reprovision")
        .unwrap();
    let d: serde_json::Value = serde_json::from_str(&row.details).unwrap();
    assert_eq!(d["old_identity"], old.0);
    assert_eq!(d["old_state"], "revoked");
}

#[test]
fn reprovision_refuses_what_is_not_held_for_good_and_writes_nothing_when_it_fails() {
    let t = test_dir();
    let mut l = open(&t.ledger);
    // Unknown registration ID: nothing to re-provision.
    let err = l
        .reprovision(&x509_identity("sensor-0"), &why())
        .unwrap_err();
    assert!(matches!(err, LedgerError::UnknownIdentity { .. }), "{err}");
    // Still `issued`: the normal reissue path replaces it, not re-provisioning.
    l.record_issued(&x509_identity("sensor-2")).unwrap();
    let err = l
        .reprovision(&x509_identity("sensor-2"), &why())
        .unwrap_err();
    assert!(err.to_string().contains("issued"), "{err}");
    // An empty reason is refused.
    enrolled(&mut l, "sensor-1", None);
    let err = l
        .reprovision(
            &x509_identity("sensor-1"),
            &Reprovisioning {
                reason: " ".into(),
                ..why()
            },
        )
        .unwrap_err();
    assert!(err.to_string().contains("reason"), "{err}");
    // A new identity the ledger refuses (an empty endorsement key) rolls the revocation back.
    let audit_before = l.audit_for("sensor-1").unwrap().len();
    let err = l
        .reprovision(&tpm_identity("sensor-1", &[]), &why())
        .unwrap_err();
    assert!(err.to_string().contains("endorsement key"), "{err}");
    let live = l.find_identity("sensor-1").unwrap().unwrap();
    assert_eq!(
        live.state,
        IdentityState::Enrolled,
        "the old identity is untouched"
    );
    assert_eq!(l.identity_history("sensor-1").unwrap().len(), 1);
    assert_eq!(l.audit_for("sensor-1").unwrap().len(), audit_before);
}

#[test]
fn reprovision_refuses_the_identity_of_another_device() {
    let t = test_dir();
    let mut l = open(&t.ledger);
    let device = |l: &mut Ledger, serial: &str| {
        l.upsert_device(&NewDevice {
            model: "m".into(),
            serial_number: serial.into(),
            hardware_id: None,
            firmware: None,
            batch: None,
        })
        .unwrap()
    };
    let first = device(&mut l, "SN-0001");
    let second = device(&mut l, "SN-0002");
    let old = enrolled(&mut l, "sensor-1", Some(first));
    let mut n = x509_identity("sensor-1");
    n.device = Some(second);
    let mut w = why();
    w.device_serial = "SN-0002".into();
    let err = l.reprovision(&n, &w).unwrap_err();
    assert!(matches!(err, LedgerError::Refused { .. }), "{err}");
    assert!(err.to_string().contains("collision"), "{err}");
    // Nothing changed: the first device's identity is still live.
    let live = l.find_identity("sensor-1").unwrap().unwrap();
    assert_eq!(live.id, old);
    assert_eq!(live.state, IdentityState::Enrolled);
    // Its own device re-provisions it.
    n.device = Some(first);
    l.reprovision(&n, &why()).unwrap();
}
