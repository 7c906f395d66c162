//! The audit log as an officer and an auditor read it: filtered pages, the CSV export of a time
//! range (re-checked here from the CSV alone), verify's progress, and `ledger audit-export`.

use std::path::Path;
use std::process::Command;

use dps_station::ledger::audit::{AuditContent, GENESIS, row_hash};
use dps_station::ledger::audit_query::{AUDIT_CSV_HEADER, Bound, parse_time_bound};
use dps_station::ledger::*;
use serde_json::json;

use crate::common::*;

const BIN: &str = env!("CARGO_BIN_EXE_dps-station");

/// A ledger with rows by two operators, two officers' key sessions and a few subjects; a few
/// milliseconds between writes so that rows have distinct times. Returns the two sessions.
fn varied(path: &Path) -> (KeySessionId, KeySessionId) {
    let mut l = open(path);
    let pause = || std::thread::sleep(std::time::Duration::from_millis(3));
    for i in 0..3 {
        l.record_issued(&x509_identity(&format!("sensor-{i:03}")))
            .unwrap();
        pause();
    }
    let session = |operator: &str, token: &str| NewKeySession {
        operator: operator.into(),
        token_label: token.into(),
        token_serial: "0001".into(),
        token_model: "SoftHSM v2".into(),
    };
    let s1 = l.open_key_session(&session("olga", "ca-token")).unwrap();
    pause();
    let s2 = l.open_key_session(&session("omar", "group-token")).unwrap();
    pause();
    for (actor, s, key) in [
        ("olga", s1, "root"),
        ("omar", s2, "group"),
        ("olga", s1, "int"),
    ] {
        l.append_audit(
            actor,
            "key.generated",
            &format!("key:{key}"),
            &json!({ "key_session": s.0, "label": key }),
        )
        .unwrap();
        pause();
    }
    l.set_operator("bob").unwrap();
    l.record_issued(&x509_identity("SENSOR-100")).unwrap();
    pause();
    l.close_key_session(s1).unwrap();
    (s1, s2)
}

fn all_rows(l: &Ledger) -> Vec<AuditRecord> {
    l.audit_page(&AuditFilter::default(), None, 10_000)
        .unwrap()
        .rows
}

#[test]
fn pages_go_newest_first_and_never_repeat_a_row() {
    let t = test_dir();
    varied(&t.ledger);
    let l = Ledger::open_read_only(&t.ledger).unwrap();
    let total = l.stats().unwrap().audit_rows as usize;
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let page = l.audit_page(&AuditFilter::default(), before, 3).unwrap();
        assert!(page.rows.len() <= 3);
        seen.extend(page.rows.iter().map(|r| r.id.0));
        match page.older {
            Some(id) => before = Some(id),
            None => break,
        }
    }
    let expected: Vec<i64> = (1..=total as i64).rev().collect();
    assert_eq!(seen, expected);
}

#[test]
fn each_filter_narrows_to_the_rows_it_names() {
    let t = test_dir();
    let (s1, s2) = varied(&t.ledger);
    let l = Ledger::open_read_only(&t.ledger).unwrap();
    let all = all_rows(&l);
    let query = |f: AuditFilter| l.audit_page(&f, None, 1000).unwrap().rows;

    // A session: its opening, its key rows and its closing, nothing of the other session.
    let rows = query(AuditFilter {
        key_session: Some(s1),
        ..AuditFilter::default()
    });
    let actions: Vec<&str> = rows.iter().map(|r| r.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "key_session.closed",
            "key.generated",
            "key.generated",
            "key_session.opened"
        ]
    );
    assert!(rows.iter().all(|r| r.actor == "olga"));
    let rows = query(AuditFilter {
        key_session: Some(s2),
        ..AuditFilter::default()
    });
    assert_eq!(rows.len(), 2);

    // An officer, case-insensitively, the whole name only.
    let rows = query(AuditFilter {
        actor: Some("OMAR".into()),
        ..AuditFilter::default()
    });
    assert_eq!(rows.len(), 2);
    assert!(
        query(AuditFilter {
            actor: Some("om".into()),
            ..AuditFilter::default()
        })
        .is_empty()
    );

    // An operation by prefix.
    let rows = query(AuditFilter {
        action: Some("key_session.".into()),
        ..AuditFilter::default()
    });
    assert_eq!(rows.len(), 3);

    // An identity by registration ID prefix, any case; SQL wildcards are taken literally.
    let rows = query(AuditFilter {
        subject: Some("sensor-1".into()),
        ..AuditFilter::default()
    });
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].subject, "SENSOR-100");
    assert_eq!(rows[0].actor, "bob");
    for wildcard in ["sensor-%", "sensor-_00", "%", "'"] {
        assert!(
            query(AuditFilter {
                subject: Some(wildcard.into()),
                ..AuditFilter::default()
            })
            .is_empty(),
            "{wildcard}"
        );
    }

    // Filters combine.
    let rows = query(AuditFilter {
        actor: Some("olga".into()),
        action: Some("key.".into()),
        subject: Some("key:int".into()),
        ..AuditFilter::default()
    });
    assert_eq!(rows.len(), 1);

    // A time range [from, to) picks exactly the rows written in it.
    let from = all[all.len() - 3].at.clone();
    let to = all[2].at.clone();
    let rows = query(AuditFilter {
        range: TimeRange {
            from: Some(from.clone()),
            to: Some(to.clone()),
        },
        ..AuditFilter::default()
    });
    let expected: Vec<i64> = all
        .iter()
        .filter(|r| r.at >= from && r.at < to)
        .map(|r| r.id.0)
        .collect();
    assert!(!expected.is_empty() && expected.len() < all.len());
    assert_eq!(rows.iter().map(|r| r.id.0).collect::<Vec<_>>(), expected);
}

