//! The lease gate on the line (issue 18): how a batch on a station joined to a central ledger takes
//! a device only with a lease unit for it. The engine starts a [`RunningLeases`] when it is given a
//! [`LeaseSetup`]; slots reserve a unit before they take a device ([`wait_for_unit`]); the pipeline
//! spends it in the transaction that records the identity ([`spend`]). Not joined: no gate, the
//! line runs as before.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use serde_json::json;

use super::events::Event;
use super::ledger_thread::LedgerHandle;
use crate::central::link::CentralLink;
use crate::central::signing::SignerCertificate;
use crate::central::station_side::lease_gate::{LeaseGate, Permit};
use crate::central::station_side::lease_keeper::{KeeperConfig, LeaseBook, LeaseKeeper};
use crate::ledger::leases::{HeldLease, NewLease};
use crate::ledger::{IdentityId, LedgerError, LedgerWriter};

/// What a joined station's batch needs to run on leases.
pub struct LeaseSetup {
    /// The station's link to the central service.
    pub link: Arc<dyn CentralLink>,
    /// The service's signer certificate, from the join.
    pub signer: SignerCertificate,
    /// Lease size asked for, low-water mark, polling.
    pub keeper: KeeperConfig,
}

/// Identities asked for per lease by a station started from `[central]` (the service grants at
/// most the batch's `lease_size`; a smaller grant is simply topped up sooner).
pub const DEFAULT_LEASE_WANT: u32 = 50;

impl LeaseSetup {
    /// The setup `[central]` describes: the mutual-TLS link, the signer certificate from the join.
    pub fn from_central(
        central: &crate::station::config::central::CentralSettings,
        keys: &crate::station::keys::StationKeys,
    ) -> Result<LeaseSetup, crate::central::station_side::start::StartError> {
        use crate::central::station_side::start::{open_link, signer_certificate};
        Ok(LeaseSetup {
            link: Arc::new(open_link(central, Some(keys))?),
            signer: signer_certificate(&central.signer_certificate)?,
            keeper: KeeperConfig::new(&central.station_id, DEFAULT_LEASE_WANT),
        })
    }
}

impl LeaseBook for LedgerHandle {
    fn keep(&self, lease: &NewLease) -> Result<(), String> {
        let lease = lease.clone();
        self.call(move |l| l.transaction(|w| w.record_lease(&lease)))
            .map_err(|e| e.to_string())
    }
    fn held(&self, batch: &str) -> Result<Vec<HeldLease>, String> {
        let batch = batch.to_string();
        self.call(move |l| l.held_leases(Some(&batch)))
            .map_err(|e| e.to_string())
    }
    fn returned(&self, lease_id: &str, used: u32, returned: u32) -> Result<(), String> {
        let lease_id = lease_id.to_string();
        self.call(move |l| l.transaction(|w| w.record_lease_returned(&lease_id, used, returned)))
            .map_err(|e| e.to_string())
    }
    fn refusal(&self, action: &str, subject: &str, message: &str) -> Result<(), String> {
        let (action, subject) = (action.to_string(), subject.to_string());
        let details = json!({ "message": message });
        self.call(move |l| l.append_audit("central", &action, &subject, &details))
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

/// The keeper thread of a running batch, and its gate.
pub struct RunningLeases {
    gate: Arc<LeaseGate>,
    stop: Arc<AtomicBool>,
    keeper: JoinHandle<LeaseKeeper>,
}

impl RunningLeases {
    /// Starts the keeper for `gate` (made from what the ledger holds) over the ledger thread.
    pub fn start(
        setup: LeaseSetup,
        ledger: LedgerHandle,
        gate: Arc<LeaseGate>,
    ) -> std::io::Result<RunningLeases> {
        let stop = Arc::new(AtomicBool::new(false));
        let keeper = LeaseKeeper {
            link: setup.link,
            signer: setup.signer,
            book: Arc::new(ledger),
            gate: gate.clone(),
            config: setup.keeper,
        }
        .spawn(stop.clone())?;
        Ok(RunningLeases { gate, stop, keeper })
    }

    /// The gate slots reserve units at.
    pub fn gate(&self) -> Arc<LeaseGate> {
        self.gate.clone()
    }

    /// At the end of the run (batch closed, paused for good, station quitting): stops the keeper
    /// and gives every unused part back. Returns how many identities went back.
    pub fn finish(self) -> u32 {
        self.stop.store(true, Ordering::SeqCst);
        let Ok(keeper) = self.keeper.join() else {
            tracing::error!(
                "the lease keeper thread panicked; leases stay held until the next run"
            );
            return 0;
        };
        match keeper.return_unused() {
            Ok(n) => {
                tracing::info!(returned = n, "unused lease parts returned");
                n
            }
            Err(e) => {
                tracing::warn!(
                    "unused lease parts not returned now ({e}); the next run returns or spends them"
                );
                0
            }
        }
    }
}

/// Once a device is in the slot, before it is provisioned: reserves a lease unit, telling the desk why it waits while there
/// is none. `None` when the batch stops first.
pub fn wait_for_unit(
    gate: &Arc<LeaseGate>,
    slot: &str,
    stop: &AtomicBool,
    emit: &dyn Fn(Event),
) -> Option<Permit> {
    gate.acquire(stop, |why| {
        tracing::info!(slot, "{why}");
        emit(Event::LeaseWaiting {
            slot: slot.to_string(),
            waiting: why.clone(),
        });
    })
}

/// In the transaction recording identity `id`: spends a unit of the batch's lease when the batch
/// is gated. Returns the lease it came from.
pub fn spend(
    w: &LedgerWriter<'_>,
    gate: Option<&LeaseGate>,
    id: IdentityId,
) -> Result<Option<String>, LedgerError> {
    match gate {
        Some(gate) => w.spend_lease_unit(gate.batch(), id).map(Some),
        None => Ok(None),
    }
}
