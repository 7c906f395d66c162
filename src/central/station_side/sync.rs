//! The sync worker: a thread that uploads the outbox to the central service, in seq order, in
//! batches of at most [`MAX_INGEST_ROWS`], and stores the signed receipts.
//!
//! It reaches the ledger only through the ledger thread (short jobs: read a page of the outbox,
//! store a receipt), so the line never waits on the network. A transient failure (no connection,
//! a 5xx, a database the service cannot reach) backs off with jitter from 1 s to 60 s and tries
//! again; a refusal (4xx) or a receipt that does not verify is recorded in the station's chain
//! (`central.refused`) and stops the worker with an event naming it: retrying would not help. A
//! `chain_gap` refusal is the exception: the service holds less of the chain than the station
//! thought (it lost a commit, or a receipt was lost here), so the worker asks the service where
//! its copy ends and re-sends from the row after.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

use rand::RngExt as _;
use serde_json::json;

use super::receipts::{ReceiptError, apply_receipt, verify_receipt};
use crate::central::link::{CentralLink, LinkError};
use crate::central::signing::SignerCertificate;
use crate::central::wire::{IngestBatch, MAX_INGEST_ROWS, OutboxRow, Quarantined};
use crate::ledger::LedgerError;
use crate::station::ledger_thread::{LedgerCallError, LedgerHandle};

/// What the worker tells whoever listens (the engine turns these into desk events).
#[derive(Debug, Clone, PartialEq)]
pub enum SyncEvent {
    /// A batch was acknowledged: `rows` uploaded, the service holds the chain up to `head_seq`.
    Uploaded { rows: usize, head_seq: i64 },
    /// The service cannot be reached; the worker tries again in `retry_in`.
    Unreachable { reason: String, retry_in: Duration },
    /// The service refused one of this station's identities: another station holds the device.
    Quarantined(Quarantined),
    /// The worker stopped for good: a refusal or a receipt that does not verify (the message says
    /// what to do). The outbox keeps every row; a restart after the fix resumes.
    Stopped { reason: String },
}

/// Why one round did not upload.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Link(#[from] LinkError),
    #[error(transparent)]
    Receipt(#[from] ReceiptError),
    #[error(transparent)]
    Ledger(#[from] LedgerCallError),
    /// An outbox row the ledger wrote does not parse (a hand-edited file).
    #[error(
        "outbox row {seq} of the ledger cannot be read ({reason}); run `dps-station ledger verify` and report it"
    )]
    BadRow { seq: i64, reason: String },
}

/// What one round did.
#[derive(Debug, Clone, PartialEq)]
pub enum Round {
    /// Nothing to upload.
    Idle,
    /// Uploaded and acknowledged `rows` rows.
    Sent {
        rows: usize,
        head_seq: i64,
        quarantined: Vec<Quarantined>,
    },
    /// The service holds the chain only up to `head_seq`: rows after it are queued again.
    Resend { from_seq: i64 },
}

/// What [`SyncWorker::drain`] did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Drained {
    /// Rows uploaded and acknowledged.
    pub rows: usize,
    /// The service's head of this station's chain after the last receipt.
    pub head_seq: Option<i64>,
    /// Identities the service quarantined (another station holds them).
    pub quarantined: Vec<Quarantined>,
    /// The service held less than acknowledged: rows from this seq were queued again.
    pub resent_from: Option<i64>,
    /// The outbox is empty (else the round limit ended it).
    pub empty: bool,
}

/// The most rounds the final flush at the end of a run makes (each up to `MAX_INGEST_ROWS` rows,
/// plus the receipt rows each round appends).
const FLUSH_ROUNDS: usize = 8;

/// Everything the worker needs; built by the engine (or a test) from `[central]`.
pub struct SyncWorker {
    /// This station's id (its certificate's CN).
    pub station_id: String,
    pub link: Arc<dyn CentralLink>,
    pub signer: SignerCertificate,
    pub ledger: LedgerHandle,
    /// How long to wait when the outbox is empty before looking again.
    pub idle_poll: Duration,
    /// Backoff bounds for transient failures.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
}

