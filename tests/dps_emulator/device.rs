//! The device registration API: X.509 (individual leaf, group chain) and symmetric keys
//! (individual, group-derived), and what a registration changes in the service API (ops 13–15).

use std::time::Duration;

use dps_station::emulator::device_client::{
    DeviceClientError, DeviceCredential, DeviceRegistration, register,
};
use dps_station::identity::symmetric::derive_device_key;
use dps_station::secret::SecretString;
use serde_json::{Value, json};

use crate::common::{Dps, V, device_cert, loopback};

fn registration(dps: &Dps, id: &str, credential: DeviceCredential) -> DeviceRegistration {
    DeviceRegistration {
        endpoint: dps.emu.device_url(),
        id_scope: dps.emu.id_scope().to_owned(),
        registration_id: id.to_owned(),
        credential,
        trust_pem: dps.emu.ca_certificate_pem().map(str::to_owned),
        payload: None,
    }
}

fn refused_status(e: DeviceClientError) -> u16 {
    match e {
        DeviceClientError::Refused { status, .. } => status,
        other => panic!("expected a refusal, got {other}"),
    }
}

pub struct Ca {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    pub pem: String,
}

pub fn ca(cn: &str, parent: Option<&Ca>) -> Ca {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let cert = match parent {
        Some(p) => params.signed_by(&key, &p.issuer).unwrap(),
        None => params.self_signed(&key).unwrap(),
    };
    Ca {
        pem: cert.pem(),
        issuer: rcgen::Issuer::new(params, key),
    }
}

pub fn leaf(cn: &str, issuer: &Ca) -> (String, SecretString) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.signed_by(&key, &issuer.issuer).unwrap();
    (cert.pem(), SecretString::new(key.serialize_pem()))
}

const WAIT: Duration = Duration::from_secs(10);

#[test]
fn an_x509_individual_enrollment_registers_with_its_leaf_only() {
    let dps = loopback();
    let (pem, key, _) = device_cert("line-dev-1");
    let body = json!({
        "registrationId": "line-dev-1",
        "deviceId": "line-device-one",
        "attestation": { "type": "x509", "x509": { "clientCertificates": { "primary": { "certificate": pem } } } },
        "iotHubs": ["hub-a.azure-devices.net"], "allocationPolicy": "static",
    });
    assert_eq!(dps.put("/enrollments/line-dev-1", &body).status, 200);
    let reg = registration(
        &dps,
        "line-dev-1",
        DeviceCredential::X509 {
            chain_pem: pem.clone(),
            key_pem: SecretString::new(key),
        },
    );
    let a = register(&reg, WAIT).unwrap();
    assert_eq!(a.status, "assigned");
    assert_eq!(a.assigned_hub.as_deref(), Some("hub-a.azure-devices.net"));
    assert_eq!(a.device_id.as_deref(), Some("line-device-one"));
    assert_eq!(a.registration_state["substatus"], "initialAssignment");

    // The service API now shows the registration (op 13) and the enrollment's registrationState.
    let state = dps.get("/registrations/line-dev-1");
    assert_eq!(state.status, 200);
    assert_eq!(state.body["status"], "assigned");
    assert_eq!(state.body["assignedHub"], "hub-a.azure-devices.net");
    let enrollment = dps.get("/enrollments/line-dev-1");
    assert_eq!(
        enrollment.body["registrationState"]["deviceId"],
        "line-device-one"
    );

    // Another key with the same CN is not the enrolled certificate.
    let (other_pem, other_key, _) = device_cert("line-dev-1");
    let impostor = registration(
        &dps,
        "line-dev-1",
        DeviceCredential::X509 {
            chain_pem: other_pem,
            key_pem: SecretString::new(other_key),
        },
    );
    assert_eq!(refused_status(register(&impostor, WAIT).unwrap_err()), 401);
    // A certificate whose CN is not the registration ID.
    let wrong_cn = registration(
        &dps,
        "line-dev-2",
        DeviceCredential::X509 {
            chain_pem: pem,
            key_pem: SecretString::new(device_cert("x").1),
        },
    );
    assert!(register(&wrong_cn, WAIT).is_err());

    // Op 14: delete the registration state (204), then it is gone (404).
    let path = format!("/registrations/line-dev-1?{V}");
    assert_eq!(
        dps.call("DELETE", &path, None, &[("if-match", "wrong")])
            .status,
        412
    );
    assert_eq!(dps.call("DELETE", &path, None, &[]).status, 204);
    assert_eq!(dps.get("/registrations/line-dev-1").status, 404);
    assert!(
        dps.get("/enrollments/line-dev-1")
            .body
            .get("registrationState")
            .is_none()
    );
}

