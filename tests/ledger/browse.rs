//! The ledger browser's queries: prefix search (case-insensitive, wildcards literal), filters,
//! pages by key that neither skip nor repeat a row, and the capped count.

use std::collections::HashSet;

use dps_station::ledger::browse::{BrowseQuery, BrowseRow, MatchCount, SPARSE_LIMIT};
use dps_station::ledger::{
    AttestationKind, EnrollmentKind, FailureStage, IdentityState, Ledger, NewBatch, NewDevice,
    Transition,
};

use super::common::{open, symmetric_identity, test_dir, x509_identity};

fn batch(ledger: &mut Ledger, name: &str) -> dps_station::ledger::BatchId {
    ledger
        .create_batch(&NewBatch {
            name: name.into(),
            product: "sensor".into(),
            attestation: AttestationKind::SymmetricKey,
            enrollment_kind: EnrollmentKind::Group,
            dps_target: "dps.example".into(),
            registration_id_template: "{product}-{serial}".into(),
        })
        .unwrap()
}

/// `count` symmetric-key identities `{prefix}{i:05}` with serials `{serial_prefix}{i:05}`, in one
/// transaction through the ledger's own write functions.
fn fill(
    ledger: &mut Ledger,
    prefix: &str,
    serial_prefix: &str,
    count: u32,
    batch: Option<dps_station::ledger::BatchId>,
) {
    ledger
        .transaction(|w| {
            for i in 0..count {
                let device = w.upsert_device(&NewDevice {
                    model: "sensor".into(),
                    serial_number: format!("{serial_prefix}{i:05}"),
                    hardware_id: None,
                    firmware: None,
                    batch,
                })?;
                let mut id = symmetric_identity(&format!("{prefix}{i:05}"), &i.to_le_bytes());
                id.device = Some(device);
                id.batch = batch;
                w.record_issued(&id)?;
            }
            Ok(())
        })
        .unwrap();
}

fn all_pages(ledger: &Ledger, query: &BrowseQuery, page: u32) -> Vec<BrowseRow> {
    let mut out: Vec<BrowseRow> = Vec::new();
    loop {
        let rows = ledger
            .browse_page(query, out.last().map(|r| r.key()).as_ref(), page)
            .unwrap();
        let done = rows.len() < page as usize;
        out.extend(rows);
        if done {
            return out;
        }
    }
}

fn ids(rows: &[BrowseRow]) -> Vec<String> {
    rows.iter().map(|r| r.registration_id.clone()).collect()
}

fn search(text: &str) -> BrowseQuery {
    BrowseQuery {
        search: text.into(),
        ..BrowseQuery::default()
    }
}

#[test]
fn search_is_a_case_insensitive_prefix_of_registration_id_or_serial() {
    let dir = test_dir();
    let mut ledger = open(&dir.ledger);
    fill(&mut ledger, "sensor-a-", "SN-A-", 30, None);
    fill(&mut ledger, "sensor-b-", "SN-B-", 30, None);
    let reader = Ledger::open_read_only(&dir.ledger).unwrap();

    let rows = reader
        .browse_page(&search("SENSOR-B-0001"), None, 100)
        .unwrap();
    assert_eq!(rows.len(), 10, "sensor-b-00010 … 00019: {:?}", ids(&rows));
    assert!(
        rows.iter()
            .all(|r| r.registration_id.starts_with("sensor-b-0001"))
    );

    let rows = reader
        .browse_page(&search("sn-a-00007"), None, 100)
        .unwrap();
    assert_eq!(ids(&rows), ["sensor-a-00007"]);
    assert_eq!(rows[0].serial_number.as_deref(), Some("SN-A-00007"));
    assert_eq!(rows[0].model.as_deref(), Some("sensor"));
    assert_eq!(rows[0].state, IdentityState::Issued);
    assert_eq!(rows[0].mode, AttestationKind::SymmetricKey);
    assert_eq!(rows[0].operator.as_deref(), Some("ann"));

    assert!(
        reader
            .browse_page(&search("ensor"), None, 100)
            .unwrap()
            .is_empty(),
        "a prefix, not a substring"
    );
}

#[test]
fn wildcards_backslashes_and_quotes_in_a_search_are_taken_literally() {
    let dir = test_dir();
    let mut ledger = open(&dir.ledger);
    fill(&mut ledger, "dev-x", "plain-", 3, None);
    fill(&mut ledger, "dev_y", "50%'\\\"-", 2, None);
    let reader = Ledger::open_read_only(&dir.ledger).unwrap();
    // `_` would match any one character in LIKE; here it is an underscore.
    assert_eq!(
        ids(&reader.browse_page(&search("dev_"), None, 100).unwrap()),
        ["dev_y00001", "dev_y00000"]
    );
    for text in [
        "%",
        "_",
        "\\",
        "'",
        "\"",
        "'; DROP TABLE identities; --",
        "dev%",
    ] {
        assert!(
            reader
                .browse_page(&search(text), None, 100)
                .unwrap()
                .is_empty(),
            "{text:?}"
        );
        assert_eq!(
            reader.browse_count(&search(text), 1000).unwrap(),
            MatchCount::Exactly(0),
            "{text:?}"
        );
    }
    // A serial made of those characters is found by exactly them.
    let rows = reader
        .browse_page(&search("50%'\\\"-0000"), None, 100)
        .unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(
        reader.browse_count(&BrowseQuery::default(), 1000).unwrap(),
        MatchCount::Exactly(5)
    );
}

