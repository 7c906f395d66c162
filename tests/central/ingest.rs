//! Ingest against a real PostgreSQL: idempotent re-sends, tampering, gaps, reordering, the same
//! serial on two stations, enrollment outcomes carried once, a service dying mid-ingest, a
//! read-only database, and the HTTP route itself.

use axum::Extension;
use dps_station::central::service::ingest;
use dps_station::central::service::state::{Central as ServiceState, SharedCentral};
use dps_station::central::wire::{Refusal, paths};

use crate::ingest_support::{Central, Chain, authed, connect, runtime, signer_pair, snapshot};

#[test]
fn a_resent_batch_stores_nothing_twice_and_gets_a_fresh_receipt_with_the_same_head() {
    let rt = runtime();
    let central = Central::start(&rt, &["st-1"]);
    let mut chain = Chain::new("st-1");
    chain.push(
        "identity.issued",
        "reg-1",
        Some(snapshot("reg-1", "SN-1", "issued")),
    );
    chain.fill(10);
    rt.block_on(async {
        let first = central.ingest(&chain.batch(1, 6)).await.unwrap();
        assert_eq!((first.head_seq, first.stored), (6, 6));
        let second = central.ingest(&chain.batch(1, 10)).await.unwrap();
        assert_eq!((second.head_seq, second.stored), (10, 4));
        assert_eq!(second.head_hash, chain.rows[9].hash);
        assert!(second.central_position > first.central_position);

        // The station lost its acknowledgement and sends everything again.
        let replay = central.ingest(&chain.batch(1, 10)).await.unwrap();
        assert_eq!(replay.stored, 0);
        assert_eq!(
            (replay.head_seq, &replay.head_hash),
            (10, &second.head_hash)
        );
        assert_eq!(replay.central_position, second.central_position);
        assert_ne!(replay.issued_at, "");
    });
    assert_eq!(central.sql("SELECT count(*) FROM ingested_rows"), "10");
    assert_eq!(central.sql("SELECT count(*) FROM identities"), "1");
    assert_eq!(central.sql("SELECT count(*) FROM receipts"), "3");
    assert_eq!(
        central.sql("SELECT head_seq FROM stations WHERE station_id = 'st-1'"),
        "10"
    );
    assert_eq!(
        central.sql("SELECT count(*) FROM central_audit WHERE action = 'ingest.receipt'"),
        "3"
    );
}

#[test]
fn the_same_seq_with_other_content_is_refused_as_tampering_and_audited() {
    let rt = runtime();
    let central = Central::start(&rt, &["st-1"]);
    let mut chain = Chain::new("st-1");
    chain.fill(5);
    rt.block_on(async {
        central.ingest(&chain.batch(1, 5)).await.unwrap();
    });
    // The station's ledger was rewritten from row 3 on (a consistent chain of other content).
    let mut rewritten = Chain::new("st-1");
    rewritten.fill(2);
    rewritten.push("station.note", "something else", None);
    rewritten.fill(6);
    rt.block_on(async {
        let refusal = central.ingest(&rewritten.batch(1, 6)).await.unwrap_err();
        assert_eq!(refusal.status.as_u16(), 409);
        assert_eq!(refusal.body.code, "tampered");
        assert!(
            refusal.body.message.contains("st-1"),
            "{}",
            refusal.body.message
        );
        assert!(
            refusal.body.message.contains("row 3"),
            "{}",
            refusal.body.message
        );

        // Only the new row, chained to a rewritten row 5: the chain no longer continues.
        let refusal = central.ingest(&rewritten.batch(6, 6)).await.unwrap_err();
        assert_eq!(refusal.body.code, "tampered");
        assert!(
            refusal.body.message.contains("row 6"),
            "{}",
            refusal.body.message
        );
    });
    assert_eq!(central.sql("SELECT count(*) FROM ingested_rows"), "5");
    assert_eq!(
        central.sql(
            "SELECT count(*) FROM central_audit WHERE action = 'ingest.refused' AND subject = 'tampered' AND station_id = 'st-1'"
        ),
        "2"
    );
}

