//! Payload shapes: every attestation the station issues, serialised and checked field by field
//! against the schemas of the official 2021-10-01 OpenAPI file (names, required members), and the
//! refusals that save an operation.

use dps_station::dps::model::{AllocationPolicy, ProvisioningStatus, ReprovisionPolicy};
use dps_station::dps::payload::{self, EnrollmentSettings, PayloadError};
use dps_station::secret::SecretString;
use serde_json::{Value, json};

use crate::support::{ca_cert, device_cert, key_b64, openapi};

/// Checks that `value` only uses property names of `schema` (following `$ref`s and arrays) and
/// holds its required ones. Twin collections (free-form objects) are not descended into.
fn conforms(spec: &Value, schema: &str, value: &Value, path: &str) {
    let def = &spec["definitions"][schema];
    assert!(def.is_object(), "no schema {schema} in the OpenAPI file");
    if schema == "TwinCollection" {
        return;
    }
    let Some(obj) = value.as_object() else {
        return;
    };
    let props = def["properties"].as_object().cloned().unwrap_or_default();
    for required in def["required"].as_array().into_iter().flatten() {
        let name = required.as_str().unwrap();
        assert!(
            obj.contains_key(name),
            "{path}: required {schema}.{name} missing in {value}"
        );
    }
    for (key, member) in obj {
        let prop = props
            .get(key)
            .unwrap_or_else(|| panic!("{path}.{key}: not a property of {schema}"));
        let target = prop["$ref"]
            .as_str()
            .or_else(|| prop["items"]["$ref"].as_str());
        if let Some(r) = target {
            let sub = r.trim_start_matches("#/definitions/");
            match member {
                Value::Array(items) => {
                    for (i, item) in items.iter().enumerate() {
                        conforms(spec, sub, item, &format!("{path}.{key}[{i}]"));
                    }
                }
                other => conforms(spec, sub, other, &format!("{path}.{key}")),
            }
        }
    }
}

fn full_settings() -> EnrollmentSettings {
    EnrollmentSettings {
        iot_hubs: vec!["hub-a.azure-devices.net".into()],
        allocation_policy: Some(AllocationPolicy::Static),
        tags: Some(
            json!({"line": "L3", "batch": "b-42"})
                .as_object()
                .unwrap()
                .clone(),
        ),
        desired_properties: Some(
            json!({"telemetryInterval": 30})
                .as_object()
                .unwrap()
                .clone(),
        ),
        provisioning_status: Some(ProvisioningStatus::Enabled),
        reprovision_policy: Some(ReprovisionPolicy {
            update_hub_assignment: true,
            migrate_device_data: false,
        }),
        iot_edge: Some(true),
    }
}

#[test]
fn every_individual_attestation_matches_the_schema() {
    let spec = openapi();
    let s = full_settings();
    let x509 = payload::x509_individual("dev-001", &device_cert("dev-001"), &s).unwrap();
    let x509 = payload::with_device_id(x509, "device-001").unwrap();
    let sym = payload::symmetric_key_individual(
        "dev-002",
        Some(SecretString::new(key_b64(32, 1))),
        Some(SecretString::new(key_b64(32, 2))),
        &s,
    )
    .unwrap();
    let generated = payload::symmetric_key_individual("dev-003", None, None, &s).unwrap();
    let tpm = payload::tpm_individual("dev-004", &key_b64(300, 7), None, &s).unwrap();
    for e in [&x509, &sym, &generated, &tpm] {
        let v = serde_json::to_value(e).unwrap();
        conforms(&spec, "IndividualEnrollment", &v, &e.registration_id);
        assert_eq!(v["iotHubs"], json!(["hub-a.azure-devices.net"]));
        assert_eq!(v["allocationPolicy"], "static");
        assert_eq!(v["initialTwin"]["tags"]["line"], "L3");
        assert_eq!(
            v["initialTwin"]["properties"]["desired"]["telemetryInterval"],
            30
        );
        assert_eq!(v["provisioningStatus"], "enabled");
        assert_eq!(
            v["reprovisionPolicy"],
            json!({"updateHubAssignment": true, "migrateDeviceData": false})
        );
        assert_eq!(v["capabilities"], json!({"iotEdge": true}));
        // Read-only and unset members are not sent.
        for absent in [
            "etag",
            "registrationState",
            "createdDateTimeUtc",
            "iotHubHostName",
        ] {
            assert!(v.get(absent).is_none(), "{absent} sent in {v}");
        }
    }
    let v = serde_json::to_value(&x509).unwrap();
    assert_eq!(v["attestation"]["type"], "x509");
    assert_eq!(v["deviceId"], "device-001");
    let pem = v["attestation"]["x509"]["clientCertificates"]["primary"]["certificate"]
        .as_str()
        .unwrap();
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----\n"));
    let v = serde_json::to_value(&sym).unwrap();
    assert_eq!(v["attestation"]["type"], "symmetricKey");
    assert_eq!(
        v["attestation"]["symmetricKey"]["primaryKey"],
        key_b64(32, 1)
    );
    let v = serde_json::to_value(&generated).unwrap();
    assert_eq!(
        v["attestation"]["symmetricKey"],
        json!({}),
        "DPS generates omitted keys"
    );
    let v = serde_json::to_value(&tpm).unwrap();
    assert_eq!(v["attestation"]["type"], "tpm");
    assert_eq!(v["attestation"]["tpm"]["endorsementKey"], key_b64(300, 7));
}