#[test]
fn an_x509_group_member_registers_through_an_intermediate_and_strangers_do_not() {
    let dps = loopback();
    let root = ca("Factory Root", None);
    let intermediate = ca("Line 3 Intermediate", Some(&root));
    let group = json!({
        "enrollmentGroupId": "line-3",
        "attestation": { "type": "x509", "x509": { "signingCertificates": { "primary": { "certificate": root.pem } } } },
    });
    assert_eq!(dps.put("/enrollmentGroups/line-3", &group).status, 200);
    let mut members = Vec::new();
    for i in 0..3 {
        let id = format!("grp-dev-{i}");
        let (cert, key) = leaf(&id, &intermediate);
        let chain = format!("{cert}{}", intermediate.pem);
        let a = register(
            &registration(
                &dps,
                &id,
                DeviceCredential::X509 {
                    chain_pem: chain,
                    key_pem: key,
                },
            ),
            WAIT,
        )
        .unwrap();
        assert_eq!(a.status, "assigned", "{id}");
        assert_eq!(
            a.device_id.as_deref(),
            Some(id.as_str()),
            "a group member's device id is its CN"
        );
        assert_eq!(a.registration_state["x509"]["enrollmentGroupId"], "line-3");
        members.push(id);
    }
    // Op 15: the group's registrations, paged.
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    for _ in 0..5 {
        let mut headers = vec![("x-ms-max-item-count", "2")];
        if let Some(t) = &token {
            headers.push(("x-ms-continuation", t.as_str()));
        }
        let r = dps.call(
            "POST",
            &format!("/registrations/line-3/query?{V}"),
            Some(&json!({ "query": "SELECT * FROM enrollments" })),
            &headers,
        );
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-ms-item-type"), Some("deviceRegistration"));
        seen.extend(
            r.body
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["registrationId"].as_str().unwrap().to_owned()),
        );
        token = r.header("x-ms-continuation").map(str::to_owned);
        if token.is_none() {
            break;
        }
    }
    assert_eq!(seen, members);

    let stranger_ca = ca("Other Root", None);
    let (cert, key) = leaf("stranger-1", &stranger_ca);
    let refused = register(
        &registration(
            &dps,
            "stranger-1",
            DeviceCredential::X509 {
                chain_pem: cert,
                key_pem: key,
            },
        ),
        WAIT,
    );
    assert_eq!(refused_status(refused.unwrap_err()), 401);
    // Without the intermediate the chain does not reach the root.
    let (cert, key) = leaf("grp-dev-9", &intermediate);
    let refused = register(
        &registration(
            &dps,
            "grp-dev-9",
            DeviceCredential::X509 {
                chain_pem: cert,
                key_pem: key,
            },
        ),
        WAIT,
    );
    assert_eq!(refused_status(refused.unwrap_err()), 401);
}

