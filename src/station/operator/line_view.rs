//! One picture of the line (slots, counters, enrollment, health, problems) and the stamped events
//! that keep it current. The handle keeps one to give late listeners a snapshot; every listener
//! (the GUI, the benchmark, a test) applies the same events with [`LineView::apply`], so they all
//! agree. Nothing here draws.

use std::time::{Duration, SystemTime};

use super::roles::Role;
use crate::station::events::{BatchState, CentralNotice, Event, Stage};

/// An event with its number (gap-free per handle) and wall time.
#[derive(Debug, Clone, PartialEq)]
pub struct Stamped<T> {
    /// 1, 2, 3, ... in the order the handle published them.
    pub seq: u64,
    /// When.
    pub at: SystemTime,
    /// What.
    pub event: T,
}

/// What the station says, beyond the engine's own events.
#[derive(Debug, Clone, PartialEq)]
pub enum StationEvent {
    /// An engine event of the running batch.
    Engine(Event),
    /// A batch started on these slots (in fixture order).
    BatchStarted {
        /// Batch name.
        name: String,
        /// Its size, if counted.
        target: Option<u64>,
        /// Slot names.
        slots: Vec<String>,
    },
    /// The batch's run ended (complete, closed, or stopped).
    BatchEnded {
        /// Where the report went, if it could be written.
        report: Option<String>,
        /// Why the run could not end cleanly, if it could not.
        problem: Option<String>,
    },
    /// Someone signed in or changed role; `None` is signed out.
    Operator {
        /// Who.
        name: Option<String>,
        /// In which role.
        role: Role,
    },
}

/// The state of one part of the station the operator depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Health {
    /// Not used yet.
    #[default]
    Unknown,
    /// Working.
    Ok,
    /// Working with problems (DPS unreachable or throttled: the line runs on, devices queue).
    Degraded,
    /// Not working: the line stops.
    Lost,
}

/// What an operator should do with a failed device, in their words (the GUI translates).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Advice {
    /// Take it out, seat it again; it runs again.
    Reseat,
    /// Put it aside for the engineer (the station refused it on purpose).
    SetAside,
    /// The station itself has a problem (key store, ledger): call the engineer.
    CallEngineer,
}

/// The advice for a failure at `stage`.
pub fn advice(stage: Stage) -> Advice {
    match stage {
        Stage::Identify
        | Stage::Key
        | Stage::Write
        | Stage::Verify
        | Stage::Lock
        | Stage::Reset => Advice::Reseat,
        Stage::Check | Stage::Enroll => Advice::SetAside,
        Stage::Issue | Stage::Record => Advice::CallEngineer,
    }
}

/// What a tile shows.
#[derive(Debug, Clone, PartialEq)]
pub enum SlotState {
    /// No batch uses the slot.
    Idle,
    /// Waiting for a device.
    Waiting,
    /// A device is in, at this stage.
    Working(Stage),
    /// The last device passed (stays until the next is seated).
    Passed,
    /// The last device failed (stays until the next is seated).
    Failed {
        /// Where.
        stage: Stage,
        /// The engine's detail.
        detail: String,
    },
    /// The slot's port path is absent (its adapter unplugged, or a `/dev/serial/by-id` name that
    /// has not appeared yet): the slot waits for it.
    PortAbsent {
        /// The path it waits for.
        path: String,
        /// How long it has waited so far.
        waited: Duration,
    },
    /// A device is seated but its serial comes from its label: the operator scans it.
    NeedsLabel {
        /// What the device reported of itself (chip id, MAC), to tell which device it is.
        hardware_id: String,
    },
    /// The slot stopped (port gone, batch done, key store lost).
    Stopped(String),
    /// A joined station's slot waits for the central ledger (no lease unit); it takes the next
    /// device by itself once a lease arrives.
    LeaseWaiting(crate::central::station_side::lease_gate::Waiting),
}

/// One fixture slot.
#[derive(Debug, Clone, PartialEq)]
pub struct SlotView {
    /// Its name in station.toml.
    pub name: String,
    /// What it shows.
    pub state: SlotState,
    /// The device's serial, once it said it.
    pub serial: Option<String>,
    /// The registration ID, once passed.
    pub registration_id: Option<String>,
    /// When the current (or last) device was seated.
    pub seated: Option<SystemTime>,
    /// How long the last device took, once done.
    pub took: Option<Duration>,
}

