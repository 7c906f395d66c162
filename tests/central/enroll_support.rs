//! What the central enrollment tests share: the project's DPS emulator behind a counting proxy on
//! 127.0.0.1 (it counts every registration ID a bulk *create* names, so "enrolled exactly once"
//! is measured at the wire, and it can be taken down and brought back on the same port to play an
//! unreachable DPS), jobs inserted straight into PostgreSQL, and a log capture.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use dps_station::dps::TlsTrust;
use dps_station::emulator::{Emulator, EmulatorConfig, RunningEmulator};
use tokio::sync::watch;

/// Counts of bulk-create items per registration ID, as sent to DPS.
#[derive(Default)]
struct Counts {
    creates: HashMap<String, u32>,
}

struct Forward {
    upstream: String,
    http: reqwest::Client,
    counts: Mutex<Counts>,
}

/// The emulator and a proxy in front of it that the workers talk to.
pub struct CountingDps {
    pub emulator: RunningEmulator,
    pub runtime: tokio::runtime::Runtime,
    pub addr: SocketAddr,
    forward: Arc<Forward>,
    stop: Mutex<Option<watch::Sender<bool>>>,
}

impl CountingDps {
    /// Starts the emulator (HTTPS on 127.0.0.1) and the proxy (plain HTTP on 127.0.0.1).
    pub fn start() -> CountingDps {
        let emulator = Emulator::start(EmulatorConfig::loopback()).unwrap();
        let tls = dps_station::dps::transport::rustls_config(&TlsTrust::only(
            emulator.ca_certificate_pem().unwrap().as_bytes().to_vec(),
        ))
        .unwrap();
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .build()
            .unwrap();
        let forward = Arc::new(Forward {
            upstream: emulator.https_url().unwrap(),
            http,
            counts: Mutex::default(),
        });
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let dps = CountingDps {
            emulator,
            runtime,
            addr,
            forward,
            stop: Mutex::new(None),
        };
        dps.serve(listener);
        dps
    }

    fn serve(&self, listener: tokio::net::TcpListener) {
        let (tx, mut rx) = watch::channel(false);
        let app = axum::Router::new()
            .fallback(forward)
            .with_state(self.forward.clone());
        self.runtime.spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.wait_for(|stop| *stop).await;
                })
                .await;
        });
        *self.stop.lock().unwrap() = Some(tx);
    }

    /// The endpoint the workers get (`--dps-endpoint`).
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops listening: connections are refused, as when DPS is unreachable.
    pub fn go_down(&self) {
        if let Some(tx) = self.stop.lock().unwrap().take() {
            let _ = tx.send(true);
        }
        // Wait until the port refuses connections.
        assert!(crate::pg::wait_for(
            std::time::Duration::from_secs(10),
            || { std::net::TcpStream::connect(self.addr).is_err() }
        ));
    }

    /// Listens again on the same port.
    pub fn come_back(&self) {
        let addr = self.addr;
        let listener = self
            .runtime
            .block_on(tokio::net::TcpListener::bind(addr))
            .unwrap();
        self.serve(listener);
    }

    /// How many bulk creates named each registration ID.
    pub fn creates(&self) -> HashMap<String, u32> {
        self.forward.counts.lock().unwrap().creates.clone()
    }

    /// The emulator's etag of each enrollment it holds.
    pub fn etags(&self) -> HashMap<String, String> {
        self.emulator
            .enrollments_snapshot()
            .iter()
            .map(|e| {
                (
                    e["registrationId"].as_str().unwrap().to_string(),
                    e["etag"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }
}

async fn forward(State(f): State<Arc<Forward>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let Ok(body) = axum::body::to_bytes(body, 1 << 20).await else {
        return status(StatusCode::BAD_REQUEST);
    };
    if parts.method == axum::http::Method::POST
        && parts.uri.path() == "/enrollments"
        && let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body)
        && v["mode"] == "create"
    {
        let mut counts = f.counts.lock().unwrap();
        for e in v["enrollments"].as_array().into_iter().flatten() {
            if let Some(id) = e["registrationId"].as_str() {
                *counts.creates.entry(id.to_string()).or_default() += 1;
            }
        }
    }
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let method = reqwest::Method::from_bytes(parts.method.as_str().as_bytes()).unwrap();
    let mut out = f.http.request(method, format!("{}{path}", f.upstream));
    for (name, value) in &parts.headers {
        if name != "host" && name != "content-length" {
            out = out.header(name.as_str(), value.as_bytes());
        }
    }
    let Ok(answer) = out.body(body.to_vec()).send().await else {
        return status(StatusCode::BAD_GATEWAY);
    };
    let mut response = Response::builder().status(answer.status().as_u16());
    for (name, value) in answer.headers() {
        if name != "content-length" && name != "transfer-encoding" {
            response = response.header(name.as_str(), value.as_bytes());
        }
    }
    let bytes = answer.bytes().await.unwrap_or_default();
    response
        .body(Body::from(bytes))
        .unwrap_or_else(|_| status(StatusCode::BAD_GATEWAY))
}

fn status(code: StatusCode) -> Response {
    Response::builder()
        .status(code)
        .body(Body::empty())
        .unwrap()
}

/// A device certificate (PEM) whose CN is the registration ID, as the station issues.
pub fn device_cert(registration_id: &str) -> String {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, registration_id);
    let key = rcgen::KeyPair::generate().unwrap();
    params.self_signed(&key).unwrap().pem()
}

/// A TPM endorsement key as DPS takes it: base64 of the TPM2B_PUBLIC of a P-256 key.
pub fn tpm_ek(seed: u8) -> String {
    use base64::Engine as _;
    use p256::pkcs8::EncodePublicKey as _;
    let secret = p256::SecretKey::from_slice(&[seed.max(1); 32]).unwrap();
    let spki = secret.public_key().to_public_key_der().unwrap();
    let public = dps_station::identity::tpm_ek::spki_to_tpm2b_public(spki.as_bytes()).unwrap();
    base64::prelude::BASE64_STANDARD.encode(public)
}

/// Everything the process logged (all levels of this crate), for the "no secret in the logs" checks.
pub fn captured_logs() -> String {
    String::from_utf8_lossy(&log_buffer().lock().unwrap()).into_owned()
}

/// Installs the capturing subscriber (once per test binary).
pub fn capture_logs() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("dps_station=trace"))
            .with_writer(|| LogWriter)
            .with_ansi(false)
            .finish();
        tracing::subscriber::set_global_default(subscriber)
            .expect("another test installed a global log subscriber first");
    });
}

fn log_buffer() -> &'static Mutex<Vec<u8>> {
    static BUFFER: OnceLock<Mutex<Vec<u8>>> = OnceLock::new();
    BUFFER.get_or_init(Mutex::default)
}

struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        log_buffer().lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
