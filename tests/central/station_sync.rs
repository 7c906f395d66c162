//! The station's sync worker against an in-process service double that keeps each station's chain
//! like the real one (continuity by `prev_hash`, idempotent re-sends, `chain_gap`) and signs its
//! receipts with a real `ServiceSigner`. Against the real service over HTTPS: `station_service.rs`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dps_station::central::link::{CentralLink, LinkError};
use dps_station::central::signing::{ServiceSigner, Signed, SignerCertificate};
use dps_station::central::station_side::sync::{Round, SyncError, SyncEvent, SyncWorker};
use dps_station::central::wire::*;
use dps_station::ledger::{IdentityState, Ledger, now};
use dps_station::station::ledger_thread::{LedgerHandle, LedgerThread};

use crate::ingest_support::signer_pair;
use crate::station_outbox::{assert_chains, provision, writer};

/// Holds one station's chain as the service would.
struct Service {
    signer: ServiceSigner,
    rows: Mutex<Vec<OutboxRow>>,
    /// Calls to fail with `Unreachable` before answering.
    unreachable: AtomicUsize,
    /// Serials to quarantine when their row arrives.
    quarantine: Vec<String>,
    /// Enrollment outcomes to report in the next receipt.
    enrollments: Mutex<Vec<EnrollmentOutcome>>,
    ingests: AtomicUsize,
}

impl Service {
    fn new(signer: ServiceSigner) -> Self {
        Service {
            signer,
            rows: Mutex::new(Vec::new()),
            unreachable: AtomicUsize::new(0),
            quarantine: Vec::new(),
            enrollments: Mutex::new(Vec::new()),
            ingests: AtomicUsize::new(0),
        }
    }
}

impl CentralLink for Service {
    fn ingest(&self, batch: &IngestBatch) -> Result<Signed<Receipt>, LinkError> {
        self.ingests.fetch_add(1, Ordering::SeqCst);
        if self
            .unreachable
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(LinkError::Unreachable {
                url: "https://central.test".into(),
                reason: "connection refused".into(),
            });
        }
        let mut held = self.rows.lock().unwrap();
        let mut stored = 0;
        let mut quarantined = Vec::new();
        for row in &batch.rows {
            let head = held.len() as i64;
            if row.seq <= head {
                assert_eq!(held[(row.seq - 1) as usize], *row, "same key, same content");
                continue;
            }
            let head_hash = held
                .last()
                .map(|r| r.hash.clone())
                .unwrap_or("0".repeat(64));
            if row.seq != head + 1 || row.prev_hash != head_hash {
                return Err(LinkError::Refused {
                    code: "chain_gap".into(),
                    message: format!(
                        "station {} sent row {} after {head}",
                        batch.station_id, row.seq
                    ),
                });
            }
            if let Some(i) = &row.identity
                && i.state == "issued"
                && self.quarantine.contains(&i.device_serial)
            {
                quarantined.push(Quarantined {
                    seq: row.seq,
                    registration_id: i.registration_id.clone(),
                    device_model: i.device_model.clone(),
                    device_serial: i.device_serial.clone(),
                    reason: format!(
                        "serial {} already provisioned on station line-9",
                        i.device_serial
                    ),
                    held_by: "line-9".into(),
                });
            }
            held.push(row.clone());
            stored += 1;
        }
        let receipt = Receipt {
            station_id: batch.station_id.clone(),
            first_seq: batch.rows[0].seq,
            last_seq: batch.rows[batch.rows.len() - 1].seq,
            head_seq: held.len() as i64,
            head_hash: held.last().unwrap().hash.clone(),
            central_position: held.len() as i64,
            stored,
            quarantined,
            enrollments: std::mem::take(&mut *self.enrollments.lock().unwrap()),
            issued_at: now(),
        };
        Ok(self.signer.sign(&receipt).unwrap())
    }
    fn lease(&self, _: &LeaseRequest) -> Result<Signed<Lease>, LinkError> {
        unreachable!("the sync worker takes no leases")
    }
    fn return_lease(&self, _: &LeaseReturn) -> Result<Signed<LeaseReturned>, LinkError> {
        unreachable!("the sync worker returns no leases")
    }
    fn status(&self) -> Result<StatusReport, LinkError> {
        Ok(StatusReport {
            service_time: now(),
            stations: vec![StationStatus {
                station_id: "line-1".into(),
                revoked: false,
                head_seq: self.rows.lock().unwrap().len() as i64,
                last_seen: None,
                lease_left: 0,
                conflicts: 0,
            }],
        })
    }
}

