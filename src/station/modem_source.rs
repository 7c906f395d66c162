//! A virtual fixture of simulated nRF91 modems (the demo, the line tests, `bench serial`): each
//! slot takes one modem after another, each on its own pseudo-terminal (an nRF91 board brings its
//! own USB serial port, so the port comes and goes with the device), driven by the `nrf91` driver.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::source::{Arrival, DeviceSource};
use crate::device::driver::{DeviceDriver, Family};
use crate::device::nrf91::{Nrf91Driver, Nrf91Options};
use crate::device::simulator::{ModemFaults, Nrf91Sim};

/// How many modems in a row may fail to identify before a slot gives up (its faults are set so
/// that none can), instead of using up the whole fixture.
const MAX_SILENT_MODEMS: usize = 8;

/// A simulated modem that went through a slot, with what it held afterwards.
#[derive(Debug, Clone)]
pub struct ModemRecord {
    /// Slot.
    pub slot: String,
    /// Its IMEI (the serial the station saw).
    pub imei: String,
    /// `(type, text)` of each credential in the station's sec_tag, as stored.
    pub credentials: Vec<(u8, String)>,
    /// Whether the station passed it.
    pub passed: bool,
    /// Bytes on its wire, both ways.
    pub wire_bytes: u64,
}

impl ModemRecord {
    /// The stored text of credential type `kind` (0 CA chain, 1 client certificate, 2 key).
    pub fn credential(&self, kind: u8) -> Option<&str> {
        self.credentials
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, t)| t.as_str())
    }
}

/// Hands out `count` simulated modems over its slots.
pub struct ModemFixture {
    remaining: AtomicU64,
    next_index: AtomicUsize,
    first_index: usize,
    faults: ModemFaults,
    driver: Nrf91Options,
    records: Mutex<Vec<ModemRecord>>,
}

impl ModemFixture {
    /// A fixture of `count` modems numbered from `first_index` (their IMEIs follow from it).
    pub fn new(
        count: u64,
        first_index: usize,
        faults: ModemFaults,
        driver: Nrf91Options,
    ) -> Arc<Self> {
        Arc::new(Self {
            remaining: AtomicU64::new(count),
            next_index: AtomicUsize::new(first_index),
            first_index,
            faults,
            driver,
            records: Mutex::new(Vec::new()),
        })
    }

    /// The source for one slot.
    pub fn slot(self: &Arc<Self>, slot: &str) -> ModemSlot {
        ModemSlot {
            fixture: self.clone(),
            slot: slot.to_string(),
            current: None,
        }
    }

    /// Every modem that went through, in the order they finished.
    pub fn records(&self) -> Vec<ModemRecord> {
        self.records.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// The sec_tag its driver writes.
    pub fn sec_tag(&self) -> u32 {
        self.driver.sec_tag
    }

    /// How many modems were started so far.
    pub fn started(&self) -> usize {
        self.next_index.load(Ordering::SeqCst) - self.first_index
    }

    fn take(&self) -> bool {
        self.remaining
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }
}

/// One slot of a [`ModemFixture`].
pub struct ModemSlot {
    fixture: Arc<ModemFixture>,
    slot: String,
    current: Option<(Nrf91Sim, String)>,
}

impl DeviceSource for ModemSlot {
    fn family(&self) -> Family {
        Family::Nrf91
    }

    fn next_device(&mut self, stop: &AtomicBool) -> Option<Arrival> {
        for _ in 0..MAX_SILENT_MODEMS {
            if stop.load(Ordering::Relaxed) || !self.fixture.take() {
                return None;
            }
            let index = self.fixture.next_index.fetch_add(1, Ordering::SeqCst);
            let sim = match Nrf91Sim::on_pty(index, self.fixture.faults.clone()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(slot = %self.slot, "cannot start a simulated modem: {e}");
                    return None;
                }
            };
            let mut driver = match Nrf91Driver::open(sim.path(), self.fixture.driver.clone()) {
                Ok(d) => d,
                Err(e) => {
                    tracing::error!(slot = %self.slot, "cannot open the modem's port: {e}");
                    return None;
                }
            };
            match driver.identify() {
                Ok(info) => {
                    self.current = Some((sim, info.serial.clone()));
                    return Some(Arrival {
                        driver: Box::new(driver),
                        info,
                    });
                }
                Err(e) => {
                    tracing::warn!(slot = %self.slot, "simulated modem did not identify: {e}");
                }
            }
        }
        tracing::error!(slot = %self.slot, "{MAX_SILENT_MODEMS} simulated modems in a row did not identify: the slot stops");
        None
    }

    fn finished(
        &mut self,
        _driver: Option<Box<dyn DeviceDriver>>,
        _serial: Option<&str>,
        passed: bool,
    ) {
        // The driver goes with the modem: its port is gone once the modem is.
        let Some((sim, imei)) = self.current.take() else {
            return;
        };
        let tag = self.fixture.sec_tag();
        let credentials = sim.with_modem(|m| {
            m.credential_slots()
                .into_iter()
                .filter(|(t, _)| *t == tag)
                .filter_map(|(t, k)| m.credential(t, k).map(|text| (k, text.to_string())))
                .collect()
        });
        let record = ModemRecord {
            slot: self.slot.clone(),
            imei,
            credentials,
            passed,
            wire_bytes: sim.wire_bytes(),
        };
        if let Ok(mut records) = self.fixture.records.lock() {
            records.push(record);
        }
    }
}
