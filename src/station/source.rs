//! Where a slot's devices come from: a real port of the fixture (kept open between devices; a fresh
//! device is taken when it answers `HELLO`, asked again as soon as one prints `BOOT`), or a virtual
//! fixture of simulated devices (the demo, the tests, the benchmark) whose slots each keep one
//! adapter, a pseudo-terminal, and put a new simulated device on it after each one.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::device::driver::{DeviceInfo, Family};
use crate::device::simulator::{Flash, PluggedDevice, SimAdapter, SimOptions};
use crate::device::{ClientOptions, DeviceDriver, DeviceError, LineClient, open_driver};

/// How often a slot without a new device asks again (sooner when a device prints `BOOT`), and how
/// long it waits before opening a port that has gone away.
const POLL: Duration = Duration::from_millis(200);

/// How many simulated devices in a row may fail to answer `HELLO` before a virtual slot gives up
/// (its port is broken, not the devices), instead of using up the whole fixture.
const MAX_SILENT_DEVICES: usize = 32;

/// How often a slot whose port path is absent says that it still waits for it.
const ABSENT_NOTICE_EVERY: Duration = Duration::from_secs(10);

/// What a slot's port path is at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortPresence {
    /// A terminal (serial) device is there.
    Present,
    /// Absent, in a folder udev fills when a device is plugged in (`/dev/serial/by-id/`,
    /// `/dev/serial/by-path/`, the fixture's own `/dev/dps-fixture/` that `fixture detect`
    /// writes rules for): the slot waits for it to appear, and says so.
    MayAppear,
}

/// Why a slot's port path cannot be a serial port: the run is refused at start rather than
/// waiting forever for a device that can never come.
#[derive(Debug, thiserror::Error)]
pub enum PortCheckError {
    /// Absent, and not where a plugged-in device would appear.
    #[error(
        "slot {slot}: the port {path} does not exist, and {folder} is not a folder where a \
         plugged-in device appears: fix the path in station.toml [fixture.slots] (`dps-station \
         device list` shows the ports and their /dev/serial/by-id/ names)"
    )]
    Missing {
        /// The slot.
        slot: String,
        /// The configured path.
        path: String,
        /// Its folder.
        folder: String,
    },
    /// There, but not a terminal device (`/dev/null`, a file, a folder).
    #[error(
        "slot {slot}: {path} is not a serial port ({what}): fix the path in station.toml \
         [fixture.slots] (`dps-station device list` shows the ports)"
    )]
    NotSerial {
        /// The slot.
        slot: String,
        /// The configured path.
        path: String,
        /// What it is instead.
        what: String,
    },
}

/// Checks a slot's port path before a run: a serial device, or absent in a folder where udev
/// puts a device's stable name when it is plugged in. Anything else is refused, naming the path.
pub fn check_port(slot: &str, path: &Path) -> Result<PortPresence, PortCheckError> {
    let shown = path.display().to_string();
    let not_serial = |what: String| PortCheckError::NotSerial {
        slot: slot.to_string(),
        path: shown.clone(),
        what,
    };
    match std::fs::metadata(path) {
        Ok(meta) => {
            use std::os::unix::fs::FileTypeExt;
            let kind = meta.file_type();
            if kind.is_dir() {
                return Err(not_serial("a folder".into()));
            }
            if !kind.is_char_device() {
                return Err(not_serial("not a character device".into()));
            }
            // O_NOCTTY: looking must not make the port this process's controlling terminal;
            // O_NONBLOCK: nor wait for a modem's carrier.
            use std::io::IsTerminal;
            use std::os::unix::fs::OpenOptionsExt;
            match std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOCTTY | libc::O_NONBLOCK)
                .open(path)
            {
                Ok(file) if file.is_terminal() => Ok(PortPresence::Present),
                Ok(_) => Err(not_serial("a device that is not a terminal".into())),
                // Held by another program or not ours to open: the run meets it at the first
                // device and says why; no reason to refuse a port that is there.
                Err(_) => Ok(PortPresence::Present),
            }
        }
        Err(_) => {
            let folder = path.parent().unwrap_or(Path::new("/"));
            let udev_folder = folder == Path::new(super::setup::udev::FIXTURE_DEV_DIR)
                || folder
                    .file_name()
                    .is_some_and(|n| n == "by-id" || n == "by-path");
            if udev_folder {
                Ok(PortPresence::MayAppear)
            } else {
                Err(PortCheckError::Missing {
                    slot: slot.to_string(),
                    path: shown,
                    folder: folder.display().to_string(),
                })
            }
        }
    }
}

/// What a source says while it blocks in [`DeviceSource::next_device`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceNotice {
    /// The slot's port path is absent; the slot waits for it to appear.
    PortAbsent {
        /// The path.
        path: String,
        /// Waited so far.
        waited: Duration,
    },
}

/// Where a source sends its notices (the engine turns them into events).
pub type Notifier = Box<dyn Fn(SourceNotice) + Send>;

