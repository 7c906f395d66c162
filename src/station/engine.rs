//! The engine: one worker thread per slot, one ledger writer thread, one enrollment worker, and a
//! coordinator that takes commands. Commands in ([`Command`]), events out ([`Event`]); nothing
//! here knows whether a terminal or a GUI listens.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::config::{BatchConfig, EnrollTiming, StationConfig};
use super::enroll_worker::{EnrollStats, EnrollWorker};
use super::events::{BatchState, CentralNotice, Command, Event, Stage};
use super::keys::{KeysError, StationKeys};
use super::labels::{LabelDesk, LabelOutcome, SerialFrom};
use super::lease_gate::{LeaseSetup, RunningLeases, wait_for_unit};
use super::ledger_thread::{LedgerCallError, LedgerThread};
use super::pipeline::{BatchContext, CaMaterial, DeviceOutcome, Done, provision};
use super::source::{DeviceSource, SourceNotice};
use crate::central::station_side::lease_gate::LeaseGate;
use crate::central::station_side::sync::SyncEvent;
use crate::dps::DpsClient;
use crate::identity::pem;
use crate::identity::profile::DeviceProfile;
use crate::ledger::{
    AttestationKind, BatchRecord, EnrollmentKind, FailureStage, IdentityFilter, IdentityState,
    Ledger, LedgerError, NewBatch, NewEnrollment, Transition, WriterIdentity,
};

mod slot;

use slot::{Shared, slot_worker};

/// Why a batch could not start.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The ledger.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// The ledger thread.
    #[error(transparent)]
    LedgerCall(#[from] LedgerCallError),
    /// The key store.
    #[error(transparent)]
    Keys(#[from] KeysError),
    /// The batch's CA.
    #[error("batch {batch}: {message}")]
    Ca {
        /// The batch.
        batch: String,
        /// What is wrong.
        message: String,
    },
    /// A batch of the same name exists with other settings.
    #[error(
        "batch '{name}' already exists in the ledger with {what}; give this batch another name"
    )]
    BatchMismatch {
        /// The batch name.
        name: String,
        /// What differs.
        what: String,
    },
    /// The station joined a central ledger, but what `[central]` names cannot be used, so the
    /// batch cannot run on leases (and must not run without them).
    #[error(
        "batch {batch}: this station joined a central ledger, but its link cannot be opened ({message}); fix [central] in station.toml or join again with `dps-station central join`"
    )]
    Central {
        /// The batch.
        batch: String,
        /// What is wrong.
        message: String,
    },
    /// A slot's device family cannot do the batch's mode.
    #[error(
        "slot {slot} holds {family} devices, which cannot be provisioned in mode {mode}: {reason}; or give the slot another family in station.toml (family = \"...\")"
    )]
    FamilyMisfit {
        /// The slot.
        slot: String,
        /// Its family.
        family: &'static str,
        /// The batch's mode.
        mode: &'static str,
        /// What the family lacks and what to change.
        reason: String,
    },
    /// A thread could not be started.
    #[error("cannot start the {what} thread: {source}")]
    Thread {
        /// Which.
        what: String,
        /// Why.
        source: std::io::Error,
    },
}

/// What a run of the engine needs.
pub struct EngineSetup {
    /// The station.
    pub station: StationConfig,
    /// The batch.
    pub batch: BatchConfig,
    /// The open key store.
    pub keys: StationKeys,
    /// The DPS client, unless enrollment is offline.
    pub dps: Option<Arc<DpsClient>>,
    /// One device source per slot, by slot name.
    pub sources: Vec<(String, Box<dyn DeviceSource>)>,
}

/// What resuming from the ledger found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resumed {
    /// `issued` identities of the batch whose write never completed: voided (`failed{write}`).
    pub voided: u64,
    /// `written` identities put (back) on the enrollment queue.
    pub requeued: u64,
    /// Devices of the batch already done in earlier runs.
    pub already_done: u64,
}

