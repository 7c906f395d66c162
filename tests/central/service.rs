//! The central service as a process, for every central test: `CentralService::start(&pg)` makes the
//! service's directory (`central init`), migrates the database as its owner (`central migrate`),
//! makes a service login (`central grant-login`) and runs `central serve` on a free port of
//! 127.0.0.1, waiting for its ready line. Also: join tokens, an HTTPS client that trusts the
//! service (with or without a station's certificate), and a test station's join.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use dps_station::central::wire::{JoinRequest, JoinResponse, Refusal, paths};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::pg::PgCluster;

/// The station binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_dps-station");

/// The login the service connects as.
pub const SERVICE_LOGIN: &str = "central_svc";

/// The file in the service's directory that collects its processes' stderr.
const LOG: &str = "serve.log";

/// How long the service may take to print its ready line.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// A running `dps-station central serve`; killed (SIGKILL) when dropped.
pub struct CentralService {
    dir: Arc<tempfile::TempDir>,
    owner_url: String,
    database_url: String,
    address: SocketAddr,
    child: Option<Child>,
}

impl CentralService {
    /// Init, migrate, a service login, and `serve` on a free port.
    pub fn start(pg: &PgCluster) -> CentralService {
        let dir = Arc::new(tempfile::tempdir().expect("a temp dir for the service"));
        let owner_url = pg.admin_url();
        let ok = |out: Output, what: &str| {
            assert!(
                out.status.success(),
                "{what} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        ok(
            cli(&["central", "init", "--dir", &path_arg(dir.path())]),
            "central init",
        );
        ok(
            cli(&["central", "migrate", "--database", &owner_url]),
            "central migrate",
        );
        // A second service on the same cluster (a replica's test) finds the role already made.
        ok(
            cli(&[
                "central",
                "grant-login",
                SERVICE_LOGIN,
                "--database",
                &owner_url,
            ]),
            "central grant-login",
        );
        let database_url = pg.url(SERVICE_LOGIN, "central");
        let (child, address) =
            spawn_serve(dir.path(), &database_url, "127.0.0.1:0".parse().unwrap());
        CentralService {
            dir,
            owner_url,
            database_url,
            address,
            child: Some(child),
        }
    }

    /// Another replica: same directory and database, its own port.
    pub fn replica(&self) -> CentralService {
        let (child, address) = spawn_serve(
            self.dir.path(),
            &self.database_url,
            "127.0.0.1:0".parse().unwrap(),
        );
        CentralService {
            dir: self.dir.clone(),
            owner_url: self.owner_url.clone(),
            database_url: self.database_url.clone(),
            address,
            child: Some(child),
        }
    }

    /// `https://127.0.0.1:PORT` (the server certificate names 127.0.0.1).
    pub fn url(&self) -> String {
        format!("https://{}", self.address)
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The service's directory (what `central init` wrote).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The URL the service connects with (its login in dps_central_service).
    pub fn database_url(&self) -> &str {
        &self.database_url
    }

    /// The database owner's URL.
    pub fn owner_url(&self) -> &str {
        &self.owner_url
    }

    /// What the service's processes wrote on stderr so far (info level): print it when a test
    /// fails, or assert that a secret never appears in it.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join(LOG)).unwrap_or_default()
    }

    /// The service's CA certificate, PEM.
    pub fn ca_pem(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("ca.pem")).expect("the service's ca.pem")
    }

    /// A one-time join token bound to `station`, valid 24 h.
    pub fn token(&self, station: &str) -> String {
        self.token_with(Some(station), "24h")
    }

