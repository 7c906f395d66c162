//! The operator's desk on a station joined to a central ledger (issue 18): when the lease is used
//! up the slots say so in words with a triangle (grey tile, not colour alone), in English and
//! Korean, and the line resumes by itself when the next lease comes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use dps_station::central::link::{CentralLink, LinkError};
use dps_station::central::signing::{ServiceSigner, Signed, SignerCertificate};
use dps_station::central::station_side::lease_gate::Waiting;
use dps_station::central::station_side::lease_keeper::KeeperConfig;
use dps_station::central::wire::{
    IngestBatch, Lease, LeaseRequest, LeaseReturn, LeaseReturned, Receipt, StatusReport,
};
use dps_station::gui::i18n::Language;
use dps_station::station::demo_desk::{DemoDeskOptions, DemoLeases};
use dps_station::station::operator::SlotState;

use super::common::desk;

/// Grants `grants_left` leases of `count`, then is unreachable.
struct OneLeaseAtATime {
    signer: ServiceSigner,
    count: u32,
    grants_left: AtomicU32,
    granted: AtomicU32,
}

fn offline() -> LinkError {
    LinkError::Unreachable {
        url: "https://central.test".into(),
        reason: "connection refused".into(),
    }
}

fn wire_time(at: time::OffsetDateTime) -> String {
    dps_station::central::service::leases::rfc3339(at)
}

impl CentralLink for OneLeaseAtATime {
    fn ingest(&self, _: &IngestBatch) -> Result<Signed<Receipt>, LinkError> {
        Err(offline())
    }
    fn lease(&self, request: &LeaseRequest) -> Result<Signed<Lease>, LinkError> {
        self.grants_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .map_err(|_| offline())?;
        let n = self.granted.fetch_add(1, Ordering::SeqCst);
        let now = time::OffsetDateTime::now_utc();
        Ok(self
            .signer
            .sign(&Lease {
                lease_id: format!("L-gui-{n}"),
                station_id: request.station_id.clone(),
                batch: request.batch.clone(),
                count: self.count,
                issued_at: wire_time(now),
                expires_at: wire_time(now + time::Duration::hours(1)),
            })
            .unwrap())
    }
    fn return_lease(&self, r: &LeaseReturn) -> Result<Signed<LeaseReturned>, LinkError> {
        Ok(self
            .signer
            .sign(&LeaseReturned {
                lease_id: r.lease_id.clone(),
                returned: self.count - r.used,
                at: wire_time(time::OffsetDateTime::now_utc()),
            })
            .unwrap())
    }
    fn status(&self) -> Result<StatusReport, LinkError> {
        Err(offline())
    }
}

fn leased_desk(language: Language) -> (super::common::TestDesk, Arc<OneLeaseAtATime>) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let cert = rcgen::CertificateParams::new(vec!["central signer".into()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let central = Arc::new(OneLeaseAtATime {
        signer: ServiceSigner::from_pkcs8_pem(&key.serialize_pem(), cert.der()).unwrap(),
        count: 2,
        grants_left: AtomicU32::new(1),
        granted: AtomicU32::new(0),
    });
    let mut keeper = KeeperConfig::new("demo-station", 2);
    keeper.poll = Duration::from_millis(50);
    keeper.retry_max = Duration::from_millis(200);
    let options = DemoDeskOptions {
        slots: 2,
        devices: 4,
        pace: Duration::ZERO,
        leases: Some(DemoLeases {
            link: central.clone(),
            signer: SignerCertificate::from_der(cert.der()).unwrap(),
            keeper,
        }),
        ..DemoDeskOptions::default()
    };
    (desk(options, Some(language)), central)
}

fn all_wait_for_a_lease(d: &super::common::TestDesk) -> bool {
    let view = d.harness.state().view();
    view.passed == 2
        && view
            .slots
            .iter()
            .all(|s| matches!(s.state, SlotState::LeaseWaiting(Waiting::UsedUp)))
}

#[test]
fn a_used_up_lease_shows_the_waiting_state_and_the_line_resumes_by_itself() {
    let (mut d, central) = leased_desk(Language::En);
    d.sign_in("ann");
    d.start_batch("demo-x509-csr");
    d.wait_until(
        "both slots to wait for a lease after 2 passes",
        Duration::from_secs(60),
        |a| {
            a.view().passed == 2
                && a.view()
                    .slots
                    .iter()
                    .all(|s| matches!(s.state, SlotState::LeaseWaiting(Waiting::UsedUp)))
        },
    );
    d.steps(3);
    assert!(all_wait_for_a_lease(&d));
    assert_eq!(
        d.count("Waiting for the central ledger: lease used up"),
        2,
        "each tile says why it waits"
    );
    // The tile draws its triangle mark beside the word: words and shape, not colour alone.
    assert!(d.shows("S1 WAITING FOR CENTRAL"));
    if let Ok(path) = std::env::var("DPS_STATION_LEASE_PNG") {
        d.harness.render().unwrap().save(path).unwrap();
    }
    // Nothing more is taken while it waits.
    std::thread::sleep(Duration::from_millis(300));
    d.steps(5);
    assert_eq!(d.harness.state().view().passed, 2);

    // The service is back: the next lease comes and the line finishes on its own.
    central.grants_left.store(1, Ordering::SeqCst);
    d.wait_until("the batch to finish", Duration::from_secs(60), |a| {
        a.view().passed == 4 && !a.view().running
    });
    assert!(!d.shows("Waiting for the central ledger"));
}

#[test]
fn the_waiting_state_reads_in_korean() {
    let (mut d, _central) = leased_desk(Language::Ko);
    d.sign_in("민수");
    d.click("배치 시작 (F2)");
    d.steps(10);
    d.click("demo-x509-csr");
    d.click("이 배치 시작");
    d.wait_until(
        "the slots to wait for a lease",
        Duration::from_secs(60),
        |a| {
            a.view().passed == 2
                && a.view()
                    .slots
                    .iter()
                    .all(|s| matches!(s.state, SlotState::LeaseWaiting(_)))
        },
    );
    d.steps(3);
    assert!(d.shows("중앙 원장을 기다리는 중: 리스를 모두 사용했습니다"));
    assert!(d.shows("중앙 원장 대기"));
}