/// A device that answered `HELLO` in a slot.
pub struct Arrival {
    /// Its driver, ready for the pipeline.
    pub driver: Box<dyn DeviceDriver>,
    /// What it said.
    pub info: DeviceInfo,
}

/// A slot's supply of devices. Blocking: it runs on the slot's own thread.
pub trait DeviceSource: Send {
    /// The family of the slot's devices (which driver speaks to them).
    fn family(&self) -> Family;
    /// Waits for the next fresh device; `None` once `stop` is set or the supply is exhausted.
    fn next_device(&mut self, stop: &AtomicBool) -> Option<Arrival>;
    /// The device taken last (serial `serial`) is done: the operator (or the fixture) removes it.
    /// `driver` is the port the device was driven over, handed back so that a slot whose adapter
    /// stays can keep it open for the next device (`None` if it is gone).
    fn finished(
        &mut self,
        driver: Option<Box<dyn DeviceDriver>>,
        serial: Option<&str>,
        passed: bool,
    );
    /// Where to say what the source waits for while it blocks (an absent port); sources with
    /// nothing to say ignore it.
    fn set_notifier(&mut self, _notify: Notifier) {}
}

/// A real slot: one stable port path. The port stays open between devices while it can (a
/// fixture's adapter stays plugged in; a new device on it prints `BOOT`); it is opened again when
/// it goes away (a device with its own USB-serial port takes it along when unplugged).
pub struct PortSource {
    path: PathBuf,
    family: Family,
    options: ClientOptions,
    client: Option<Box<dyn DeviceDriver>>,
    last_serial: Option<String>,
    notify: Option<Notifier>,
}

impl PortSource {
    /// A slot on `path` whose devices speak our line protocol.
    pub fn new(path: PathBuf, options: ClientOptions) -> Self {
        Self::for_family(path, Family::Station, options)
    }

    /// A slot on `path` whose devices are of `family` (station.toml's `family`).
    pub fn for_family(path: PathBuf, family: Family, options: ClientOptions) -> Self {
        Self {
            path,
            family,
            options,
            client: None,
            last_serial: None,
            notify: None,
        }
    }
}

impl DeviceSource for PortSource {
    fn family(&self) -> Family {
        self.family
    }

    fn next_device(&mut self, stop: &AtomicBool) -> Option<Arrival> {
        let port = self.path.display().to_string();
        // Since when the path has been absent, and when that was last said.
        let mut absent: Option<(Instant, Option<Instant>)> = None;
        while !stop.load(Ordering::Relaxed) {
            let mut client = match self.client.take() {
                Some(c) => c,
                // The stable path exists only while the adapter is plugged in.
                None => match open_driver(self.family, &port, &self.options) {
                    Ok(c) => {
                        absent = None;
                        c
                    }
                    Err(_) => {
                        if !self.path.exists() {
                            let now = Instant::now();
                            let (since, said) = absent.get_or_insert((now, None));
                            if said.is_none_or(|t| now.duration_since(t) >= ABSENT_NOTICE_EVERY) {
                                *said = Some(now);
                                let waited = now.duration_since(*since);
                                tracing::warn!(
                                    port = %port,
                                    waited_s = waited.as_secs(),
                                    "waiting for the port to appear (is the adapter plugged in?)"
                                );
                                if let Some(notify) = &self.notify {
                                    notify(SourceNotice::PortAbsent {
                                        path: port.clone(),
                                        waited,
                                    });
                                }
                            }
                        }
                        std::thread::sleep(POLL);
                        continue;
                    }
                },
            };
            let hello = client.identify();
            // A device (re)plugged since the last look, even if HELLO read past its banner: the
            // one done last is taken again, as an operator re-seats a failed device to run it again.
            if client.take_boot_seen() {
                self.last_serial = None;
            }
            match hello {
                // The device just done stays in the slot until the operator takes it out.
                Ok(info) if self.last_serial.as_deref() != Some(info.serial.as_str()) => {
                    return Some(Arrival {
                        driver: client,
                        info,
                    });
                }
                Ok(_) => {}
                // The port went away (with the device's own cable): whatever comes back is a
                // device plugged in again, to be taken even if it is the same one.
                Err(DeviceError::Vanished { .. }) => {
                    self.last_serial = None;
                    continue;
                }
                // Nobody answered: an empty slot.
                Err(_) => {}
            }
            // Until a new device boots on the open port or the next look is due (a device whose
            // banner went by before the port was open answers the next HELLO).
            match client.wait_for_boot(POLL) {
                // A device was (re)plugged: even the one done last is taken again, since an
                // operator re-seats a failed device to have it run again.
                Ok(true) => {
                    client.take_boot_seen();
                    self.last_serial = None;
                }
                Ok(false) => {}
                Err(_) => {
                    self.last_serial = None;
                    continue;
                }
            }
            self.client = Some(client);
        }
        None
    }

