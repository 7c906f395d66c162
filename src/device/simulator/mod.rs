//! A device simulator that behaves as firmware would: over a pseudo-terminal (or a real port), with
//! its "flash" in a JSON file, its own P-256 keys, every command and the lock, and faults on demand.
//!
//! In-process use (tests, the line engineer's slot workers, `bench serial`):
//!
//! ```no_run
//! use dps_station::device::simulator::{Fleet, SimOptions};
//! let fleet = Fleet::start(4, &SimOptions::default()).unwrap();
//! for path in fleet.paths() { println!("{path}"); }
//! let flash = fleet.flash(0).unwrap();
//! fleet.stop();
//! ```

mod adapter;
pub mod esp32;
mod esp32_port;
mod firmware;
mod flash;
pub mod nrf91;
mod wire;
pub mod zephyr_smp;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serialport::{SerialPort, TTYPort};

pub use adapter::{PluggedDevice, SimAdapter};
pub use esp32::Esp32Faults;
pub use esp32_port::Esp32Sim;
pub use firmware::FirmwareOptions;
pub use flash::Flash;
pub use nrf91::{ModemFaults, Nrf91Sim};
pub use wire::FaultRng;
pub use zephyr_smp::{SmpFaults, SmpSim};

/// Faults the simulated wire and device produce.
#[derive(Debug, Clone, Default)]
pub struct SimFaults {
    /// Emulate a UART at this speed: bytes take `10 / baud` seconds each, both ways.
    pub baud: Option<u32>,
    /// Probability that any byte (either direction) is lost.
    pub drop_rate: f64,
    /// Probability that any byte (either direction) has a bit flipped.
    pub corrupt_rate: f64,
    /// Send a noise line before every frame.
    pub garbage: bool,
    /// Vanish (close the port, as an unplugged cable) after answering this many frames.
    pub disconnect_after: Option<u64>,
    /// Reboot on receiving frame number N (1-based) instead of answering it.
    pub reboot_at: Option<u64>,
    /// Seed of the fault generator, so a run can be repeated.
    pub seed: u64,
}

/// Everything that configures a simulated device.
#[derive(Debug, Clone, Default)]
pub struct SimOptions {
    /// Wire faults.
    pub faults: SimFaults,
    /// Firmware behaviour.
    pub firmware: FirmwareOptions,
    /// Directory for the flash files (`sim-<n>.json`); `None` keeps flash in memory only.
    pub flash_dir: Option<PathBuf>,
}

