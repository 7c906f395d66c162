//! The lease keeper: a thread that keeps a joined station's batch supplied with leases.
//!
//! When what is left on unexpired leases drops below the low-water mark, it asks the service for
//! the next lease, verifies the signature against the signer certificate the station got at join
//! (a lease signed by another service is refused, and the refusal is written to the station's
//! chain), keeps the lease in the ledger and opens the gate. Offline, the line goes on spending
//! what it holds; the keeper retries with backoff. Expired leases and, at batch close, every
//! unused part go back to the service, so the batch's cap is free for other stations.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::json;

use super::lease_gate::LeaseGate;
use crate::central::link::{CentralLink, LinkError};
use crate::central::signing::{SignerCertificate, SigningError};
use crate::central::wire::{Lease, LeaseRequest, LeaseReturn};
use crate::ledger::leases::{HeldLease, NewLease, ledger_time};

/// The ledger as the keeper needs it: the station's writer thread, or a ledger in a test.
pub trait LeaseBook: Send + Sync {
    /// Keeps a verified lease (audit row `central.lease`).
    fn keep(&self, lease: &NewLease) -> Result<(), String>;
    /// The batch's leases not yet returned.
    fn held(&self, batch: &str) -> Result<Vec<HeldLease>, String>;
    /// The service took back the unused part.
    fn returned(&self, lease_id: &str, used: u32, returned: u32) -> Result<(), String>;
    /// Writes a refusal into the station's chain ("every refusal is in both chains").
    fn refusal(&self, action: &str, subject: &str, message: &str) -> Result<(), String>;
}

impl LeaseBook for std::sync::Mutex<crate::ledger::Ledger> {
    fn keep(&self, lease: &NewLease) -> Result<(), String> {
        let mut ledger = self
            .lock()
            .map_err(|_| "the ledger lock is poisoned".to_string())?;
        ledger
            .transaction(|w| w.record_lease(lease))
            .map_err(|e| e.to_string())
    }
    fn held(&self, batch: &str) -> Result<Vec<HeldLease>, String> {
        let ledger = self
            .lock()
            .map_err(|_| "the ledger lock is poisoned".to_string())?;
        ledger.held_leases(Some(batch)).map_err(|e| e.to_string())
    }
    fn returned(&self, lease_id: &str, used: u32, returned: u32) -> Result<(), String> {
        let mut ledger = self
            .lock()
            .map_err(|_| "the ledger lock is poisoned".to_string())?;
        ledger
            .transaction(|w| w.record_lease_returned(lease_id, used, returned))
            .map_err(|e| e.to_string())
    }
    fn refusal(&self, action: &str, subject: &str, message: &str) -> Result<(), String> {
        let mut ledger = self
            .lock()
            .map_err(|_| "the ledger lock is poisoned".to_string())?;
        ledger
            .append_audit("central", action, subject, &json!({ "message": message }))
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

/// How the keeper runs; every loop it drives is bounded by these and the stop flag.
#[derive(Debug, Clone)]
pub struct KeeperConfig {
    /// This station's id (its certificate's CN).
    pub station_id: String,
    /// How many identities to ask for each time (the service may grant fewer).
    pub want: u32,
    /// Ask for the next lease when fewer than this many are left (e.g. half a lease).
    pub low_water: u32,
    /// How often the keeper looks at what is left.
    pub poll: Duration,
    /// The longest wait between attempts after failures (backoff doubles from `poll` up to this).
    pub retry_max: Duration,
}

impl KeeperConfig {
    /// Asks for `want` at a time, the next one when half of that is left.
    pub fn new(station_id: &str, want: u32) -> KeeperConfig {
        KeeperConfig {
            station_id: station_id.to_string(),
            want: want.max(1),
            low_water: (want / 2).max(1),
            poll: Duration::from_secs(1),
            retry_max: Duration::from_secs(30),
        }
    }
}

/// Why a step of the keeper did not bring a lease.
#[derive(Debug, thiserror::Error)]
pub enum KeeperError {
    #[error(transparent)]
    Link(#[from] LinkError),
    #[error("lease refused by the station: {0}")]
    Signature(#[from] SigningError),
    #[error(
        "the central service granted lease {lease_id} for {what}, not for this station's batch: report it to the service's administrator"
    )]
    Mismatch { lease_id: String, what: String },
    #[error("the ledger did not keep the lease: {0}")]
    Ledger(String),
}

/// Keeps one batch supplied; see the module docs.
pub struct LeaseKeeper {
    pub link: Arc<dyn CentralLink>,
    pub signer: SignerCertificate,
    pub book: Arc<dyn LeaseBook>,
    pub gate: Arc<LeaseGate>,
    pub config: KeeperConfig,
}

/// The station's clock as the wire carries it (RFC 3339 UTC).
fn now_rfc3339() -> String {
    let format =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    time::OffsetDateTime::now_utc()
        .format(&format)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_string())
}

impl LeaseKeeper {
    /// One look: returns expired leases, then asks for a lease if below the low-water mark.
    /// `Ok(Some(n))`: a lease of `n` was added; `Ok(None)`: nothing was needed.
    pub fn top_up(&self) -> Result<Option<u32>, KeeperError> {
        self.return_expired();
        if self.gate.left() >= self.config.low_water {
            return Ok(None);
        }
        let request = LeaseRequest {
            station_id: self.config.station_id.clone(),
            station_time: now_rfc3339(),
            batch: self.gate.batch().to_string(),
            count: self.config.want,
        };
        let signed = match self.link.lease(&request) {
            Ok(signed) => signed,
            Err(e) => {
                if let LinkError::Refused { code, message } = &e {
                    // Batch full, unknown batch, revoked station: a person must act; say so.
                    self.gate.set_problem(Some(message.clone()));
                    self.write_refusal("central.lease_refused", code, message);
                }
                return Err(e.into());
            }
        };
        let lease: Lease = match self.signer.verify(&signed) {
            Ok(lease) => lease,
            Err(e) => {
                let message = e.to_string();
                self.gate.set_problem(Some(message.clone()));
                self.write_refusal("central.lease_rejected", "signature", &message);
                return Err(e.into());
            }
        };
        if lease.station_id != self.config.station_id || lease.batch != self.gate.batch() {
            let what = format!("station {} batch {}", lease.station_id, lease.batch);
            self.write_refusal("central.lease_rejected", &lease.lease_id, &what);
            return Err(KeeperError::Mismatch {
                lease_id: lease.lease_id,
                what,
            });
        }
        let signed_text = serde_json::to_string(&signed).unwrap_or_default();
        let new = NewLease {
            lease_id: lease.lease_id.clone(),
            batch: lease.batch.clone(),
            count: lease.count,
            expires_at: lease.expires_at.clone(),
            signed: signed_text,
        };
        self.book.keep(&new).map_err(KeeperError::Ledger)?;
        self.gate.add(HeldLease {
            lease_id: lease.lease_id.clone(),
            batch: lease.batch,
            count: lease.count,
            used: 0,
            expires_at: ledger_time(&lease.expires_at).unwrap_or_default(),
            returned_at: None,
        });
        tracing::info!(lease = %lease.lease_id, count = lease.count, "lease received");
        Ok(Some(lease.count))
    }

