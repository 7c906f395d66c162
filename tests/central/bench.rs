//! `bench central` measures what it says: every row it counts went through the real service
//! (joined stations, mutual TLS, signed receipts) into PostgreSQL, and every lease it timed was
//! granted and recorded.

use dps_station::central::bench::{self, CentralBenchOptions};

use crate::pg::PgCluster;

#[test]
fn bench_central_counts_only_what_the_service_stored_and_granted() {
    let pg = PgCluster::start();
    let url = pg.admin_url();
    let options = CentralBenchOptions {
        stations: 2,
        identities_per_station: 600,
        backlog_rows: 1500,
        batch_rows: 500,
        leases: 20,
    };
    let report = bench::measure(&url, &url, &options, &mut |_| {}).unwrap();

    assert_eq!((report.identities, report.rows), (1200, 2400));
    // 1,200 rows per station in requests of 500: 500, 500, 200.
    assert_eq!(report.ingest_request.requests, 6);
    assert_eq!(report.leases_idle.requests, 20);
    assert!(report.leases_under_ingest.requests <= 20);
    assert!(report.leases_during_backlog.requests <= 20);
    assert!(report.identities_per_second > 0.0 && report.backlog_seconds > 0.0);
    assert!(report.ingest_request.p50_ms <= report.ingest_request.p99_ms);

    let sql = |q: &str| pg.psql("central", q);
    assert_eq!(sql("SELECT count(*) FROM ingested_rows"), "3900");
    assert_eq!(sql("SELECT count(*) FROM identities"), "1950");
    // Two senders, the backlog station and the lease station, each joined with its own token.
    assert_eq!(
        sql(
            "SELECT count(*) FROM stations WHERE certificate_pem LIKE '-----BEGIN CERTIFICATE-----%'"
        ),
        "4"
    );
    assert_eq!(
        sql("SELECT count(*) FROM join_tokens WHERE used_at IS NOT NULL"),
        "4"
    );
    // 6 receipts in the ingest phase, 3 for the backlog.
    assert_eq!(sql("SELECT count(*) FROM receipts"), "9");
    let leases = report.leases_under_ingest.requests
        + report.leases_during_backlog.requests
        + report.leases_idle.requests;
    assert_eq!(sql("SELECT count(*) FROM leases"), leases.to_string());
    assert_eq!(
        sql("SELECT count(*) FROM central_audit WHERE action = 'lease.granted'"),
        leases.to_string()
    );
}
