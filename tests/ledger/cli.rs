//! `dps-station ledger …` through the real binary.

use std::process::{Command, Output};

use dps_station::ledger::*;

use crate::common::*;

const BIN: &str = env!("CARGO_BIN_EXE_dps-station");

fn run(args: &[&str], path: &std::path::Path) -> Output {
    Command::new(BIN)
        .args(args)
        .arg("--ledger")
        .arg(path)
        .env_remove("DPS_STATION_LEDGER")
        .output()
        .unwrap()
}

fn json(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Two batches, identities in several states and kinds.
fn fill(path: &std::path::Path) {
    let mut l = open(path);
    let batch = |l: &mut Ledger, name: &str| {
        l.create_batch(&NewBatch {
            name: name.into(),
            product: "sensor".into(),
            attestation: AttestationKind::X509,
            enrollment_kind: EnrollmentKind::Individual,
            dps_target: "dps".into(),
            registration_id_template: "{product}-{serial}".into(),
        })
        .unwrap()
    };
    let a = batch(&mut l, "batch-a");
    let b = batch(&mut l, "batch-b");
    for i in 0..6 {
        let mut id = x509_identity(&format!("sensor-{i}"));
        id.batch = Some(if i < 4 { a } else { b });
        l.record_issued(&id).unwrap();
    }
    l.transition("sensor-0", &Transition::Written).unwrap();
    l.transition("sensor-1", &Transition::Written).unwrap();
    l.transition(
        "sensor-2",
        &Transition::Failed {
            stage: FailureStage::Write,
            reason: "readback mismatch".into(),
        },
    )
    .unwrap();
    let mut s = symmetric_identity("sym-1", &[3; 32]);
    s.batch = Some(b);
    l.record_issued(&s).unwrap();
    let e = l
        .queue_enrollment(
            "sensor-0",
            &NewEnrollment {
                dps_target: "dps".into(),
                kind: EnrollmentKind::Individual,
                group_name: None,
            },
        )
        .unwrap();
    l.record_enrollment_result(
        e,
        &EnrollmentOutcome::Enrolled {
            etag: Some("etag-1".into()),
        },
    )
    .unwrap();
}

#[test]
fn init_creates_then_reports_up_to_date() {
    let t = test_dir();
    let out = run(
        &["ledger", "init", "--station", "line-9", "--operator", "zoe"],
        &t.ledger,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("created ledger"));
    let out = run(&["ledger", "init"], &t.ledger);
    assert!(String::from_utf8_lossy(&out.stdout).contains("up to date"));
    let l = Ledger::open_read_only(&t.ledger).unwrap();
    assert!(!l.audit_for("station:line-9").unwrap().is_empty());
}

#[test]
fn stats_counts_by_state_and_kind() {
    let t = test_dir();
    fill(&t.ledger);
    let s = json(&run(&["ledger", "stats", "--json"], &t.ledger));
    assert_eq!(s["identities"], 7);
    assert_eq!(s["batches"], 2);
    assert_eq!(
        s["schema_version"],
        dps_station::ledger::schema::CURRENT_VERSION
    );
    assert_eq!(s["identities_by_state"]["enrolled"], 1);
    assert_eq!(s["identities_by_state"]["issued"], 4);
    assert_eq!(s["identities_by_state"]["failed"], 1);
    assert_eq!(s["identities_by_attestation"]["symmetric-key"], 1);
    assert_eq!(s["enrollments_by_state"]["enrolled"], 1);
    let text = run(&["ledger", "stats"], &t.ledger);
    assert!(String::from_utf8_lossy(&text.stdout).contains("identities       7"));
}

#[test]
fn list_filters_by_batch_state_kind_and_limit() {
    let t = test_dir();
    fill(&t.ledger);
    let ids = |v: serde_json::Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|i| i["registration_id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        ids(json(&run(&["ledger", "list", "--json"], &t.ledger))).len(),
        7
    );
    assert_eq!(
        ids(json(&run(
            &["ledger", "list", "--json", "--batch", "batch-b"],
            &t.ledger
        ))),
        ["sensor-4", "sensor-5", "sym-1"]
    );
    assert_eq!(
        ids(json(&run(
            &["ledger", "list", "--json", "--state", "failed"],
            &t.ledger
        ))),
        ["sensor-2"]
    );
    assert_eq!(
        ids(json(&run(
            &["ledger", "list", "--json", "--kind", "symmetric-key"],
            &t.ledger
        ))),
        ["sym-1"]
    );
    assert_eq!(
        ids(json(&run(
            &[
                "ledger", "list", "--json", "--batch", "batch-a", "--state", "issued", "--limit",
                "1"
            ],
            &t.ledger
        ))),
        ["sensor-3"]
    );
    let bad = run(&["ledger", "list", "--state", "lost"], &t.ledger);
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("issued"),
        "lists the valid states"
    );
    let text = run(&["ledger", "list", "--state", "failed"], &t.ledger);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("sensor-2") && text.contains("failed(write)"),
        "{text}"
    );

    // Columns line up whatever the length of a state or attestation name (issue 17, point 11).
    let all = run(&["ledger", "list"], &t.ledger);
    let all = String::from_utf8_lossy(&all.stdout);
    let lines: Vec<&str> = all
        .lines()
        .filter(|l| !l.ends_with(" identities"))
        .collect();
    let column = |name: &str| lines[0].find(name).unwrap();
    for name in ["state", "attestation", "batch", "updated"] {
        let at = column(name);
        for line in &lines[1..] {
            assert!(
                line.as_bytes()[at - 1] == b' ' && line.as_bytes()[at] != b' ',
                "column {name} at {at}:\n{all}"
            );
        }
    }
}