#[test]
fn a_gap_is_refused_naming_the_seq_to_resend_from_and_a_reordered_batch_is_refused() {
    let rt = runtime();
    let central = Central::start(&rt, &["st-1"]);
    let mut chain = Chain::new("st-1");
    chain.fill(8);
    rt.block_on(async {
        central.ingest(&chain.batch(1, 3)).await.unwrap();
        let gap = central.ingest(&chain.batch(6, 8)).await.unwrap_err();
        assert_eq!(gap.body.code, "chain_gap");
        assert!(
            gap.body.message.contains("re-send the outbox from seq 4"),
            "{}",
            gap.body.message
        );

        let mut reordered = chain.batch(4, 8);
        reordered.rows.swap(1, 2);
        let refusal = central.ingest(&reordered).await.unwrap_err();
        assert_eq!(refusal.body.code, "not_in_order");
        assert!(
            refusal.body.message.contains("st-1"),
            "{}",
            refusal.body.message
        );

        // A row whose content no longer matches its hash.
        let mut altered = chain.batch(4, 8);
        altered.rows[0].subject = "someone else".into();
        let refusal = central.ingest(&altered).await.unwrap_err();
        assert_eq!(refusal.body.code, "tampered");

        // From the right place, it goes in.
        let receipt = central.ingest(&chain.batch(4, 8)).await.unwrap();
        assert_eq!(receipt.head_seq, 8);
    });
    assert_eq!(
        central.sql("SELECT count(*) FROM central_audit WHERE action = 'ingest.refused'"),
        "3"
    );
}

#[test]
fn a_batch_for_another_station_or_from_a_skewed_clock_is_refused() {
    let rt = runtime();
    let central = Central::start(&rt, &["st-1", "st-2"]);
    let mut chain = Chain::new("st-2");
    chain.fill(2);
    rt.block_on(async {
        let mut client = connect(&central.service_url).await;
        let refusal = ingest::ingest_and_commit(
            &mut client,
            &authed("st-1"),
            &chain.batch(1, 2),
            &central.signer,
        )
        .await
        .unwrap_err();
        assert_eq!(refusal.body.code, "station_mismatch");
        assert_eq!(refusal.status.as_u16(), 403);

        let mut skewed = chain.batch(1, 2);
        skewed.station_time = "2020-01-01T00:00:00Z".into();
        let refusal = central.ingest(&skewed).await.unwrap_err();
        assert_eq!(refusal.body.code, "clock_skew");
    });
    central.sql("UPDATE stations SET revoked_at = now() WHERE station_id = 'st-2'");
    rt.block_on(async {
        let refusal = central.ingest(&chain.batch(1, 2)).await.unwrap_err();
        assert_eq!(
            (refusal.status.as_u16(), refusal.body.code.as_str()),
            (403, "revoked")
        );
        assert!(
            refusal.body.message.contains("st-2"),
            "{}",
            refusal.body.message
        );
    });
    assert_eq!(central.sql("SELECT count(*) FROM ingested_rows"), "0");
    assert_eq!(
        central.sql("SELECT string_agg(subject, ',' ORDER BY position) FROM central_audit WHERE action = 'ingest.refused'"),
        "station_mismatch,clock_skew,revoked"
    );
}

#[test]
fn two_stations_sending_the_same_serials_at_once_never_both_hold_one_live() {
    let rt = runtime();
    let central = std::sync::Arc::new(Central::start(&rt, &["st-a", "st-b"]));
    let chains: Vec<Chain> = ["st-a", "st-b"]
        .iter()
        .map(|station| {
            let mut chain = Chain::new(station);
            for n in 0..200 {
                let reg = format!("{station}-reg-{n}");
                chain.push(
                    "identity.issued",
                    &reg,
                    Some(snapshot(&reg, &format!("SN-{n}"), "issued")),
                );
            }
            chain
        })
        .collect();
    rt.block_on(async {
        let tasks: Vec<_> = chains
            .iter()
            .map(|chain| {
                let (central, batch) = (central.clone(), chain.batch(1, 200));
                tokio::spawn(async move { central.ingest(&batch).await.unwrap() })
            })
            .collect();
        let mut quarantined = 0;
        for task in tasks {
            quarantined += task.await.unwrap().quarantined.len();
        }
        assert_eq!(
            quarantined, 200,
            "each serial quarantined on exactly one station"
        );
    });
    assert_eq!(
        central.sql("SELECT count(*) FROM identities WHERE live"),
        "200"
    );
    assert_eq!(
        central.sql("SELECT count(*) FROM (SELECT device_serial FROM identities WHERE live GROUP BY device_serial HAVING count(*) > 1) d"),
        "0"
    );
}

