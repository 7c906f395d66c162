//! Central enrollment against a real PostgreSQL and the project's DPS emulator on 127.0.0.1: two
//! service replicas (two pools, two workers) drain the same jobs and enroll every identity exactly
//! once; an unreachable DPS leaves jobs pending and they go through when it is back; what the
//! service cannot enroll is refused with its reason; the DPS connection string is in no log and no
//! table.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use clap::Parser;
use dps_station::central::service::enroll::{self, EnrollSettings};
use dps_station::central::service::enroll_args::EnrollArgs;
use dps_station::central::service::{audit, db, migrations};

use crate::enroll_support::{CountingDps, capture_logs, captured_logs, device_cert, tpm_ek};
use crate::pg::{PgCluster, wait_for};

#[derive(Parser)]
struct Serve {
    #[command(flatten)]
    enroll: EnrollArgs,
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
}

/// A migrated cluster and the service role's URL.
fn central(rt: &tokio::runtime::Runtime) -> (PgCluster, String) {
    let pg = PgCluster::start();
    rt.block_on(async {
        let mut admin = connect(&pg.admin_url()).await;
        migrations::run(&mut admin).await.unwrap();
    });
    let url = pg.service_login("enroll_svc");
    (pg, url)
}

/// What a job's identity is.
enum Kind {
    X509,
    Tpm(u8),
    Symmetric,
    NotLive,
}

/// Inserts a station (if new), its identity as ingest stores it, and the job ingest would make.
/// Returns the device certificate of an X.509 identity.
async fn add_job(
    db: &tokio_postgres::Client,
    station: &str,
    rid: &str,
    kind: Kind,
) -> Option<String> {
    db.execute(
        "INSERT INTO stations (station_id, certificate_sha256, certificate_pem)
         VALUES ($1, 'sha-' || $1, 'pem') ON CONFLICT DO NOTHING",
        &[&station],
    )
    .await
    .unwrap();
    let (attestation, pem, ek, live) = match kind {
        Kind::X509 => ("x509", Some(device_cert(rid)), None, true),
        Kind::Tpm(seed) => ("tpm", None, Some(tpm_ek(seed)), true),
        Kind::Symmetric => ("symmetric", None, None, true),
        Kind::NotLive => ("x509", Some(device_cert(rid)), None, false),
    };
    db.execute(
        "INSERT INTO identities (station_id, registration_id, device_model, device_serial, batch,
             state, attestation, certificate_pem, endorsement_key, central_enrollment, live,
             first_seq, last_seq)
         VALUES ($1, $2, 'nrf9160', $2, 'B-1', 'written', $3, $4, $5, true, $6, 1, 2)",
        &[&station, &rid, &attestation, &pem, &ek, &live],
    )
    .await
    .unwrap();
    db.execute(
        "INSERT INTO enrollment_jobs (registration_id, station_id) VALUES ($1, $2)",
        &[&rid, &station],
    )
    .await
    .unwrap();
    pem
}

/// The worker's settings made the way `central serve` makes them (from the flags and the
/// owner-only file), with test-sized waits.
fn settings(dps: &CountingDps, dir: &Path, actor: &str) -> EnrollSettings {
    let file = dir.join("dps-connection-string");
    std::fs::write(&file, dps.emulator.connection_string().expose()).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let ca = dir.join("dps-ca.pem");
    std::fs::write(&ca, dps.emulator.ca_certificate_pem().unwrap()).unwrap();
    let args = Serve::parse_from([
        "serve",
        "--dps-connection-string-file",
        file.to_str().unwrap(),
        "--dps-endpoint",
        &dps.endpoint(),
        "--dps-ca-file",
        ca.to_str().unwrap(),
        "--enroll-rate",
        "1000",
    ])
    .enroll;
    let mut s = args
        .settings()
        .unwrap()
        .expect("a connection string file was given");
    s.poll_interval = Duration::from_millis(100);
    s.retry.backoff = Duration::from_millis(200);
    s.retry.max_backoff = Duration::from_millis(800);
    s.retry.max_attempts = 1_000;
    s.dps.retry.max_attempts = 2;
    s.dps.retry.base_delay = Duration::from_millis(20);
    s.actor = actor.into();
    s
}

