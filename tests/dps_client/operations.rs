//! Every operation of the service API through our client against the emulator over HTTPS.

use std::time::Duration;

use dps_station::dps::model::{
    AttestationType, BulkMode, IndividualEnrollment, ProvisioningStatus,
};
use dps_station::dps::payload::{self, EnrollmentSettings};
use dps_station::dps::{CreateOutcome, DpsError, IfMatch, ItemOutcome, ServiceErrorKind};
use dps_station::emulator::device_client::{self, DeviceCredential, DeviceRegistration};
use dps_station::secret::SecretString;

use crate::support::{ca_cert, client, device_cert, emulator, key_b64, stored_ids, tpm_ek_b64};

fn settings() -> EnrollmentSettings {
    EnrollmentSettings::default()
}

#[test]
fn individual_enrollment_lifecycle() {
    let emu = emulator(|_| {});
    let dps = client(&emu, |_| {});
    let cert = device_cert("dev-life-1");
    let wanted = payload::x509_individual("dev-life-1", &cert, &settings()).unwrap();

    let created = match dps.create_enrollment(&wanted).unwrap() {
        CreateOutcome::Created(e) => e,
        other => panic!("expected Created, got {other:?}"),
    };
    assert_eq!(created.registration_id, "dev-life-1");
    let etag = created.etag.clone().expect("DPS returns an etag");

    let got = dps.get_enrollment("dev-life-1").unwrap();
    assert_eq!(got.attestation.kind, AttestationType::X509);
    assert_eq!(got.etag.as_deref(), Some(etag.as_str()));

    // Creating the same again is confirmed, not duplicated or overwritten.
    assert!(matches!(
        dps.create_enrollment(&wanted).unwrap(),
        CreateOutcome::AlreadyPresent(_)
    ));
    // Another certificate under the same ID is refused, and DPS keeps the first.
    let other =
        payload::x509_individual("dev-life-1", &device_cert("dev-life-1"), &settings()).unwrap();
    let err = dps.create_enrollment(&other).unwrap_err();
    assert!(
        matches!(err, DpsError::ExistsWithDifferentContent { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("dev-life-1"));
    assert_eq!(
        dps.get_enrollment("dev-life-1").unwrap().etag.as_deref(),
        Some(etag.as_str())
    );

    // Update with the etag, then with a stale etag (412), then with `*`.
    let mut disabled = wanted.clone();
    disabled.provisioning_status = Some(ProvisioningStatus::Disabled);
    let updated = dps
        .replace_enrollment(&disabled, &IfMatch::Etag(etag.clone()))
        .unwrap();
    assert_eq!(
        updated.provisioning_status,
        Some(ProvisioningStatus::Disabled)
    );
    let err = dps
        .replace_enrollment(&wanted, &IfMatch::Etag(etag.clone()))
        .unwrap_err();
    assert_eq!(
        err.kind(),
        Some(ServiceErrorKind::PreconditionFailed),
        "{err}"
    );
    assert!(err.to_string().contains("412") && err.to_string().contains("dev-life-1"));
    let replaced = dps.replace_enrollment(&wanted, &IfMatch::Any).unwrap();
    assert_eq!(
        replaced.provisioning_status,
        Some(ProvisioningStatus::Enabled)
    );

    // Delete with a stale etag fails; with the current one it works; then 404 with 404201.
    let err = dps
        .delete_enrollment("dev-life-1", Some(&IfMatch::Etag(etag)))
        .unwrap_err();
    assert_eq!(err.kind(), Some(ServiceErrorKind::PreconditionFailed));
    dps.delete_enrollment("dev-life-1", Some(&IfMatch::Etag(replaced.etag.unwrap())))
        .unwrap();
    let err = dps.get_enrollment("dev-life-1").unwrap_err();
    let service = err.service().expect("a service error");
    assert_eq!((service.status, service.error_code), (404, Some(404201)));
    assert!(service.tracking_id.is_some(), "trackingId kept");
    assert!(err.to_string().contains("dev-life-1"));
    assert!(dps.find_enrollment("dev-life-1").unwrap().is_none());
    assert!(
        dps.delete_enrollment("dev-life-1", None)
            .unwrap_err()
            .is_not_found()
    );
}

#[test]
fn symmetric_keys_are_hidden_by_get_and_read_by_attestation_mechanism() {
    let emu = emulator(|_| {});
    let dps = client(&emu, |_| {});
    let key = key_b64(32, 4);
    let e = payload::symmetric_key_individual(
        "sk-1",
        Some(SecretString::new(key.clone())),
        None,
        &settings(),
    )
    .unwrap();
    dps.create_enrollment(&e).unwrap();
    let got = dps.get_enrollment("sk-1").unwrap();
    let hidden = got.attestation.symmetric_key.and_then(|k| k.primary_key);
    assert!(
        hidden.is_none_or(|k| k.expose().is_empty()),
        "GET returned the key"
    );
    let full = dps.enrollment_attestation("sk-1").unwrap();
    assert_eq!(
        full.symmetric_key.unwrap().primary_key.unwrap().expose(),
        key
    );

    // Generated keys: the create is confirmed again although GET shows no key.
    let generated = payload::symmetric_key_individual("sk-2", None, None, &settings()).unwrap();
    dps.create_enrollment(&generated).unwrap();
    assert!(matches!(
        dps.create_enrollment(&generated).unwrap(),
        CreateOutcome::AlreadyPresent(_)
    ));
    let keys = dps
        .enrollment_attestation("sk-2")
        .unwrap()
        .symmetric_key
        .unwrap();
    assert!(keys.primary_key.is_some() && keys.secondary_key.is_some());

    // TPM.
    let tpm = payload::tpm_individual("tpm-1", &tpm_ek_b64(1), None, &settings()).unwrap();
    assert!(matches!(
        dps.create_enrollment(&tpm).unwrap(),
        CreateOutcome::Created(_)
    ));
    assert!(matches!(
        dps.create_enrollment(&tpm).unwrap(),
        CreateOutcome::AlreadyPresent(_)
    ));
    // 256 bytes that are not a TPM2B_PUBLIC (as a DER public key is not): refused, as DPS does.
    let wrong = payload::tpm_individual("tpm-2", &key_b64(256, 1), None, &settings()).unwrap();
    let err = dps.create_enrollment(&wrong).unwrap_err();
    assert!(
        err.to_string().contains("Endorsement key is invalid"),
        "{err}"
    );
}

#[test]
fn enrollment_group_lifecycle() {
    let emu = emulator(|_| {});
    let dps = client(&emu, |_| {});
    let err = dps.get_group("line-1").unwrap_err();
    assert_eq!(err.service().unwrap().error_code, Some(404204));
    assert!(dps.find_group("line-1").unwrap().is_none());

    let group_key = key_b64(64, 8);
    let g = payload::symmetric_key_group(
        "line-1",
        Some(SecretString::new(group_key.clone())),
        None,
        &settings(),
    )
    .unwrap();
    let created = dps.create_group(&g).unwrap().into_inner();
    assert!(matches!(
        dps.create_group(&g).unwrap(),
        CreateOutcome::AlreadyPresent(_)
    ));
    let other = payload::symmetric_key_group(
        "line-1",
        Some(SecretString::new(key_b64(64, 9))),
        None,
        &settings(),
    )
    .unwrap();
    assert!(matches!(
        dps.create_group(&other).unwrap_err(),
        DpsError::ExistsWithDifferentContent { .. }
    ));
    assert_eq!(
        dps.group_attestation("line-1")
            .unwrap()
            .symmetric_key
            .unwrap()
            .primary_key
            .unwrap()
            .expose(),
        group_key
    );

    let signing =
        payload::x509_group_signing_certificate("line-2", &ca_cert("Line 2 CA"), &settings())
            .unwrap();
    dps.create_group(&signing).unwrap();
    let reference =
        payload::x509_group_ca_reference("line-3", "factory-root", None, &settings()).unwrap();
    dps.create_group(&reference).unwrap();

    let mut disabled = g.clone();
    disabled.provisioning_status = Some(ProvisioningStatus::Disabled);
    let updated = dps
        .replace_group(&disabled, &IfMatch::Etag(created.etag.clone().unwrap()))
        .unwrap();
    assert_eq!(
        updated.provisioning_status,
        Some(ProvisioningStatus::Disabled)
    );
    let err = dps
        .replace_group(&g, &IfMatch::Etag(created.etag.unwrap()))
        .unwrap_err();
    assert_eq!(err.kind(), Some(ServiceErrorKind::PreconditionFailed));

    let groups: Vec<_> = dps
        .query_groups("SELECT * FROM enrollmentGroups", Some(2))
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    assert_eq!(groups.len(), 2, "3 groups in pages of 2");
    assert_eq!(groups.concat().len(), 3);

    dps.delete_group("line-1", Some(&IfMatch::Any)).unwrap();
    dps.delete_group("line-2", None).unwrap();
    assert!(dps.find_group("line-1").unwrap().is_none());
}

#[test]
fn bulk_create_is_chunked_and_maps_item_errors_back() {
    let emu = emulator(|_| {});
    let dps = client(&emu, |_| {});
    // Already in DPS: one identical (confirmed), one with another key (refused, untouched).
    let same = payload::symmetric_key_individual(
        "bulk-003",
        Some(SecretString::new(key_b64(32, 3))),
        None,
        &settings(),
    )
    .unwrap();
    dps.create_enrollment(&same).unwrap();
    let theirs = payload::symmetric_key_individual(
        "bulk-007",
        Some(SecretString::new(key_b64(32, 99))),
        None,
        &settings(),
    )
    .unwrap();
    dps.create_enrollment(&theirs).unwrap();

    let mut batch: Vec<IndividualEnrollment> = (0..25)
        .map(|i| {
            payload::symmetric_key_individual(
                &format!("bulk-{i:03}"),
                Some(SecretString::new(key_b64(32, i as u8))),
                None,
                &settings(),
            )
            .unwrap()
        })
        .collect();
    // DPS refuses this item (a 4-byte key) while the rest of its chunk goes through.
    let mut refused = batch[12].clone();
    refused
        .attestation
        .symmetric_key
        .as_mut()
        .unwrap()
        .primary_key = Some(SecretString::new("AAAAAA=="));
    batch[12] = refused;
    // A registration ID DPS would refuse is caught before sending.
    let mut bad_id = batch[20].clone();
    bad_id.registration_id = "Bulk 020!".into();
    batch[20] = bad_id;

    let before = dps.stats().requests;
    let report = dps.bulk_enrollments(&batch, BulkMode::Create);
    let calls = dps.stats().requests - before;
    assert_eq!(report.items.len(), 25);

    let outcome = |id: &str| {
        report
            .items
            .iter()
            .find(|r| r.id == id)
            .unwrap()
            .result
            .clone()
    };
    assert_eq!(outcome("bulk-000"), Ok(ItemOutcome::Created));
    assert_eq!(outcome("bulk-003"), Ok(ItemOutcome::AlreadyPresent));
    let theirs_err = outcome("bulk-007").unwrap_err();
    assert_eq!(theirs_err.error_code.map(|c| c / 1000), Some(409));
    assert!(
        theirs_err.message.contains("different attestation"),
        "{}",
        theirs_err.message
    );
    let refused_err = outcome("bulk-012").unwrap_err();
    assert_eq!(
        refused_err.error_code.map(|c| c / 1000),
        Some(400),
        "{refused_err}"
    );
    let bad_err = outcome("Bulk 020!").unwrap_err();
    assert!(bad_err.message.contains("Bulk 020!"), "{bad_err}");
    assert_eq!(report.failed().count(), 3);

    // 3 bulk calls, plus the checks of the two conflicts (GET + attestation each).
    assert!((3..=7).contains(&calls), "{calls} requests");
    let ids = stored_ids(&emu);
    assert_eq!(ids.len(), 23, "{ids:?}");
    assert!(!ids.contains(&"bulk-012".to_string()));
    // bulk-007 keeps the key it had.
    assert_eq!(
        dps.enrollment_attestation("bulk-007")
            .unwrap()
            .symmetric_key
            .unwrap()
            .primary_key
            .unwrap()
            .expose(),
        key_b64(32, 99)
    );

    // Re-provisioning replaces (mode update); bulk delete removes.
    let report = dps.bulk_enrollments(&batch[7..8], BulkMode::Update);
    assert_eq!(report.items[0].result, Ok(ItemOutcome::Updated));
    assert_eq!(
        dps.enrollment_attestation("bulk-007")
            .unwrap()
            .symmetric_key
            .unwrap()
            .primary_key
            .unwrap()
            .expose(),
        key_b64(32, 7)
    );
    let report = dps.bulk_enrollments(&batch[0..10], BulkMode::Delete);
    assert!(report.all_succeeded(), "{report:?}");
    assert_eq!(stored_ids(&emu).len(), 13);
}

#[test]
fn bulk_groups() {
    let emu = emulator(|_| {});
    let dps = client(&emu, |_| {});
    let groups: Vec<_> = (0..3)
        .map(|i| {
            payload::symmetric_key_group(&format!("grp-{i}"), None, None, &settings()).unwrap()
        })
        .collect();
    let report = dps.bulk_groups(&groups, BulkMode::Create);
    assert!(report.all_succeeded(), "{report:?}");
    assert_eq!(emu.groups_snapshot().len(), 3);
}

#[test]
fn queries_page_with_continuation_tokens() {
    let emu = emulator(|_| {});
    let dps = client(&emu, |_| {});
    let batch: Vec<_> = (0..25)
        .map(|i| {
            payload::symmetric_key_individual(&format!("q-{i:02}"), None, None, &settings())
                .unwrap()
        })
        .collect();
    assert!(
        dps.bulk_enrollments(&batch, BulkMode::Create)
            .all_succeeded()
    );

    let first = dps
        .query_enrollments_page("SELECT * FROM enrollments", Some(10), None)
        .unwrap();
    assert_eq!(first.items.len(), 10);
    let token = first.continuation.expect("more pages");
    let second = dps
        .query_enrollments_page("SELECT * FROM enrollments", Some(10), Some(&token))
        .unwrap();
    assert_eq!(second.items.len(), 10);

    let pages: Vec<Vec<IndividualEnrollment>> = dps
        .query_enrollments("SELECT * FROM enrollments", Some(10))
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        pages.iter().map(Vec::len).collect::<Vec<_>>(),
        vec![10, 10, 5]
    );
    let mut ids: Vec<String> = pages
        .concat()
        .into_iter()
        .map(|e| e.registration_id)
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 25);
}