#[test]
fn the_same_serial_on_two_stations_is_accepted_once_and_quarantined_on_the_other() {
    let rt = runtime();
    let central = Central::start(&rt, &["st-a", "st-b"]);
    let mut a = Chain::new("st-a");
    a.push(
        "identity.issued",
        "reg-a",
        Some(snapshot("reg-a", "SN-7", "issued")),
    );
    let mut b = Chain::new("st-b");
    b.push(
        "identity.issued",
        "reg-b",
        Some(snapshot("reg-b", "SN-7", "issued")),
    );
    b.push(
        "identity.issued",
        "reg-c",
        Some(snapshot("reg-c", "SN-8", "issued")),
    );
    b.push(
        "identity.written",
        "reg-b",
        Some(snapshot("reg-b", "SN-7", "written")),
    );
    rt.block_on(async {
        let first = central.ingest(&a.batch(1, 1)).await.unwrap();
        assert!(first.quarantined.is_empty());
        let second = central.ingest(&b.batch(1, 3)).await.unwrap();
        assert_eq!(
            second.stored, 3,
            "the rows are stored: the chain stays whole"
        );
        assert_eq!(second.quarantined.len(), 1, "{:?}", second.quarantined);
        let q = &second.quarantined[0];
        assert_eq!((q.seq, q.registration_id.as_str()), (1, "reg-b"));
        assert_eq!(q.held_by, "st-a");
        assert!(
            q.reason.contains("SN-7") && q.reason.contains("st-a") && q.reason.contains("st-b")
        );

        // Later rows of the quarantined identity do not bring it back, nor report it again.
        b.push(
            "identity.enrolled",
            "reg-b",
            Some(snapshot("reg-b", "SN-7", "enrolled")),
        );
        let third = central.ingest(&b.batch(4, 4)).await.unwrap();
        assert!(third.quarantined.is_empty());
    });
    assert_eq!(
        central.sql("SELECT string_agg(station_id || ':' || registration_id || ':' || live, ',' ORDER BY registration_id) FROM identities"),
        "st-a:reg-a:true,st-b:reg-b:false,st-b:reg-c:true"
    );
    assert_eq!(
        central.sql("SELECT station_id || ':' || held_by FROM quarantine"),
        "st-b:st-a"
    );
    assert_eq!(
        central.sql("SELECT station_id FROM devices WHERE device_serial = 'SN-7'"),
        "st-a"
    );
    // The same registration ID live on another station is a conflict too.
    let mut c = Chain::new("st-c");
    c.push(
        "identity.issued",
        "reg-a",
        Some(snapshot("reg-a", "SN-99", "issued")),
    );
    central.sql(
        "INSERT INTO stations (station_id, certificate_sha256, certificate_pem) VALUES ('st-c', 'sha-st-c', 'PEM')",
    );
    rt.block_on(async {
        let receipt = central.ingest(&c.batch(1, 1)).await.unwrap();
        assert_eq!(receipt.quarantined.len(), 1);
        assert!(
            receipt.quarantined[0]
                .reason
                .contains("registration ID reg-a"),
            "{}",
            receipt.quarantined[0].reason
        );
    });
    assert_eq!(
        central.sql("SELECT count(*) FROM identities WHERE registration_id = 'reg-a' AND live"),
        "1"
    );
}

