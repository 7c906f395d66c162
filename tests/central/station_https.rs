//! Join and the HTTPS link over real TLS on 127.0.0.1: a small blocking HTTPS server (rustls,
//! client certificates checked against its CA) stands in for the service until the real one is
//! merged. It checks what the station relies on: the CA is pinned by the token's SHA-256, the
//! CSR is signed by the station's own key, `[central]` is written keeping comments, and the
//! station then authenticates with its certificate and key and uploads its outbox.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use dps_station::central::signing::ServiceSigner;
use dps_station::central::station_side::join::{
    JoinError, JoinToken, KeyLocation, join, write_central_section,
};
use dps_station::central::station_side::start::{open_link, signer_certificate};
use dps_station::central::station_side::sync::{Round, SyncWorker};
use dps_station::central::wire::*;
use dps_station::identity::signer::CaSigner;
use dps_station::keystore::software::SoftwareCaKey;
use dps_station::ledger::Ledger;
use dps_station::station::config::central::{CentralSection, CentralSettings, EnrollmentSite};
use dps_station::station::ledger_thread::LedgerThread;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use sha2::{Digest, Sha256};

use crate::station_outbox::{provision, writer};

struct Service {
    url: String,
    ca_sha256: String,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Service {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop.
        let _ = std::net::TcpStream::connect(self.url.trim_start_matches("https://"));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn ca() -> (rcgen::Issuer<'static, rcgen::KeyPair>, rcgen::Certificate) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "central test CA");
    let cert = params.self_signed(&key).unwrap();
    (rcgen::Issuer::new(params, key), cert)
}

fn leaf(
    names: Vec<String>,
    issuer: &rcgen::Issuer<'_, rcgen::KeyPair>,
) -> (rcgen::KeyPair, rcgen::Certificate) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let cert = rcgen::CertificateParams::new(names)
        .unwrap()
        .signed_by(&key, issuer)
        .unwrap();
    (key, cert)
}

/// Starts the stand-in service; `expected_token` is the whole token it accepts once.
fn serve(expected_secret: &'static str) -> Service {
    let (issuer, ca_cert) = ca();
    let (server_key, server_cert) = leaf(vec!["127.0.0.1".into()], &issuer);
    let (signer_key, signer_cert) = leaf(vec!["receipt signer".into()], &issuer);
    let signer =
        ServiceSigner::from_pkcs8_pem(&signer_key.serialize_pem(), signer_cert.der()).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca_cert.der().clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .allow_unauthenticated()
    .build()
    .unwrap();
    let config = Arc::new(
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                vec![server_cert.der().clone(), ca_cert.der().clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der())),
            )
            .unwrap(),
    );
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let ca_pem = ca_cert.pem();
    let signer_pem = signer_cert.pem();
    let ca_sha256 = hex::encode(Sha256::digest(ca_cert.der()));
    let thread = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut held: Vec<OutboxRow> = Vec::new();
            let mut token_used = false;
            // Bounded: a test makes a handful of requests.
            for stream in listener.incoming().take(50) {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(tcp) = stream else { continue };
                tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                let conn = rustls::ServerConnection::new(config.clone()).unwrap();
                let mut tls = rustls::StreamOwned::new(conn, tcp);
                let Some((method, path, body)) = read_request(&mut tls) else {
                    continue;
                };
                let peer_cn = tls
                    .conn
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .map(|c| {
                        let (_, cert) = x509_parser::parse_x509_certificate(c.as_ref()).unwrap();
                        cert.subject()
                            .iter_common_name()
                            .next()
                            .and_then(|cn| cn.as_str().ok())
                            .unwrap_or_default()
                            .to_string()
                    });
                let (status, answer) = match (method.as_str(), path.as_str(), peer_cn) {
                    ("POST", paths::JOIN, _) => {
                        let req: JoinRequest = serde_json::from_slice(&body).unwrap();
                        let secret = req.token.split('.').nth(2).unwrap_or_default();
                        if token_used || secret != expected_secret {
                            refusal(403, "bad_token", "the token is unknown or used")
                        } else {
                            token_used = true;
                            let csr =
                                rcgen::CertificateSigningRequestParams::from_pem(&req.csr_pem)
                                    .unwrap();
                            let cert = csr.signed_by(&issuer).unwrap();
                            (
                                200,
                                serde_json::to_string(&JoinResponse {
                                    station_id: req.station_id,
                                    client_certificate_pem: cert.pem(),
                                    ca_certificate_pem: ca_pem.clone(),
                                    signer_certificate_pem: signer_pem.clone(),
                                })
                                .unwrap(),
                            )
                        }
                    }
                    (_, _, None) => refusal(
                        401,
                        "no_certificate",
                        "present the station's client certificate",
                    ),
                    ("POST", paths::INGEST, Some(cn)) => {
                        let batch: IngestBatch = serde_json::from_slice(&body).unwrap();
                        assert_eq!(
                            batch.station_id, cn,
                            "the body names the certificate's station"
                        );
                        let mut stored = 0;
                        for row in &batch.rows {
                            if row.seq as usize == held.len() + 1 {
                                held.push(row.clone());
                                stored += 1;
                            }
                        }
                        let receipt = Receipt {
                            station_id: cn,
                            first_seq: batch.rows[0].seq,
                            last_seq: batch.rows.last().unwrap().seq,
                            head_seq: held.len() as i64,
                            head_hash: held.last().unwrap().hash.clone(),
                            central_position: held.len() as i64,
                            stored,
                            quarantined: vec![],
                            enrollments: vec![],
                            issued_at: dps_station::ledger::now(),
                        };
                        (
                            200,
                            serde_json::to_string(&signer.sign(&receipt).unwrap()).unwrap(),
                        )
                    }
                    ("GET", paths::STATUS, Some(cn)) => (
                        200,
                        serde_json::to_string(&StatusReport {
                            service_time: dps_station::ledger::now(),
                            stations: vec![StationStatus {
                                station_id: cn,
                                revoked: false,
                                head_seq: held.len() as i64,
                                last_seen: None,
                                lease_left: 0,
                                conflicts: 0,
                            }],
                        })
                        .unwrap(),
                    ),
                    _ => refusal(404, "not_found", "no such path"),
                };
                let _ = write!(
                    tls,
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                    answer.len()
                );
                let _ = tls.flush();
                tls.conn.send_close_notify();
                let _ = tls.flush();
            }
        })
    };
    Service {
        url,
        ca_sha256,
        stop,
        thread: Some(thread),
    }
}