/// The end of a run.
#[derive(Debug, Clone)]
pub struct RunSummary {
    /// Every device of this run.
    pub outcomes: Vec<DeviceOutcome>,
    /// What the enrollment worker did.
    pub enrollment: EnrollStats,
    /// What resuming did at start.
    pub resumed: Resumed,
    /// Whether the batch reached its size (else it was paused/closed early or a slot stopped).
    pub complete: bool,
    /// The final state.
    pub state: BatchState,
    /// Wall time of the run.
    pub wall: Duration,
    /// Identities of the batch still queued for DPS at the end.
    pub pending_enrollments: u64,
}

impl RunSummary {
    /// Devices that passed.
    pub fn passed(&self) -> usize {
        self.outcomes.iter().filter(|o| o.failure.is_none()).count()
    }
    /// Devices that failed.
    pub fn failed(&self) -> usize {
        self.outcomes.len() - self.passed()
    }
}

/// A running batch.
pub struct Engine {
    /// Events out.
    pub events: Receiver<Event>,
    commands: Sender<Command>,
    coordinator: JoinHandle<RunSummary>,
}

impl Engine {
    /// The channel to send commands on.
    pub fn commands(&self) -> Sender<Command> {
        self.commands.clone()
    }

    /// Waits for the batch to end.
    pub fn join(self) -> Option<RunSummary> {
        drop(self.commands);
        self.coordinator.join().ok()
    }

    /// Opens the ledger, resumes what an earlier run left, and starts the threads.
    pub fn start(setup: EngineSetup) -> Result<Engine, EngineError> {
        Self::start_preparing_ledger(setup, |_| Ok(()))
    }

    /// [`Engine::start`] that first runs `prepare` on the freshly opened ledger: tests use it to
    /// cap the ledger's size ([`Ledger::limit_pages`]) so that SQLite answers SQLITE_FULL in the
    /// middle of a batch, as on a full disk, without needing a small filesystem.
    #[doc(hidden)]
    pub fn start_preparing_ledger(
        setup: EngineSetup,
        prepare: impl FnOnce(&Ledger) -> Result<(), LedgerError>,
    ) -> Result<Engine, EngineError> {
        Self::start_with(setup, prepare, None)
    }

    /// [`Engine::start`] for a station joined to a central ledger: the batch issues identities
    /// only from leases the service grants (`station::lease_gate`); unused parts go back when the
    /// run ends.
    pub fn start_leased(setup: EngineSetup, leases: LeaseSetup) -> Result<Engine, EngineError> {
        Self::start_with(setup, |_| Ok(()), Some(leases))
    }