#[test]
fn every_group_attestation_matches_the_schema() {
    let spec = openapi();
    let s = EnrollmentSettings {
        iot_hubs: vec![
            "hub-a.azure-devices.net".into(),
            "hub-b.azure-devices.net".into(),
        ],
        allocation_policy: Some(AllocationPolicy::Hashed),
        ..EnrollmentSettings::default()
    };
    let signing =
        payload::x509_group_signing_certificate("grp-ca", &ca_cert("Factory CA"), &s).unwrap();
    let reference =
        payload::x509_group_ca_reference("grp-ref", "factory-root", Some("factory-root-2"), &s)
            .unwrap();
    let sym =
        payload::symmetric_key_group("grp-sym", Some(SecretString::new(key_b64(64, 3))), None, &s)
            .unwrap();
    for g in [&signing, &reference, &sym] {
        let v = serde_json::to_value(g).unwrap();
        conforms(&spec, "EnrollmentGroup", &v, &g.enrollment_group_id);
        assert_eq!(v["allocationPolicy"], "hashed");
        assert!(v.get("capabilities").is_none());
    }
    let v = serde_json::to_value(&signing).unwrap();
    assert!(v["attestation"]["x509"]["signingCertificates"]["primary"]["certificate"].is_string());
    let v = serde_json::to_value(&reference).unwrap();
    assert_eq!(
        v["attestation"]["x509"]["caReferences"],
        json!({"primary": "factory-root", "secondary": "factory-root-2"})
    );
}

#[test]
fn bulk_body_matches_the_schema() {
    let spec = openapi();
    let e = payload::x509_individual(
        "dev-010",
        &device_cert("dev-010"),
        &EnrollmentSettings::default(),
    )
    .unwrap();
    let body = dps_station::dps::model::BulkEnrollmentOperation {
        enrollments: vec![e],
        mode: dps_station::dps::model::BulkMode::Create,
    };
    let v = serde_json::to_value(&body).unwrap();
    conforms(&spec, "BulkEnrollmentOperation", &v, "bulk");
    assert_eq!(v["mode"], "create");
    let modes: Vec<Value> = spec["definitions"]["OperationMode"]["enum"]
        .as_array()
        .unwrap()
        .clone();
    for m in [
        dps_station::dps::model::BulkMode::Create,
        dps_station::dps::model::BulkMode::Update,
        dps_station::dps::model::BulkMode::UpdateIfMatchETag,
        dps_station::dps::model::BulkMode::Delete,
    ] {
        assert!(modes.contains(&serde_json::to_value(m).unwrap()), "{m:?}");
    }
}

#[test]
fn refusals_name_the_enrollment() {
    let s = EnrollmentSettings::default();
    let err = payload::x509_individual("dev-1", &device_cert("dev-2"), &s).unwrap_err();
    assert!(matches!(err, PayloadError::CommonNameMismatch { .. }));
    assert!(err.to_string().contains("dev-1") && err.to_string().contains("dev-2"));

    let err = payload::x509_individual("dev-1", "not a certificate", &s).unwrap_err();
    assert!(
        matches!(err, PayloadError::CertificateNotPem { .. }),
        "{err}"
    );

    let err = payload::x509_individual("Dev 1", &device_cert("Dev 1"), &s).unwrap_err();
    assert!(err.to_string().contains("Dev 1"), "{err}");

    let err = payload::x509_group_signing_certificate("grp", &device_cert("leaf"), &s).unwrap_err();
    assert!(matches!(err, PayloadError::NotACa { .. }));

    let short = SecretString::new(key_b64(8, 1));
    let err = payload::symmetric_key_individual("dev-1", Some(short), None, &s).unwrap_err();
    assert!(
        err.to_string().contains("8 bytes") && err.to_string().contains("dev-1"),
        "{err}"
    );
    let err =
        payload::symmetric_key_group("grp", Some(SecretString::new("%%%")), None, &s).unwrap_err();
    assert!(err.to_string().contains("not base64"), "{err}");
    assert!(!err.to_string().contains("%%%"), "a key leaked into {err}");

    let err = payload::tpm_individual("dev-1", "***", None, &s).unwrap_err();
    assert!(matches!(err, PayloadError::BadEndorsementKey { .. }));

    let two_hubs = EnrollmentSettings {
        iot_hubs: vec!["a".into(), "b".into()],
        allocation_policy: Some(AllocationPolicy::Static),
        ..EnrollmentSettings::default()
    };
    let err = payload::symmetric_key_individual("dev-1", None, None, &two_hubs).unwrap_err();
    assert!(matches!(
        err,
        PayloadError::StaticNeedsOneHub { count: 2, .. }
    ));

    let e = payload::symmetric_key_individual("dev-1", None, None, &s).unwrap();
    assert!(payload::with_device_id(e, "bad/id").is_err());
}

#[test]
fn debug_of_an_enrollment_hides_keys() {
    let key = key_b64(32, 9);
    let e = payload::symmetric_key_individual(
        "dev-1",
        Some(SecretString::new(key.clone())),
        None,
        &EnrollmentSettings::default(),
    )
    .unwrap();
    assert!(!format!("{e:?}").contains(&key));
}