/// A problem that stays on screen until acknowledged.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    /// The event number that raised it (to acknowledge by).
    pub seq: u64,
    /// When.
    pub at: SystemTime,
    /// Which slot, if one.
    pub slot: Option<String>,
    /// The engine's words.
    pub text: String,
    /// The same in the desk's message files, where the desk has a message for it (a key and its
    /// arguments): the operator reads it in the desk's language; `text` stays for logs and `run`.
    pub message: Option<ProblemMessage>,
}

/// A problem's message key and arguments (`{name}` placeholders of the message files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProblemMessage {
    pub key: &'static str,
    pub args: Vec<(&'static str, String)>,
}

/// The line as it is now.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LineView {
    /// Slots in fixture order.
    pub slots: Vec<SlotView>,
    /// Running (or last) batch name.
    pub batch: Option<String>,
    /// Its state.
    pub state: Option<BatchState>,
    /// Whether a batch run is in progress (between started and ended).
    pub running: bool,
    /// Counted size.
    pub target: Option<u64>,
    /// Devices of this batch done in earlier runs (a resumed batch counts on from them).
    pub done_before: u64,
    /// Passed this run.
    pub passed: u64,
    /// Failed this run.
    pub failed: u64,
    /// Enrollment: confirmed, refused, queued.
    pub enrolled: u64,
    /// Refused by DPS.
    pub refused: u64,
    /// Still queued for DPS.
    pub pending: u64,
    /// Key store, ledger, DPS.
    pub keys: Health,
    /// The ledger.
    pub ledger: Health,
    /// DPS reachability.
    pub dps: Health,
    /// Problems not yet acknowledged, oldest first (bounded).
    pub problems: Vec<Problem>,
    /// Signed-in person and role.
    pub operator: Option<String>,
    /// Their role.
    pub role: Option<Role>,
    /// When the batch run started.
    pub started: Option<SystemTime>,
    /// Time per passed device, the last [`TIMES_KEPT`].
    pub times: Vec<Duration>,
    /// The last event applied.
    pub seq: u64,
}

/// How many device times are kept for the median (enough for a shift's trend, bounded memory).
pub const TIMES_KEPT: usize = 512;
const PROBLEMS_KEPT: usize = 50;

impl LineView {
    /// Applies one stamped event.
    pub fn apply(&mut self, stamped: &Stamped<StationEvent>) {
        self.seq = stamped.seq;
        let at = stamped.at;
        match &stamped.event {
            StationEvent::BatchStarted {
                name,
                target,
                slots,
            } => {
                self.batch = Some(name.clone());
                self.state = Some(BatchState::Open);
                self.running = true;
                self.target = *target;
                (self.passed, self.failed) = (0, 0);
                self.done_before = 0;
                (self.enrolled, self.refused, self.pending) = (0, 0, 0);
                self.times.clear();
                self.started = Some(at);
                self.keys = Health::Ok;
                self.ledger = Health::Ok;
                self.slots = slots
                    .iter()
                    .map(|s| SlotView {
                        name: s.clone(),
                        state: SlotState::Idle,
                        serial: None,
                        registration_id: None,
                        seated: None,
                        took: None,
                    })
                    .collect();
            }
            StationEvent::BatchEnded { problem, .. } => {
                self.running = false;
                if let Some(p) = problem {
                    self.raise(stamped, None, p.clone());
                }
            }
            StationEvent::Operator { name, role } => {
                self.operator = name.clone();
                self.role = name.as_ref().map(|_| *role);
            }
            StationEvent::Engine(e) => self.apply_engine(stamped, e, at),
        }
    }