    fn start_with(
        setup: EngineSetup,
        prepare: impl FnOnce(&Ledger) -> Result<(), LedgerError>,
        leases: Option<LeaseSetup>,
    ) -> Result<Engine, EngineError> {
        let EngineSetup {
            station,
            batch,
            keys,
            dps,
            sources,
        } = setup;
        // Before the ledger is touched: every slot's family must be able to do the batch's mode.
        for (slot, source) in &sources {
            let family = source.family();
            super::family_fit::batch_fits(&batch, &family.capabilities()).map_err(|reason| {
                EngineError::FamilyMisfit {
                    slot: slot.clone(),
                    family: family.as_str(),
                    mode: batch.mode.as_str(),
                    reason,
                }
            })?;
            if family == crate::device::driver::Family::Esp32 {
                super::batch_esp32::check_room(&batch).map_err(|reason| {
                    EngineError::FamilyMisfit {
                        slot: slot.clone(),
                        family: family.as_str(),
                        mode: batch.mode.as_str(),
                        reason,
                    }
                })?;
            }
        }
        let writer = WriterIdentity {
            station: station.name.clone(),
            operator: station.operator.clone(),
        };
        let mut ledger = Ledger::open(&station.ledger, &writer)?;
        prepare(&ledger)?;
        let batch_id = open_batch(&mut ledger, &batch)?;
        if let Some(reason) = &batch.reprovision {
            // The run's choice, audited once; each device re-provisioned gets its own row.
            ledger.append_audit(
                &station.operator,
                "reprovisioning.chosen",
                &format!("batch:{}", batch.name),
                &serde_json::json!({ "reason": reason }),
            )?;
        }
        if let Some(central) = &station.central {
            let site =
                central.enrollment == crate::station::config::central::EnrollmentSite::Central;
            ledger.transaction(|w| w.set_central_enrollment(site))?;
        }
        let resumed = resume(&mut ledger, &batch)?;
        // A joined station's batch always runs on leases (overbuild protection): the caller may
        // hand a setup in (tests, the demo desk); otherwise it comes from `[central]`.
        let leases = match (leases, &station.central) {
            (Some(l), _) => Some(l),
            (None, Some(central)) => {
                Some(LeaseSetup::from_central(central, &keys).map_err(|e| {
                    EngineError::Central {
                        batch: batch.name.clone(),
                        message: e.to_string(),
                    }
                })?)
            }
            (None, None) => None,
        };
        let gate = match &leases {
            Some(_) => Some(LeaseGate::new(
                &batch.name,
                ledger.held_leases(Some(&batch.name))?,
            )),
            None => None,
        };
        let ca = load_ca(&keys, &batch)?;
        let profile =
            DeviceProfile::valid_for_days(batch.certificate_validity_days).map_err(|e| {
                EngineError::Ca {
                    batch: batch.name.clone(),
                    message: e.to_string(),
                }
            })?;
        let (ledger_thread, ledger_handle) =
            LedgerThread::start(ledger).map_err(|source| EngineError::Thread {
                what: "ledger writer".into(),
                source,
            })?;

        let (events_tx, events_rx) = mpsc::channel::<Event>();
        let (commands_tx, commands_rx) = mpsc::channel::<Command>();
        let group_ca_der = ca.as_ref().map(|c| c.issuer_der.clone());
        let ctx = Arc::new(BatchContext {
            batch: batch.clone(),
            batch_id,
            keys: keys.clone(),
            ca,
            profile,
            ledger: ledger_handle.clone(),
            leases: gate.clone(),
        });
        let running_leases = match (leases, gate) {
            (Some(setup), Some(gate)) => Some(
                RunningLeases::start(setup, ledger_handle.clone(), gate).map_err(|source| {
                    EngineError::Thread {
                        what: "lease keeper".into(),
                        source,
                    }
                })?,
            ),
            _ => None,
        };

        let shared = Arc::new(Shared {
            paused: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            claimed: AtomicU64::new(0),
            passed: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            target: batch
                .target()
                .map(|t| t.saturating_sub(resumed.already_done)),
            outcomes: Mutex::new(Vec::new()),
            labels: LabelDesk::default(),
        });
        let _ = events_tx.send(Event::Batch(BatchState::Open));
        let _ = events_tx.send(Event::Resumed {
            already_done: resumed.already_done,
            size: batch.target(),
        });

        let mut slots = Vec::new();
        for (slot, source) in sources {
            let (ctx, shared, events) = (ctx.clone(), shared.clone(), events_tx.clone());
            let name = slot.clone();
            let handle = std::thread::Builder::new()
                .name(format!("slot-{slot}"))
                .spawn(move || slot_worker(&name, source, &ctx, &shared, &events))
                .map_err(|source| EngineError::Thread {
                    what: format!("slot {slot}"),
                    source,
                })?;
            slots.push(handle);
        }

        let closing = Arc::new(AtomicBool::new(false));
        let abort = Arc::new(AtomicBool::new(false));
        let enroll_now = batch.timing == EnrollTiming::Immediately;
        // `[central] enrollment = "central"`: the service enrolls this station's identities (it
        // holds the DPS connection string); the station's own enrollment worker stays off.
        let central_enrolls = station.central.as_ref().is_some_and(|c| {
            c.enrollment == crate::station::config::central::EnrollmentSite::Central
        });
        let dps = if central_enrolls { None } else { dps };
        let worker = match (dps, batch.timing) {
            (Some(client), EnrollTiming::Immediately | EnrollTiming::BatchEnd) => {
                Some(EnrollWorker {
                    client,
                    ledger: ledger_handle.clone(),
                    batch: batch.clone(),
                    keys,
                    group_ca_der,
                    events: events_tx.clone(),
                })
            }
            _ => None,
        };
        let start_worker =
            |worker: EnrollWorker, closing: Arc<AtomicBool>, abort: Arc<AtomicBool>| {
                std::thread::Builder::new()
                    .name("enrollment".into())
                    .spawn(move || worker.run(&closing, &abort))
                    .map_err(|source| EngineError::Thread {
                        what: "enrollment".into(),
                        source,
                    })
            };
        let mut worker_slot = None;
        let mut deferred = None;
        match worker {
            Some(w) if enroll_now => {
                worker_slot = Some(start_worker(w, closing.clone(), abort.clone())?)
            }
            Some(w) => deferred = Some(w),
            None => {}
        }

        // The central ledger's sync worker (issue 18), when the station joined one: it reaches
        // the ledger through the ledger thread and never holds up a slot. Failing to start it
        // (a missing file) is reported and the line runs on; the outbox keeps every row.
        let central_sync = station.central.as_ref().and_then(|central| {
            let events = events_tx.clone();
            let notify = move |e: SyncEvent| {
                let _ = events.send(Event::Central(central_notice(e)));
            };
            match crate::central::station_side::start::start_sync(
                central,
                Some(&ctx.keys),
                ledger_handle.clone(),
                notify,
            ) {
                Ok(handle) => Some(handle),
                Err(e) => {
                    tracing::error!(error = %e, "central sync not started");
                    let _ = events_tx.send(Event::Central(CentralNotice::Stopped {
                        message: e.to_string(),
                    }));
                    None
                }
            }
        });

        let _ = events_tx.send(Event::Batch(BatchState::Running));
        let coordinator = {
            let (shared, events) = (shared.clone(), events_tx.clone());
            std::thread::Builder::new()
                .name("batch".into())
                .spawn(move || {
                    let started = Instant::now();
                    // Commands until every slot is done.
                    while slots.iter().any(|s| !s.is_finished()) {
                        match commands_rx.recv_timeout(Duration::from_millis(50)) {
                            Ok(Command::Pause) => {
                                shared.paused.store(true, Ordering::SeqCst);
                                let _ = events.send(Event::Batch(BatchState::Paused));
                            }
                            Ok(Command::Resume) => {
                                shared.paused.store(false, Ordering::SeqCst);
                                let _ = events.send(Event::Batch(BatchState::Running));
                            }
                            Ok(Command::Close) => shared.stop.store(true, Ordering::SeqCst),
                            Ok(Command::Label(serial)) => {
                                let _ = events.send(match shared.labels.scanned(&serial) {
                                    LabelOutcome::Taken { slot } => Event::LabelTaken {
                                        slot,
                                        serial: serial.trim().to_string(),
                                    },
                                    LabelOutcome::Refused(reason) => {
                                        Event::LabelRefused { serial, reason }
                                    }
                                });
                            }
                            Ok(Command::SetOperator(name)) => {
                                // A ledger that cannot record this cannot record the next
                                // device either: that stops the line with its own message.
                                if let Err(e) = ledger_handle.call(move |l| l.set_operator(&name)) {
                                    tracing::error!(
                                        "the ledger did not record the operator change: {e}"
                                    );
                                }
                            }
                            Err(mpsc::RecvTimeoutError::Disconnected) => {
                                // No one can send any more; a paused batch could never resume.
                                if shared.paused.load(Ordering::SeqCst) {
                                    shared.stop.store(true, Ordering::SeqCst);
                                }
                                for s in slots.drain(..) {
                                    let _ = s.join();
                                }
                                break;
                            }
                            Err(mpsc::RecvTimeoutError::Timeout) => {}
                        }
                    }
                    for s in slots {
                        let _ = s.join();
                    }
                    // No slot takes a device any more: unused lease parts go back to the service.
                    if let Some(leases) = running_leases {
                        leases.finish();
                    }
                    let complete = shared.target.is_some_and(|t| {
                        shared.passed.load(Ordering::SeqCst) + shared.failed.load(Ordering::SeqCst)
                            >= t
                    });
                    if let Some(w) = deferred.take() {
                        match start_worker(w, closing.clone(), abort.clone()) {
                            Ok(h) => worker_slot = Some(h),
                            Err(e) => {
                                let _ = events.send(Event::EnrollmentProblem {
                                    message: e.to_string(),
                                });
                            }
                        }
                    }
                    closing.store(true, Ordering::SeqCst);
                    let enrollment = worker_slot
                        .map(|h| h.join().unwrap_or_default())
                        .unwrap_or_default();
                    let target = batch.dps_target.clone();
                    let pending = ledger_handle
                        .call(move |l| l.pending_enrollments(&target, 1_000_000))
                        .map(|p| p.len() as u64)
                        .unwrap_or(0);
                    // Stops the sync worker after its round in flight; its rows stay in the outbox.
                    drop(central_sync);
                    drop(ledger_handle);
                    drop(ctx);
                    let _ = ledger_thread.join();
                    // A batch that did not reach its size stays resumable: it is paused, not closed.
                    let state = if complete {
                        BatchState::Closed
                    } else {
                        BatchState::Paused
                    };
                    let _ = events.send(Event::Batch(state));
                    let outcomes = shared
                        .outcomes
                        .lock()
                        .map(|o| o.clone())
                        .unwrap_or_default();
                    RunSummary {
                        outcomes,
                        enrollment,
                        resumed,
                        complete,
                        state,
                        wall: started.elapsed(),
                        pending_enrollments: pending,
                    }
                })
                .map_err(|source| EngineError::Thread {
                    what: "batch".into(),
                    source,
                })?
        };
        Ok(Engine {
            events: events_rx,
            commands: commands_tx,
            coordinator,
        })
    }
}

