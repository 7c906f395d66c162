//! Leases on the station (issue 18 point 4): the lease keeper and the gate on a real line (the
//! demo workspace: SoftHSM token, simulated devices on pseudo-terminals, a real SQLite ledger),
//! against a small in-test central service that signs leases and can go "offline".

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dps_station::central::link::{CentralLink, LinkError};
use dps_station::central::signing::{ServiceSigner, Signed, SignerCertificate};
use dps_station::central::station_side::lease_gate::{LeaseGate, Waiting};
use dps_station::central::station_side::lease_keeper::{KeeperConfig, KeeperError, LeaseKeeper};
use dps_station::central::wire::{
    IngestBatch, Lease, LeaseRequest, LeaseReturn, LeaseReturned, Receipt, StatusReport,
};
use dps_station::device::ClientOptions;
use dps_station::device::simulator::SimOptions;
use dps_station::ledger::leases::NewLease;
use dps_station::ledger::{Ledger, WriterIdentity};
use dps_station::station::config::Mode;
use dps_station::station::demo::{DemoWorkspace, KeyStoreChoice, RunOptions};
use dps_station::station::engine::Engine;
use dps_station::station::events::Event;
use dps_station::station::lease_gate::LeaseSetup;
use dps_station::station::source::{DeviceSource, VirtualFixture};

use crate::leases::signer_pair;

/// A stand-in for the central service: grants `grants_left` more leases of `count`, valid for
/// `ttl`, then answers as an unreachable service would; records returns.
struct MiniCentral {
    signer: ServiceSigner,
    count: u32,
    ttl: time::Duration,
    grants_left: AtomicU32,
    granted: AtomicU32,
    /// Whether returns reach the service.
    returns_open: AtomicBool,
    returns: Mutex<Vec<LeaseReturn>>,
}

impl MiniCentral {
    fn new(signer: ServiceSigner, count: u32, grants: u32) -> Arc<MiniCentral> {
        Arc::new(MiniCentral {
            signer,
            count,
            ttl: time::Duration::hours(1),
            grants_left: AtomicU32::new(grants),
            granted: AtomicU32::new(0),
            returns_open: AtomicBool::new(true),
            returns: Mutex::new(Vec::new()),
        })
    }

    fn offline() -> LinkError {
        LinkError::Unreachable {
            url: "https://central.test".into(),
            reason: "connection refused".into(),
        }
    }
}

fn rfc3339(at: time::OffsetDateTime) -> String {
    dps_station::central::service::leases::rfc3339(at)
}