    /// A join token, bound or not, valid for `valid` (`90s`, `24h`, ...).
    pub fn token_with(&self, station: Option<&str>, valid: &str) -> String {
        let dir = path_arg(self.dir.path());
        let mut args = vec![
            "central",
            "token",
            "create",
            "--database",
            &self.database_url,
            "--dir",
            &dir,
            "--valid",
            valid,
        ];
        if let Some(station) = station {
            args.extend(["--station", station]);
        }
        let out = cli(&args);
        assert!(
            out.status.success(),
            "token create failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .expect("a token is text")
            .trim()
            .to_string()
    }

    /// Runs `dps-station central ARGS... --database <service login>`.
    pub fn central(&self, args: &[&str]) -> Output {
        let mut all = vec!["central"];
        all.extend_from_slice(args);
        all.extend(["--database", &self.database_url]);
        cli(&all)
    }

    /// SIGKILL, as if the host died.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait for the exit (graceful shutdown); the exit status.
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let pid = libc::pid_t::try_from(child.id()).ok()?;
        // SAFETY: signals our own child, still unreaped (so its pid is not reused).
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        for _ in 0..300 {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        child.wait().ok()
    }

    /// Kills the service (if running) and starts it again on the same port.
    pub fn restart(&mut self) {
        self.kill();
        let (child, address) = spawn_serve(self.dir.path(), &self.database_url, self.address);
        self.address = address;
        self.child = Some(child);
    }

    /// An HTTPS client that trusts the service's CA; with `station`, it presents that station's
    /// client certificate.
    pub fn client(&self, station: Option<&JoinedStation>) -> reqwest::blocking::Client {
        https_client(&self.ca_pem(), station)
    }

    /// Joins `station_id` with `token` and a key made here (P-256); the refusal if refused.
    pub fn try_join(&self, station_id: &str, token: &str) -> Result<JoinedStation, (u16, Refusal)> {
        self.try_join_at(station_id, token, &dps_station::ledger::now())
    }

    /// [`Self::try_join`] with the station's clock reading `station_time`.
    pub fn try_join_at(
        &self,
        station_id: &str,
        token: &str,
        station_time: &str,
    ) -> Result<JoinedStation, (u16, Refusal)> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let csr = rcgen::CertificateParams::new(Vec::<String>::new())
            .unwrap()
            .serialize_request(&key)
            .unwrap()
            .pem()
            .unwrap();
        let request = JoinRequest {
            token: token.to_string(),
            station_id: station_id.to_string(),
            csr_pem: csr,
            station_time: station_time.to_string(),
        };
        let response = self
            .client(None)
            .post(format!("{}{}", self.url(), paths::JOIN))
            .json(&request)
            .send()
            .expect("the join request reaches the service");
        let status = response.status().as_u16();
        let text = response.text().expect("a join answer");
        if status != 200 {
            let refusal: Refusal = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("a refusal body ({e}): {text}"));
            return Err((status, refusal));
        }
        let joined: JoinResponse = serde_json::from_str(&text).expect("a JoinResponse");
        Ok(JoinedStation {
            station_id: station_id.to_string(),
            key_pem: key.serialize_pem(),
            response: joined,
        })
    }

    /// Joins `station_id` with a fresh token bound to it; panics if refused.
    pub fn join(&self, station_id: &str) -> JoinedStation {
        let token = self.token(station_id);
        self.try_join(station_id, &token)
            .unwrap_or_else(|(status, r)| panic!("{station_id} could not join: {status} {r:?}"))
    }
}

impl Drop for CentralService {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A station that joined: its key and what the service gave it.
#[derive(Debug, Clone)]
pub struct JoinedStation {
    pub station_id: String,
    pub key_pem: String,
    pub response: JoinResponse,
}

/// An HTTPS client trusting `ca_pem`, presenting `station`'s certificate if given.
pub fn https_client(ca_pem: &str, station: Option<&JoinedStation>) -> reqwest::blocking::Client {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    let config = match station {
        Some(station) => {
            let chain = vec![
                CertificateDer::from_pem_slice(station.response.client_certificate_pem.as_bytes())
                    .unwrap(),
            ];
            let key = PrivateKeyDer::from_pem_slice(station.key_pem.as_bytes()).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    reqwest::blocking::Client::builder()
        .tls_backend_preconfigured(config)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// Runs the binary with `args`; its output.
pub fn cli(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("the dps-station binary runs")
}

fn path_arg(path: &Path) -> String {
    path.to_str().expect("a UTF-8 temp path").to_string()
}

/// Starts `central serve` and waits for "listening on https://ADDR".
fn spawn_serve(dir: &Path, database_url: &str, listen: SocketAddr) -> (Child, SocketAddr) {
    // Every run of every replica appends to one log in the service's directory (`log()`).
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(LOG))
        .expect("the service's log file");
    let mut child = Command::new(BIN)
        .env("DPS_STATION_LOG", "info")
        .args([
            "central",
            "serve",
            "--database",
            database_url,
            "--dir",
            &path_arg(dir),
            "--listen",
            &listen.to_string(),
            "--pool",
            "8",
        ])
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .expect("central serve starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if let Some(address) = line.split("listening on https://").nth(1) {
                let _ = tx.send(address.trim().to_string());
            }
        }
    });
    match rx.recv_timeout(READY_TIMEOUT) {
        Ok(address) => (child, address.parse().expect("the ready line's address")),
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("central serve did not print its ready line within {READY_TIMEOUT:?}");
        }
    }
}