async fn count(db: &tokio_postgres::Client, sql: &str) -> i64 {
    db.query_one(sql, &[]).await.unwrap().get(0)
}

/// Neither the connection string nor its key is in any table or in the logs.
async fn assert_no_secret(db: &tokio_postgres::Client, dps: &CountingDps) {
    let whole = dps.emulator.connection_string().expose().to_string();
    let key = dps.emulator.primary_key().expose().to_string();
    let tables = db
        .query(
            "SELECT table_name::text FROM information_schema.tables
             WHERE table_schema = 'public' AND table_type = 'BASE TABLE'",
            &[],
        )
        .await
        .unwrap();
    assert!(tables.len() >= 10, "the schema's tables were not found");
    for t in tables {
        let table: String = t.get(0);
        let sql = format!(
            "SELECT count(*) FROM \"{table}\" t WHERE strpos(t::text, $1) > 0 OR strpos(t::text, $2) > 0"
        );
        let n: i64 = db.query_one(&sql, &[&key, &whole]).await.unwrap().get(0);
        assert_eq!(n, 0, "table {table} holds the DPS key");
    }
    let logs = captured_logs();
    assert!(
        logs.contains("central enrollment"),
        "the worker's logs were not captured"
    );
    assert!(!logs.contains(&key), "the DPS key is in the logs");
}

#[test]
fn two_replicas_enroll_every_identity_exactly_once_with_the_emulators_etag() {
    capture_logs();
    let rt = runtime();
    let (pg, service_url) = central(&rt);
    let dps = CountingDps::start();
    let dir = tempfile::tempdir().unwrap();
    let admin = rt.block_on(connect(&pg.admin_url()));
    let mut ids = Vec::new();
    rt.block_on(async {
        for n in 0..40u8 {
            let station = if n % 2 == 0 { "st-a" } else { "st-b" };
            let rid = format!("dev-{n:03}");
            let kind = if n % 10 == 3 {
                Kind::Tpm(n + 1)
            } else {
                Kind::X509
            };
            add_job(&admin, station, &rid, kind).await;
            ids.push(rid);
        }
    });

    let replica_a = enroll::spawn(
        db::pool(&service_url, 2).unwrap(),
        settings(&dps, dir.path(), "replica-a"),
    )
    .unwrap();
    let replica_b = enroll::spawn(
        db::pool(&service_url, 2).unwrap(),
        settings(&dps, dir.path(), "replica-b"),
    )
    .unwrap();
    let done = wait_for(Duration::from_secs(120), || {
        rt.block_on(count(
            &admin,
            "SELECT count(*) FROM enrollment_jobs WHERE state = 'enrolled'",
        )) == 40
    });
    replica_a.stop();
    replica_b.stop();
    assert!(done, "not every job was enrolled in time");

    // Exactly one create per identity reached DPS, and nothing else was created.
    let creates = dps.creates();
    assert_eq!(creates.len(), 40, "{creates:?}");
    for id in &ids {
        assert_eq!(creates.get(id), Some(&1), "{id} was sent {creates:?}");
    }
    // Each job holds the etag the emulator gave its enrollment, and took one attempt.
    let etags = dps.etags();
    assert_eq!(etags.len(), 40);
    rt.block_on(async {
        for row in admin
            .query(
                "SELECT registration_id, etag, attempts, error FROM enrollment_jobs",
                &[],
            )
            .await
            .unwrap()
        {
            let rid: String = row.get(0);
            let etag: Option<String> = row.get(1);
            assert!(etag.is_some(), "{rid} has no etag");
            assert_eq!(etag.as_ref(), etags.get(&rid), "{rid}");
            assert_eq!(row.get::<_, i32>(2), 1, "{rid}");
            assert_eq!(row.get::<_, Option<String>>(3), None, "{rid}");
        }
        // One audit row per enrollment, in a chain that verifies.
        assert_eq!(
            count(
                &admin,
                "SELECT count(DISTINCT subject) FROM central_audit WHERE action = 'enrollment.enrolled'"
            )
            .await,
            40
        );
        let rows: Vec<audit::AuditRow> = admin
            .query(
                "SELECT position, at, station_id, actor, action, subject, details, prev_hash, hash
                 FROM central_audit ORDER BY position",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| audit::AuditRow {
                position: r.get(0),
                at: r.get(1),
                station_id: r.get(2),
                actor: r.get(3),
                action: r.get(4),
                subject: r.get(5),
                details: r.get(6),
                prev_hash: r.get(7),
                hash: r.get(8),
            })
            .collect();
        let (mut position, mut prev) = (1, "0".repeat(64));
        assert_eq!(audit::check_rows(&rows, &mut position, &mut prev), None);

        assert_no_secret(&admin, &dps).await;
    });
}

