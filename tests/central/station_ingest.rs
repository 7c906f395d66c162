//! The station's sync worker against the service's real ingest on a real PostgreSQL (a throwaway
//! cluster): the outbox drains with a receipt for every row; a central commit the station never
//! acknowledged (killed between the two) is re-sent and stored once; PostgreSQL stopped mid-batch
//! leaves the line working and the outbox growing, and after the restart it drains with no gap
//! and no duplicate. (Over HTTPS with the service process: after svc's `central serve` merges.)

use std::sync::Arc;
use std::time::Duration;

use dps_station::central::link::{CentralLink, LinkError};
use dps_station::central::service::ingest;
use dps_station::central::signing::{ServiceSigner, Signed};
use dps_station::central::station_side::sync::{Round, SyncError, SyncWorker};
use dps_station::central::wire::*;
use dps_station::ledger::{Ledger, now};
use dps_station::station::ledger_thread::{LedgerHandle, LedgerThread};

use crate::ingest_support::{Central, authed, runtime, signer_pair};
use crate::station_outbox::{provision, writer};

/// The service's ingest as the station's link: one connection per call, as the service's role.
struct IngestLink {
    rt: Arc<tokio::runtime::Runtime>,
    url: String,
    signer: ServiceSigner,
}

impl IngestLink {
    fn unreachable(reason: String) -> LinkError {
        LinkError::Unreachable {
            url: "postgres".into(),
            reason,
        }
    }

    async fn client(&self) -> Result<tokio_postgres::Client, LinkError> {
        let (client, connection) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
            .await
            .map_err(|e| Self::unreachable(e.to_string()))?;
        tokio::spawn(connection);
        Ok(client)
    }
}

impl CentralLink for IngestLink {
    fn ingest(&self, batch: &IngestBatch) -> Result<Signed<Receipt>, LinkError> {
        self.rt.block_on(async {
            let mut client = self.client().await?;
            ingest::ingest_and_commit(&mut client, &authed(&batch.station_id), batch, &self.signer)
                .await
                .map_err(|r| {
                    if r.status.is_server_error() {
                        Self::unreachable(r.body.message)
                    } else {
                        LinkError::Refused {
                            code: r.body.code,
                            message: r.body.message,
                        }
                    }
                })
        })
    }
    fn lease(&self, _: &LeaseRequest) -> Result<Signed<Lease>, LinkError> {
        unreachable!("the sync worker takes no leases")
    }
    fn return_lease(&self, _: &LeaseReturn) -> Result<Signed<LeaseReturned>, LinkError> {
        unreachable!("the sync worker returns no leases")
    }
    fn status(&self) -> Result<StatusReport, LinkError> {
        self.rt.block_on(async {
            let client = self.client().await?;
            let row = client
                .query_one(
                    "SELECT head_seq FROM stations WHERE station_id = 'line-1'",
                    &[],
                )
                .await
                .map_err(|e| Self::unreachable(e.to_string()))?;
            Ok(StatusReport {
                service_time: now(),
                stations: vec![StationStatus {
                    station_id: "line-1".into(),
                    revoked: false,
                    head_seq: row.get(0),
                    last_seen: None,
                    lease_left: 0,
                    conflicts: 0,
                }],
            })
        })
    }
}

struct Setup {
    central: Central,
    _dir: tempfile::TempDir,
    thread: LedgerThread,
    ledger: LedgerHandle,
    worker: SyncWorker,
}

fn setup(devices: usize) -> Setup {
    let rt = Arc::new(runtime());
    let central = Central::start(&rt, &["line-1"]);
    let (signer, verifier) = signer_pair();
    let dir = tempfile::tempdir().unwrap();
    let mut ledger = Ledger::open(&dir.path().join("ledger.db"), &writer()).unwrap();
    for n in 0..devices {
        provision(&mut ledger, &format!("{:06}", n + 1));
    }
    let (thread, handle) = LedgerThread::start(ledger).unwrap();
    let worker = SyncWorker {
        station_id: "line-1".into(),
        link: Arc::new(IngestLink {
            rt,
            url: central.service_url.clone(),
            signer,
        }),
        signer: verifier,
        ledger: handle.clone(),
        idle_poll: Duration::from_millis(10),
        backoff_min: Duration::from_millis(10),
        backoff_max: Duration::from_millis(10),
    };
    Setup {
        central,
        _dir: dir,
        thread,
        ledger: handle,
        worker,
    }
}