    fn apply_engine(&mut self, stamped: &Stamped<StationEvent>, event: &Event, at: SystemTime) {
        match event {
            Event::Batch(state) => self.state = Some(*state),
            Event::SlotWaiting { slot } => {
                if let Some(s) = self.slot_mut(slot) {
                    // The last result stays until the next device is seated.
                    if !matches!(s.state, SlotState::Passed | SlotState::Failed { .. }) {
                        s.state = SlotState::Waiting;
                    }
                }
            }
            Event::PortAbsent { slot, path, waited } => {
                if let Some(s) = self.slot_mut(slot) {
                    s.state = SlotState::PortAbsent {
                        path: path.clone(),
                        waited: *waited,
                    };
                }
            }
            Event::LeaseWaiting { slot, waiting } => {
                if let Some(s) = self.slot_mut(slot) {
                    s.state = SlotState::LeaseWaiting(waiting.clone());
                }
            }
            Event::Resumed { already_done, .. } => self.done_before = *already_done,
            Event::LabelWanted { slot, hardware_id } => {
                if let Some(s) = self.slot_mut(slot) {
                    s.state = SlotState::NeedsLabel {
                        hardware_id: hardware_id.clone(),
                    };
                    s.serial = None;
                    s.registration_id = None;
                    s.seated = Some(at);
                    s.took = None;
                }
            }
            Event::LabelTaken { slot, serial } => {
                if let Some(s) = self.slot_mut(slot) {
                    s.serial = Some(serial.clone());
                }
            }
            // The desk says it where the scan was made; the line itself did not change.
            Event::LabelRefused { .. } => {}
            Event::DeviceSeen { slot, serial, .. } => {
                if let Some(s) = self.slot_mut(slot) {
                    s.state = SlotState::Working(Stage::Identify);
                    s.serial = Some(serial.clone());
                    s.registration_id = None;
                    s.seated = Some(at);
                    s.took = None;
                }
            }
            Event::StageStarted { slot, stage } => {
                if let Some(s) = self.slot_mut(slot) {
                    s.state = SlotState::Working(*stage);
                }
            }
            Event::Passed {
                slot,
                serial,
                registration_id,
                elapsed,
            } => {
                if let Some(s) = self.slot_mut(slot) {
                    s.state = SlotState::Passed;
                    s.serial = Some(serial.clone());
                    s.registration_id = Some(registration_id.clone());
                    s.took = Some(*elapsed);
                }
                if self.times.len() == TIMES_KEPT {
                    self.times.remove(0);
                }
                self.times.push(*elapsed);
            }
            Event::Failed {
                slot,
                serial,
                stage,
                reason,
            } => {
                if let Some(s) = self.slot_mut(slot) {
                    s.state = SlotState::Failed {
                        stage: *stage,
                        detail: reason.clone(),
                    };
                    if serial.is_some() {
                        s.serial = serial.clone();
                    }
                    s.took = s.seated.and_then(|t| at.duration_since(t).ok());
                }
                match stage {
                    Stage::Issue => self.keys = Health::Lost,
                    Stage::Record => self.ledger = Health::Lost,
                    _ => {}
                }
            }
            Event::SlotStopped { slot, reason } => {
                let normal = reason.contains("complete")
                    || reason.contains("was stopped")
                    || reason.contains("no more devices");
                if let Some(s) = self.slot_mut(slot) {
                    // A finished batch leaves its last results on the tiles.
                    if !normal || !matches!(s.state, SlotState::Passed | SlotState::Failed { .. }) {
                        s.state = SlotState::Stopped(reason.clone());
                    }
                }
                if !normal {
                    self.raise(stamped, Some(slot.clone()), reason.clone());
                }
            }
            Event::Progress {
                passed,
                failed,
                target,
            } => {
                self.passed = *passed;
                self.failed = *failed;
                self.target = *target;
            }
            Event::Enrollment {
                enrolled,
                failed,
                pending,
            } => {
                self.enrolled = *enrolled;
                self.refused = *failed;
                self.pending = *pending;
                self.dps = Health::Ok;
            }
            Event::EnrollmentProblem { message } => {
                self.dps = Health::Degraded;
                self.raise(stamped, None, message.clone());
            }
            // The central ledger (issue 18): a conflict or a stopped sync waits for someone to
            // acknowledge it; the line itself never waits on the service.
            Event::Central(notice) => match notice {
                CentralNotice::Uploaded { .. } => {}
                CentralNotice::Conflict {
                    serial,
                    model,
                    registration_id,
                    held_by,
                } => {
                    let text = notice.describe();
                    let text = text.trim_start_matches('▲').trim_start().to_string();
                    self.raise(stamped, None, text.clone());
                    if let Some(p) = self
                        .problems
                        .iter_mut()
                        .find(|p| p.slot.is_none() && p.text == text)
                    {
                        p.message = Some(ProblemMessage {
                            key: "central.desk_conflict",
                            args: vec![
                                ("serial", serial.clone()),
                                ("model", model.clone()),
                                ("registration_id", registration_id.clone()),
                                ("held_by", held_by.clone()),
                            ],
                        });
                    }
                }
                CentralNotice::Unreachable { .. } | CentralNotice::Stopped { .. } => {
                    let text = notice.describe();
                    let text = text.trim_start_matches('▲').trim_start().to_string();
                    self.raise(stamped, None, text);
                }
            },
        }
    }

