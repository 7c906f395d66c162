//! Virtual fixtures of simulated devices of other families (the demo, the line tests): each slot
//! takes one device after another, each on its own pseudo-terminal (an nRF91 or Zephyr board
//! brings its own USB serial port, so the port comes and goes with the device), driven by its
//! family's driver. [`SimFamily`] says how to start one and what to record of it.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::source::{Arrival, DeviceSource};
use crate::device::driver::{DeviceDriver, Family};
use crate::device::nrf91::{Nrf91Driver, Nrf91Options};
use crate::device::simulator::{ModemFaults, Nrf91Sim, SmpFaults, SmpSim};
use crate::device::smp::driver::{CA_FILE, CERT_FILE, SmpOptions, ZephyrSmpDriver};

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

/// A simulated device family for a virtual fixture: how to start one device (on its own pty,
/// with its driver open) and what to record of it when it leaves the slot.
pub trait SimFamily: Send + Sync + 'static {
    /// A running simulated device.
    type Sim: Send + 'static;
    /// What a finished device's record holds.
    type Record: Clone + Send + 'static;
    /// The family.
    fn family(&self) -> Family;
    /// Starts device `index` and opens the station's driver to it.
    fn start(&self, index: usize) -> Result<(Self::Sim, Box<dyn DeviceDriver>), String>;
    /// The record of a device that went through `slot`.
    fn record(&self, slot: &str, serial: &str, sim: &Self::Sim, passed: bool) -> Self::Record;
}

/// The nRF91 modem family of a virtual fixture.
pub struct Nrf91Family {
    /// Modem faults (baud emulation for the benchmark).
    pub faults: ModemFaults,
    /// The driver's options (sec_tag).
    pub driver: Nrf91Options,
}

impl SimFamily for Nrf91Family {
    type Sim = Nrf91Sim;
    type Record = ModemRecord;

    fn family(&self) -> Family {
        Family::Nrf91
    }

    fn start(&self, index: usize) -> Result<(Nrf91Sim, Box<dyn DeviceDriver>), String> {
        let sim = Nrf91Sim::on_pty(index, self.faults.clone()).map_err(|e| e.to_string())?;
        let driver =
            Nrf91Driver::open(sim.path(), self.driver.clone()).map_err(|e| e.to_string())?;
        Ok((sim, Box::new(driver)))
    }

    fn record(&self, slot: &str, serial: &str, sim: &Nrf91Sim, passed: bool) -> ModemRecord {
        let tag = self.driver.sec_tag;
        let credentials = sim.with_modem(|m| {
            m.credential_slots()
                .into_iter()
                .filter(|(t, _)| *t == tag)
                .filter_map(|(t, k)| m.credential(t, k).map(|text| (k, text.to_string())))
                .collect()
        });
        ModemRecord {
            slot: slot.to_string(),
            imei: serial.to_string(),
            credentials,
            passed,
            wire_bytes: sim.wire_bytes(),
        }
    }
}

/// Hands out `count` simulated devices of one family over its slots.
pub struct SimFixture<F: SimFamily> {
    remaining: AtomicU64,
    next_index: AtomicUsize,
    first_index: usize,
    family: F,
    records: Mutex<Vec<F::Record>>,
}

/// A virtual fixture of nRF91 modems.
pub type ModemFixture = SimFixture<Nrf91Family>;

impl<F: SimFamily> SimFixture<F> {
    /// A fixture of `count` devices numbered from `first_index` (their serials follow from it).
    pub fn of(count: u64, first_index: usize, family: F) -> Arc<Self> {
        Arc::new(Self {
            remaining: AtomicU64::new(count),
            next_index: AtomicUsize::new(first_index),
            first_index,
            family,
            records: Mutex::new(Vec::new()),
        })
    }

    /// The source for one slot.
    pub fn slot(self: &Arc<Self>, slot: &str) -> SimFixtureSlot<F> {
        SimFixtureSlot {
            fixture: self.clone(),
            slot: slot.to_string(),
            current: None,
        }
    }

