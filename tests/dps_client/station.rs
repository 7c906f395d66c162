//! The enrollment queue over a real ledger file and the emulator: `enroll` marks enrolled only
//! what DPS confirmed, `export` writes the pending ones, `import-results` marks them from results;
//! and the same through the `dps-station` binary.

use std::path::Path;
use std::process::Command;

use base64::Engine as _;
use dps_station::dps::payload::{self, EnrollmentSettings};
use dps_station::emulator::{Faults, RunningEmulator};
use dps_station::ledger::{
    Attestation, EnrollmentKind, IdentityState, KeyFingerprint, Ledger, NewEnrollment, NewIdentity,
    Transition, WriterIdentity,
};
use dps_station::station::enrollment::{
    EnrollOptions, enroll_pending, export_pending, import_pending_results,
};

use crate::support::{client, emulator, stored_ids, tpm_ek_b64};

const TARGET: &str = "line-dps";

fn der_cert(cn: &str) -> Vec<u8> {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    params.self_signed(&key).unwrap().der().to_vec()
}

fn open(path: &Path) -> Ledger {
    Ledger::open(
        path,
        &WriterIdentity {
            station: "line-1".into(),
            operator: "ann".into(),
        },
    )
    .unwrap()
}

/// Records an identity, marks it written and queues it for `TARGET`.
fn queue(ledger: &mut Ledger, id: &str, attestation: Attestation, group: Option<&str>) {
    ledger
        .record_issued(&NewIdentity {
            registration_id: id.into(),
            batch: None,
            device: None,
            attestation,
        })
        .unwrap();
    ledger.transition(id, &Transition::Written).unwrap();
    ledger
        .queue_enrollment(
            id,
            &NewEnrollment {
                dps_target: TARGET.into(),
                kind: if group.is_some() {
                    EnrollmentKind::Group
                } else {
                    EnrollmentKind::Individual
                },
                group_name: group.map(str::to_string),
            },
        )
        .unwrap();
}

fn x509(id: &str) -> Attestation {
    Attestation::X509 {
        certificate_der: der_cert(id),
    }
}

fn state(ledger: &Ledger, id: &str) -> IdentityState {
    ledger.find_identity(id).unwrap().unwrap().state
}

/// A ledger with 25 X.509, 2 TPM, 1 symmetric-key individual and 2 group-covered identities.
fn populated(path: &Path) -> Ledger {
    let mut l = open(path);
    for i in 0..25 {
        let id = format!("cam-{i:03}");
        queue(&mut l, &id, x509(&id), None);
    }
    for i in 0..2 {
        let ek = base64::prelude::BASE64_STANDARD
            .decode(tpm_ek_b64(i + 1))
            .unwrap();
        queue(
            &mut l,
            &format!("tpm-{i}"),
            Attestation::Tpm {
                endorsement_key: ek,
            },
            None,
        );
    }
    queue(
        &mut l,
        "sym-0",
        Attestation::SymmetricKey {
            key_fingerprint: KeyFingerprint::of_key(&[7u8; 32]),
            key_nonce: None,
        },
        None,
    );
    for i in 0..2 {
        let id = format!("grp-dev-{i}");
        queue(&mut l, &id, x509(&id), Some("line-group"));
    }
    l
}