#[test]
fn show_gives_identity_enrollments_and_audit() {
    let t = test_dir();
    fill(&t.ledger);
    let v = json(&run(&["ledger", "show", "SENSOR-0", "--json"], &t.ledger));
    assert_eq!(v["identity"]["registration_id"], "sensor-0");
    assert_eq!(v["identity"]["state"], "enrolled");
    assert_eq!(v["identity"]["batch"], "batch-a");
    assert_eq!(
        v["identity"]["certificate"]["sha256_thumbprint"]
            .as_str()
            .unwrap()
            .len(),
        64
    );
    assert_eq!(v["enrollments"][0]["etag"], "etag-1");
    let actions: Vec<&str> = v["audit"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions.first(), Some(&"identity.issued"));
    assert_eq!(actions.last(), Some(&"identity.enrolled"));
    let text = run(&["ledger", "show", "sensor-2"], &t.ledger);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("failed at write: readback mismatch"),
        "{text}"
    );
    let missing = run(&["ledger", "show", "nobody"], &t.ledger);
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr)
            .contains("no identity with registration ID nobody")
    );
}

#[test]
fn export_writes_every_identity_as_csv() {
    let t = test_dir();
    fill(&t.ledger);
    let csv_path = t.dir.path().join("out.csv");
    let out = Command::new(BIN)
        .args(["ledger", "export", "--output"])
        .arg(&csv_path)
        .env("DPS_STATION_LEDGER", &t.ledger)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut r = csv::Reader::from_path(&csv_path).unwrap();
    let headers = r.headers().unwrap().clone();
    assert_eq!(&headers[0], "registration_id");
    let rows: Vec<csv::StringRecord> = r.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 7);
    let sensor0 = rows.iter().find(|r| &r[0] == "sensor-0").unwrap();
    assert_eq!(&sensor0[1], "enrolled");
    let sha_col = headers
        .iter()
        .position(|h| h == "sha256_thumbprint")
        .unwrap();
    assert_eq!(sensor0[sha_col].len(), 64);
}

#[test]
fn the_default_path_is_under_xdg_data_home() {
    let t = test_dir();
    let out = Command::new(BIN)
        .args(["ledger", "init"])
        .env_remove("DPS_STATION_LEDGER")
        .env("XDG_DATA_HOME", t.dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(t.dir.path().join("dps-station/ledger.db").exists());
}

#[test]
fn reports_on_a_missing_ledger_say_how_to_create_it() {
    let t = test_dir();
    let out = run(&["ledger", "stats"], &t.ledger);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("ledger init") && err.contains(&t.ledger.display().to_string()),
        "{err}"
    );
    assert!(!t.ledger.exists(), "a report does not create a ledger");
}

#[test]
fn the_ledger_benchmark_runs_and_reports_every_figure() {
    let t = test_dir();
    let dir = t.dir.path().join("bench");
    let out = Command::new(BIN)
        .args([
            "bench",
            "ledger",
            "--identities",
            "300",
            "--batch-size",
            "100",
            "--single",
            "20",
            "--lookups",
            "50",
            "--json",
            "--keep",
            "--dir",
        ])
        .arg(&dir)
        .output()
        .unwrap();
    let r = json(&out);
    assert_eq!(r["batched_insert"]["count"], 300);
    assert_eq!(r["single_transaction_insert"]["count"], 20);
    assert_eq!(r["lookup"]["count"], 50);
    assert_eq!(r["export"]["count"], 320);
    assert_eq!(r["identities_total"], 320);
    assert_eq!(r["disk_syncs"]["count"], 500);
    assert!(r["lookup"]["p99_us"].as_f64().unwrap() > 0.0);
    assert!(r["bytes_per_identity"].as_f64().unwrap() > 100.0);
    // The benchmark's ledger is a real, verifiable ledger.
    let l = Ledger::open_read_only(&dir.join("bench-ledger.db")).unwrap();
    assert_eq!(l.stats().unwrap().identities, 320);
    assert!(l.verify_audit_chain().unwrap().is_intact());
}

#[test]
fn show_and_list_keep_the_revoked_history_of_a_reprovisioned_registration_id() {
    let t = test_dir();
    fill(&t.ledger);
    {
        let mut l = open(&t.ledger);
        l.reprovision(
            &x509_identity("sensor-0"),
            &Reprovisioning {
                reason: "RMA 123".into(),
                batch: "rma-1".into(),
                device_serial: "SN0".into(),
            },
        )
        .unwrap();
        // A registration ID whose only identity is revoked is still shown.
        l.transition(
            "sensor-5",
            &Transition::Revoked {
                reason: "scrapped".into(),
            },
        )
        .unwrap();
    }
    let v = json(&run(&["ledger", "show", "sensor-0", "--json"], &t.ledger));
    assert_eq!(v["identity"]["state"], "issued", "the live identity first");
    let earlier = v["earlier_identities"].as_array().unwrap();
    assert_eq!(earlier.len(), 1);
    assert_eq!(earlier[0]["state"], "revoked");
    assert!(
        earlier[0]["revoked_reason"]
            .as_str()
            .unwrap()
            .contains("RMA 123")
    );
    assert!(
        v["audit"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["action"] == "reprovision")
    );
    let text = run(&["ledger", "show", "sensor-0"], &t.ledger);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("earlier identities"), "{text}");
    let gone = json(&run(&["ledger", "show", "sensor-5", "--json"], &t.ledger));
    assert_eq!(gone["identity"]["state"], "revoked");

    let list = json(&run(&["ledger", "list", "--json"], &t.ledger));
    let rows: Vec<&serde_json::Value> = list
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["registration_id"] == "sensor-0")
        .collect();
    assert_eq!(rows.len(), 2, "list shows the revoked identity too");
}