struct Station {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    thread: Option<LedgerThread>,
    ledger: Option<LedgerHandle>,
}

impl Station {
    fn new(devices: usize) -> Station {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.db");
        let mut ledger = Ledger::open(&path, &writer()).unwrap();
        for n in 0..devices {
            provision(&mut ledger, &format!("{:06}", n + 1));
        }
        let (thread, handle) = LedgerThread::start(ledger).unwrap();
        Station {
            _dir: dir,
            path,
            thread: Some(thread),
            ledger: Some(handle),
        }
    }

    fn worker(&self, service: &Arc<Service>, signer: SignerCertificate) -> SyncWorker {
        SyncWorker {
            station_id: "line-1".into(),
            link: service.clone(),
            signer,
            ledger: self.ledger.clone().unwrap(),
            idle_poll: Duration::from_millis(20),
            backoff_min: Duration::from_millis(5),
            backoff_max: Duration::from_millis(40),
        }
    }

    fn ledger(&self) -> &LedgerHandle {
        self.ledger.as_ref().unwrap()
    }

    /// Stops the ledger thread and opens the file read-only.
    fn close(mut self) -> (Ledger, tempfile::TempDir) {
        drop(self.ledger.take());
        drop(self.thread.take().unwrap().join());
        (Ledger::open_read_only(&self.path).unwrap(), self._dir)
    }
}

/// Rounds until idle (bounded).
fn drain(worker: &SyncWorker) -> Vec<Round> {
    let mut rounds = Vec::new();
    for _ in 0..20 {
        let round = worker.round().unwrap();
        if round == Round::Idle {
            return rounds;
        }
        rounds.push(round);
    }
    panic!("the outbox did not drain in 20 rounds: {rounds:?}");
}

#[test]
fn the_outbox_drains_and_every_row_is_covered_by_a_stored_receipt() {
    let (signer, cert) = signer_pair();
    let service = Arc::new(Service::new(signer));
    let station = Station::new(3);
    let worker = station.worker(&service, cert);
    let rounds = drain(&worker);
    // The data, then the receipt row, then a receipt covering only receipt rows: not appended.
    assert_eq!(rounds.len(), 2, "{rounds:?}");
    // A round after draining sends nothing.
    assert_eq!(worker.round().unwrap(), Round::Idle);
    let ingests = service.ingests.load(Ordering::SeqCst);
    drop(worker);
    let (ledger, _dir) = station.close();
    let status = ledger.outbox_status().unwrap();
    assert_eq!(status.depth, 0);
    let receipts = ledger.central_receipts().unwrap();
    assert_eq!(receipts.len(), 2);
    assert!(receipts[0].audit_id.is_some() && receipts[1].audit_id.is_none());
    assert_eq!(receipts[1].head_seq, status.last_seq);
    assert_eq!(ingests, 2);
    let held = service.rows.lock().unwrap();
    assert_eq!(held.len() as i64, status.last_seq, "no gap, nothing twice");
    assert_chains(&held);
    assert!(ledger.verify_audit_chain().unwrap().is_intact());
}

#[test]
fn a_receipt_from_another_service_is_refused_recorded_and_stops_the_worker() {
    let (signer, _) = signer_pair();
    let (_, other_cert) = signer_pair();
    let service = Arc::new(Service::new(signer));
    let station = Station::new(1);
    let worker = station.worker(&service, other_cert);
    assert!(matches!(worker.round(), Err(SyncError::Receipt(_))));
    let (stop_tx, stop_rx) = mpsc::channel();
    let events = Mutex::new(Vec::new());
    worker.run(stop_rx, |e| events.lock().unwrap().push(e));
    drop(stop_tx);
    let events = events.into_inner().unwrap();
    let [SyncEvent::Stopped { reason }] = events.as_slice() else {
        panic!("{events:?}")
    };
    assert!(reason.contains("signed by another service"), "{reason}");
    let (ledger, _dir) = station.close();
    let refused = ledger.audit_for("station:line-1").unwrap();
    assert!(
        refused
            .iter()
            .any(|r| r.action == "central.refused" && r.details.contains("another service")),
        "{refused:?}"
    );
    assert!(ledger.central_receipts().unwrap().is_empty());
    assert!(
        ledger.outbox_status().unwrap().depth > 0,
        "nothing was lost"
    );
}

