//! The benchmark's service and stations, as a site runs them: `central serve` on 127.0.0.1 in front
//! of the database, and stations that joined it with a one-time token, each talking over its own
//! mutual-TLS connection (`HttpsLink`) and verifying every receipt and lease it gets back.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::CentralBenchError;
use super::chain::BenchChain;
use crate::central::link::CentralLink;
use crate::central::service::ca;
use crate::central::service::leases_admin::{BatchPolicy, set_batch};
use crate::central::service::server::{ServeOptions, serve};
use crate::central::service::{migrations, tokens};
use crate::central::signing::SignerCertificate;
use crate::central::station_side::https::HttpsLink;
use crate::central::station_side::join::{self, JoinToken, KeyLocation};
use crate::central::station_side::start::signer_certificate;
use crate::central::wire::{IngestBatch, LeaseRequest};
use crate::identity::signer::CaSigner;
use crate::keystore::software::SoftwareCaKey;

/// The running service: stopped (and its connections drained) when dropped.
pub(super) struct Service {
    runtime: tokio::runtime::Runtime,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
    url: String,
    /// The CA's fingerprint, the last part of every join token.
    ca_sha256: String,
    dir: tempfile::TempDir,
}

/// One joined station.
pub(super) struct BenchStation {
    pub(super) name: String,
    link: HttpsLink,
    signer: SignerCertificate,
}

fn setup(what: &str) -> impl Fn(String) -> CentralBenchError + '_ {
    move |reason| CentralBenchError::Setup(format!("{what}: {reason}"))
}

impl Service {
    /// Migrates the database as its owner, gives the benchmark its lease batch (`lease_batch`,
    /// room for `lease_cap` one-identity leases), and starts the service on a free loopback port
    /// with a CA made in a temp dir, connecting to the database as `service_url`.
    pub(super) fn start(
        owner_url: &str,
        service_url: &str,
        pool: usize,
        lease_batch: &str,
        lease_cap: u64,
    ) -> Result<Service, CentralBenchError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("bench-central-service")
            .build()
            .map_err(|e| setup("starting the service's runtime")(e.to_string()))?;
        let dir = tempfile::Builder::new()
            .prefix("dps-bench-central-")
            .tempdir()
            .map_err(|e| setup("making the service's directory")(e.to_string()))?;
        let ca_sha256 = ca::init(dir.path(), &[], &[IpAddr::V4(Ipv4Addr::LOCALHOST)])
            .map_err(|e| setup("making the service's CA")(e.to_string()))?
            .ca_sha256;
        runtime.block_on(async {
            let (mut owner, connection) =
                tokio_postgres::connect(owner_url, tokio_postgres::NoTls).await?;
            let connection = tokio::spawn(connection);
            migrations::run(&mut owner)
                .await
                .map_err(|e| CentralBenchError::Database(e.to_string()))?;
            let policy = BatchPolicy {
                batch: lease_batch.to_string(),
                cap: lease_cap,
                lease_size: Some(1),
                lease_ttl: None,
                central_enrollment: None,
            };
            set_batch(&mut owner, "bench central", &policy)
                .await
                .map_err(|e| CentralBenchError::Database(e.to_string()))?;
            drop(owner);
            let _ = connection.await;
            Ok::<_, CentralBenchError>(())
        })?;

        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<SocketAddr>();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let options = ServeOptions {
            database: service_url.to_string(),
            dir: dir.path().to_path_buf(),
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            pool: pool.max(1),
        };
        let (failed_tx, failed_rx) = std::sync::mpsc::channel::<String>();
        let server = runtime.spawn(async move {
            let ready = move |address| {
                let _ = ready_tx.send(address);
            };
            let shutdown = async move {
                let _ = stopped.await;
            };
            if let Err(e) = serve(options, ready, shutdown).await {
                let _ = failed_tx.send(e.to_string());
            }
        });
        // Ready, or failed (a bad URL, a database that refuses the login): whichever comes first.
        let deadline = Instant::now() + Duration::from_secs(30);
        let address = loop {
            if let Ok(address) = ready_rx.recv_timeout(Duration::from_millis(50)) {
                break address;
            }
            if let Ok(reason) = failed_rx.try_recv() {
                return Err(setup("starting the central service")(reason));
            }
            if Instant::now() > deadline {
                return Err(setup("starting the central service")(
                    "it did not listen within 30 s".into(),
                ));
            }
        };
        Ok(Service {
            runtime,
            stop: Some(stop),
            server: Some(server),
            url: format!("https://{address}"),
            ca_sha256,
            dir,
        })
    }

    /// Joins `name` as a site does: a one-time token from the owner, a key made for it, `POST
    /// /v1/join` over a TLS connection pinned by the token, then a mutual-TLS link.
    pub(super) fn join(
        &self,
        owner_url: &str,
        name: &str,
    ) -> Result<BenchStation, CentralBenchError> {
        let token = self.runtime.block_on(async {
            let (mut owner, connection) =
                tokio_postgres::connect(owner_url, tokio_postgres::NoTls).await?;
            let connection = tokio::spawn(connection);
            let token = tokens::create(
                &mut owner,
                &self.ca_sha256,
                Some(name),
                Duration::from_secs(3600),
                "bench central",
            )
            .await
            .map_err(|e| CentralBenchError::Database(e.to_string()));
            drop(owner);
            let _ = connection.await;
            token
        })?;
        let token = JoinToken::parse(&token.to_text())
            .map_err(|e| setup("reading the join token")(e.to_string()))?;
        let station_dir = self.dir.path().join("stations").join(name);
        std::fs::create_dir_all(&station_dir)
            .map_err(|e| setup("making a station's directory")(e.to_string()))?;
        let key_path = station_dir.join("client-key.pem");
        let key: Arc<dyn CaSigner> = Arc::new(
            SoftwareCaKey::generate(&key_path)
                .map_err(|e| setup("making a station's key")(e.to_string()))?,
        );
        let joined = join::join(
            &self.url,
            &token,
            name,
            key.clone(),
            KeyLocation::File(key_path),
            &station_dir,
        )
        .map_err(|e| setup("joining a station")(e.to_string()))?;
        let link = HttpsLink::from_files(
            &joined.url,
            &joined.ca_certificate,
            &joined.client_certificate,
            key,
        )
        .map_err(|e| setup("opening a station's link")(e.to_string()))?;
        let signer = signer_certificate(&joined.signer_certificate)
            .map_err(|e| setup("reading the receipt signer")(e.to_string()))?;
        Ok(BenchStation {
            name: name.to_string(),
            link,
            signer,
        })
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = self
                .runtime
                .block_on(async { tokio::time::timeout(Duration::from_secs(15), server).await });
        }
    }
}