    fn raise(&mut self, stamped: &Stamped<StationEvent>, slot: Option<String>, text: String) {
        // DPS unreachable for an hour says the same thing every retry: one line, kept current.
        if let Some(p) = self
            .problems
            .iter_mut()
            .find(|p| p.slot == slot && p.text == text)
        {
            p.at = stamped.at;
            return;
        }
        if self.problems.len() == PROBLEMS_KEPT {
            self.problems.remove(0);
        }
        self.problems.push(Problem {
            seq: stamped.seq,
            at: stamped.at,
            slot,
            text,
            message: None,
        });
    }

    /// Takes a problem off the list (the operator saw it).
    pub fn acknowledge(&mut self, seq: u64) {
        self.problems.retain(|p| p.seq != seq);
    }

    fn slot_mut(&mut self, name: &str) -> Option<&mut SlotView> {
        self.slots.iter_mut().find(|s| s.name == name)
    }

    /// Passed / done, if any is done.
    pub fn yield_ratio(&self) -> Option<f64> {
        let done = self.passed + self.failed;
        (done > 0).then(|| self.passed as f64 / done as f64)
    }

    /// Median time per passed device.
    pub fn median_time(&self) -> Option<Duration> {
        let mut t = self.times.clone();
        t.sort();
        t.get(t.len().saturating_sub(1) / 2).copied()
    }

    /// Devices done per hour since the batch started, as of `now`.
    pub fn per_hour(&self, now: SystemTime) -> Option<f64> {
        let secs = now.duration_since(self.started?).ok()?.as_secs_f64();
        let done = self.passed + self.failed;
        (done > 0 && secs > 0.0).then(|| done as f64 * 3600.0 / secs)
    }

