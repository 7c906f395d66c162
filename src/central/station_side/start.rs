//! Opening the link `[central]` describes and running the sync worker on its own thread, for the
//! engine (during a batch), `central status` and `central sync` (between runs).

use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc::{self, Sender};
use std::thread::JoinHandle;
use std::time::Duration;

use super::https::HttpsLink;
use super::sync::{SyncEvent, SyncWorker};
use crate::central::link::LinkError;
use crate::central::signing::SignerCertificate;
use crate::identity::signer::CaSigner;
use crate::keystore::software::SoftwareCaKey;
use crate::station::config::KeyRef;
use crate::station::config::central::{CentralSettings, ClientKey};
use crate::station::keys::StationKeys;
use crate::station::ledger_thread::LedgerHandle;

/// Why `[central]` could not be put to use (the line goes on; the message says what to fix).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("the central link cannot be opened: {0}")]
    Link(#[from] LinkError),
    #[error(
        "the station's central key cannot be used ({0}); fix [central] in station.toml or join again"
    )]
    Key(String),
    #[error(
        "cannot read the receipt signer's certificate {path}: {reason}; join the central service again"
    )]
    Signer { path: String, reason: String },
    #[error("cannot start the central sync thread: {0}")]
    Thread(std::io::Error),
}

/// The station's client key as `[central]` names it: a file, or a key in the open token.
pub fn client_key(
    settings: &CentralSettings,
    keys: Option<&StationKeys>,
) -> Result<Arc<dyn CaSigner>, StartError> {
    match &settings.client_key {
        ClientKey::File(path) => SoftwareCaKey::load(path)
            .map(|k| Arc::new(k) as Arc<dyn CaSigner>)
            .map_err(|e| StartError::Key(e.to_string())),
        ClientKey::Token { uri } => {
            let keys = keys.ok_or_else(|| {
                StartError::Key(format!(
                    "the key {uri} is in the station's HSM token, which is not open here"
                ))
            })?;
            keys.signer(&KeyRef::Pkcs11(uri.clone()))
                .map_err(|e| StartError::Key(e.to_string()))
        }
    }
}

/// The receipt signer's certificate stored at join.
pub fn signer_certificate(path: &Path) -> Result<SignerCertificate, StartError> {
    let err = |reason: String| StartError::Signer {
        path: path.display().to_string(),
        reason,
    };
    let pem = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let der = super::tls::pem_certificates(&pem).map_err(err)?;
    SignerCertificate::from_der(der[0].as_ref()).map_err(|e| err(e.to_string()))
}

/// The HTTPS link `[central]` describes.
pub fn open_link(
    settings: &CentralSettings,
    keys: Option<&StationKeys>,
) -> Result<HttpsLink, StartError> {
    let key = client_key(settings, keys)?;
    Ok(HttpsLink::from_files(
        &settings.url,
        &settings.ca_certificate,
        &settings.client_certificate,
        key,
    )?)
}

/// A running sync worker; dropping it stops the worker (after the round in flight, at most one
/// request timeout) and waits for it, so the ledger thread can end after it.
pub struct SyncHandle {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for SyncHandle {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The sync worker `[central]` describes, reaching the ledger through `ledger` (the engine runs it
/// on a thread; `central sync` drains with it between runs).
pub fn sync_worker(
    settings: &CentralSettings,
    keys: Option<&StationKeys>,
    ledger: LedgerHandle,
) -> Result<SyncWorker, StartError> {
    let link = open_link(settings, keys)?;
    let signer = signer_certificate(&settings.signer_certificate)?;
    Ok(SyncWorker {
        station_id: settings.station_id.clone(),
        link: Arc::new(link),
        signer,
        ledger,
        idle_poll: Duration::from_secs(2),
        backoff_min: Duration::from_secs(1),
        backoff_max: Duration::from_secs(60),
    })
}

/// Starts the sync worker for `[central]`, reaching the ledger through `ledger`.
pub fn start_sync(
    settings: &CentralSettings,
    keys: Option<&StationKeys>,
    ledger: LedgerHandle,
    notify: impl Fn(SyncEvent) + Send + 'static,
) -> Result<SyncHandle, StartError> {
    let worker = sync_worker(settings, keys, ledger)?;
    let (stop, stop_rx) = mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("central-sync".into())
        .spawn(move || worker.run(stop_rx, notify))
        .map_err(StartError::Thread)?;
    Ok(SyncHandle {
        stop: Some(stop),
        thread: Some(thread),
    })
}
