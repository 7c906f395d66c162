//! What the ingest and verify tests share: a migrated throwaway cluster with joined stations, a
//! signer, and station chains built with the station's own hash (`ledger::audit::row_hash`).

#![allow(dead_code)]

use dps_station::central::service::state::{ApiRefusal, AuthedStation};
use dps_station::central::service::{ingest, migrations};
use dps_station::central::signing::{ServiceSigner, Signed, SignerCertificate};
use dps_station::central::wire::{IdentitySnapshot, IngestBatch, OutboxRow, Receipt};
use dps_station::ledger::audit::{AuditContent, GENESIS, row_hash};

use crate::pg::PgCluster;

/// A multi-threaded runtime (the connections run as tasks beside the test's own code).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
}

/// A cluster with the schema migrated, stations joined (rows in `stations`), and the service's
/// login URL.
pub struct Central {
    pub pg: PgCluster,
    pub service_url: String,
    pub signer: ServiceSigner,
    pub verifier: SignerCertificate,
}

impl Central {
    pub fn start(rt: &tokio::runtime::Runtime, stations: &[&str]) -> Central {
        let pg = PgCluster::start();
        rt.block_on(async {
            let mut admin = connect(&pg.admin_url()).await;
            migrations::run(&mut admin).await.unwrap();
        });
        for station in stations {
            pg.psql(
                "central",
                &format!(
                    "INSERT INTO stations (station_id, certificate_sha256, certificate_pem) VALUES ('{station}', 'sha-{station}', 'PEM')"
                ),
            );
        }
        let service_url = pg.service_login("central_svc");
        let (signer, verifier) = signer_pair();
        Central {
            pg,
            service_url,
            signer,
            verifier,
        }
    }

    /// One ingest over a fresh connection as the service's role, committed or refused.
    pub async fn ingest(&self, batch: &IngestBatch) -> Result<Receipt, ApiRefusal> {
        let mut client = connect(&self.service_url).await;
        let signed =
            ingest::ingest_and_commit(&mut client, &authed(&batch.station_id), batch, &self.signer)
                .await?;
        Ok(self.verify(&signed))
    }

    pub fn verify(&self, signed: &Signed<Receipt>) -> Receipt {
        self.verifier.verify(signed).unwrap()
    }

    /// A one-value query as the superuser, as text.
    pub fn sql(&self, sql: &str) -> String {
        self.pg.psql("central", sql)
    }
}

pub fn authed(station: &str) -> AuthedStation {
    AuthedStation {
        station_id: station.to_string(),
        certificate_sha256: format!("sha-{station}"),
    }
}

/// A P-256 signing key with a self-signed certificate, and the stations' verifier for it.
pub fn signer_pair() -> (ServiceSigner, SignerCertificate) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let cert = rcgen::CertificateParams::new(vec!["central signer".into()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    (
        ServiceSigner::from_pkcs8_pem(&key.serialize_pem(), cert.der()).unwrap(),
        SignerCertificate::from_der(cert.der()).unwrap(),
    )
}

/// A station's audit chain, row by row, hashed exactly as the station's ledger hashes it.
pub struct Chain {
    pub station: String,
    pub rows: Vec<OutboxRow>,
    prev: [u8; 32],
}

impl Chain {
    pub fn new(station: &str) -> Chain {
        Chain {
            station: station.to_string(),
            rows: Vec::new(),
            prev: GENESIS,
        }
    }

    /// Appends a row; returns its seq.
    pub fn push(&mut self, action: &str, subject: &str, identity: Option<IdentitySnapshot>) -> i64 {
        let seq = self.rows.len() as i64 + 1;
        let at = "2026-12-03T10:00:00.000Z";
        let details = format!("{{\"n\":{seq}}}");
        let hash = row_hash(
            &self.prev,
            seq,
            &AuditContent {
                at,
                station: &self.station,
                actor: "operator",
                action,
                subject,
                details: &details,
            },
        );
        self.rows.push(OutboxRow {
            seq,
            prev_hash: hex::encode(self.prev),
            hash: hex::encode(hash),
            at: at.into(),
            station: self.station.clone(),
            actor: "operator".into(),
            action: action.into(),
            subject: subject.into(),
            details,
            identity,
        });
        self.prev = hash;
        seq
    }

    /// Plain rows (no identity) up to `n` rows in all.
    pub fn fill(&mut self, n: i64) {
        while (self.rows.len() as i64) < n {
            self.push("station.note", "line", None);
        }
    }

    /// Rows `from..=to` (seq) as a batch sent now.
    pub fn batch(&self, from: i64, to: i64) -> IngestBatch {
        IngestBatch {
            station_id: self.station.clone(),
            station_time: dps_station::ledger::now(),
            rows: self.rows[(from - 1) as usize..to as usize].to_vec(),
        }
    }
}

/// An identity snapshot as a station sends it.
pub fn snapshot(registration_id: &str, serial: &str, state: &str) -> IdentitySnapshot {
    IdentitySnapshot {
        registration_id: registration_id.into(),
        device_model: "nrf9160-dk".into(),
        device_serial: serial.into(),
        batch: "b-1".into(),
        state: state.into(),
        attestation: "x509".into(),
        certificate_pem: Some(
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".into(),
        ),
        endorsement_key: None,
        lease_id: None,
        central_enrollment: false,
    }
}