fn attestation_of(batch: &BatchConfig) -> (AttestationKind, EnrollmentKind) {
    use super::config::Mode::*;
    let a = match batch.mode {
        X509Csr | X509Group | X509Inject => AttestationKind::X509,
        SymmetricGroup | SymmetricIndividual => AttestationKind::SymmetricKey,
        Tpm => AttestationKind::Tpm,
    };
    (
        a,
        if batch.mode.is_group() {
            EnrollmentKind::Group
        } else {
            EnrollmentKind::Individual
        },
    )
}

/// The rule for a batch that already ran: its product, attestation kind and DPS target are what
/// the ledger recorded (its identities and enrollments were made with them). Returns what the
/// ledger holds when `batch` disagrees, for the error; the batch editor applies the same rule.
pub fn ledger_disagreement(existing: &BatchRecord, batch: &BatchConfig) -> Option<String> {
    let (attestation, _) = attestation_of(batch);
    (existing.attestation != attestation
        || existing.dps_target != batch.dps_target
        || existing.product != batch.product)
        .then(|| {
            format!(
                "product {}, {} attestation, DPS target {}",
                existing.product, existing.attestation, existing.dps_target
            )
        })
}

fn open_batch(
    ledger: &mut Ledger,
    batch: &BatchConfig,
) -> Result<crate::ledger::BatchId, EngineError> {
    let (attestation, enrollment_kind) = attestation_of(batch);
    if let Some(existing) = ledger.find_batch(&batch.name)? {
        if let Some(what) = ledger_disagreement(&existing, batch) {
            return Err(EngineError::BatchMismatch {
                name: batch.name.clone(),
                what,
            });
        }
        return Ok(existing.id);
    }
    Ok(ledger.create_batch(&NewBatch {
        name: batch.name.clone(),
        product: batch.product.clone(),
        attestation,
        enrollment_kind,
        dps_target: batch.dps_target.clone(),
        registration_id_template: batch.template.as_str().to_string(),
    })?)
}