    fn finished(
        &mut self,
        driver: Option<Box<dyn DeviceDriver>>,
        serial: Option<&str>,
        _passed: bool,
    ) {
        self.client = driver;
        // A restart while the station drove it is no re-plug.
        if let Some(client) = self.client.as_mut() {
            client.take_boot_seen();
        }
        // Remembered, so the device is not taken again while it still sits in the slot (passed or
        // failed); a `BOOT` or the port going away forgets it.
        self.last_serial = serial.map(str::to_string);
    }

    fn set_notifier(&mut self, notify: Notifier) {
        self.notify = Some(notify);
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
    /// Device `i` carries `secure_elements[i]` (Trust&GO boards), if there is one.
    secure_elements: Vec<crate::device::SecureElementInfo>,
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
            secure_elements: Vec::new(),
        })
    }

    /// [`VirtualFixture::new`] whose `i`-th device carries the secure element `elements[i]`
    /// (answered by `SE-INFO`), as a reel of Trust&GO boards would; devices past the list
    /// carry none.
    pub fn with_secure_elements(
        count: u64,
        options: SimOptions,
        client: ClientOptions,
        elements: Vec<crate::device::SecureElementInfo>,
    ) -> Arc<Self> {
        Arc::new(Self {
            remaining: AtomicU64::new(count),
            next_index: AtomicUsize::new(0),
            options,
            client,
            records: Mutex::new(Vec::new()),
            secure_elements: elements,
        })
    }

    /// The source for one slot.
    pub fn slot(self: &Arc<Self>, slot: &str) -> SimSlot {
        SimSlot {
            fixture: self.clone(),
            slot: slot.to_string(),
            adapter: None,
            client: None,
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

/// One slot of a [`VirtualFixture`]: its adapter, with one simulated device after another put
/// on it, and the station's port to it, kept open across devices as on a real fixture.
pub struct SimSlot {
    fixture: Arc<VirtualFixture>,
    slot: String,
    adapter: Option<SimAdapter>,
    client: Option<Box<dyn DeviceDriver>>,
    current: Option<PluggedDevice>,
}

impl SimSlot {
    /// The slot's adapter, a new one if there is none yet or the last one went with a device's
    /// cable (then the station's port to it is gone too).
    fn adapter(&mut self) -> Option<&SimAdapter> {
        if !self.adapter.as_ref().is_some_and(SimAdapter::is_alive) {
            self.client = None;
            self.adapter = None;
            match SimAdapter::start(&self.slot) {
                Ok(a) => self.adapter = Some(a),
                Err(e) => {
                    tracing::error!(slot = %self.slot, "cannot start the slot's simulated adapter: {e}");
                    return None;
                }
            }
        }
        self.adapter.as_ref()
    }
}

impl DeviceSource for SimSlot {
    fn family(&self) -> Family {
        Family::Station
    }

    fn next_device(&mut self, stop: &AtomicBool) -> Option<Arrival> {
        for _ in 0..MAX_SILENT_DEVICES {
            if stop.load(Ordering::Relaxed) || !self.fixture.take() {
                return None;
            }
            let index = self.fixture.next_index.fetch_add(1, Ordering::SeqCst);
            let mut options = self.fixture.options.clone();
            if let Some(se) = self.fixture.secure_elements.get(index) {
                options.firmware.secure_element = Some(se.clone());
            }
            let adapter = self.adapter()?;
            let path = adapter.path().to_string();
            let device = match adapter.plug(index, &options) {
                Ok(d) => d,
                Err(e) => {
                    tracing::error!(slot = %self.slot, "cannot start a simulated device: {e}");
                    return None;
                }
            };
            self.current = Some(device);
            let mut client = match self.client.take() {
                Some(c) => c,
                None => match LineClient::open(&path, self.fixture.client.clone()) {
                    Ok(c) => Box::new(c),
                    Err(e) => {
                        tracing::error!(slot = %self.slot, "cannot open the slot's port: {e}");
                        return None;
                    }
                },
            };
            // The device was put on the adapter before the station speaks: its BOOT is on the
            // line (HELLO passes over it), and it answers at once.
            match client.identify() {
                Ok(info) => {
                    return Some(Arrival {
                        driver: client,
                        info,
                    });
                }
                Err(e) => {
                    // A device that cannot even say HELLO is taken off the fixture and counted;
                    // the port is opened afresh for the next one.
                    tracing::warn!(slot = %self.slot, "simulated device did not answer HELLO: {e}");
                    self.finished(None, None, false);
                }
            }
        }
        tracing::error!(
            slot = %self.slot,
            "{MAX_SILENT_DEVICES} simulated devices in a row did not answer HELLO: the slot stops; \
             check the simulator's fault options"
        );
        None
    }

    fn finished(
        &mut self,
        driver: Option<Box<dyn DeviceDriver>>,
        _serial: Option<&str>,
        passed: bool,
    ) {
        // The port stays open for the next device on the same adapter.
        self.client = driver;
        if let Some(device) = self.current.take() {
            if let Some(adapter) = &self.adapter {
                adapter.unplug();
            }
            let flash = device.flash();
            let (sent, received) = device.byte_counts();
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