#[test]
fn symmetric_keys_register_individually_and_with_group_derived_keys() {
    let dps = loopback();
    assert_eq!(
        dps.put(
            "/enrollments/sym-1",
            &json!({ "registrationId": "sym-1", "attestation": { "type": "symmetricKey" } })
        )
        .status,
        200
    );
    let keys = dps
        .call(
            "POST",
            &format!("/enrollments/sym-1/attestationmechanism?{V}"),
            None,
            &[],
        )
        .body;
    let secondary = SecretString::new(keys["symmetricKey"]["secondaryKey"].as_str().unwrap());
    let a = register(
        &registration(&dps, "sym-1", DeviceCredential::SymmetricKey(secondary)),
        WAIT,
    )
    .unwrap();
    assert_eq!(a.status, "assigned");
    assert_eq!(a.device_id.as_deref(), Some("sym-1"));
    let again = register(
        &registration(
            &dps,
            "sym-1",
            DeviceCredential::SymmetricKey(SecretString::new(
                keys["symmetricKey"]["primaryKey"].as_str().unwrap(),
            )),
        ),
        WAIT,
    )
    .unwrap();
    assert_eq!(
        again.assigned_hub, a.assigned_hub,
        "a re-registration keeps its hub"
    );
    assert_eq!(
        again.registration_state["createdDateTimeUtc"],
        a.registration_state["createdDateTimeUtc"]
    );
    assert_ne!(
        again.registration_state["etag"],
        a.registration_state["etag"]
    );
    let wrong = SecretString::new("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=");
    assert_eq!(
        refused_status(
            register(
                &registration(&dps, "sym-1", DeviceCredential::SymmetricKey(wrong)),
                WAIT
            )
            .unwrap_err()
        ),
        401
    );

    let group = json!({ "enrollmentGroupId": "sym-group", "attestation": { "type": "symmetricKey" }, "iotHubs": ["hub-b.azure-devices.net"] });
    assert_eq!(dps.put("/enrollmentGroups/sym-group", &group).status, 200);
    let att = dps
        .call(
            "POST",
            &format!("/enrollmentGroups/sym-group/attestationmechanism?{V}"),
            None,
            &[],
        )
        .body;
    let group_key = SecretString::new(att["symmetricKey"]["primaryKey"].as_str().unwrap());
    let device_key = derive_device_key(&group_key, "sym-member-7").unwrap();
    let a = register(
        &registration(
            &dps,
            "sym-member-7",
            DeviceCredential::SymmetricKey(device_key),
        ),
        WAIT,
    )
    .unwrap();
    assert_eq!(a.assigned_hub.as_deref(), Some("hub-b.azure-devices.net"));
    assert_eq!(
        a.registration_state["symmetricKey"]["enrollmentGroupId"],
        "sym-group"
    );
    // The group key itself is not a device key.
    let refused = register(
        &registration(
            &dps,
            "sym-member-8",
            DeviceCredential::SymmetricKey(group_key),
        ),
        WAIT,
    );
    assert_eq!(refused_status(refused.unwrap_err()), 401);
    let unknown = register(
        &registration(
            &dps,
            "sym-1",
            DeviceCredential::SymmetricKey(SecretString::new("AAAA")),
        ),
        WAIT,
    );
    assert!(unknown.is_err());
}

#[test]
fn a_disabled_enrollment_is_not_assigned_and_unknown_ids_get_404201() {
    let dps = loopback();
    let body = json!({ "registrationId": "off-1", "provisioningStatus": "disabled", "attestation": { "type": "symmetricKey" } });
    assert_eq!(dps.put("/enrollments/off-1", &body).status, 200);
    let keys = dps
        .call(
            "POST",
            &format!("/enrollments/off-1/attestationmechanism?{V}"),
            None,
            &[],
        )
        .body;
    let key = SecretString::new(keys["symmetricKey"]["primaryKey"].as_str().unwrap());
    let a = register(
        &registration(&dps, "off-1", DeviceCredential::SymmetricKey(key.clone())),
        WAIT,
    )
    .unwrap();
    assert_eq!(a.status, "disabled");
    assert_eq!(a.assigned_hub, None);
    let unknown = register(
        &registration(
            &dps,
            "never-enrolled",
            DeviceCredential::SymmetricKey(key.clone()),
        ),
        WAIT,
    )
    .unwrap_err();
    match unknown {
        DeviceClientError::Refused { status, body, .. } => {
            assert_eq!(status, 404);
            let v: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(v["errorCode"], 404201);
        }
        other => panic!("{other}"),
    }
    let mut wrong_scope = registration(&dps, "off-1", DeviceCredential::SymmetricKey(key));
    wrong_scope.id_scope = "0ne99999999".into();
    assert_eq!(
        refused_status(register(&wrong_scope, WAIT).unwrap_err()),
        401
    );
}