fn drain(worker: &SyncWorker) {
    for _ in 0..20 {
        if worker.round().unwrap() == Round::Idle {
            return;
        }
    }
    panic!("the outbox did not drain in 20 rounds");
}

/// (rows held centrally, distinct seqs, highest seq, the station row's head_seq)
fn held(central: &Central) -> String {
    central.sql(
        "SELECT count(*) || ' ' || count(DISTINCT seq) || ' ' || max(seq) || ' ' ||
                (SELECT head_seq FROM stations WHERE station_id = 'line-1')
         FROM ingested_rows WHERE station_id = 'line-1'",
    )
}

fn finish(s: Setup) -> (Ledger, Central) {
    drop(s.worker);
    drop(s.ledger);
    (s.thread.join().unwrap(), s.central)
}

#[test]
fn a_central_commit_never_acknowledged_is_resent_and_stored_once() {
    let s = setup(3);
    // The service commits a batch; the station dies before it records the receipt.
    let pending = s
        .ledger
        .call(|l| l.outbox_pending(MAX_INGEST_ROWS))
        .unwrap();
    let rows: Vec<OutboxRow> = pending
        .iter()
        .map(|e| serde_json::from_str(&e.payload).unwrap())
        .collect();
    let n = rows.len() as i64;
    s.worker
        .link
        .ingest(&IngestBatch {
            station_id: "line-1".into(),
            station_time: now(),
            rows,
        })
        .unwrap();
    assert_eq!(held(&s.central), format!("{n} {n} {n} {n}"));
    // After the restart the station sends the same rows again, and then its receipt row.
    drain(&s.worker);
    let (ledger, central) = finish(s);
    let status = ledger.outbox_status().unwrap();
    assert_eq!(status.depth, 0, "every row acknowledged");
    let last = status.last_seq;
    assert_eq!(held(&central), format!("{last} {last} {last} {last}"));
    let receipts = ledger.central_receipts().unwrap();
    assert_eq!(receipts[0].first_seq, 1);
    assert!(
        receipts
            .windows(2)
            .all(|w| w[1].first_seq == w[0].last_seq + 1),
        "receipts cover the chain without a hole: {receipts:?}"
    );
    assert_eq!(receipts.last().unwrap().last_seq, last);
    assert!(ledger.verify_audit_chain().unwrap().is_intact());
}

#[test]
fn postgresql_stopped_mid_batch_the_outbox_grows_and_drains_after_the_restart() {
    let s = setup(2);
    drain(&s.worker);
    s.central.pg.stop();
    // The line goes on: devices are recorded while the service's database is away.
    let before = s.ledger.call(|l| l.outbox_status()).unwrap().depth;
    s.ledger
        .call(|l| {
            provision(l, "000003");
            provision(l, "000004");
            Ok(())
        })
        .unwrap();
    match s.worker.round() {
        Err(SyncError::Link(e)) => assert!(e.is_transient(), "{e}"),
        other => panic!("expected a transient failure, got {other:?}"),
    }
    let during = s.ledger.call(|l| l.outbox_status()).unwrap().depth;
    assert!(during >= before + 4, "the outbox grew: {before} → {during}");
    s.central.pg.start_again();
    drain(&s.worker);
    let (ledger, central) = finish(s);
    let last = ledger.outbox_status().unwrap().last_seq;
    assert_eq!(ledger.outbox_status().unwrap().depth, 0);
    assert_eq!(held(&central), format!("{last} {last} {last} {last}"));
    let identities = central.sql("SELECT count(*) FROM identities");
    assert_eq!(identities, "4");
}
