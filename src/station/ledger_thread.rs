//! The one ledger writer: the `Ledger` is single-writer and not `Sync`, so it lives on one thread
//! and every slot sends it requests over a channel. A request is a closure run against the
//! ledger; its answer comes back on a one-shot channel.

use std::sync::mpsc::{self, Sender};
use std::thread::JoinHandle;

use crate::ledger::{Ledger, LedgerError};

type Job = Box<dyn FnOnce(&mut Ledger) + Send>;

/// Why a ledger request got no answer.
#[derive(Debug, thiserror::Error)]
pub enum LedgerCallError {
    /// The ledger refused or failed (names the file and what to do).
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// The ledger thread is gone (it stopped after an earlier failure).
    #[error(
        "the ledger writer thread has stopped; restart the station (nothing was written by this request)"
    )]
    Stopped,
}

/// A handle slots share to reach the ledger thread.
#[derive(Clone)]
pub struct LedgerHandle {
    tx: Sender<Job>,
}

/// The thread itself; dropping every handle ends it, [`LedgerThread::join`] gives the ledger back.
pub struct LedgerThread {
    thread: JoinHandle<Ledger>,
}

impl LedgerThread {
    /// Moves `ledger` onto its own thread.
    pub fn start(ledger: Ledger) -> Result<(LedgerThread, LedgerHandle), std::io::Error> {
        let (tx, rx) = mpsc::channel::<Job>();
        let thread = std::thread::Builder::new()
            .name("ledger-writer".into())
            .spawn(move || {
                let mut ledger = ledger;
                for job in rx {
                    job(&mut ledger);
                }
                ledger
            });
        thread.map(|thread| (LedgerThread { thread }, LedgerHandle { tx }))
    }

    /// Waits for the thread (after every handle is dropped) and returns the ledger.
    pub fn join(self) -> Option<Ledger> {
        self.thread.join().ok()
    }
}

impl LedgerHandle {
    /// Runs `f` on the ledger thread and waits for its answer.
    pub fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Ledger) -> Result<T, LedgerError> + Send + 'static,
    ) -> Result<T, LedgerCallError> {
        let (reply_tx, reply_rx) = mpsc::sync_channel(1);
        let job: Job = Box::new(move |ledger| {
            let _ = reply_tx.send(f(ledger));
        });
        self.tx.send(job).map_err(|_| LedgerCallError::Stopped)?;
        reply_rx
            .recv()
            .map_err(|_| LedgerCallError::Stopped)?
            .map_err(LedgerCallError::Ledger)
    }
}