    /// Time left for a counted batch at the rate so far, as of `now`.
    pub fn eta(&self, now: SystemTime) -> Option<Duration> {
        let left = self.target?.saturating_sub(self.passed + self.failed);
        let rate = self.per_hour(now)? / 3600.0;
        Some(Duration::from_secs_f64(left as f64 / rate))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(seq: u64, event: StationEvent) -> Stamped<StationEvent> {
        Stamped {
            seq,
            at: SystemTime::UNIX_EPOCH + Duration::from_secs(seq),
            event,
        }
    }

    #[test]
    fn a_result_stays_until_the_next_device_is_seated_and_problems_wait_for_acknowledgement() {
        let mut v = LineView::default();
        let mut n = 0;
        let mut feed = |v: &mut LineView, e: StationEvent| {
            n += 1;
            v.apply(&stamp(n, e));
        };
        feed(
            &mut v,
            StationEvent::BatchStarted {
                name: "b".into(),
                target: Some(2),
                slots: vec!["S1".into()],
            },
        );
        feed(
            &mut v,
            StationEvent::Engine(Event::DeviceSeen {
                slot: "S1".into(),
                serial: "SN1".into(),
                model: "m".into(),
            }),
        );
        feed(
            &mut v,
            StationEvent::Engine(Event::Failed {
                slot: "S1".into(),
                serial: Some("SN1".into()),
                stage: Stage::Write,
                reason: "no answer".into(),
            }),
        );
        feed(
            &mut v,
            StationEvent::Engine(Event::SlotWaiting { slot: "S1".into() }),
        );
        assert!(matches!(
            v.slots[0].state,
            SlotState::Failed {
                stage: Stage::Write,
                ..
            }
        ));
        assert_eq!(advice(Stage::Write), Advice::Reseat);
        feed(
            &mut v,
            StationEvent::Engine(Event::DeviceSeen {
                slot: "S1".into(),
                serial: "SN2".into(),
                model: "m".into(),
            }),
        );
        assert_eq!(v.slots[0].state, SlotState::Working(Stage::Identify));
        feed(
            &mut v,
            StationEvent::Engine(Event::SlotStopped {
                slot: "S1".into(),
                reason: "port /dev/x vanished".into(),
            }),
        );
        assert_eq!(v.problems.len(), 1);
        for _ in 0..3 {
            feed(
                &mut v,
                StationEvent::Engine(Event::EnrollmentProblem {
                    message: "DPS unreachable".into(),
                }),
            );
        }
        assert_eq!(v.problems.len(), 2, "a repeated problem is one line");
        assert_eq!(v.dps, Health::Degraded);
        for seq in [v.problems[0].seq, v.problems[1].seq] {
            v.acknowledge(seq);
        }
        assert!(v.problems.is_empty());
    }

    #[test]
    fn a_central_conflict_is_one_problem_with_the_desk_message_and_its_arguments() {
        let mut v = LineView::default();
        let mut n = 0;
        let mut feed = |v: &mut LineView, e: StationEvent| {
            n += 1;
            v.apply(&stamp(n, e));
        };
        let conflict = || {
            StationEvent::Engine(Event::Central(CentralNotice::Conflict {
                serial: "SN9".into(),
                model: "sim-sensor".into(),
                registration_id: "demo-sn9".into(),
                held_by: "line-2".into(),
            }))
        };
        feed(
            &mut v,
            StationEvent::Engine(Event::EnrollmentProblem {
                message: "DPS unreachable".into(),
            }),
        );
        feed(&mut v, conflict());
        feed(&mut v, conflict());
        assert_eq!(v.problems.len(), 2, "a repeated conflict is one line");
        let p = &v.problems[1];
        assert!(
            p.text.contains("SN9") && p.text.contains("line-2"),
            "{}",
            p.text
        );
        let m = p.message.as_ref().expect("the desk's message for it");
        assert_eq!(m.key, "central.desk_conflict");
        assert!(m.args.contains(&("held_by", "line-2".to_string())));
        assert!(m.args.contains(&("serial", "SN9".to_string())));
        assert_eq!(
            v.problems[0].message, None,
            "other problems keep the engine's words"
        );
    }

    #[test]
    fn a_key_store_that_cannot_issue_shows_as_lost_and_the_slot_as_stopped() {
        let mut v = LineView::default();
        let events = [
            StationEvent::BatchStarted {
                name: "b".into(),
                target: None,
                slots: vec!["A1".into(), "A2".into()],
            },
            StationEvent::Engine(Event::DeviceSeen {
                slot: "A1".into(),
                serial: "SN1".into(),
                model: "m".into(),
            }),
            StationEvent::Engine(Event::Failed {
                slot: "A1".into(),
                serial: Some("SN1".into()),
                stage: Stage::Issue,
                reason: "CKR_DEVICE_REMOVED".into(),
            }),
            StationEvent::Engine(Event::SlotStopped {
                slot: "A1".into(),
                reason: "the key store could not issue; the batch is stopped".into(),
            }),
        ];
        for (n, e) in events.into_iter().enumerate() {
            v.apply(&stamp(n as u64 + 1, e));
        }
        assert_eq!(v.keys, Health::Lost);
        assert_eq!(v.ledger, Health::Ok);
        assert!(matches!(v.slots[0].state, SlotState::Stopped(_)));
        assert_eq!(
            v.slots[1].state,
            SlotState::Idle,
            "the other slot is untouched"
        );
        assert_eq!(advice(Stage::Issue), Advice::CallEngineer);
        assert_eq!(v.problems.len(), 1);
    }
}