/// Crash-safe resume: voids identities that were issued but never confirmed written (the device
/// may hold a partial write; it comes back through the line and is reissued), and puts written
/// ones back on the enrollment queue.
pub fn resume(ledger: &mut Ledger, batch: &BatchConfig) -> Result<Resumed, LedgerError> {
    let mut resumed = Resumed::default();
    let list = |ledger: &Ledger, state| {
        ledger.list_identities(&IdentityFilter {
            batch: Some(batch.name.clone()),
            state: Some(state),
            ..IdentityFilter::default()
        })
    };
    for identity in list(ledger, IdentityState::Issued)? {
        ledger.transition(
            &identity.registration_id,
            &Transition::Failed {
                stage: FailureStage::Write,
                reason:
                    "voided on restart: the station stopped before the device confirmed the write"
                        .into(),
            },
        )?;
        resumed.voided += 1;
    }
    let (_, kind) = attestation_of(batch);
    for identity in list(ledger, IdentityState::Written)? {
        ledger.queue_enrollment(
            &identity.registration_id,
            &NewEnrollment {
                dps_target: batch.dps_target.clone(),
                kind,
                group_name: batch.enrollment_group.clone(),
            },
        )?;
        resumed.requeued += 1;
    }
    resumed.already_done = resumed.requeued + list(ledger, IdentityState::Enrolled)?.len() as u64;
    Ok(resumed)
}