#[test]
fn an_unreachable_dps_leaves_jobs_pending_and_they_enroll_when_it_is_back() {
    capture_logs();
    let rt = runtime();
    let (pg, service_url) = central(&rt);
    let dps = CountingDps::start();
    dps.go_down();
    let dir = tempfile::tempdir().unwrap();
    let admin = rt.block_on(connect(&pg.admin_url()));
    rt.block_on(async {
        for n in 0..5 {
            add_job(&admin, "st-1", &format!("x509-{n}"), Kind::X509).await;
        }
        add_job(&admin, "st-1", "sym-1", Kind::Symmetric).await;
        add_job(&admin, "st-1", "gone-1", Kind::NotLive).await;
    });
    let worker = enroll::spawn(
        db::pool(&service_url, 2).unwrap(),
        settings(&dps, dir.path(), "service"),
    )
    .unwrap();

    // DPS is down: the X.509 jobs are tried, stay pending and count their attempts.
    let deferred = wait_for(Duration::from_secs(60), || {
        rt.block_on(count(
            &admin,
            "SELECT count(*) FROM enrollment_jobs
             WHERE registration_id LIKE 'x509-%' AND state = 'pending' AND attempts >= 2
               AND error IS NOT NULL",
        )) == 5
    });
    assert!(deferred, "the jobs were not retried while DPS was down");
    assert!(
        dps.creates().is_empty(),
        "something reached DPS while it was down"
    );
    rt.block_on(async {
        assert!(
            count(
                &admin,
                "SELECT count(*) FROM central_audit WHERE action = 'enrollment.deferred'
                 AND details LIKE '%x509-0%' AND details LIKE '%x509-4%'"
            )
            .await
                >= 2
        );
        // What the service cannot enroll is failed at once, with the reason for the station.
        let sym = admin
            .query_one(
                "SELECT state, error FROM enrollment_jobs WHERE registration_id = 'sym-1'",
                &[],
            )
            .await
            .unwrap();
        assert_eq!(sym.get::<_, String>(0), "failed");
        let error: String = sym.get(1);
        assert!(
            error.contains("symmetric-key") && error.contains("st-1"),
            "{error}"
        );
        let gone = admin
            .query_one(
                "SELECT state, error FROM enrollment_jobs WHERE registration_id = 'gone-1'",
                &[],
            )
            .await
            .unwrap();
        assert_eq!(gone.get::<_, String>(0), "failed");
        assert!(gone.get::<_, String>(1).contains("no longer live"));
    });

    // DPS is back: every pending job goes through, once.
    dps.come_back();
    let done = wait_for(Duration::from_secs(60), || {
        rt.block_on(count(
            &admin,
            "SELECT count(*) FROM enrollment_jobs WHERE state = 'enrolled'",
        )) == 5
    });
    worker.stop();
    assert!(done, "the jobs did not enroll after DPS came back");
    let creates = dps.creates();
    assert_eq!(creates.len(), 5, "{creates:?}");
    assert!(creates.values().all(|&n| n == 1), "{creates:?}");
    assert!(!creates.contains_key("sym-1") && !creates.contains_key("gone-1"));
    rt.block_on(assert_no_secret(&admin, &dps));
}