#[test]
fn registration_states_of_a_device_that_registered() {
    let emu = emulator(|c| c.iot_hubs = vec!["hub-1.azure-devices.net".into()]);
    let dps = client(&emu, |_| {});
    let group_key = key_b64(64, 1);
    let g = payload::symmetric_key_group(
        "reg-grp",
        Some(SecretString::new(group_key.clone())),
        None,
        &settings(),
    )
    .unwrap();
    dps.create_group(&g).unwrap();

    let err = dps.get_registration_state("reg-dev-1").unwrap_err();
    assert!(err.is_not_found(), "{err}");

    // The device registers with its derived key, as a real one would.
    use base64::Engine as _;
    use hmac::{KeyInit, Mac};
    let raw = base64::prelude::BASE64_STANDARD.decode(&group_key).unwrap();
    let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(&raw).unwrap();
    mac.update(b"reg-dev-1");
    let device_key = base64::prelude::BASE64_STANDARD.encode(mac.finalize().into_bytes());
    let assignment = device_client::register(
        &DeviceRegistration {
            endpoint: emu.device_url(),
            id_scope: emu.id_scope().to_string(),
            registration_id: "reg-dev-1".into(),
            credential: DeviceCredential::SymmetricKey(SecretString::new(device_key)),
            trust_pem: emu.ca_certificate_pem().map(str::to_string),
            payload: None,
        },
        Duration::from_secs(10),
    )
    .unwrap();
    assert_eq!(assignment.status, "assigned");

    let state = dps.get_registration_state("reg-dev-1").unwrap();
    assert_eq!(state.status.as_deref(), Some("assigned"));
    assert_eq!(
        state.assigned_hub.as_deref(),
        Some("hub-1.azure-devices.net")
    );
    let listed: Vec<_> = dps
        .query_registration_states("reg-grp", Some(5))
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
        .concat();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].registration_id.as_deref(), Some("reg-dev-1"));
    dps.delete_registration_state("reg-dev-1", Some(&IfMatch::Any))
        .unwrap();
    assert!(
        dps.get_registration_state("reg-dev-1")
            .unwrap_err()
            .is_not_found()
    );
}
