//! Leases on the service (issue 18 point 4): the lease routes served over plain HTTP on 127.0.0.1
//! by this test, with the station's identity put where the TLS layer would put it, in front of a
//! real PostgreSQL cluster. The cap holds under 50 concurrent requests; a return gives back
//! exactly the unused part, once.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::middleware::Next;
use dps_station::central::service::leases_admin::{self, BatchPolicy};
use dps_station::central::service::state::{AuthedStation, Central};
use dps_station::central::service::{audit, db, leases, migrations};
use dps_station::central::signing::{Signed, SignerCertificate};
use dps_station::central::wire::{Lease, LeaseRequest, LeaseReturn, LeaseReturned, Refusal, paths};

pub use crate::ingest_support::signer_pair;
use crate::pg::PgCluster;

/// The header this test's stand-in for the TLS layer reads the station from.
const STATION_HEADER: &str = "x-test-station";

/// A migrated cluster with the given stations known, and a service pool of `pool_size`.
pub struct LeaseService {
    pub pg: PgCluster,
    pub central: Arc<Central>,
    pub verifier: SignerCertificate,
}

impl LeaseService {
    pub fn start(rt: &tokio::runtime::Runtime, stations: &[&str], pool_size: usize) -> Self {
        let pg = PgCluster::start();
        rt.block_on(async {
            let (mut admin, conn) = tokio_postgres::connect(&pg.admin_url(), tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(conn);
            migrations::run(&mut admin).await.unwrap();
        });
        for station in stations {
            pg.psql(
                "central",
                &format!(
                    "INSERT INTO stations (station_id, certificate_sha256, certificate_pem) VALUES ('{station}', 'sha-{station}', 'pem')"
                ),
            );
        }
        let url = pg.service_login("central_svc");
        let (signer, verifier) = signer_pair();
        let central = Arc::new(Central {
            db: db::pool(&url, pool_size).unwrap(),
            signer,
        });
        LeaseService {
            pg,
            central,
            verifier,
        }
    }

    /// Sets a batch's cap and lease size as `central batch set` does.
    pub fn set_batch(&self, rt: &tokio::runtime::Runtime, batch: &str, cap: u64, size: u32) {
        self.set_batch_ttl(rt, batch, cap, size, None);
    }

    pub fn set_batch_ttl(
        &self,
        rt: &tokio::runtime::Runtime,
        batch: &str,
        cap: u64,
        size: u32,
        ttl: Option<Duration>,
    ) {
        rt.block_on(async {
            let mut client = self.central.db.get().await.unwrap();
            let policy = BatchPolicy {
                batch: batch.into(),
                cap,
                lease_size: Some(size),
                lease_ttl: ttl,
                central_enrollment: None,
            };
            leases_admin::set_batch(&mut client, "admin", &policy)
                .await
                .unwrap();
        });
    }

    /// Serves the lease routes on 127.0.0.1 (plain HTTP); returns the base URL.
    pub fn serve(&self, rt: &tokio::runtime::Runtime) -> String {
        let router = leases::routes()
            .layer(axum::middleware::from_fn(as_station))
            .with_state(self.central.clone());
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        rt.spawn(async move { axum::serve(listener, router).await });
        format!("http://{addr}")
    }

    pub fn sql(&self, sql: &str) -> String {
        self.pg.psql("central", sql)
    }
}

/// Stands in for the mTLS layer: the station named in the header is the authenticated one.
async fn as_station(mut request: Request, next: Next) -> axum::response::Response {
    if let Some(station) = request
        .headers()
        .get(STATION_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
    {
        request.extensions_mut().insert(AuthedStation {
            certificate_sha256: format!("sha-{station}"),
            station_id: station,
        });
    }
    next.run(request).await
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap()
}

pub fn now() -> String {
    leases::rfc3339(time::OffsetDateTime::now_utc())
}

pub fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// What the service answered: a body of type `T`, or a status and refusal.
async fn post<B: serde::Serialize, T: serde::de::DeserializeOwned>(
    http: &reqwest::Client,
    url: &str,
    station: &str,
    body: &B,
) -> Result<T, (u16, Refusal)> {
    let response = http
        .post(url)
        .header(STATION_HEADER, station)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    if status == 200 {
        Ok(response.json().await.unwrap())
    } else {
        Err((status, response.json().await.unwrap()))
    }
}

fn lease_request(station: &str, batch: &str, count: u32) -> LeaseRequest {
    LeaseRequest {
        station_id: station.into(),
        station_time: now(),
        batch: batch.into(),
        count,
    }
}

#[test]
fn fifty_concurrent_lease_requests_never_allocate_more_than_the_cap() {
    let rt = runtime();
    let stations = ["st-a", "st-b", "st-c"];
    let svc = LeaseService::start(&rt, &stations, 12);
    // 50 requests of up to 5 against a cap of 100: 250 asked, 100 to give.
    svc.set_batch(&rt, "B-100", 100, 5);
    let base = svc.serve(&rt);
    let http = http();
    let answers = rt.block_on(async {
        let mut tasks = Vec::new();
        for n in 0..50 {
            let (http, url) = (http.clone(), format!("{base}{}", paths::LEASES));
            let station = stations[n % 3];
            tasks.push(tokio::spawn(async move {
                let request = lease_request(station, "B-100", 5 + (n as u32 % 4));
                post::<_, Signed<Lease>>(&http, &url, station, &request).await
            }));
        }
        let mut answers = Vec::new();
        for task in tasks {
            answers.push(task.await.unwrap());
        }
        answers
    });
    let mut granted = 0u32;
    let mut full = 0;
    for answer in &answers {
        match answer {
            Ok(signed) => {
                let lease = svc.verifier.verify(signed).unwrap();
                assert_eq!(lease.batch, "B-100");
                assert!(lease.lease_id.starts_with("L-"), "{}", lease.lease_id);
                assert!(lease.count >= 1 && lease.count <= 5, "{lease:?}");
                granted += lease.count;
            }
            Err((409, refusal)) => {
                assert_eq!(refusal.code, "batch_full");
                assert!(refusal.message.contains("B-100"), "{}", refusal.message);
                assert!(refusal.message.contains("100"), "{}", refusal.message);
                full += 1;
            }
            Err(other) => panic!("unexpected answer {other:?}"),
        }
    }
    assert_eq!(granted, 100, "the grants must add up to the cap exactly");
    assert_eq!(
        full, 30,
        "20 leases of 5 fill the cap; the other 30 are refused"
    );
    assert_eq!(
        svc.sql("SELECT allocated FROM batches WHERE batch = 'B-100'"),
        "100"
    );
    assert_eq!(svc.sql("SELECT sum(count) FROM leases"), "100");
    // Every grant and every refusal is in the service's chain, and the chain holds.
    assert_eq!(
        svc.sql(
            "SELECT count(*) FROM central_audit WHERE action IN ('lease.granted', 'lease.refused')"
        ),
        "50"
    );
    let rows = rt.block_on(async {
        let client = svc.central.db.get().await.unwrap();
        client
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
            .collect::<Vec<_>>()
    });
    let (mut position, mut prev) = (1, "0".repeat(64));
    assert_eq!(audit::check_rows(&rows, &mut position, &mut prev), None);
}

#[test]
fn a_return_gives_back_exactly_the_unused_part_once() {
    let rt = runtime();
    let svc = LeaseService::start(&rt, &["st-a", "st-b"], 4);
    svc.set_batch(&rt, "B-R", 30, 10);
    let base = svc.serve(&rt);
    let http = http();
    let leases_url = format!("{base}{}", paths::LEASES);
    let return_url = format!("{base}{}", paths::LEASE_RETURN);
    rt.block_on(async {
        let signed: Signed<Lease> = post(
            &http,
            &leases_url,
            "st-a",
            &lease_request("st-a", "B-R", 10),
        )
        .await
        .unwrap();
        let lease = svc.verifier.verify(&signed).unwrap();
        assert_eq!(lease.count, 10);
        let give_back = |station: &str, used: u32| LeaseReturn {
            station_id: station.into(),
            station_time: now(),
            lease_id: lease.lease_id.clone(),
            used,
        };

        // Another station cannot return it.
        let (status, refusal) =
            post::<_, Signed<LeaseReturned>>(&http, &return_url, "st-b", &give_back("st-b", 0))
                .await
                .unwrap_err();
        assert_eq!((status, refusal.code.as_str()), (403, "not_your_lease"));
        // Nor claim more than it holds.
        let (status, refusal) =
            post::<_, Signed<LeaseReturned>>(&http, &return_url, "st-a", &give_back("st-a", 11))
                .await
                .unwrap_err();
        assert_eq!((status, refusal.code.as_str()), (400, "bad_used"));

        let signed: Signed<LeaseReturned> = post(&http, &return_url, "st-a", &give_back("st-a", 3))
            .await
            .unwrap();
        let returned = svc.verifier.verify(&signed).unwrap();
        assert_eq!(returned.returned, 7);
        assert_eq!(svc.sql("SELECT allocated FROM batches"), "3");

        // A retry (the answer was lost) gets the same answer and gives nothing back twice.
        let signed: Signed<LeaseReturned> = post(&http, &return_url, "st-a", &give_back("st-a", 3))
            .await
            .unwrap();
        assert_eq!(svc.verifier.verify(&signed).unwrap().returned, 7);
        assert_eq!(svc.sql("SELECT allocated FROM batches"), "3");
        // A second return with another figure is refused.
        let (status, refusal) =
            post::<_, Signed<LeaseReturned>>(&http, &return_url, "st-a", &give_back("st-a", 1))
                .await
                .unwrap_err();
        assert_eq!((status, refusal.code.as_str()), (409, "already_returned"));
        assert_eq!(svc.sql("SELECT allocated FROM batches"), "3");
        assert_eq!(
            svc.sql("SELECT used FROM leases"),
            "3",
            "the first return stands"
        );

        // What came back can be leased again: 27 left, in leases of 10.
        let mut again = 0;
        loop {
            match post::<_, Signed<Lease>>(
                &http,
                &leases_url,
                "st-b",
                &lease_request("st-b", "B-R", 10),
            )
            .await
            {
                Ok(signed) => again += svc.verifier.verify(&signed).unwrap().count,
                Err((409, _)) => break,
                Err(other) => panic!("{other:?}"),
            }
            assert!(again <= 27, "more than the cap leased");
        }
        assert_eq!(again, 27);
    });
    // Every refusal is in the service's chain.
    assert_eq!(
        svc.sql("SELECT count(*) FROM central_audit WHERE action = 'lease.return_refused'"),
        "3"
    );
}

#[test]
fn unknown_batches_other_stations_names_and_bad_clocks_are_refused_with_what_to_do() {
    let rt = runtime();
    let svc = LeaseService::start(&rt, &["st-a"], 2);
    let base = svc.serve(&rt);
    let http = http();
    let url = format!("{base}{}", paths::LEASES);
    rt.block_on(async {
        let (status, refusal) =
            post::<_, Signed<Lease>>(&http, &url, "st-a", &lease_request("st-a", "NOPE", 5))
                .await
                .unwrap_err();
        assert_eq!((status, refusal.code.as_str()), (404, "unknown_batch"));
        assert!(
            refusal.message.contains("central batch set NOPE --cap"),
            "{}",
            refusal.message
        );

        let (status, refusal) =
            post::<_, Signed<Lease>>(&http, &url, "st-a", &lease_request("st-z", "NOPE", 5))
                .await
                .unwrap_err();
        assert_eq!((status, refusal.code.as_str()), (403, "station_mismatch"));

        let mut skewed = lease_request("st-a", "NOPE", 5);
        skewed.station_time = "2020-01-01T00:00:00Z".into();
        let (status, refusal) = post::<_, Signed<Lease>>(&http, &url, "st-a", &skewed)
            .await
            .unwrap_err();
        assert_eq!((status, refusal.code.as_str()), (400, "clock_skew"));
    });
}

#[test]
fn an_administrator_sets_caps_but_never_below_what_is_already_leased() {
    let rt = runtime();
    let svc = LeaseService::start(&rt, &["st-a"], 2);
    svc.set_batch_ttl(&rt, "B-A", 20, 8, Some(Duration::from_secs(3600)));
    let base = svc.serve(&rt);
    let http = http();
    rt.block_on(async {
        let _: Signed<Lease> = post(
            &http,
            &format!("{base}{}", paths::LEASES),
            "st-a",
            &lease_request("st-a", "B-A", 50),
        )
        .await
        .unwrap();
        let mut client = svc.central.db.get().await.unwrap();
        let lower = BatchPolicy {
            batch: "B-A".into(),
            cap: 5,
            lease_size: None,
            lease_ttl: None,
            central_enrollment: Some(true),
        };
        let err = leases_admin::set_batch(&mut client, "admin", &lower)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("8 identities"), "{err}");
        let raise = BatchPolicy { cap: 40, ..lower };
        let row = leases_admin::set_batch(&mut client, "admin", &raise)
            .await
            .unwrap();
        // Unset options keep what was set before.
        assert_eq!(
            (
                row.cap,
                row.allocated,
                row.lease_size,
                row.lease_ttl_seconds
            ),
            (40, 8, 8, 3600)
        );
        assert!(row.central_enrollment);
        assert_eq!((row.open_leases, row.open_count), (1, 8));
    });
}

/// Runs `dps-station` with `args`; returns (success, stdout, stderr).
fn cli(args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dps-station"))
        .args(args)
        .env_remove("DPS_CENTRAL_DATABASE")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn central_batch_set_list_and_lease_close_from_the_command_line() {
    let rt = runtime();
    let svc = LeaseService::start(&rt, &["st-a"], 2);
    let url = svc.pg.service_login("central_cli");
    let (ok, out, err) = cli(&[
        "central",
        "batch",
        "set",
        "B-CLI",
        "--cap",
        "12",
        "--lease-size",
        "5",
        "--lease-ttl",
        "2h",
        "--central-enrollment",
        "--database",
        &url,
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("B-CLI"), "{out}");
    assert_eq!(
        svc.sql("SELECT cap, lease_size, lease_ttl_seconds, central_enrollment FROM batches"),
        "12|5|7200|t"
    );
    let (ok, _, err) = cli(&[
        "central",
        "batch",
        "set",
        "B-CLI",
        "--cap",
        "1",
        "--lease-ttl",
        "soon",
        "--database",
        &url,
    ]);
    assert!(!ok);
    assert!(
        err.contains("24h"),
        "a bad duration says how to write one: {err}"
    );

    // A station takes a lease, then disappears; the administrator closes it by hand.
    let base = svc.serve(&rt);
    let signed: Signed<Lease> = rt
        .block_on(post(
            &http(),
            &format!("{base}{}", paths::LEASES),
            "st-a",
            &lease_request("st-a", "B-CLI", 5),
        ))
        .unwrap();
    let lease = svc.verifier.verify(&signed).unwrap();
    let (ok, out, err) = cli(&["central", "batch", "list", "--database", &url]);
    assert!(ok, "{err}");
    assert!(out.contains("1 (5)"), "one open lease of 5: {out}");
    let (ok, out, err) = cli(&[
        "central",
        "lease",
        "close",
        &lease.lease_id,
        "--used",
        "2",
        "--database",
        &url,
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("3 back"), "{out}");
    assert_eq!(svc.sql("SELECT allocated FROM batches"), "2");
    // Closing it again with another figure is refused, in words.
    let (ok, _, err) = cli(&[
        "central",
        "lease",
        "close",
        &lease.lease_id,
        "--used",
        "4",
        "--database",
        &url,
    ]);
    assert!(!ok);
    assert!(err.contains("already returned"), "{err}");
}