fn refusal(status: u16, code: &str, message: &str) -> (u16, String) {
    (
        status,
        serde_json::to_string(&Refusal {
            code: code.into(),
            message: message.into(),
        })
        .unwrap(),
    )
}

fn read_request(stream: &mut impl Read) -> Option<(String, String, Vec<u8>)> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next()?.to_string(), parts.next()?.to_string());
    let mut length = 0;
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).ok()?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().ok()?;
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some((method, path, body))
}

const STATION_TOML: &str = "# the line's station\nname = \"line-1\"  # keep this comment\n";

fn join_with(service: &Service, sha: &str, secret: &str, dir: &Path) -> Result<(), JoinError> {
    let key_path = dir.join("client-key.pem");
    let key: Arc<dyn CaSigner> = Arc::new(if key_path.exists() {
        SoftwareCaKey::load(&key_path).unwrap()
    } else {
        SoftwareCaKey::generate(&key_path).unwrap()
    });
    let token = JoinToken::parse(&format!("dpsc1.t1.{secret}.{sha}")).unwrap();
    let joined = join(
        &service.url,
        &token,
        "line-1",
        key,
        KeyLocation::File(key_path),
        &dir.join("central"),
    )?;
    write_central_section(&dir.join("station.toml"), &joined, EnrollmentSite::Central)
}

#[test]
fn a_station_joins_pinning_the_ca_then_uploads_over_mutual_tls() {
    let service = serve("s3cret");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("station.toml"), STATION_TOML).unwrap();

    // A token naming another CA: the station refuses the server before sending anything.
    let wrong = join_with(&service, &"00".repeat(32), "s3cret", dir.path()).unwrap_err();
    assert!(
        wrong
            .to_string()
            .contains("did not present the CA certificate the join token names"),
        "{wrong}"
    );
    join_with(&service, &service.ca_sha256, "s3cret", dir.path()).unwrap();

    let text = std::fs::read_to_string(dir.path().join("station.toml")).unwrap();
    assert!(text.starts_with(STATION_TOML), "comments kept:\n{text}");
    assert!(!text.contains("s3cret"), "the token's secret is not stored");
    let doc: toml::Table = text.parse().unwrap();
    let section: CentralSection = doc["central"].clone().try_into().unwrap();
    let settings = CentralSettings::resolve(&section, "line-1", dir.path()).unwrap();
    assert_eq!(settings.url, service.url);
    assert_eq!(settings.enrollment, EnrollmentSite::Central);

    // The token was used once: joining again is refused by the service, with its words.
    let again = join_with(&service, &service.ca_sha256, "s3cret", dir.path()).unwrap_err();
    assert!(
        again.to_string().contains("the token is unknown or used"),
        "{again}"
    );

    // The station's outbox goes up over mutual TLS and the receipts verify.
    let ledger_path = dir.path().join("ledger.db");
    let mut ledger = Ledger::open(&ledger_path, &writer()).unwrap();
    provision(&mut ledger, "000001");
    let (thread, handle) = LedgerThread::start(ledger).unwrap();
    let worker = SyncWorker {
        station_id: settings.station_id.clone(),
        link: Arc::new(open_link(&settings, None).unwrap()),
        signer: signer_certificate(&settings.signer_certificate).unwrap(),
        ledger: handle.clone(),
        idle_poll: Duration::from_millis(10),
        backoff_min: Duration::from_millis(10),
        backoff_max: Duration::from_millis(10),
    };
    let mut rounds = 0;
    while worker.round().unwrap() != Round::Idle {
        rounds += 1;
        assert!(rounds < 10);
    }
    assert_eq!(rounds, 2);
    let status = worker.link.status().unwrap();
    drop(worker);
    drop(handle);
    let ledger = thread.join().unwrap();
    let outbox = ledger.outbox_status().unwrap();
    assert_eq!(outbox.depth, 0);
    assert_eq!(status.stations[0].station_id, "line-1");
    assert_eq!(status.stations[0].head_seq, outbox.last_seq);
}