fn load_ca(keys: &StationKeys, batch: &BatchConfig) -> Result<Option<CaMaterial>, EngineError> {
    let (Some(key), Some(chain_pem)) = (&batch.ca_key, &batch.ca_chain_pem) else {
        return Ok(None);
    };
    let ca_err = |message: String| EngineError::Ca {
        batch: batch.name.clone(),
        message,
    };
    let signer = keys.signer(key)?;
    let blocks = pem::decode_all(chain_pem).map_err(|e| ca_err(format!("keys.ca_chain: {e}")))?;
    let issuer_der = blocks
        .iter()
        .find(|b| b.label == pem::label::CERTIFICATE)
        .map(|b| b.der.clone())
        .ok_or_else(|| ca_err("keys.ca_chain holds no certificate".into()))?;
    // Checked once here, so a wrong chain stops the batch before any device is touched.
    crate::identity::issue::Issuer::new(issuer_der.clone(), signer.as_ref()).map_err(|e| {
        ca_err(format!(
            "keys.ca_key {key} does not match the first certificate of keys.ca_chain: {e}"
        ))
    })?;
    let chain_pem = blocks
        .iter()
        .filter(|b| b.label == pem::label::CERTIFICATE)
        .map(|b| pem::encode(pem::label::CERTIFICATE, &b.der))
        .collect::<String>();
    Ok(Some(CaMaterial {
        signer,
        issuer_der,
        chain_pem,
    }))
}

/// A sync worker event as the desk and `run` see it.
fn central_notice(e: SyncEvent) -> CentralNotice {
    match e {
        SyncEvent::Uploaded { head_seq, .. } => CentralNotice::Uploaded { head_seq },
        SyncEvent::Unreachable { reason, .. } => CentralNotice::Unreachable { message: reason },
        SyncEvent::Quarantined(q) => CentralNotice::Conflict {
            serial: q.device_serial,
            model: q.device_model,
            registration_id: q.registration_id,
            held_by: q.held_by,
        },
        SyncEvent::Stopped { reason } => CentralNotice::Stopped { message: reason },
    }
}
