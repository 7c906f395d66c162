//! What the engine says (events out) and what it is told (commands in). Nothing here knows who
//! listens: the headless `run` draws progress bars from these, the GUI will repaint on them.

use std::time::Duration;

/// The steps of the per-device pipeline, named as operators and the report see them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stage {
    /// Opening the port and `HELLO`.
    Identify,
    /// Registration ID, product line and duplicate checks.
    Check,
    /// The guarded factory reset of a locked device being re-provisioned.
    Reset,
    /// Device key generation / CSR / TPM EK read, or the station making the key.
    Key,
    /// Certificate issuing or key derivation in the key store.
    Issue,
    /// The write-ahead ledger record.
    Record,
    /// Writing chain, key and config to the device.
    Write,
    /// Reading back and comparing digests.
    Verify,
    /// Locking the device.
    Lock,
    /// Enrolling with DPS.
    Enroll,
}

impl Stage {
    /// The name in events, reports and the ledger's failure reason.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Identify => "identify",
            Stage::Check => "check",
            Stage::Reset => "reset",
            Stage::Key => "key",
            Stage::Issue => "issue",
            Stage::Record => "record",
            Stage::Write => "write",
            Stage::Verify => "verify",
            Stage::Lock => "lock",
            Stage::Enroll => "enroll",
        }
    }
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A batch's lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchState {
    /// Created, no device yet.
    Open,
    /// Slots take devices.
    Running,
    /// Slots finish what they hold and take no new device.
    Paused,
    /// Done: no more devices; enrollment may still finish.
    Closed,
}

/// Something that happened, for whoever shows the station.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The batch changed state.
    Batch(BatchState),
    /// A slot waits for a device.
    SlotWaiting {
        /// Slot name.
        slot: String,
    },
    /// A slot's port path is absent (an adapter not plugged in, a by-id name not there yet): the
    /// slot waits for it to appear. Repeated while it waits.
    PortAbsent {
        /// Slot name.
        slot: String,
        /// The path it waits for.
        path: String,
        /// How long it has waited.
        waited: Duration,
    },
    /// A joined station's slot waits for the central ledger: no lease unit to issue from. It takes
    /// the next device by itself once a lease arrives.
    LeaseWaiting {
        /// Slot name.
        slot: String,
        /// Why: lease used up, expired, or the service's refusal.
        waiting: crate::central::station_side::lease_gate::Waiting,
    },
    /// A device answered in a slot.
    DeviceSeen {
        /// Slot name.
        slot: String,
        /// Its serial number.
        serial: String,
        /// Its model.
        model: String,
    },
    /// A device is in the slot but its serial must come from its label: the operator scans it
    /// (the device reported none, or the batch takes serials from labels).
    LabelWanted {
        /// Slot name.
        slot: String,
        /// What the device did report (a chip id, a MAC), to tell it apart; may be empty.
        hardware_id: String,
    },
    /// A scanned label became the serial of the device in a slot.
    LabelTaken {
        /// Slot name.
        slot: String,
        /// The label's serial.
        serial: String,
    },
    /// A scanned label was not taken (no slot waits, or another slot holds it).
    LabelRefused {
        /// What was scanned.
        serial: String,
        /// Why, and what to do.
        reason: String,
    },
    /// A pipeline stage began.
    StageStarted {
        /// Slot name.
        slot: String,
        /// The stage.
        stage: Stage,
    },
    /// The device left with a working, recorded identity.
    Passed {
        /// Slot name.
        slot: String,
        /// Serial number.
        serial: String,
        /// Its registration ID.
        registration_id: String,
        /// Time from HELLO to lock.
        elapsed: Duration,
    },
    /// The device failed; the ledger holds its state (voided or failed).
    Failed {
        /// Slot name.
        slot: String,
        /// Serial, if the device said it.
        serial: Option<String>,
        /// Where it failed.
        stage: Stage,
        /// Why, and what to do.
        reason: String,
    },
    /// The slot stopped for good (port gone, batch done, key store failed).
    SlotStopped {
        /// Slot name.
        slot: String,
        /// Why.
        reason: String,
    },
    /// Devices done so far in this run (add [`Event::Resumed`]'s `already_done` for the batch).
    Progress {
        /// Passed.
        passed: u64,
        /// Failed.
        failed: u64,
        /// What this run has to do: the batch's size less what earlier runs did, if bounded.
        target: Option<u64>,
    },
    /// At start: the devices of this batch the ledger holds as done by earlier runs (a resumed
    /// batch's progress starts there, not at 0); [`Event::Progress`] counts this run's devices.
    Resumed {
        /// Devices done in earlier runs (written or enrolled).
        already_done: u64,
        /// The batch's whole size, if bounded by a count.
        size: Option<u64>,
    },
    /// The enrollment worker's progress.
    Enrollment {
        /// Identities confirmed by DPS in this run.
        enrolled: u64,
        /// Identities DPS refused for good in this run.
        failed: u64,
        /// Still queued.
        pending: u64,
    },
    /// An enrollment problem that does not stop the line (DPS unreachable, throttled).
    EnrollmentProblem {
        /// What happened and what to do.
        message: String,
    },
    /// The central ledger's sync worker (issue 18); it never stops the line.
    Central(CentralNotice),
}

/// What the central sync worker reports to the desk and `run`.
#[derive(Debug, Clone, PartialEq)]
pub enum CentralNotice {
    /// The service refused one of this station's identities: another station already
    /// provisioned the device. The operator sets the device aside.
    Conflict {
        /// The device's serial number and model.
        serial: String,
        model: String,
        /// The identity the service quarantined.
        registration_id: String,
        /// The station that holds the device.
        held_by: String,
    },
    /// A batch of the outbox was acknowledged: the service holds the chain up to `head_seq`.
    Uploaded { head_seq: i64 },
    /// The service cannot be reached; the outbox keeps growing and is sent later.
    Unreachable { message: String },
    /// The sync worker stopped on a refusal (recorded in the ledger); the message says what to do.
    Stopped { message: String },
}

impl CentralNotice {
    /// In words, for `run` and logs.
    pub fn describe(&self) -> String {
        match self {
            CentralNotice::Conflict {
                serial, held_by, ..
            } => format!(
                "▲ serial {serial} was already provisioned on station {held_by}: set the device aside"
            ),
            CentralNotice::Uploaded { head_seq } => {
                format!("central ledger holds this station's chain up to row {head_seq}")
            }
            CentralNotice::Unreachable { message } => format!("central ledger: {message}"),
            CentralNotice::Stopped { message } => {
                format!("▲ central sync stopped: {message}")
            }
        }
    }
}

/// What the engine is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Stop taking new devices; in-flight devices finish.
    Pause,
    /// Take devices again.
    Resume,
    /// Finish in-flight devices, then close the batch.
    Close,
    /// A new operator signed in at the desk (a shift change mid-batch): devices recorded from
    /// now on carry their name in the ledger, and the change is audited.
    SetOperator(String),
    /// A device label was scanned: the serial of the device that has waited longest for one.
    Label(String),
}
