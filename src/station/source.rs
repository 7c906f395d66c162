//! Where a slot's devices come from: a real port of the fixture (wait until a fresh device answers
//! `HELLO`), or a virtual fixture of simulated devices on pseudo-terminals (the demo, the tests,
//! the benchmark), which plugs a new simulated device into the slot after each one.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::device::driver::DeviceInfo;
use crate::device::simulator::{Flash, SimOptions, SimulatedDevice};
use crate::device::{ClientOptions, DeviceDriver, LineClient};

/// How often a slot without a device looks again.
const POLL: Duration = Duration::from_millis(200);

/// A device that answered `HELLO` in a slot.
pub struct Arrival {
    /// Its driver, ready for the pipeline.
    pub driver: Box<dyn DeviceDriver>,
    /// What it said.
    pub info: DeviceInfo,
}

/// A slot's supply of devices. Blocking: it runs on the slot's own thread.
pub trait DeviceSource: Send {
    /// Waits for the next fresh device; `None` once `stop` is set or the supply is exhausted.
    fn next_device(&mut self, stop: &AtomicBool) -> Option<Arrival>;
    /// The device taken last (serial `serial`) is done: the operator (or the fixture) removes it.
    fn finished(&mut self, serial: Option<&str>, passed: bool);
}

/// A real slot: one stable port path.
pub struct PortSource {
    path: PathBuf,
    options: ClientOptions,
    last_serial: Option<String>,
}

impl PortSource {
    /// A slot on `path`.
    pub fn new(path: PathBuf, options: ClientOptions) -> Self {
        Self {
            path,
            options,
            last_serial: None,
        }
    }
}

impl DeviceSource for PortSource {
    fn next_device(&mut self, stop: &AtomicBool) -> Option<Arrival> {
        let port = self.path.display().to_string();
        while !stop.load(Ordering::Relaxed) {
            // The stable path exists only while the adapter is plugged in.
            if let Ok(mut client) = LineClient::open(&port, self.options.clone())
                && let Ok(info) = client.hello()
            {
                // The device just done stays in the slot until the operator takes it out.
                let same = self.last_serial.as_deref() == Some(info.serial.as_str());
                if !same {
                    return Some(Arrival {
                        driver: Box::new(client),
                        info,
                    });
                }
            }
            std::thread::sleep(POLL);
        }
        None
    }

    fn finished(&mut self, serial: Option<&str>, _passed: bool) {
        // Remembered, so the device is not taken again while it still sits in the slot.
        self.last_serial = serial.map(str::to_string);
    }
}

/// A simulated device that went through a slot, with what its flash held afterwards.
#[derive(Debug, Clone)]
pub struct SimulatedRecord {
    /// Slot.
    pub slot: String,
    /// Its flash after the station was done with it.
    pub flash: Flash,
    /// Whether the station passed it.
    pub passed: bool,
    /// Bytes on its wire, both ways (for the wire-time limit of `bench line`).
    pub wire_bytes: u64,
}

/// A virtual fixture: hands out `count` simulated devices over its slots, one at a time per slot.
pub struct VirtualFixture {
    remaining: AtomicU64,
    next_index: AtomicUsize,
    options: SimOptions,
    client: ClientOptions,
    records: Mutex<Vec<SimulatedRecord>>,
}

impl VirtualFixture {
    /// A fixture that will supply `count` devices built with `options`.
    pub fn new(count: u64, options: SimOptions, client: ClientOptions) -> Arc<Self> {
        Arc::new(Self {
            remaining: AtomicU64::new(count),
            next_index: AtomicUsize::new(0),
            options,
            client,
            records: Mutex::new(Vec::new()),
        })
    }

    /// The source for one slot.
    pub fn slot(self: &Arc<Self>, slot: &str) -> SimSlot {
        SimSlot {
            fixture: self.clone(),
            slot: slot.to_string(),
            current: None,
        }
    }

    /// Every device that went through, in the order they finished.
    pub fn records(&self) -> Vec<SimulatedRecord> {
        self.records.lock().map(|r| r.clone()).unwrap_or_default()
    }

    fn take(&self) -> bool {
        self.remaining
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }
}

/// One slot of a [`VirtualFixture`].
pub struct SimSlot {
    fixture: Arc<VirtualFixture>,
    slot: String,
    current: Option<SimulatedDevice>,
}

impl DeviceSource for SimSlot {
    fn next_device(&mut self, stop: &AtomicBool) -> Option<Arrival> {
        if stop.load(Ordering::Relaxed) || !self.fixture.take() {
            return None;
        }
        let index = self.fixture.next_index.fetch_add(1, Ordering::SeqCst);
        let device = match SimulatedDevice::on_pty(index, &self.fixture.options) {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(slot = %self.slot, "cannot start a simulated device: {e}");
                return None;
            }
        };
        let mut client = match LineClient::open(device.path(), self.fixture.client.clone()) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(slot = %self.slot, "cannot open the simulated device's port: {e}");
                return None;
            }
        };
        let info = client.hello();
        self.current = Some(device);
        match info {
            Ok(info) => Some(Arrival {
                driver: Box::new(client),
                info,
            }),
            Err(e) => {
                // A device that cannot even say HELLO is taken off the fixture and counted.
                tracing::warn!(slot = %self.slot, "simulated device did not answer HELLO: {e}");
                self.finished(None, false);
                self.next_device(stop)
            }
        }
    }

    fn finished(&mut self, _serial: Option<&str>, passed: bool) {
        if let Some(device) = self.current.take() {
            let flash = device.flash();
            let (sent, received) = device.byte_counts();
            // Stopping joins the device's thread (up to one 20 ms read timeout): do it off the
            // slot's thread, as a real fixture swaps a device while the slot takes the next one.
            let stopper = std::thread::Builder::new()
                .name("sim-stop".into())
                .spawn(move || device.stop());
            if let Err(e) = stopper {
                tracing::warn!("cannot stop a simulated device in the background: {e}");
            }
            if let Ok(mut records) = self.fixture.records.lock() {
                records.push(SimulatedRecord {
                    slot: self.slot.clone(),
                    flash,
                    passed,
                    wire_bytes: sent + received,
                });
            }
        }
    }
}
