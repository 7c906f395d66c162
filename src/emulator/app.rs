//! The shared state every request handler sees: the store, the keys, the limits and faults.

use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use tokio::sync::Notify;

use super::config::{Faults, Limits};
use super::error::EmulatorError;
use super::hub::telemetry::TelemetryStore;
use super::limits::RateLimiter;
use super::persistence::StateWriter;
use super::store::State;
use crate::secret::SecretString;

/// One emulator instance's state, shared by all connections.
pub struct App {
    /// Enrollments, groups, registrations.
    pub state: Mutex<State>,
    /// Host name accepted in SAS `sr`.
    pub host_name: String,
    /// The listeners' `ip:port`, also accepted in SAS `sr` (clients sign what they connect to).
    pub listener_hosts: Vec<String>,
    /// Policy name (`skn`).
    pub policy_name: String,
    /// Primary then secondary policy key.
    pub keys: [SecretString; 2],
    /// The ID scope the device API serves.
    pub id_scope: String,
    /// Linked IoT hubs (empty = any).
    pub linked_hubs: Vec<String>,
    /// The local hub's host name: devices whose enrollment names no hub are assigned there.
    pub hub_host_name: String,
    /// Telemetry the local hub received.
    pub telemetry: Mutex<TelemetryStore>,
    /// Quotas.
    pub limits: Limits,
    /// Faults, changeable while running.
    pub faults: RwLock<Faults>,
    /// Service-API rate.
    pub operations: Option<Mutex<RateLimiter>>,
    /// Device registration rate.
    pub registrations: Option<Mutex<RateLimiter>>,
    /// Woken after every change, when a state file is kept.
    pub changed: Option<Arc<Notify>>,
    /// Writes the state file, when one is kept.
    pub writer: Option<StateWriter>,
}

impl App {
    /// Locks the store; a poisoned lock (a handler panicked) still holds consistent data,
    /// because every change is a single map insert or remove.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Locks the store to change it: counts the change and wakes the state-file writer.
    pub fn change(&self) -> MutexGuard<'_, State> {
        let mut state = self.lock();
        state.generation += 1;
        if let Some(n) = &self.changed {
            n.notify_one();
        }
        state
    }

    /// Writes a snapshot of the store to the state file now (start, shutdown).
    pub fn save_now(&self) -> Result<(), EmulatorError> {
        match &self.writer {
            Some(w) => {
                let snapshot = self.lock().clone();
                w.save(&snapshot)
            }
            None => Ok(()),
        }
    }

    /// Locks the telemetry store.
    pub fn telemetry(&self) -> MutexGuard<'_, TelemetryStore> {
        self.telemetry.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The faults in force now.
    pub fn faults(&self) -> Faults {
        self.faults
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Takes a token from an optional limiter; `Err(seconds)` when throttled.
pub fn take(limiter: &Option<Mutex<RateLimiter>>) -> Result<(), u64> {
    match limiter {
        None => Ok(()),
        Some(l) => l
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .acquire(std::time::Instant::now()),
    }
}