#[test]
fn transient_failures_back_off_then_upload() {
    let (signer, cert) = signer_pair();
    let service = Arc::new(Service::new(signer));
    service.unreachable.store(3, Ordering::SeqCst);
    let station = Station::new(2);
    let worker = station.worker(&service, cert);
    let (stop_tx, stop_rx) = mpsc::channel();
    let (event_tx, event_rx) = mpsc::channel();
    let thread = std::thread::spawn(move || worker.run(stop_rx, move |e| drop(event_tx.send(e))));
    let mut unreachable = 0;
    loop {
        match event_rx.recv_timeout(Duration::from_secs(10)).unwrap() {
            SyncEvent::Unreachable { retry_in, .. } => {
                assert!(retry_in <= Duration::from_millis(50));
                unreachable += 1;
            }
            SyncEvent::Uploaded { .. } => break,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(unreachable, 3);
    // Wait until the receipt rows are acknowledged too, then stop.
    for _ in 0..200 {
        let depth = station.ledger().call(|l| l.outbox_status()).unwrap().depth;
        if depth == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(stop_tx);
    thread.join().unwrap();
    let (ledger, _dir) = station.close();
    assert_eq!(ledger.outbox_status().unwrap().depth, 0);
}

#[test]
fn quarantines_are_recorded_and_central_enrollments_reach_the_ledger() {
    let (signer, cert) = signer_pair();
    let mut service = Service::new(signer);
    service.quarantine = vec!["000002".into()];
    service.enrollments.lock().unwrap().push(EnrollmentOutcome {
        registration_id: "sensor-000001".into(),
        status: "enrolled".into(),
        etag: Some("\"e1\"".into()),
        error: None,
        at: now(),
    });
    let service = Arc::new(service);
    let station = Station::new(2);
    let worker = station.worker(&service, cert);
    let rounds = drain(&worker);
    let Round::Sent { quarantined, .. } = &rounds[0] else {
        panic!("{rounds:?}")
    };
    assert_eq!(quarantined.len(), 1);
    assert_eq!(quarantined[0].device_serial, "000002");
    drop(worker);
    let (ledger, _dir) = station.close();
    let one = ledger.find_identity("sensor-000001").unwrap().unwrap();
    assert_eq!(one.state, IdentityState::Enrolled);
    let two = ledger.audit_for("sensor-000002").unwrap();
    let q = two
        .iter()
        .find(|r| r.action == "central.quarantined")
        .unwrap();
    assert!(q.details.contains("line-9"), "{}", q.details);
    // The `enrolled` change went out too: the service holds the whole chain.
    let held = service.rows.lock().unwrap();
    assert!(held.iter().any(|r| r.action == "identity.enrolled"
        && r.identity.as_ref().map(|i| i.state.as_str()) == Some("enrolled")));
    assert_eq!(ledger.outbox_status().unwrap().depth, 0);
}

#[test]
fn a_chain_gap_resends_from_where_the_service_stands() {
    let (signer, cert) = signer_pair();
    let service = Arc::new(Service::new(signer));
    let station = Station::new(2);
    let worker = station.worker(&service, cert);
    drain(&worker);
    // The service loses its newest rows (a restored backup); the station adds rows.
    service.rows.lock().unwrap().truncate(3);
    station
        .ledger()
        .call(|l| l.append_audit("ann", "test.more", "x", &serde_json::json!({})))
        .unwrap();
    let rounds = drain(&worker);
    assert_eq!(rounds[0], Round::Resend { from_seq: 4 }, "{rounds:?}");
    drop(worker);
    let (ledger, _dir) = station.close();
    let held = service.rows.lock().unwrap();
    assert_eq!(held.len() as i64, ledger.outbox_status().unwrap().last_seq);
    assert_chains(&held);
    assert_eq!(ledger.outbox_status().unwrap().depth, 0);
}
