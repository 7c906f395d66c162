//! Enrollment files: bodies exactly as the bulk API takes them (≤ 10 each), CSV, az script,
//! certificates, a README that tells whether secrets are inside; and the import of results.

use std::fs;
use std::path::Path;

use dps_station::dps::export::import::{ImportedStatus, import_results};
use dps_station::dps::export::{
    ExportError, ExportInput, GroupAttestation, GroupRecord, IndividualRecord, RecordAttestation,
    export,
};
use dps_station::dps::model::{BulkEnrollmentGroupOperation, BulkEnrollmentOperation, BulkMode};
use dps_station::dps::payload::EnrollmentSettings;
use dps_station::secret::SecretString;

use crate::support::{ca_cert, device_cert, key_b64};

fn x509_records(n: usize) -> Vec<IndividualRecord> {
    (0..n)
        .map(|i| {
            let id = format!("dev-{i:03}");
            IndividualRecord {
                attestation: RecordAttestation::X509 {
                    certificate_pem: device_cert(&id),
                },
                registration_id: id,
                device_id: None,
                replaces_existing: false,
            }
        })
        .collect()
}

fn input(individuals: Vec<IndividualRecord>, groups: Vec<GroupRecord>) -> ExportInput {
    ExportInput {
        dps_target: "factory-dps".into(),
        settings: EnrollmentSettings {
            iot_hubs: vec!["hub-a.azure-devices.net".into()],
            ..EnrollmentSettings::default()
        },
        individuals,
        groups,
        mode: BulkMode::Create,
    }
}

fn mode_of(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn x509_export_writes_bulk_bodies_of_ten_csv_script_and_certificates() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("out");
    let records = x509_records(23);
    let groups = vec![GroupRecord {
        group_id: "line-3".into(),
        attestation: GroupAttestation::SigningCertificate {
            certificate_pem: ca_cert("Factory CA"),
        },
    }];
    let summary = export(&dir, &input(records, groups)).unwrap();
    assert_eq!(summary.individuals, 23);
    assert!(!summary.holds_secrets);
    assert_eq!(summary.certificate_files, 24);

    // Bodies: 10 + 10 + 3, each a valid BulkEnrollmentOperation in create mode.
    let mut ids = Vec::new();
    for (n, expected) in [(1, 10), (2, 10), (3, 3)] {
        let text = fs::read_to_string(dir.join(format!("bulk/enrollments-{n:04}.json"))).unwrap();
        let body: BulkEnrollmentOperation = serde_json::from_str(&text).unwrap();
        assert_eq!(body.enrollments.len(), expected);
        assert_eq!(body.mode, BulkMode::Create);
        let raw: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(raw["mode"], "create");
        ids.extend(body.enrollments.into_iter().map(|e| e.registration_id));
    }
    assert!(!dir.join("bulk/enrollments-0004.json").exists());
    assert_eq!(ids.len(), 23);
    let group: BulkEnrollmentGroupOperation = serde_json::from_str(
        &fs::read_to_string(dir.join("bulk/enrollment-groups-0001.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(group.enrollment_groups[0].enrollment_group_id, "line-3");

    // Certificates are the PEM given.
    let pem = fs::read_to_string(dir.join("certs/devices/dev-007.pem")).unwrap();
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"));
    assert!(dir.join("certs/groups/line-3.pem").is_file());

    // CSV: header + 24 rows, thumbprint filled for certificates.
    let mut reader = csv::Reader::from_path(dir.join("enrollments.csv")).unwrap();
    let headers = reader.headers().unwrap().clone();
    let thumb_col = headers
        .iter()
        .position(|h| h == "sha256_thumbprint")
        .unwrap();
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 24);
    assert_eq!(rows[0].get(thumb_col).unwrap().len(), 64);

    // Script: real az flag names, valid shell.
    let script = fs::read_to_string(dir.join("enroll-with-az.sh")).unwrap();
    for flag in [
        "az iot dps enrollment create",
        "--dps-name \"$DPS_NAME\"",
        "--resource-group \"$DPS_RESOURCE_GROUP\"",
        "--enrollment-id 'dev-000'",
        "--attestation-type x509",
        "--certificate-path 'certs/devices/dev-000.pem'",
        "--iot-hubs 'hub-a.azure-devices.net'",
        "az iot dps enrollment-group create",
        "--certificate-path 'certs/groups/line-3.pem'",
    ] {
        assert!(script.contains(flag), "script lacks {flag}");
    }
    let check = std::process::Command::new("sh")
        .arg("-n")
        .arg(dir.join("enroll-with-az.sh"))
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );

    let readme = fs::read_to_string(dir.join("README.txt")).unwrap();
    assert!(readme.contains("hold no secrets"));
    assert_eq!(mode_of(&dir.join("enrollments.csv")), 0o644);
}

#[test]
fn symmetric_key_export_says_it_holds_secrets_and_locks_files() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("out");
    let key = key_b64(32, 5);
    let records = vec![
        IndividualRecord {
            registration_id: "sk-001".into(),
            attestation: RecordAttestation::SymmetricKey {
                primary_key: SecretString::new(key.clone()),
                secondary_key: None,
            },
            device_id: Some("device-sk-001".into()),
            replaces_existing: false,
        },
        IndividualRecord {
            registration_id: "tpm-001".into(),
            attestation: RecordAttestation::Tpm {
                endorsement_key: key_b64(200, 1),
            },
            device_id: None,
            replaces_existing: false,
        },
    ];
    let summary = export(&dir, &input(records, vec![])).unwrap();
    assert!(summary.holds_secrets);
    let readme = fs::read_to_string(dir.join("README.txt")).unwrap();
    assert!(
        readme.starts_with("WARNING: THESE FILES HOLD SECRETS."),
        "{readme}"
    );
    for f in [
        "enrollments.csv",
        "enroll-with-az.sh",
        "bulk/enrollments-0001.json",
    ] {
        assert!(
            fs::read_to_string(dir.join(f)).unwrap().contains(&key),
            "{f} lacks the key"
        );
        assert_eq!(mode_of(&dir.join(f)), 0o600, "{f}");
    }
    assert_eq!(mode_of(&dir), 0o700);
    let script = fs::read_to_string(dir.join("enroll-with-az.sh")).unwrap();
    assert!(script.contains("--attestation-type symmetricKey --primary-key"));
    assert!(script.contains("--attestation-type tpm --endorsement-key"));
    assert!(script.contains("--device-id 'device-sk-001'"));
}