impl BenchStation {
    /// The requests that carry `rows` rows of this station's chain, `batch_rows` each, built
    /// before the clock starts: a real station reads them from its outbox, it does not make them.
    pub(super) fn batches(&self, rows: u64, batch_rows: usize) -> Vec<IngestBatch> {
        let mut chain = BenchChain::new(&self.name);
        let mut batches = Vec::new();
        let mut made = 0u64;
        while made < rows {
            let n = usize::try_from((rows - made).min(batch_rows as u64)).unwrap_or(batch_rows);
            batches.push(IngestBatch {
                station_id: self.name.clone(),
                station_time: String::new(),
                rows: (0..n).map(|_| chain.next_row()).collect(),
            });
            made += n as u64;
        }
        batches
    }

    /// Sends `batches` one at a time, as the sync worker does, verifying each receipt; returns the
    /// time of each request.
    pub(super) fn send(
        &self,
        batches: Vec<IngestBatch>,
    ) -> Result<Vec<Duration>, CentralBenchError> {
        let mut times = Vec::with_capacity(batches.len());
        for mut batch in batches {
            batch.station_time = crate::ledger::now();
            let (n, last) = (
                batch.rows.len(),
                batch.rows.last().map(|r| r.seq).unwrap_or_default(),
            );
            let started = Instant::now();
            let signed = self.link.ingest(&batch).map_err(refused(&self.name))?;
            let receipt = self
                .signer
                .verify(&signed)
                .map_err(|e| CentralBenchError::Refused(format!("{}: {e}", self.name)))?;
            times.push(started.elapsed());
            if receipt.head_seq != last || receipt.stored as usize != n {
                return Err(CentralBenchError::Refused(format!(
                    "{}: the receipt says {} rows stored up to seq {}, the station sent {n} up to {last}",
                    self.name, receipt.stored, receipt.head_seq
                )));
            }
        }
        Ok(times)
    }

    /// Asks for a one-identity lease of `batch` and verifies it; returns how long that took.
    pub(super) fn lease(&self, batch: &str) -> Result<Duration, CentralBenchError> {
        let request = LeaseRequest {
            station_id: self.name.clone(),
            station_time: crate::ledger::now(),
            batch: batch.to_string(),
            count: 1,
        };
        let started = Instant::now();
        let signed = self.link.lease(&request).map_err(refused(&self.name))?;
        let lease = self
            .signer
            .verify(&signed)
            .map_err(|e| CentralBenchError::Refused(format!("{}: {e}", self.name)))?;
        let took = started.elapsed();
        if lease.count != 1 {
            return Err(CentralBenchError::Refused(format!(
                "{}: a lease of {} identities came back for a request of 1",
                self.name, lease.count
            )));
        }
        Ok(took)
    }
}

fn refused(station: &str) -> impl Fn(crate::central::link::LinkError) -> CentralBenchError + '_ {
    move |e| CentralBenchError::Refused(format!("{station}: {e}"))
}