#[test]
fn enroll_marks_only_what_dps_confirmed() {
    let emu = emulator(|_| {});
    let dps = client(&emu, |_| {});
    let tmp = tempfile::tempdir().unwrap();
    let mut ledger = populated(&tmp.path().join("ledger.db"));
    // cam-007 is already in DPS with another certificate: it must fail, untouched.
    let theirs = payload::x509_individual(
        "cam-007",
        &crate::support::device_cert("cam-007"),
        &EnrollmentSettings::default(),
    )
    .unwrap();
    dps.create_enrollment(&theirs).unwrap();

    let options = EnrollOptions {
        dps_target: TARGET.into(),
        settings: EnrollmentSettings::default(),
        reprovision: false,
        individual_keys: None,
        batch: None,
    };
    let mut last = None;
    let summary = enroll_pending(&mut ledger, &dps, &options, |p| last = Some(p)).unwrap();
    assert_eq!(summary.pending, 30);
    assert_eq!(summary.created, 26, "{summary:?}");
    assert_eq!(summary.failed.len(), 1);
    assert_eq!(summary.failed[0].registration_id, "cam-007");
    // The group does not exist yet: its devices stay pending.
    assert_eq!(summary.retry_later.len(), 2);
    assert!(summary.retry_later[0].reason.contains("line-group"));
    assert_eq!(summary.not_sendable.len(), 1);
    assert_eq!(last.map(|p| (p.done, p.total)), Some((30, 30)));

    assert_eq!(state(&ledger, "cam-000"), IdentityState::Enrolled);
    assert_eq!(state(&ledger, "tpm-1"), IdentityState::Enrolled);
    assert_eq!(state(&ledger, "cam-007"), IdentityState::Failed);
    assert_eq!(state(&ledger, "grp-dev-0"), IdentityState::Written);
    assert_eq!(state(&ledger, "sym-0"), IdentityState::Written);
    // Every identity the ledger calls enrolled is in DPS.
    let held = stored_ids(&emu);
    for r in ledger.list_identities(&Default::default()).unwrap() {
        if r.state == IdentityState::Enrolled && !r.registration_id.starts_with("grp-") {
            assert!(
                held.contains(&r.registration_id),
                "{} enrolled but not in DPS",
                r.registration_id
            );
        }
    }

    // Once the group exists, a second run enrolls its devices by one check.
    let g = payload::symmetric_key_group("line-group", None, None, &EnrollmentSettings::default())
        .unwrap();
    dps.create_group(&g).unwrap();
    let summary = enroll_pending(&mut ledger, &dps, &options, |_| {}).unwrap();
    assert_eq!((summary.pending, summary.by_group), (3, 2), "{summary:?}");
    assert_eq!(state(&ledger, "grp-dev-1"), IdentityState::Enrolled);
}

#[test]
fn a_faulty_service_never_gets_an_identity_marked_enrolled_that_it_does_not_hold() {
    let emu = emulator(|c| {
        c.faults = Faults {
            error_rate: 0.5,
            drop_rate: 0.3,
            ..Faults::default()
        };
    });
    // Few retries: some calls give up, and their identities must stay pending.
    let dps = client(&emu, |c| c.retry.max_attempts = 2);
    let tmp = tempfile::tempdir().unwrap();
    let mut ledger = open(&tmp.path().join("ledger.db"));
    for i in 0..40 {
        let id = format!("flt-{i:03}");
        queue(&mut ledger, &id, x509(&id), None);
    }
    let options = EnrollOptions {
        dps_target: TARGET.into(),
        settings: EnrollmentSettings::default(),
        reprovision: false,
        individual_keys: None,
        batch: None,
    };
    let first = enroll_pending(&mut ledger, &dps, &options, |_| {}).unwrap();
    emu.set_faults(Faults::default()).unwrap();
    let held = stored_ids(&emu);
    for r in ledger.list_identities(&Default::default()).unwrap() {
        if r.state == IdentityState::Enrolled {
            assert!(
                held.contains(&r.registration_id),
                "{} marked enrolled, not in DPS",
                r.registration_id
            );
        }
    }
    assert!(first.failed.is_empty(), "{:?}", first.failed);
    // A run without faults finishes the rest; what landed unconfirmed is confirmed, not duplicated.
    let second = enroll_pending(&mut ledger, &dps, &options, |_| {}).unwrap();
    assert!(second.all_enrolled(), "{second:?}");
    assert_eq!(first.enrolled() + second.enrolled(), 40);
    assert_eq!(stored_ids(&emu).len(), 40);
}

#[test]
fn export_then_import_results() {
    let tmp = tempfile::tempdir().unwrap();
    let mut ledger = populated(&tmp.path().join("ledger.db"));
    let out = tmp.path().join("export");
    let report = export_pending(
        &ledger,
        TARGET,
        None,
        &EnrollmentSettings::default(),
        vec![],
        None,
        &out,
    )
    .unwrap();
    assert_eq!(report.written.individuals, 27);
    assert_eq!(report.left_out.len(), 3, "{:?}", report.left_out);
    assert!(out.join("bulk/enrollments-0003.json").is_file());
    assert_eq!(
        state(&ledger, "cam-000"),
        IdentityState::Written,
        "export marks nothing"
    );

    std::fs::write(
        out.join("az-results.csv"),
        "registration_id,status\ncam-000,enrolled\ncam-001,failed\nunknown-9,enrolled\n",
    )
    .unwrap();
    let summary = import_pending_results(&mut ledger, TARGET, &out).unwrap();
    assert_eq!(summary.enrolled, 1);
    assert_eq!(summary.reported_failed.len(), 1);
    assert_eq!(summary.not_pending, vec!["unknown-9".to_string()]);
    assert_eq!(state(&ledger, "cam-000"), IdentityState::Enrolled);
    assert_eq!(
        state(&ledger, "cam-001"),
        IdentityState::Written,
        "a remote failure stays pending"
    );
}