#[test]
fn enrollment_outcomes_ride_in_the_next_receipt_and_again_when_that_receipt_was_lost() {
    let rt = runtime();
    let central = Central::start(&rt, &["st-1"]);
    let mut chain = Chain::new("st-1");
    let central_snapshot = |state: &str| {
        let mut s = snapshot("reg-9", "SN-9", state);
        s.central_enrollment = true;
        Some(s)
    };
    chain.push("identity.issued", "reg-9", central_snapshot("issued"));
    chain.push("identity.written", "reg-9", central_snapshot("written"));
    chain.push(
        "identity.issued",
        "reg-10",
        Some(snapshot("reg-10", "SN-10", "issued")),
    );
    chain.push(
        "identity.written",
        "reg-10",
        Some(snapshot("reg-10", "SN-10", "written")),
    );
    chain.fill(7);
    rt.block_on(async {
        let receipt = central.ingest(&chain.batch(1, 4)).await.unwrap();
        assert!(receipt.enrollments.is_empty());
    });
    assert_eq!(
        central.sql("SELECT string_agg(registration_id || ':' || state, ',') FROM enrollment_jobs"),
        "reg-9:pending",
        "only the centrally enrolled identity is queued"
    );
    // The enroll worker finishes the job.
    central.sql(
        "UPDATE enrollment_jobs SET state = 'enrolled', etag = 'etag-1', done_at = now() WHERE registration_id = 'reg-9'",
    );
    rt.block_on(async {
        let receipt = central.ingest(&chain.batch(5, 5)).await.unwrap();
        assert_eq!(receipt.enrollments.len(), 1);
        assert_eq!(receipt.enrollments[0].registration_id, "reg-9");
        assert_eq!(receipt.enrollments[0].status, "enrolled");
        assert_eq!(receipt.enrollments[0].etag.as_deref(), Some("etag-1"));
        // The station never got that receipt, so it sends from row 5 again: the outcome rides
        // again instead of being lost.
        let again = central.ingest(&chain.batch(5, 6)).await.unwrap();
        assert_eq!(again.enrollments.len(), 1, "{:?}", again.enrollments);
        assert_eq!(again.enrollments[0].registration_id, "reg-9");
        let next = central.ingest(&chain.batch(7, 7)).await.unwrap();
        assert!(
            next.enrollments.is_empty(),
            "reported once the station moved past it"
        );
        // A re-send of written does not queue it twice.
        central.ingest(&chain.batch(1, 7)).await.unwrap();
    });
    assert_eq!(central.sql("SELECT count(*) FROM enrollment_jobs"), "1");
}

#[test]
fn a_service_dying_mid_ingest_leaves_nothing_half_stored() {
    let rt = runtime();
    let central = Central::start(&rt, &["st-1"]);
    let mut chain = Chain::new("st-1");
    chain.push(
        "identity.issued",
        "reg-1",
        Some(snapshot("reg-1", "SN-1", "issued")),
    );
    chain.fill(20);
    rt.block_on(async {
        let mut client = connect(&central.service_url).await;
        let tx = client.transaction().await.unwrap();
        let facts = ingest::ingest(&tx, &authed("st-1"), &chain.batch(1, 20))
            .await
            .unwrap();
        assert_eq!(facts.stored, 20);
        // The process dies here: the connection goes away before the commit.
        drop(tx);
        drop(client);
    });
    for table in [
        "ingested_rows",
        "identities",
        "receipts",
        "devices",
        "central_audit",
    ] {
        assert_eq!(
            central.sql(&format!("SELECT count(*) FROM {table}")),
            "0",
            "{table} kept part of an uncommitted ingest"
        );
    }
    rt.block_on(async {
        let receipt = central.ingest(&chain.batch(1, 20)).await.unwrap();
        assert_eq!((receipt.stored, receipt.head_seq), (20, 20));
        assert_eq!(central.ingest(&chain.batch(1, 20)).await.unwrap().stored, 0);
    });
    assert_eq!(central.sql("SELECT count(*) FROM ingested_rows"), "20");
}