#[test]
fn an_enrollment_dps_already_holds_is_confirmed_and_a_different_one_is_left_alone() {
    capture_logs();
    let rt = runtime();
    let (pg, service_url) = central(&rt);
    let dps = CountingDps::start();
    let dir = tempfile::tempdir().unwrap();
    let admin = rt.block_on(connect(&pg.admin_url()));
    let (same, other) = rt.block_on(async {
        let same = add_job(&admin, "st-1", "landed-1", Kind::X509)
            .await
            .unwrap();
        let other = add_job(&admin, "st-1", "taken-1", Kind::X509)
            .await
            .unwrap();
        (same, other)
    });
    // As if a replica's bulk call landed and it died before its commit ("landed-1"), and as if
    // someone enrolled "taken-1" in DPS by hand with another certificate.
    let settings = settings(&dps, dir.path(), "service");
    let direct = dps_station::dps::DpsClient::new(
        settings.connection.clone(),
        dps_station::dps::DpsClientConfig {
            endpoint: dps.emulator.https_url(),
            ..settings.dps.clone()
        },
    )
    .unwrap();
    let none = dps_station::dps::EnrollmentSettings::default();
    let payload =
        |rid: &str, pem: &str| dps_station::dps::payload::x509_individual(rid, pem, &none).unwrap();
    direct
        .create_enrollment(&payload("landed-1", &same))
        .unwrap();
    direct
        .create_enrollment(&payload("taken-1", &device_cert("taken-1")))
        .unwrap();
    let before = dps.etags();
    drop(other);

    let worker = enroll::spawn(db::pool(&service_url, 2).unwrap(), settings).unwrap();
    let done = wait_for(Duration::from_secs(60), || {
        rt.block_on(count(
            &admin,
            "SELECT count(*) FROM enrollment_jobs WHERE state <> 'pending'",
        )) == 2
    });
    worker.stop();
    assert!(done, "the jobs were not settled");
    rt.block_on(async {
        let landed = admin
            .query_one(
                "SELECT state, etag FROM enrollment_jobs WHERE registration_id = 'landed-1'",
                &[],
            )
            .await
            .unwrap();
        assert_eq!(landed.get::<_, String>(0), "enrolled");
        assert_eq!(
            landed.get::<_, Option<String>>(1).as_ref(),
            before.get("landed-1")
        );
        let taken = admin
            .query_one(
                "SELECT state, error FROM enrollment_jobs WHERE registration_id = 'taken-1'",
                &[],
            )
            .await
            .unwrap();
        assert_eq!(taken.get::<_, String>(0), "failed");
        let error: String = taken.get(1);
        assert!(error.contains("different attestation"), "{error}");
    });
    // DPS was left as it was: nothing replaced.
    assert_eq!(dps.etags(), before);
}

#[test]
fn the_worker_waits_out_a_database_outage_and_carries_on() {
    capture_logs();
    let rt = runtime();
    let (pg, service_url) = central(&rt);
    let dps = CountingDps::start();
    let dir = tempfile::tempdir().unwrap();
    let worker = enroll::spawn(
        db::pool(&service_url, 2).unwrap(),
        settings(&dps, dir.path(), "service"),
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    // The throwaway cluster runs with synchronous_commit=off: make the migrations durable
    // before killing it.
    pg.psql("central", "CHECKPOINT");
    pg.stop();
    std::thread::sleep(Duration::from_millis(800));
    pg.start_again();
    let admin = rt.block_on(connect(&pg.admin_url()));
    rt.block_on(async {
        for n in 0..3 {
            add_job(&admin, "st-1", &format!("after-{n}"), Kind::X509).await;
        }
    });
    let done = wait_for(Duration::from_secs(60), || {
        rt.block_on(count(
            &admin,
            "SELECT count(*) FROM enrollment_jobs WHERE state = 'enrolled'",
        )) == 3
    });
    worker.stop();
    assert!(
        done,
        "the worker did not resume after the database came back"
    );
    assert!(dps.creates().values().all(|&n| n == 1));
}