fn station_cmd(emu: &RunningEmulator, dir: &Path) -> Command {
    let ca = dir.join("emulator-ca.pem");
    std::fs::write(&ca, emu.ca_certificate_pem().unwrap()).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dps-station"));
    cmd.env("DPS_CONNECTION_STRING", emu.connection_string().expose())
        .env_remove("DPS_STATION_LEDGER")
        .args(["enroll", "--ledger"])
        .arg(dir.join("ledger.db"))
        .args([
            "--dps-target",
            TARGET,
            "--station",
            "line-1",
            "--operator",
            "ann",
        ])
        .args(["--endpoint", &emu.service_url(), "--trust-ca"])
        .arg(&ca);
    cmd
}

#[test]
fn the_enroll_command_reports_and_exits_non_zero_on_failure() {
    let emu = emulator(|_| {});
    let tmp = tempfile::tempdir().unwrap();
    {
        let mut l = open(&tmp.path().join("ledger.db"));
        for i in 0..12 {
            let id = format!("cli-{i:02}");
            queue(&mut l, &id, x509(&id), None);
        }
    }
    let out = station_cmd(&emu, tmp.path()).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("12 pending, 12 enrolled"), "{stdout}");
    assert!(!stdout.contains(emu.primary_key().expose()));
    assert_eq!(stored_ids(&emu).len(), 12);

    // One identity DPS will refuse (another certificate is enrolled under its ID): exit 1.
    {
        let mut l = open(&tmp.path().join("ledger.db"));
        queue(&mut l, "cli-99", x509("cli-99"), None);
    }
    let dps = client(&emu, |_| {});
    let theirs = payload::x509_individual(
        "cli-99",
        &crate::support::device_cert("cli-99"),
        &EnrollmentSettings::default(),
    )
    .unwrap();
    dps.create_enrollment(&theirs).unwrap();
    let out = station_cmd(&emu, tmp.path()).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("failed: cli-99") && stdout.contains("different attestation"),
        "{stdout}"
    );

    // No connection string: a clear message, nothing done.
    let out = station_cmd(&emu, tmp.path())
        .env_remove("DPS_CONNECTION_STRING")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("DPS_CONNECTION_STRING"));
    // A malformed one names what is wrong without echoing the key.
    let out = station_cmd(&emu, tmp.path())
        .env(
            "DPS_CONNECTION_STRING",
            "HostName=h;SharedAccessKey=c2VjcmV0LWtleQ==",
        )
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("SharedAccessKeyName") && !stderr.contains("c2VjcmV0LWtleQ=="),
        "{stderr}"
    );
}

#[test]
fn the_export_and_import_commands() {
    let tmp = tempfile::tempdir().unwrap();
    drop(populated(&tmp.path().join("ledger.db")));
    let ca_pem = tmp.path().join("group-ca.pem");
    std::fs::write(&ca_pem, crate::support::ca_cert("Group CA")).unwrap();
    let out_dir = tmp.path().join("files");
    let bin = env!("CARGO_BIN_EXE_dps-station");
    let out = Command::new(bin)
        .args(["export", "--ledger"])
        .arg(tmp.path().join("ledger.db"))
        .args([
            "--dps-target",
            TARGET,
            "--iot-hub",
            "hub-a.azure-devices.net",
            "--output",
        ])
        .arg(&out_dir)
        .args(["--group-id", "line-group", "--group-certificate"])
        .arg(&ca_pem)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("27 individual enrollment(s) and 1 group(s)"),
        "{stdout}"
    );
    assert!(out_dir.join("certs/groups/line-group.pem").is_file());
    assert!(out_dir.join("bulk/enrollment-groups-0001.json").is_file());

    std::fs::write(
        out_dir.join("bulk/enrollments-0001.result.json"),
        r#"{"isSuccessful":true}"#,
    )
    .unwrap();
    let out = Command::new(bin)
        .args(["import-results", "--ledger"])
        .arg(tmp.path().join("ledger.db"))
        .args(["--dps-target", TARGET])
        .arg(&out_dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("10 marked enrolled"), "{stdout}");
    let ledger = open(&tmp.path().join("ledger.db"));
    let enrolled = ledger
        .list_identities(&dps_station::ledger::IdentityFilter {
            state: Some(IdentityState::Enrolled),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(enrolled.len(), 10);
}