    fn write_refusal(&self, action: &str, subject: &str, message: &str) {
        tracing::warn!(action, subject, "{message}");
        if let Err(e) = self.book.refusal(action, subject, message) {
            tracing::error!("the ledger did not record a central refusal: {e}");
        }
    }

    /// Gives back the unused part of expired leases (their units can no longer be spent here).
    fn return_expired(&self) {
        let now = crate::ledger::now();
        for lease in self.gate.leases() {
            if lease.expired_at(&now) {
                let _ = self.give_back(&lease);
            }
        }
    }

    /// Returns one lease with what the ledger says was used; records it in the ledger.
    fn give_back(&self, lease: &HeldLease) -> Result<u32, KeeperError> {
        let request = LeaseReturn {
            station_id: self.config.station_id.clone(),
            station_time: now_rfc3339(),
            lease_id: lease.lease_id.clone(),
            used: lease.used,
        };
        let signed = match self.link.return_lease(&request) {
            Ok(signed) => signed,
            Err(LinkError::Refused { code, message }) => {
                // Already returned, unknown, another station's: asking again will not help. The
                // refusal goes into the chain for a person to look at; the lease is spent no more.
                self.write_refusal("central.lease_return_refused", &lease.lease_id, &message);
                self.book
                    .returned(&lease.lease_id, lease.used, 0)
                    .map_err(KeeperError::Ledger)?;
                self.gate.returned(&lease.lease_id);
                return Err(LinkError::Refused { code, message }.into());
            }
            Err(e) => return Err(e.into()),
        };
        let answer = self.signer.verify(&signed)?;
        self.book
            .returned(&lease.lease_id, lease.used, answer.returned)
            .map_err(KeeperError::Ledger)?;
        self.gate.returned(&lease.lease_id);
        Ok(answer.returned)
    }

    /// At batch close (or quit): every held lease of the batch goes back with what it used, as
    /// the ledger records it. Returns how many identities went back; leases the service could
    /// not be reached for stay held (spent on the next run, or returned then).
    pub fn return_unused(&self) -> Result<u32, KeeperError> {
        let held = self
            .book
            .held(self.gate.batch())
            .map_err(KeeperError::Ledger)?;
        let mut back = 0;
        let mut first_error = None;
        for lease in held {
            match self.give_back(&lease) {
                Ok(n) => back += n,
                Err(e) => {
                    tracing::warn!(lease = %lease.lease_id, "lease not returned: {e}");
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) if back == 0 => Err(e),
            _ => Ok(back),
        }
    }

    /// Runs [`Self::top_up`] every `poll` (backing off after failures) until `stop` is set.
    pub fn spawn(self, stop: Arc<AtomicBool>) -> std::io::Result<JoinHandle<LeaseKeeper>> {
        std::thread::Builder::new()
            .name("lease-keeper".into())
            .spawn(move || {
                let mut wait = self.config.poll;
                while !stop.load(Ordering::SeqCst) {
                    wait = match self.top_up() {
                        Ok(_) => self.config.poll,
                        Err(e) => {
                            tracing::warn!("lease keeper: {e}");
                            (wait * 2).min(self.config.retry_max).max(self.config.poll)
                        }
                    };
                    let until = Instant::now() + wait;
                    while Instant::now() < until && !stop.load(Ordering::SeqCst) {
                        std::thread::sleep(Duration::from_millis(20).min(wait));
                    }
                }
                self
            })
    }
}