/// Why the simulator could not start.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// No pseudo-terminal could be made.
    #[error("cannot create a pseudo-terminal for simulated device {index}: {source}")]
    Pty {
        /// Which device.
        index: usize,
        /// Why.
        source: serialport::Error,
    },
    /// A given port could not be opened.
    #[error("cannot open serial port {port} for the simulated device: {source}")]
    Port {
        /// The port.
        port: String,
        /// Why.
        source: serialport::Error,
    },
    /// The flash file could not be read.
    #[error(
        "cannot read the simulated flash file {path}: {source}; delete it to start from a factory-fresh device"
    )]
    Flash {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// State shared between a device thread and its handle.
pub(crate) struct SimShared {
    index: usize,
    faults: SimFaults,
    firmware: FirmwareOptions,
    flash: Arc<Mutex<Flash>>,
    flash_path: Option<PathBuf>,
    frames: AtomicU64,
    bytes_sent: AtomicU64,
    bytes_received: AtomicU64,
    disconnected: AtomicBool,
}

impl SimShared {
    /// A copy of the device's flash as it is now (a poisoned lock still holds the last flash).
    fn flash_copy(&self) -> Flash {
        self.flash.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Bytes (sent by the device, received by the device) so far.
    fn byte_counts(&self) -> (u64, u64) {
        (
            self.bytes_sent.load(Ordering::Relaxed),
            self.bytes_received.load(Ordering::Relaxed),
        )
    }

    /// Whether the disconnect fault fired.
    fn disconnected(&self) -> bool {
        self.disconnected.load(Ordering::Relaxed)
    }
}

/// One running simulated device.
pub struct SimulatedDevice {
    path: String,
    shared: Arc<SimShared>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl SimulatedDevice {
    fn shared(index: usize, options: &SimOptions) -> Result<Arc<SimShared>, SimError> {
        let flash_path = options
            .flash_dir
            .as_ref()
            .map(|d| d.join(format!("sim-{index}.json")));
        let flash = match &flash_path {
            Some(path) => Flash::load(path)
                .map_err(|source| SimError::Flash {
                    path: path.clone(),
                    source,
                })?
                .unwrap_or_else(|| Flash::factory(index)),
            None => Flash::factory(index),
        };
        Ok(Arc::new(SimShared {
            index,
            faults: options.faults.clone(),
            firmware: options.firmware.clone(),
            flash: Arc::new(Mutex::new(flash)),
            flash_path,
            frames: AtomicU64::new(0),
            bytes_sent: AtomicU64::new(0),
            bytes_received: AtomicU64::new(0),
            disconnected: AtomicBool::new(false),
        }))
    }

    /// Starts device `index` on a new pseudo-terminal; [`SimulatedDevice::path`] is the end to open.
    pub fn on_pty(index: usize, options: &SimOptions) -> Result<Self, SimError> {
        let shared = Self::shared(index, options)?;
        let (mut master, slave) =
            TTYPort::pair().map_err(|source| SimError::Pty { index, source })?;
        let path = slave.name().unwrap_or_default();
        // The simulator does not hold the station's end open: the station opens it by path, and
        // closing it (or re-opening it) must behave as with a real port.
        drop(slave);
        master
            .set_timeout(Duration::from_millis(20))
            .map_err(|source| SimError::Pty { index, source })?;
        Ok(Self::spawn(path, master, shared))
    }

    /// Starts a device on a real serial port (a null-modem cable to the station, say).
    pub fn on_port(port: &str, baud: u32, options: &SimOptions) -> Result<Self, SimError> {
        let shared = Self::shared(0, options)?;
        let wire = serialport::new(port, baud)
            .timeout(Duration::from_millis(20))
            .open()
            .map_err(|source| SimError::Port {
                port: port.to_string(),
                source,
            })?;
        Ok(Self::spawn(port.to_string(), wire, shared))
    }

    fn spawn<P: std::io::Read + std::io::Write + Send + 'static>(
        path: String,
        port: P,
        shared: Arc<SimShared>,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (shared, stop) = (shared.clone(), stop.clone());
            std::thread::Builder::new()
                .name(format!("sim-device-{}", shared.index))
                .spawn(move || wire::run(port, shared, stop))
                .ok()
        };
        Self {
            path,
            shared,
            stop,
            thread,
        }
    }

    /// The port path the station opens (`/dev/pts/N` for a pty).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// A copy of the device's flash as it is now.
    pub fn flash(&self) -> Flash {
        self.shared.flash_copy()
    }

    /// The flash file, if flash is kept on disk.
    pub fn flash_path(&self) -> Option<&Path> {
        self.shared.flash_path.as_deref()
    }

    /// Lines received so far (the counter the disconnect and reboot faults use).
    pub fn frames_received(&self) -> u64 {
        self.shared.frames.load(Ordering::Relaxed)
    }

    /// Bytes (sent by the device, received by the device) so far.
    pub fn byte_counts(&self) -> (u64, u64) {
        self.shared.byte_counts()
    }

    /// Whether the disconnect fault fired.
    pub fn disconnected(&self) -> bool {
        self.shared.disconnected()
    }

    /// Whether the device thread is still running.
    pub fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Stops the device and waits for its thread.
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for SimulatedDevice {
    fn drop(&mut self) {
        self.halt();
    }
}

/// N simulated devices at once: a virtual fixture.
pub struct Fleet {
    devices: Vec<SimulatedDevice>,
}

impl Fleet {
    /// Starts `count` devices, each on its own pseudo-terminal.
    pub fn start(count: usize, options: &SimOptions) -> Result<Self, SimError> {
        let devices = (0..count)
            .map(|i| SimulatedDevice::on_pty(i, options))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { devices })
    }

    /// The port paths, in device order.
    pub fn paths(&self) -> Vec<String> {
        self.devices.iter().map(|d| d.path.clone()).collect()
    }

    /// The devices.
    pub fn devices(&self) -> &[SimulatedDevice] {
        &self.devices
    }

    /// Device `index`'s flash now.
    pub fn flash(&self, index: usize) -> Option<Flash> {
        self.devices.get(index).map(SimulatedDevice::flash)
    }

    /// Hands the devices over (each stops when dropped).
    pub fn into_devices(self) -> Vec<SimulatedDevice> {
        self.devices
    }

    /// Stops every device.
    pub fn stop(self) {
        drop(self);
    }
}