    /// Every device that went through, in the order they finished.
    pub fn records(&self) -> Vec<F::Record> {
        self.records.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// How many devices were started so far.
    pub fn started(&self) -> usize {
        self.next_index.load(Ordering::SeqCst) - self.first_index
    }

    fn take(&self) -> bool {
        self.remaining
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }
}

impl ModemFixture {
    /// A fixture of `count` modems numbered from `first_index`.
    pub fn new(
        count: u64,
        first_index: usize,
        faults: ModemFaults,
        driver: Nrf91Options,
    ) -> Arc<Self> {
        Self::of(count, first_index, Nrf91Family { faults, driver })
    }
}

/// One slot of a [`SimFixture`].
pub struct SimFixtureSlot<F: SimFamily> {
    fixture: Arc<SimFixture<F>>,
    slot: String,
    current: Option<(F::Sim, String)>,
}

impl<F: SimFamily> DeviceSource for SimFixtureSlot<F> {
    fn family(&self) -> Family {
        self.fixture.family.family()
    }

    fn next_device(&mut self, stop: &AtomicBool) -> Option<Arrival> {
        for _ in 0..MAX_SILENT_MODEMS {
            if stop.load(Ordering::Relaxed) || !self.fixture.take() {
                return None;
            }
            let index = self.fixture.next_index.fetch_add(1, Ordering::SeqCst);
            let (sim, mut driver) = match self.fixture.family.start(index) {
                Ok(started) => started,
                Err(e) => {
                    tracing::error!(slot = %self.slot, "cannot start a simulated device: {e}");
                    return None;
                }
            };
            match driver.identify() {
                Ok(info) => {
                    self.current = Some((sim, info.serial.clone()));
                    return Some(Arrival { driver, info });
                }
                Err(e) => {
                    tracing::warn!(slot = %self.slot, "simulated device did not identify: {e}");
                }
            }
        }
        tracing::error!(slot = %self.slot, "{MAX_SILENT_MODEMS} simulated devices in a row did not identify: the slot stops");
        None
    }

    fn finished(
        &mut self,
        _driver: Option<Box<dyn DeviceDriver>>,
        _serial: Option<&str>,
        passed: bool,
    ) {
        // The driver goes with the device: its port is gone once the device is.
        let Some((sim, serial)) = self.current.take() else {
            return;
        };
        let record = self
            .fixture
            .family
            .record(&self.slot, &serial, &sim, passed);
        if let Ok(mut records) = self.fixture.records.lock() {
            records.push(record);
        }
    }
}

/// A simulated Zephyr SMP device that went through a slot, with what it held afterwards.
#[derive(Debug, Clone)]
pub struct SmpRecord {
    /// Slot.
    pub slot: String,
    /// Its device id (the serial the station saw).
    pub serial: String,
    /// The certificate file, as stored.
    pub certificate: Option<Vec<u8>>,
    /// The CA chain file, as stored.
    pub ca_chain: Option<Vec<u8>>,
    /// The application's key, PKCS#8 PEM (what the product uses for TLS).
    pub key_pem: Option<String>,
    /// The saved settings `dps/regid`, `dps/scope`, `dps/endpoint`.
    pub settings: [Option<String>; 3],
    /// Whether the station passed it.
    pub passed: bool,
    /// Bytes on its wire, both ways.
    pub wire_bytes: u64,
}

/// The Zephyr SMP family of a virtual fixture.
pub struct ZephyrFamily {
    /// Device faults (baud emulation for the benchmark).
    pub faults: SmpFaults,
    /// The driver's options.
    pub driver: SmpOptions,
}

impl SimFamily for ZephyrFamily {
    type Sim = SmpSim;
    type Record = SmpRecord;

    fn family(&self) -> Family {
        Family::ZephyrSmp
    }

    fn start(&self, index: usize) -> Result<(SmpSim, Box<dyn DeviceDriver>), String> {
        let sim = SmpSim::on_pty(index, self.faults.clone()).map_err(|e| e.to_string())?;
        let driver =
            ZephyrSmpDriver::open(sim.path(), self.driver.clone()).map_err(|e| e.to_string())?;
        Ok((sim, Box::new(driver)))
    }

    fn record(&self, slot: &str, serial: &str, sim: &SmpSim, passed: bool) -> SmpRecord {
        sim.with_device(|d| {
            let setting = |n: &str| {
                d.saved_setting(n)
                    .map(|v| String::from_utf8_lossy(v).into_owned())
            };
            SmpRecord {
                slot: slot.to_string(),
                serial: serial.to_string(),
                certificate: d.file(CERT_FILE).map(<[u8]>::to_vec),
                ca_chain: d.file(CA_FILE).map(<[u8]>::to_vec),
                key_pem: d.key_pem(),
                settings: [
                    setting("dps/regid"),
                    setting("dps/scope"),
                    setting("dps/endpoint"),
                ],
                passed,
                wire_bytes: sim.wire_bytes(),
            }
        })
    }
}