impl CentralLink for MiniCentral {
    fn ingest(&self, _batch: &IngestBatch) -> Result<Signed<Receipt>, LinkError> {
        Err(Self::offline())
    }
    fn lease(&self, request: &LeaseRequest) -> Result<Signed<Lease>, LinkError> {
        if self
            .grants_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_err()
        {
            return Err(Self::offline());
        }
        let n = self.granted.fetch_add(1, Ordering::SeqCst);
        let now = time::OffsetDateTime::now_utc();
        let lease = Lease {
            lease_id: format!("L-test-{n}"),
            station_id: request.station_id.clone(),
            batch: request.batch.clone(),
            count: self.count.min(request.count),
            issued_at: rfc3339(now),
            expires_at: rfc3339(now + self.ttl),
        };
        Ok(self.signer.sign(&lease).unwrap())
    }
    fn return_lease(&self, request: &LeaseReturn) -> Result<Signed<LeaseReturned>, LinkError> {
        if !self.returns_open.load(Ordering::SeqCst) {
            return Err(Self::offline());
        }
        self.returns.lock().unwrap().push(request.clone());
        let count = self.count;
        Ok(self
            .signer
            .sign(&LeaseReturned {
                lease_id: request.lease_id.clone(),
                returned: count.saturating_sub(request.used),
                at: rfc3339(time::OffsetDateTime::now_utc()),
            })
            .unwrap())
    }
    fn status(&self) -> Result<StatusReport, LinkError> {
        Err(Self::offline())
    }
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(what: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("dps-lease-{what}-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn writer() -> WriterIdentity {
    WriterIdentity {
        station: "st-1".into(),
        operator: "op".into(),
    }
}

#[test]
fn a_lease_signed_by_another_service_is_refused_and_the_refusal_is_in_the_chain() {
    let dir = TempDir::new("signer");
    let ledger = Ledger::open(&dir.0.join("ledger.sqlite"), &writer()).unwrap();
    let book = Arc::new(Mutex::new(ledger));
    let (_ours, our_certificate) = signer_pair();
    let (theirs, _) = signer_pair();
    let gate = LeaseGate::new("B-1", Vec::new());
    let keeper = LeaseKeeper {
        link: MiniCentral::new(theirs, 10, 5),
        signer: our_certificate,
        book: book.clone(),
        gate: gate.clone(),
        config: KeeperConfig::new("st-1", 10),
    };
    let err = keeper.top_up().unwrap_err();
    assert!(matches!(err, KeeperError::Signature(_)), "{err}");
    assert!(err.to_string().contains("another service"), "{err}");
    // Nothing to spend, and the slot says why.
    assert_eq!(gate.left(), 0);
    match gate.try_acquire().unwrap_err() {
        Waiting::Refused(why) => assert!(why.contains("another service"), "{why}"),
        other => panic!("{other:?}"),
    }
    let ledger = book.lock().unwrap();
    assert!(ledger.held_leases(None).unwrap().is_empty());
    let rows = ledger.audit_for("signature").unwrap();
    assert_eq!(
        rows.len(),
        1,
        "the refusal is one row of the station's chain"
    );
    assert_eq!(rows[0].action, "central.lease_rejected");
    assert!(ledger.verify_audit_chain().unwrap().is_intact());
}

#[test]
fn the_keeper_asks_below_the_low_water_mark_and_returns_exactly_the_unused_part() {
    let dir = TempDir::new("keeper");
    let ledger = Ledger::open(&dir.0.join("ledger.sqlite"), &writer()).unwrap();
    let book = Arc::new(Mutex::new(ledger));
    let (signer, certificate) = signer_pair();
    let central = MiniCentral::new(signer, 10, 5);
    let gate = LeaseGate::new("B-1", Vec::new());
    let keeper = LeaseKeeper {
        link: central.clone(),
        signer: certificate,
        book: book.clone(),
        gate: gate.clone(),
        config: KeeperConfig::new("st-1", 10),
    };
    assert_eq!(keeper.top_up().unwrap(), Some(10));
    // 10 left, low-water 5: nothing asked.
    assert_eq!(keeper.top_up().unwrap(), None);
    for _ in 0..6 {
        let permit = gate.try_acquire().unwrap();
        gate.spent("L-test-0");
        drop(permit);
    }
    // 4 left: below the mark, the next lease comes.
    assert_eq!(keeper.top_up().unwrap(), Some(10));
    assert_eq!(gate.left(), 14);
    assert_eq!(central.granted.load(Ordering::SeqCst), 2);
    assert_eq!(
        book.lock().unwrap().held_leases(Some("B-1")).unwrap().len(),
        2
    );
    // Batch close: both go back with what the ledger says was used (nothing was recorded as
    // spent in this ledger, so both return whole).
    assert_eq!(keeper.return_unused().unwrap(), 20);
    assert!(book.lock().unwrap().held_leases(None).unwrap().is_empty());
    assert_eq!(central.returns.lock().unwrap().len(), 2);
    assert_eq!(gate.left(), 0);
}

/// Runs a batch of `devices` on one slot with leases from `central`; `on_event` may act on events
/// (bring the service back). Returns every event.
pub fn run_leased(
    ws: &DemoWorkspace,
    name: &str,
    devices: u64,
    central: Arc<dyn CentralLink>,
    certificate: SignerCertificate,
    want: u32,
    mut on_event: impl FnMut(&Event, &[Event]),
) -> (Vec<Event>, u64) {
    run_leased_as(
        ws,
        name,
        devices,
        "st-1",
        central,
        certificate,
        want,
        &mut on_event,
    )
}

/// [`run_leased`] for station `station_id`.
#[allow(clippy::too_many_arguments)]
pub fn run_leased_as(
    ws: &DemoWorkspace,
    name: &str,
    devices: u64,
    station_id: &str,
    central: Arc<dyn CentralLink>,
    certificate: SignerCertificate,
    want: u32,
    on_event: &mut dyn FnMut(&Event, &[Event]),
) -> (Vec<Event>, u64) {
    let fixture = VirtualFixture::new(devices, SimOptions::default(), ClientOptions::default());
    let sources: Vec<(String, Box<dyn DeviceSource>)> =
        vec![("S1".into(), Box::new(fixture.slot("S1")))];
    let text = ws.batch_toml(
        Mode::SymmetricIndividual,
        name,
        &RunOptions {
            devices,
            timing: "offline",
            ..RunOptions::default()
        },
    );
    let mut keeper = KeeperConfig::new(station_id, want);
    keeper.poll = Duration::from_millis(50);
    keeper.retry_max = Duration::from_millis(200);
    let leases = LeaseSetup {
        link: central,
        signer: certificate,
        keeper,
    };
    let engine =
        Engine::start_leased(ws.engine_setup(name, &text, sources).unwrap(), leases).unwrap();
    let started = Instant::now();
    let mut events = Vec::new();
    while let Ok(event) = engine.events.recv_timeout(Duration::from_secs(30)) {
        on_event(&event, &events);
        events.push(event);
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the batch did not finish"
        );
    }
    let summary = engine.join().unwrap();
    (events, summary.passed() as u64)
}

fn passed_before(events: &[Event]) -> usize {
    events
        .iter()
        .filter(|e| matches!(e, Event::Passed { .. }))
        .count()
}

#[test]
fn a_lease_used_up_offline_stops_the_line_with_its_state_and_it_resumes_when_a_lease_comes() {
    let ws = DemoWorkspace::create(KeyStoreChoice::SoftHsm).unwrap();
    let (signer, certificate) = signer_pair();
    // One lease of 2, then the service is unreachable.
    let central = MiniCentral::new(signer, 2, 1);
    let back = central.clone();
    let mut waited_after = None;
    let (events, passed) = run_leased(
        &ws,
        "used-up",
        4,
        central.clone(),
        certificate,
        2,
        |event, before| {
            // At start the slot may wait for the first lease (none is held yet): that passes by
            // itself. The wait that matters comes after the first lease is spent.
            if let Event::LeaseWaiting { waiting, .. } = event
                && waited_after.is_none()
                && passed_before(before) > 0
            {
                assert_eq!(waiting, &Waiting::UsedUp);
                waited_after = Some(passed_before(before));
                // No device is taken while it waits.
                std::thread::sleep(Duration::from_millis(500));
                // The service is back: one more lease.
                back.grants_left.store(1, Ordering::SeqCst);
            }
        },
    );
    assert_eq!(
        waited_after,
        Some(2),
        "the slot waits once the 2 of the first lease are spent"
    );
    assert_eq!(passed, 4, "it resumed by itself and finished the batch");
    let waiting_at = events
        .iter()
        .enumerate()
        .position(|(i, e)| {
            matches!(e, Event::LeaseWaiting { .. }) && passed_before(&events[..i]) == 2
        })
        .unwrap();
    // The device in the slot waits unprovisioned: only the two of the first lease had started
    // when the wait began, and the two after it were issued from the second lease (below).
    assert_eq!(
        events[..waiting_at]
            .iter()
            .filter(|e| matches!(e, Event::DeviceSeen { .. }))
            .count(),
        2,
        "a device was taken while waiting for a lease"
    );
    // Every identity names its lease, each lease spent to the unit; both returned with 2 used.
    let ledger = Ledger::open_read_only(&ws.station.ledger).unwrap();
    assert!(ledger.held_leases(None).unwrap().is_empty());
    let returns = central.returns.lock().unwrap().clone();
    assert_eq!(returns.len(), 2);
    assert!(returns.iter().all(|r| r.used == 2), "{returns:?}");
    assert_eq!(ledger.audit_for("L-test-0").unwrap().len(), 2);
    let leased: Vec<_> = (1..=4)
        .filter_map(|id| {
            ledger
                .lease_of_identity(dps_station::ledger::IdentityId(id))
                .unwrap()
        })
        .collect();
    assert_eq!(leased, ["L-test-0", "L-test-0", "L-test-1", "L-test-1"]);
    assert!(ledger.verify_audit_chain().unwrap().is_intact());
}

#[test]
fn an_expired_lease_stops_the_line_the_same_way_and_is_given_back() {
    let ws = DemoWorkspace::create(KeyStoreChoice::SoftHsm).unwrap();
    let (signer, certificate) = signer_pair();
    // The station still holds a lease from an earlier run; it expired while the station was off.
    {
        let mut ledger = Ledger::open(&ws.station.ledger, &writer()).unwrap();
        let expired = Lease {
            lease_id: "L-old".into(),
            station_id: "st-1".into(),
            batch: "expired".into(),
            count: 5,
            issued_at: "2026-01-01T00:00:00Z".into(),
            expires_at: "2026-01-02T00:00:00Z".into(),
        };
        let signed = signer.sign(&expired).unwrap();
        ledger
            .transaction(|w| {
                w.record_lease(&NewLease {
                    lease_id: expired.lease_id.clone(),
                    batch: expired.batch.clone(),
                    count: 5,
                    expires_at: expired.expires_at.clone(),
                    signed: serde_json::to_string(&signed).unwrap(),
                })
            })
            .unwrap();
    }
    // The service is unreachable at first: the expired lease cannot even go back.
    let central = MiniCentral::new(signer, 3, 0);
    central.returns_open.store(false, Ordering::SeqCst);
    let back = central.clone();
    let came = Arc::new(AtomicBool::new(false));
    let (_, passed) = run_leased(
        &ws,
        "expired",
        2,
        central.clone(),
        certificate,
        3,
        |event, before| {
            if let Event::LeaseWaiting { waiting, .. } = event
                && !came.swap(true, Ordering::SeqCst)
            {
                assert_eq!(waiting, &Waiting::Expired);
                assert_eq!(passed_before(before), 0);
                std::thread::sleep(Duration::from_millis(300));
                back.returns_open.store(true, Ordering::SeqCst);
                back.grants_left.store(1, Ordering::SeqCst);
            }
        },
    );
    assert!(came.load(Ordering::SeqCst), "the slot never said it waits");
    assert_eq!(passed, 2);
    let returns = central.returns.lock().unwrap().clone();
    // The expired lease went back unused; the new one with the 2 it issued.
    assert!(
        returns.iter().any(|r| r.lease_id == "L-old" && r.used == 0),
        "{returns:?}"
    );
    assert!(
        returns
            .iter()
            .any(|r| r.lease_id == "L-test-0" && r.used == 2),
        "{returns:?}"
    );
}