/// Re-checks the rows of an audit CSV the way an auditor would, from the file alone.
fn recheck(csv_text: &str) -> Vec<i64> {
    let mut r = csv::Reader::from_reader(csv_text.as_bytes());
    assert_eq!(r.headers().unwrap(), AUDIT_CSV_HEADER);
    let mut ids = Vec::new();
    let mut last: Option<String> = None;
    for rec in r.records() {
        let rec = rec.unwrap();
        let id: i64 = rec[0].parse().unwrap();
        let mut prev = [0u8; 32];
        hex::decode_to_slice(&rec[7], &mut prev).unwrap();
        if let Some(last) = &last {
            assert_eq!(&rec[7], last, "row {id} chains to the row before");
        } else if id == 1 {
            assert_eq!(prev, GENESIS);
        }
        let content = AuditContent {
            at: &rec[1],
            station: &rec[2],
            actor: &rec[3],
            action: &rec[4],
            subject: &rec[5],
            details: &rec[6],
        };
        assert_eq!(hex::encode(row_hash(&prev, id, &content)), &rec[8]);
        last = Some(rec[8].to_string());
        ids.push(id);
    }
    ids
}

#[test]
fn the_csv_export_holds_the_rows_of_the_range_and_their_chain() {
    let t = test_dir();
    varied(&t.ledger);
    let l = Ledger::open_read_only(&t.ledger).unwrap();
    let all = all_rows(&l);

    let mut whole = Vec::new();
    let n = l
        .export_audit_csv(&TimeRange::default(), &mut whole, |_| {})
        .unwrap();
    assert_eq!(n as usize, all.len());
    let ids = recheck(&String::from_utf8(whole).unwrap());
    assert_eq!(ids, (1..=all.len() as i64).collect::<Vec<_>>());

    let range = TimeRange {
        from: Some(all[all.len() - 4].at.clone()),
        to: Some(all[1].at.clone()),
    };
    let file = t.dir.path().join("audit.csv");
    let mut last_progress = 0;
    let n = l
        .export_audit_csv_file(&range, &file, |p| last_progress = p)
        .unwrap();
    assert_eq!(last_progress, n);
    let expected: Vec<i64> = all
        .iter()
        .rev()
        .filter(|r| Some(&r.at) >= range.from.as_ref() && Some(&r.at) < range.to.as_ref())
        .map(|r| r.id.0)
        .collect();
    let ids = recheck(&std::fs::read_to_string(&file).unwrap());
    assert_eq!(ids, expected);
    assert!(!t.dir.path().join("audit.csv.partial").exists());
}

#[test]
fn verify_reports_its_progress_to_the_last_row() {
    let t = test_dir();
    let mut l = open(&t.ledger);
    l.transaction(|w| {
        for i in 0..20_000 {
            w.append_audit("olga", "key.listed", &format!("key:{i}"), &json!({}))?;
        }
        Ok(())
    })
    .unwrap();
    let total = l.stats().unwrap().audit_rows as u64;
    let mut seen = Vec::new();
    let report = l
        .verify_audit_chain_with_progress(|p| seen.push(p))
        .unwrap();
    assert!(report.is_intact());
    assert_eq!(seen.first().unwrap().checked, 0);
    assert!(seen.iter().all(|p| p.total == total));
    assert!(
        seen.len() >= 4,
        "a bar over 20,000 rows moves more than once: {seen:?}"
    );
    assert!(seen.windows(2).all(|w| w[0].checked <= w[1].checked));
    assert_eq!(seen.last().unwrap().checked, total);
    // The plain verify says the same.
    assert_eq!(l.verify_audit_chain().unwrap(), report);
}

#[test]
fn ledger_audit_export_writes_the_range_and_refuses_a_bad_time() {
    let t = test_dir();
    varied(&t.ledger);
    let l = Ledger::open_read_only(&t.ledger).unwrap();
    let total = all_rows(&l).len();
    let today = &all_rows(&l)[0].at[..10];
    let file = t.dir.path().join("out.csv");
    let out = Command::new(BIN)
        .args(["ledger", "audit-export", "--from", today, "--to", today])
        .arg("--out")
        .arg(&file)
        .arg("--ledger")
        .arg(&t.ledger)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("exported {total} audit rows")));
    assert_eq!(
        recheck(&std::fs::read_to_string(&file).unwrap()).len(),
        total
    );

    // Yesterday's range is empty: just the header, on standard output.
    let yesterday = parse_time_bound(today, Bound::From).unwrap();
    let out = Command::new(BIN)
        .args(["ledger", "audit-export", "--to", &yesterday, "--ledger"])
        .arg(&t.ledger)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        AUDIT_CSV_HEADER.join(",")
    );

    let out = Command::new(BIN)
        .args([
            "ledger",
            "audit-export",
            "--from",
            "last tuesday",
            "--ledger",
        ])
        .arg(&t.ledger)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a time"));
}

#[test]
fn an_export_into_a_missing_folder_names_it_and_leaves_nothing_behind() {
    let t = test_dir();
    varied(&t.ledger);
    let l = Ledger::open_read_only(&t.ledger).unwrap();
    let file = t.dir.path().join("no-such-folder").join("audit.csv");
    let e = l
        .export_audit_csv_file(&TimeRange::default(), &file, |_| {})
        .unwrap_err();
    let text = e.to_string();
    assert!(text.contains("no-such-folder"), "{text}");
    assert!(text.contains("choose a folder"), "{text}");
    assert!(!t.dir.path().join("no-such-folder").exists());
}