#[test]
fn a_service_dying_between_storing_and_the_receipt_answers_the_resend_with_it() {
    let rt = runtime();
    let central = Central::start(&rt, &["st-a", "st-b"]);
    let mut a = Chain::new("st-a");
    a.push(
        "identity.issued",
        "reg-a",
        Some(snapshot("reg-a", "SN-7", "issued")),
    );
    let mut b = Chain::new("st-b");
    b.push(
        "identity.issued",
        "reg-b",
        Some(snapshot("reg-b", "SN-7", "issued")),
    );
    b.fill(6);
    rt.block_on(async {
        central.ingest(&a.batch(1, 1)).await.unwrap();
        // The rows' transaction commits; the process dies before the receipt's.
        let mut client = connect(&central.service_url).await;
        let tx = client.transaction().await.unwrap();
        let facts = ingest::ingest(&tx, &authed("st-b"), &b.batch(1, 6))
            .await
            .unwrap();
        assert_eq!((facts.stored, facts.head_seq), (6, 6));
        tx.commit().await.unwrap();
    });
    let receipts = "SELECT count(*) FROM receipts WHERE station_id = 'st-b'";
    assert_eq!(central.sql(receipts), "0");
    // The station got no receipt, so it sends the same rows again: nothing is stored twice, and
    // the receipt still names the identity quarantined the first time.
    rt.block_on(async {
        let receipt = central.ingest(&b.batch(1, 6)).await.unwrap();
        assert_eq!((receipt.stored, receipt.head_seq), (0, 6));
        assert_eq!(receipt.head_hash, b.rows[5].hash);
        assert_eq!(receipt.quarantined.len(), 1, "{:?}", receipt.quarantined);
        assert_eq!(
            (
                receipt.quarantined[0].seq,
                receipt.quarantined[0].held_by.as_str()
            ),
            (1, "st-a")
        );
    });
    assert_eq!(central.sql(receipts), "1");
    assert_eq!(
        central.sql("SELECT count(*) FROM ingested_rows WHERE station_id = 'st-b'"),
        "6"
    );
}

#[test]
fn a_read_only_database_is_a_503_that_names_it() {
    let rt = runtime();
    let central = Central::start(&rt, &["st-1"]);
    let mut chain = Chain::new("st-1");
    chain.fill(3);
    // The service's database became a replica (a failover promoted late): every write is refused.
    central.sql("ALTER ROLE central_svc SET default_transaction_read_only = on");
    rt.block_on(async {
        let refusal = central.ingest(&chain.batch(1, 3)).await.unwrap_err();
        assert_eq!(refusal.status.as_u16(), 503);
        assert_eq!(refusal.body.code, "database_unavailable");
        assert!(
            refusal.body.message.contains("read-only"),
            "{}",
            refusal.body.message
        );
        assert!(
            refusal.body.message.contains("st-1"),
            "{}",
            refusal.body.message
        );
    });
    central.sql("ALTER ROLE central_svc RESET default_transaction_read_only");
    rt.block_on(async {
        assert_eq!(central.ingest(&chain.batch(1, 3)).await.unwrap().stored, 3);
    });
}

#[test]
fn the_route_answers_a_signed_receipt_and_a_refusal_body_over_http() {
    let rt = runtime();
    let central = Central::start(&rt, &["st-1"]);
    let mut chain = Chain::new("st-1");
    chain.fill(4);
    let (signer, verifier) = signer_pair();
    rt.block_on(async {
        let state: SharedCentral = std::sync::Arc::new(ServiceState {
            db: dps_station::central::service::db::pool(&central.service_url, 2).unwrap(),
            signer,
        });
        // The TLS layer (svc) injects the proven station; here it is injected directly.
        let app = ingest::routes()
            .layer(Extension(authed("st-1")))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let post = |body: String| async move {
            let (status, text) = post_json(addr, paths::INGEST, &body).await;
            (status, text)
        };

        let (status, body) = post(serde_json::to_string(&chain.batch(1, 2)).unwrap()).await;
        assert_eq!(status, 200, "{body}");
        let signed: dps_station::central::signing::Signed<dps_station::central::wire::Receipt> =
            serde_json::from_str(&body).unwrap();
        let receipt = verifier.verify(&signed).unwrap();
        assert_eq!((receipt.station_id.as_str(), receipt.head_seq), ("st-1", 2));

        let (status, body) = post(serde_json::to_string(&chain.batch(4, 4)).unwrap()).await;
        assert_eq!(status, 409, "{body}");
        let refusal: Refusal = serde_json::from_str(&body).unwrap();
        assert_eq!(refusal.code, "chain_gap");
        assert!(
            refusal.message.contains("from seq 3"),
            "{}",
            refusal.message
        );
    });
}

/// A plain HTTP/1.1 POST (the route under test has no TLS; the service's TLS layer is svc's).
async fn post_json(addr: std::net::SocketAddr, path: &str, body: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, body.to_string())
}
