//! The lease gate: a joined station's slots take a device only when a lease unit is there for it.
//!
//! The gate mirrors the ledger's open leases of the batch in memory (the ledger stays the truth:
//! the unit is spent in the transaction that records the identity). A slot reserves a unit with a
//! [`Permit`] before it takes a device, so two slots never count on the same last unit; the permit
//! is released when the device is done, spent or not. With nothing left the slot waits, saying why
//! ([`Waiting`]), and takes the next device by itself as soon as the lease keeper adds a lease.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use crate::ledger::leases::HeldLease;

/// Why a slot waits for the central ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Waiting {
    /// Every unit of the held leases is spent.
    UsedUp,
    /// What was left belongs to leases that expired.
    Expired,
    /// The service refused the next lease (batch full, signed by another service): its words.
    Refused(String),
}

impl std::fmt::Display for Waiting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Waiting::UsedUp => f.write_str("waiting for the central ledger: lease used up"),
            Waiting::Expired => f.write_str("waiting for the central ledger: lease expired"),
            Waiting::Refused(why) => write!(f, "waiting for the central ledger: {why}"),
        }
    }
}

#[derive(Debug, Default)]
struct GateState {
    leases: Vec<HeldLease>,
    reserved: u32,
    problem: Option<String>,
}

/// The shared gate of one batch on a joined station.
#[derive(Debug)]
pub struct LeaseGate {
    batch: String,
    state: Mutex<GateState>,
    changed: Condvar,
}

/// One reserved unit; dropping it gives the reservation back (the unit itself is spent, or not,
/// in the ledger).
#[derive(Debug)]
pub struct Permit {
    gate: Arc<LeaseGate>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut state = self.gate.lock();
        state.reserved = state.reserved.saturating_sub(1);
        drop(state);
        self.gate.changed.notify_all();
    }
}

impl LeaseGate {
    /// A gate for `batch` holding what the ledger holds (`Ledger::held_leases`).
    pub fn new(batch: &str, held: Vec<HeldLease>) -> Arc<LeaseGate> {
        Arc::new(LeaseGate {
            batch: batch.to_string(),
            state: Mutex::new(GateState {
                leases: held.into_iter().filter(|l| l.batch == batch).collect(),
                ..GateState::default()
            }),
            changed: Condvar::new(),
        })
    }

    /// The batch it gates.
    pub fn batch(&self) -> &str {
        &self.batch
    }

    fn lock(&self) -> MutexGuard<'_, GateState> {
        // A panic while holding the lock leaves plain numbers behind: keep using them.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Units of unexpired leases not yet spent (reserved ones included).
    pub fn left(&self) -> u32 {
        let now = crate::ledger::now();
        left_at(&self.lock().leases, &now)
    }

    /// Units a slot may still reserve.
    pub fn available(&self) -> u32 {
        let now = crate::ledger::now();
        let state = self.lock();
        left_at(&state.leases, &now).saturating_sub(state.reserved)
    }

    /// Reserves a unit, or says why there is none.
    pub fn try_acquire(self: &Arc<Self>) -> Result<Permit, Waiting> {
        let now = crate::ledger::now();
        let mut state = self.lock();
        if left_at(&state.leases, &now) > state.reserved {
            state.reserved += 1;
            return Ok(Permit { gate: self.clone() });
        }
        Err(why_waiting(&state, &now))
    }

    /// Waits until a unit can be reserved; `on_wait` hears each new reason (once per change).
    /// `None` once `stop` is set. Wakes at least every 200 ms to notice expiry and `stop`.
    pub fn acquire(
        self: &Arc<Self>,
        stop: &AtomicBool,
        mut on_wait: impl FnMut(&Waiting),
    ) -> Option<Permit> {
        let mut said: Option<Waiting> = None;
        loop {
            if stop.load(Ordering::SeqCst) {
                return None;
            }
            match self.try_acquire() {
                Ok(permit) => return Some(permit),
                Err(why) => {
                    if said.as_ref() != Some(&why) {
                        on_wait(&why);
                        said = Some(why);
                    }
                }
            }
            let state = self.lock();
            let _ = self
                .changed
                .wait_timeout(state, Duration::from_millis(200))
                .map_err(|_| ());
        }
    }

    /// A unit of `lease_id` was spent (its identity committed).
    pub fn spent(&self, lease_id: &str) {
        let mut state = self.lock();
        if let Some(lease) = state.leases.iter_mut().find(|l| l.lease_id == lease_id) {
            lease.used = (lease.used + 1).min(lease.count);
        }
    }

    /// A new lease the keeper received and the ledger kept.
    pub fn add(&self, lease: HeldLease) {
        let mut state = self.lock();
        if lease.batch == self.batch && !state.leases.iter().any(|l| l.lease_id == lease.lease_id) {
            state.leases.push(lease);
            state.problem = None;
        }
        drop(state);
        self.changed.notify_all();
    }

    /// A lease went back to the service: it is spent no more.
    pub fn returned(&self, lease_id: &str) {
        self.lock().leases.retain(|l| l.lease_id != lease_id);
    }

    /// What the keeper last heard from the service that stops the batch (`None`: nothing).
    pub fn set_problem(&self, problem: Option<String>) {
        self.lock().problem = problem;
        self.changed.notify_all();
    }

    /// The held leases as the gate sees them.
    pub fn leases(&self) -> Vec<HeldLease> {
        self.lock().leases.clone()
    }
}

fn left_at(leases: &[HeldLease], now: &str) -> u32 {
    leases
        .iter()
        .filter(|l| !l.expired_at(now))
        .map(HeldLease::left)
        .sum()
}

fn why_waiting(state: &GateState, now: &str) -> Waiting {
    if let Some(problem) = &state.problem {
        return Waiting::Refused(problem.clone());
    }
    if state
        .leases
        .iter()
        .any(|l| l.expired_at(now) && l.left() > 0)
    {
        Waiting::Expired
    } else {
        Waiting::UsedUp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(id: &str, count: u32, used: u32, expires_at: &str) -> HeldLease {
        HeldLease {
            lease_id: id.into(),
            batch: "B".into(),
            count,
            used,
            expires_at: expires_at.into(),
            returned_at: None,
        }
    }

    #[test]
    fn two_slots_never_count_on_the_same_last_unit_and_a_dropped_permit_gives_it_back() {
        let gate = LeaseGate::new("B", vec![lease("L-1", 2, 1, "2999-01-01T00:00:00.000Z")]);
        let first = gate.try_acquire().unwrap();
        assert_eq!(gate.try_acquire().unwrap_err(), Waiting::UsedUp);
        drop(first);
        let again = gate.try_acquire().unwrap();
        gate.spent("L-1");
        drop(again);
        assert_eq!(gate.available(), 0);
    }

    #[test]
    fn an_expired_lease_says_expired_and_a_refusal_says_its_words() {
        let gate = LeaseGate::new("B", vec![lease("L-1", 5, 1, "2000-01-01T00:00:00.000Z")]);
        assert_eq!(gate.try_acquire().unwrap_err(), Waiting::Expired);
        assert_eq!(
            Waiting::Expired.to_string(),
            "waiting for the central ledger: lease expired"
        );
        gate.set_problem(Some("batch B is full".into()));
        assert_eq!(
            gate.try_acquire().unwrap_err(),
            Waiting::Refused("batch B is full".into())
        );
        gate.add(lease("L-2", 1, 0, "2999-01-01T00:00:00.000Z"));
        assert!(gate.try_acquire().is_ok(), "a new lease clears the problem");
    }
}