impl SyncWorker {
    /// One round: read up to [`MAX_INGEST_ROWS`] pending rows, upload, verify, store the receipt.
    pub fn round(&self) -> Result<Round, SyncError> {
        let pending = self.ledger.call(|l| l.outbox_pending(MAX_INGEST_ROWS))?;
        let (Some(first), Some(last)) = (pending.first(), pending.last()) else {
            return Ok(Round::Idle);
        };
        let (first, last) = (first.seq, last.seq);
        let rows = pending
            .iter()
            .map(|e| {
                serde_json::from_str::<OutboxRow>(&e.payload).map_err(|err| SyncError::BadRow {
                    seq: e.seq,
                    reason: err.to_string(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let batch = IngestBatch {
            station_id: self.station_id.clone(),
            station_time: crate::ledger::now(),
            rows,
        };
        let signed = match self.link.ingest(&batch) {
            Ok(signed) => signed,
            Err(LinkError::Refused { code, message }) if code == "chain_gap" => {
                return self.resend_after_gap(&message);
            }
            Err(e) => return Err(e.into()),
        };
        let receipt = verify_receipt(&self.signer, &signed, &self.station_id, first, last)?;
        let quarantined = receipt.quarantined.clone();
        let head_seq = receipt.head_seq;
        let n = batch.rows.len();
        self.ledger
            .call(move |l| apply_receipt(l, &receipt, &signed))?;
        Ok(Round::Sent {
            rows: n,
            head_seq,
            quarantined,
        })
    }

    /// Queues again every row from the seq the refusal names ("re-send the outbox from seq N"),
    /// or, when it names none, from the row after where the service's status says its copy ends.
    fn resend_after_gap(&self, message: &str) -> Result<Round, SyncError> {
        let from_seq = match named_seq(message) {
            Some(seq) => seq,
            None => self.head_at_service(message)? + 1,
        };
        let n = self
            .ledger
            .call(move |l| l.transaction(|w| w.resend_outbox_from(from_seq)))?;
        tracing::warn!(
            station = %self.station_id,
            from_seq,
            rows = n,
            "the central service holds less of this station's chain than acknowledged: re-sending"
        );
        Ok(Round::Resend { from_seq })
    }

    fn head_at_service(&self, message: &str) -> Result<i64, SyncError> {
        let status = self.link.status()?;
        let Some(me) = status
            .stations
            .iter()
            .find(|s| s.station_id == self.station_id)
        else {
            return Err(LinkError::Refused {
                code: "chain_gap".into(),
                message: format!(
                    "{message} (and the service's status does not list station {})",
                    self.station_id
                ),
            }
            .into());
        };
        Ok(me.head_seq)
    }

    /// Runs rounds until `stop` receives (or its sender is dropped), calling `notify` for each
    /// event. Every wait is a `recv_timeout` on `stop`, so stopping takes effect at once.
    pub fn run(self, stop: Receiver<()>, notify: impl Fn(SyncEvent)) {
        let mut backoff = self.backoff_min;
        loop {
            let wait = match self.round() {
                Ok(Round::Sent {
                    rows,
                    head_seq,
                    quarantined,
                }) => {
                    backoff = self.backoff_min;
                    for q in quarantined {
                        notify(SyncEvent::Quarantined(q));
                    }
                    notify(SyncEvent::Uploaded { rows, head_seq });
                    Duration::ZERO
                }
                Ok(Round::Resend { .. }) => Duration::ZERO,
                Ok(Round::Idle) => {
                    backoff = self.backoff_min;
                    self.idle_poll
                }
                Err(e) if is_transient(&e) => {
                    let retry_in = jitter(backoff);
                    backoff = (backoff * 2).min(self.backoff_max);
                    tracing::warn!(station = %self.station_id, error = %e, ?retry_in, "central sync: retrying later");
                    notify(SyncEvent::Unreachable {
                        reason: e.to_string(),
                        retry_in,
                    });
                    retry_in
                }
                Err(e) => {
                    let reason = e.to_string();
                    tracing::error!(station = %self.station_id, error = %reason, "central sync stopped");
                    self.record_refusal(&e);
                    notify(SyncEvent::Stopped { reason });
                    return;
                }
            };
            match stop.recv_timeout(wait) {
                Err(RecvTimeoutError::Timeout) => {}
                Ok(()) | Err(RecvTimeoutError::Disconnected) => {
                    self.flush(&notify);
                    return;
                }
            }
        }
    }

    /// At the end of a run: the rows the batch's last moments wrote (its close, the last
    /// receipts) go up now rather than at the next run, so a station that is shut down holds a
    /// receipt for every row. Bounded: at most [`FLUSH_ROUNDS`] rounds, and the first failure
    /// (the service unreachable) ends it; the outbox keeps what is left for the next run.
    fn flush(&self, notify: &impl Fn(SyncEvent)) {
        if let Err(e) = self.drain(FLUSH_ROUNDS, notify) {
            tracing::info!(station = %self.station_id, error = %e, "central sync: the rest waits for the next run");
        }
    }

    /// Uploads until the outbox is empty, at most `max_rounds` rounds (each up to
    /// [`MAX_INGEST_ROWS`] rows), for the end of a run and `central sync` between runs. The first
    /// failure ends it; a refusal is also written to the station's chain, as the worker does.
    pub fn drain(
        &self,
        max_rounds: usize,
        notify: &impl Fn(SyncEvent),
    ) -> Result<Drained, SyncError> {
        let mut drained = Drained::default();
        for _ in 0..max_rounds {
            match self.round() {
                Ok(Round::Sent {
                    rows,
                    head_seq,
                    quarantined,
                }) => {
                    for q in &quarantined {
                        notify(SyncEvent::Quarantined(q.clone()));
                    }
                    notify(SyncEvent::Uploaded { rows, head_seq });
                    drained.rows += rows;
                    drained.head_seq = Some(head_seq);
                    drained.quarantined.extend(quarantined);
                }
                Ok(Round::Resend { from_seq }) => drained.resent_from = Some(from_seq),
                Ok(Round::Idle) => {
                    drained.empty = true;
                    return Ok(drained);
                }
                Err(e) => {
                    if !is_transient(&e) {
                        self.record_refusal(&e);
                    }
                    return Err(e);
                }
            }
        }
        Ok(drained)
    }

    /// "Every refusal is in both chains": the station's side of it.
    fn record_refusal(&self, e: &SyncError) {
        let (code, message) = match e {
            SyncError::Link(LinkError::Refused { code, message }) => {
                (code.clone(), message.clone())
            }
            SyncError::Link(LinkError::BadAnswer { reason }) => {
                ("bad_answer".to_string(), reason.clone())
            }
            SyncError::Receipt(r) => ("receipt_refused".to_string(), r.to_string()),
            other => ("sync_failed".to_string(), other.to_string()),
        };
        let station = self.station_id.clone();
        let result = self.ledger.call(move |l| {
            l.append_audit(
                "central-sync",
                "central.refused",
                &format!("station:{station}"),
                &json!({ "code": code, "message": message }),
            )
            .map(|_| ())
        });
        if let Err(e) = result {
            tracing::error!(error = %e, "the central refusal could not be recorded in the ledger");
        }
    }
}

/// The seq in "... from seq N ..." (the service's `chain_gap` wording), if the message has one.
fn named_seq(message: &str) -> Option<i64> {
    let rest = &message[message.find("from seq ")? + "from seq ".len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok().filter(|seq| *seq >= 1)
}

fn is_transient(e: &SyncError) -> bool {
    match e {
        SyncError::Link(l) => l.is_transient(),
        // A full disk may be freed; the line reports it on its own.
        SyncError::Ledger(LedgerCallError::Ledger(LedgerError::DiskFull { .. })) => true,
        _ => false,
    }
}

/// `d` ± 25 %, so stations that lost the service together do not come back in step.
fn jitter(d: Duration) -> Duration {
    let ms = d.as_millis().min(u128::from(u32::MAX)) as u64;
    let spread = ms / 4;
    if spread == 0 {
        return d;
    }
    let offset = rand::rng().random_range(0..=2 * spread);
    Duration::from_millis(ms - spread + offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chain_gap_names_its_seq() {
        assert_eq!(
            named_seq("holds rows up to seq 41 but ...: re-send the outbox from seq 42"),
            Some(42)
        );
        assert_eq!(named_seq("no seq here"), None);
        assert_eq!(named_seq("from seq x"), None);
    }

    #[test]
    fn jitter_stays_within_a_quarter() {
        for _ in 0..200 {
            let j = jitter(Duration::from_secs(4));
            assert!(
                j >= Duration::from_secs(3) && j <= Duration::from_secs(5),
                "{j:?}"
            );
        }
        assert_eq!(jitter(Duration::ZERO), Duration::ZERO);
    }
}