#[test]
fn export_never_overwrites_and_refuses_bad_records() {
    let tmp = tempfile::tempdir().unwrap();
    fs::write(tmp.path().join("something"), "x").unwrap();
    let err = export(tmp.path(), &input(x509_records(1), vec![])).unwrap_err();
    assert!(matches!(err, ExportError::NotEmpty(_)), "{err}");

    let dir = tmp.path().join("fresh");
    let mut records = x509_records(2);
    records[1].registration_id = "dev-999".into(); // CN is dev-001
    let err = export(&dir, &input(records, vec![])).unwrap_err();
    assert!(err.to_string().contains("dev-999"), "{err}");
    assert!(
        !dir.exists() || fs::read_dir(&dir).unwrap().next().is_none(),
        "files written despite the error"
    );

    let err = export(&tmp.path().join("empty"), &input(vec![], vec![])).unwrap_err();
    assert!(matches!(err, ExportError::Nothing));
}

#[test]
fn import_reads_bulk_answers_and_csv() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("out");
    export(&dir, &input(x509_records(12), vec![])).unwrap();
    // The remote site sent body 1 (dev-003 refused) and not body 2; its az run enrolled dev-011.
    fs::write(
        dir.join("bulk/enrollments-0001.result.json"),
        r#"{"isSuccessful":false,"errors":[{"registrationId":"dev-003","errorCode":409201,"errorStatus":"Conflict"},{"registrationId":"dev-004","errorCode":200,"errorStatus":"Succeeded"}]}"#,
    )
    .unwrap();
    fs::write(
        dir.join("az-results.csv"),
        "registration_id,status\ndev-011,enrolled\ndev-003,failed\n",
    )
    .unwrap();
    let results = import_results(&dir).unwrap();
    let status = |id: &str| {
        results
            .iter()
            .find(|r| r.registration_id == id)
            .map(|r| r.status.clone())
    };
    assert_eq!(results.len(), 11, "{results:?}");
    assert_eq!(status("dev-000"), Some(ImportedStatus::Enrolled));
    assert_eq!(status("dev-004"), Some(ImportedStatus::Enrolled));
    assert_eq!(status("dev-011"), Some(ImportedStatus::Enrolled));
    assert!(matches!(
        status("dev-003"),
        Some(ImportedStatus::Failed { .. })
    ));
    assert_eq!(
        status("dev-010"),
        None,
        "body 2 has no answer: nothing is known"
    );

    // A bare answer cannot say which items succeeded.
    let lone = tmp.path().join("x.result.json");
    fs::write(&lone, r#"{"isSuccessful":true}"#).unwrap();
    assert!(
        import_results(&lone)
            .unwrap_err()
            .to_string()
            .contains("request body")
    );

    // CSV with an unknown status names the line.
    let bad = tmp.path().join("bad.csv");
    fs::write(
        &bad,
        "registration_id,status\ndev-1,enrolled\ndev-2,maybe\n",
    )
    .unwrap();
    let err = import_results(&bad).unwrap_err().to_string();
    assert!(err.contains("line 3") && err.contains("maybe"), "{err}");

    // az iot dps enrollment list output.
    let list = tmp.path().join("list.json");
    fs::write(
        &list,
        r#"[{"registrationId":"Dev-A","attestation":{"type":"x509"}}]"#,
    )
    .unwrap();
    let r = import_results(&list).unwrap();
    assert_eq!(r[0].registration_id, "dev-a");
    assert_eq!(r[0].status, ImportedStatus::Enrolled);
}