#[test]
fn pages_by_key_cover_every_row_once_newest_first_and_oldest_first() {
    let dir = test_dir();
    let mut ledger = open(&dir.ledger);
    fill(&mut ledger, "p-", "s-", 250, None);
    fill(&mut ledger, "q-", "t-", 7, None);
    let reader = Ledger::open_read_only(&dir.ledger).unwrap();
    let newest = all_pages(&reader, &BrowseQuery::default(), 40);
    assert_eq!(newest.len(), 257);
    assert_eq!(
        newest.iter().map(|r| r.id).collect::<HashSet<_>>().len(),
        257
    );
    assert_eq!(newest[0].registration_id, "q-00006", "newest first");
    assert!(
        newest
            .windows(2)
            .all(|w| (&w[0].created_at, w[0].id.0) > (&w[1].created_at, w[1].id.0))
    );
    let oldest = all_pages(
        &reader,
        &BrowseQuery {
            oldest_first: true,
            ..BrowseQuery::default()
        },
        33,
    );
    let mut reversed = oldest.clone();
    reversed.reverse();
    assert_eq!(reversed, newest);
}

#[test]
fn filters_narrow_by_state_batch_mode_and_date_range() {
    let dir = test_dir();
    let mut ledger = open(&dir.ledger);
    let b1 = batch(&mut ledger, "b1");
    let b2 = batch(&mut ledger, "b2");
    fill(&mut ledger, "one-", "s1-", 20, Some(b1));
    std::thread::sleep(std::time::Duration::from_millis(5));
    fill(&mut ledger, "two-", "s2-", 10, Some(b2));
    ledger.record_issued(&x509_identity("cert-1")).unwrap();
    ledger
        .transition(
            "one-00003",
            &Transition::Failed {
                stage: FailureStage::Write,
                reason: "no answer".into(),
            },
        )
        .unwrap();
    let reader = Ledger::open_read_only(&dir.ledger).unwrap();
    let q = |f: &dyn Fn(&mut BrowseQuery)| {
        let mut q = BrowseQuery::default();
        f(&mut q);
        ids(&all_pages(&reader, &q, 7))
    };
    assert_eq!(q(&|q| q.state = Some(IdentityState::Failed)), ["one-00003"]);
    assert_eq!(q(&|q| q.batch = Some("b2".into())).len(), 10);
    assert!(q(&|q| q.batch = Some("nope".into())).is_empty());
    assert_eq!(q(&|q| q.mode = Some(AttestationKind::X509)), ["cert-1"]);
    let second = reader
        .find_identity("two-00000")
        .unwrap()
        .unwrap()
        .created_at;
    let since = q(&|q| q.from = Some(second.clone()));
    assert_eq!(since.len(), 11, "batch b2 and the certificate: {since:?}");
    let before = q(&|q| q.until = Some(second.clone()));
    assert_eq!(before.len(), 20);
    assert_eq!(
        q(&|q| {
            q.batch = Some("b1".into());
            q.search = "ONE-0000".into();
            q.state = Some(IdentityState::Issued);
        })
        .len(),
        9,
        "one-00000 … 00009 but the failed one"
    );
}

#[test]
fn many_matches_are_walked_on_the_time_index_with_the_same_answers() {
    let dir = test_dir();
    let mut ledger = open(&dir.ledger);
    let many = SPARSE_LIMIT as u32 + 200;
    fill(&mut ledger, "bulk-", "x-", many, None);
    fill(&mut ledger, "other-", "bulk-serial-", 5, None);
    let reader = Ledger::open_read_only(&dir.ledger).unwrap();
    let dense = all_pages(&reader, &search("BULK-"), 150);
    assert_eq!(
        dense.len(),
        many as usize + 5,
        "registration IDs and serials"
    );
    assert_eq!(dense[0].registration_id, "other-00004", "newest first");
    assert_eq!(
        reader.browse_count(&search("bulk-"), 500).unwrap(),
        MatchCount::MoreThan(500)
    );
    assert_eq!(
        reader.browse_count(&search("bulk-"), 10_000).unwrap(),
        MatchCount::Exactly(u64::from(many) + 5)
    );
    let sparse = all_pages(&reader, &search("bulk-001"), 30);
    assert_eq!(sparse.len(), 100);
}
