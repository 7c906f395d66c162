//! Leases against the real service (`dps-station central serve` as a process, mutual TLS, a
//! station joined with a one-time token): a station's line runs a batch capped by `central batch
//! set` on leases, and gives back what it did not use.

use std::sync::Arc;

use dps_station::central::link::{CentralLink, LinkError};
use dps_station::central::signing::{Signed, SignerCertificate};
use dps_station::central::station_side::lease_gate::{LeaseGate, Waiting};
use dps_station::central::station_side::lease_keeper::{KeeperConfig, KeeperError, LeaseKeeper};
use dps_station::central::wire::{
    IngestBatch, Lease, LeaseRequest, LeaseReturn, LeaseReturned, Receipt, Refusal, StatusReport,
    paths,
};
use dps_station::station::demo::{DemoWorkspace, KeyStoreChoice};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;

use crate::pg::PgCluster;
use crate::service::{CentralService, JoinedStation, https_client};

/// The station's calls over HTTPS with its client certificate (what the station side's link does).
struct HttpsLink {
    url: String,
    http: reqwest::blocking::Client,
}

impl HttpsLink {
    fn new(service: &CentralService, station: &JoinedStation) -> HttpsLink {
        HttpsLink {
            url: service.url(),
            http: https_client(&service.ca_pem(), Some(station)),
        }
    }

    fn post<B: serde::Serialize, T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, LinkError> {
        let url = format!("{}{path}", self.url);
        let response =
            self.http
                .post(&url)
                .json(body)
                .send()
                .map_err(|e| LinkError::Unreachable {
                    url: url.clone(),
                    reason: e.to_string(),
                })?;
        if response.status().is_success() {
            return response.json().map_err(|e| LinkError::BadAnswer {
                reason: e.to_string(),
            });
        }
        let status = response.status();
        let refusal: Refusal = response.json().map_err(|e| LinkError::BadAnswer {
            reason: e.to_string(),
        })?;
        if status.is_server_error() {
            return Err(LinkError::Unreachable {
                url,
                reason: refusal.message,
            });
        }
        Err(LinkError::Refused {
            code: refusal.code,
            message: refusal.message,
        })
    }
}

impl CentralLink for HttpsLink {
    fn ingest(&self, batch: &IngestBatch) -> Result<Signed<Receipt>, LinkError> {
        self.post(paths::INGEST, batch)
    }
    fn lease(&self, request: &LeaseRequest) -> Result<Signed<Lease>, LinkError> {
        self.post(paths::LEASES, request)
    }
    fn return_lease(&self, request: &LeaseReturn) -> Result<Signed<LeaseReturned>, LinkError> {
        self.post(paths::LEASE_RETURN, request)
    }
    fn status(&self) -> Result<StatusReport, LinkError> {
        Err(LinkError::BadAnswer {
            reason: "not used here".into(),
        })
    }
}

fn signer_of(station: &JoinedStation) -> SignerCertificate {
    let der =
        CertificateDer::from_pem_slice(station.response.signer_certificate_pem.as_bytes()).unwrap();
    SignerCertificate::from_der(&der).unwrap()
}

#[test]
fn a_line_runs_a_capped_batch_on_leases_from_the_real_service_and_returns_the_rest() {
    let pg = PgCluster::start();
    let service = CentralService::start(&pg);
    let out = service.central(&["batch", "set", "leased", "--cap", "3", "--lease-size", "2"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let station = service.join("st-line");
    let link: Arc<dyn CentralLink> = Arc::new(HttpsLink::new(&service, &station));

    let ws = DemoWorkspace::create(KeyStoreChoice::SoftHsm).unwrap();
    let (events, passed) = crate::lease_station::run_leased_as(
        &ws,
        "leased",
        3,
        "st-line",
        link.clone(),
        signer_of(&station),
        2,
        &mut |_, _| {},
    );
    assert_eq!(passed, 3, "{events:?}");
    // Two leases (2, then the 1 the cap left), both spent and returned with nothing left over.
    assert_eq!(
        pg.psql(
            "central",
            "SELECT count(*), sum(count), sum(used) FROM leases WHERE returned_at IS NOT NULL"
        ),
        "2|3|3"
    );
    assert_eq!(pg.psql("central", "SELECT allocated FROM batches"), "3");

    // The cap is reached: a second station is refused, says so in its chain, and its slots wait
    // with the service's words.
    let other = service.join("st-other");
    let dir = std::env::temp_dir().join(format!("dps-lease-full-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let ledger = dps_station::ledger::Ledger::open(
        &dir.join("ledger.sqlite"),
        &dps_station::ledger::WriterIdentity {
            station: "st-other".into(),
            operator: "op".into(),
        },
    )
    .unwrap();
    let book = Arc::new(std::sync::Mutex::new(ledger));
    let gate = LeaseGate::new("leased", Vec::new());
    let keeper = LeaseKeeper {
        link: Arc::new(HttpsLink::new(&service, &other)),
        signer: signer_of(&other),
        book: book.clone(),
        gate: gate.clone(),
        config: KeeperConfig::new("st-other", 2),
    };
    let err = keeper.top_up().unwrap_err();
    assert!(
        matches!(&err, KeeperError::Link(LinkError::Refused { code, .. }) if code == "batch_full"),
        "{err}"
    );
    match gate.try_acquire().unwrap_err() {
        Waiting::Refused(why) => assert!(why.contains("batch leased is full"), "{why}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        book.lock().unwrap().audit_for("batch_full").unwrap().len(),
        1,
        "the refusal is in the station's chain too"
    );
    assert_eq!(
        pg.psql(
            "central",
            "SELECT count(*) FROM central_audit WHERE action = 'lease.refused' AND station_id = 'st-other'"
        ),
        "1"
    );
    drop(book);
    let _ = std::fs::remove_dir_all(&dir);
}