/// Replacements (re-provisioned devices) go into their own `update` bodies, apart from the
/// `create` ones; the script updates them (no `--attestation-type`, falling back to create), the
/// CSV says `update`, and their answers are imported like the others.
#[test]
fn replacements_are_written_as_update_files_and_their_answers_imported() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("out");
    let mut records = x509_records(12);
    for r in records.iter_mut().skip(1).step_by(2) {
        r.replaces_existing = true;
    }
    records.push(IndividualRecord {
        registration_id: "sk-rma".into(),
        attestation: RecordAttestation::SymmetricKey {
            primary_key: SecretString::new(key_b64(32, 9)),
            secondary_key: None,
        },
        device_id: None,
        replaces_existing: true,
    });
    let summary = export(&dir, &input(records, vec![])).unwrap();
    assert_eq!(summary.bulk_files.len(), 2);
    let read = |name: &str| -> BulkEnrollmentOperation {
        serde_json::from_str(&fs::read_to_string(dir.join(name)).unwrap()).unwrap()
    };
    let create = read("bulk/enrollments-0001.json");
    assert_eq!(create.mode, BulkMode::Create);
    assert_eq!(create.enrollments.len(), 6);
    let update = read("bulk/enrollments-update-0001.json");
    assert_eq!(update.mode, BulkMode::Update);
    assert_eq!(update.enrollments.len(), 7);
    assert!(
        update
            .enrollments
            .iter()
            .any(|e| e.registration_id == "sk-rma")
    );
    assert!(
        !create
            .enrollments
            .iter()
            .any(|e| e.registration_id == "dev-001")
    );
    // Only the update body holds a key: it alone is owner-only.
    assert_eq!(
        mode_of(&dir.join("bulk/enrollments-update-0001.json")),
        0o600
    );
    assert_eq!(mode_of(&dir.join("bulk/enrollments-0001.json")), 0o644);

    let script = fs::read_to_string(dir.join("enroll-with-az.sh")).unwrap();
    let update_line = script
        .lines()
        .skip_while(|l| !l.contains("az iot dps enrollment update"))
        .take(2)
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        update_line
            .contains("--enrollment-id 'dev-001' --certificate-path 'certs/devices/dev-001.pem'"),
        "{update_line}"
    );
    assert!(
        script.contains("--enrollment-id 'sk-rma' --primary-key"),
        "{script}"
    );
    assert_eq!(script.matches("az iot dps enrollment update").count(), 7);
    assert_eq!(script.matches("az iot dps enrollment create").count(), 13);
    let mut reader = csv::Reader::from_path(dir.join("enrollments.csv")).unwrap();
    let ops: Vec<String> = reader
        .records()
        .map(|r| r.unwrap().get(13).unwrap().to_string())
        .collect();
    assert_eq!(ops.iter().filter(|o| *o == "update").count(), 7);
    assert_eq!(ops.iter().filter(|o| *o == "create").count(), 6);
    let readme = fs::read_to_string(dir.join("README.txt")).unwrap();
    assert!(readme.starts_with("WARNING: THESE FILES HOLD SECRETS."));
    assert!(
        readme.contains("Only the 7 re-provisioned enrollment(s)"),
        "{readme}"
    );

    fs::write(
        dir.join("bulk/enrollments-update-0001.result.json"),
        r#"{"isSuccessful":false,"errors":[{"registrationId":"dev-003","errorCode":400004,"errorStatus":"Bad request"}]}"#,
    )
    .unwrap();
    let results = import_results(&dir).unwrap();
    assert_eq!(results.len(), 7, "{results:?}");
    let sk = results
        .iter()
        .find(|r| r.registration_id == "sk-rma")
        .unwrap();
    assert_eq!(sk.status, ImportedStatus::Enrolled);
    let refused = results
        .iter()
        .find(|r| r.registration_id == "dev-003")
        .unwrap();
    assert!(matches!(refused.status, ImportedStatus::Failed { .. }));
}
