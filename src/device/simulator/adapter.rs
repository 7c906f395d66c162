//! A fixture slot's serial adapter with simulated devices swapped on it, one after another.
//!
//! A production fixture does not make a new port for each device: each slot has its adapter (a
//! USB-serial cable or a pogo-pin board) that stays plugged into the station, and devices are put
//! on it and taken off. The station keeps the port open; a new device announces itself with
//! `BOOT`. This models that: one pseudo-terminal for the slot's life, and a device "plugged" on it
//! boots, prints `BOOT` and answers until it is unplugged. (A device whose cable goes — the
//! disconnect fault — takes the adapter with it: the port closes, as an unplugged USB adapter's
//! does, and the slot needs a new one.)
//!
//! Two threads per adapter: one reads the port and hands bytes on; the other runs whichever device
//! is plugged. Plugging and unplugging go through the same channel as the bytes, so a swap takes
//! effect at once, in order with what the station sends, and the simulator costs no per-device
//! thread or port.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serialport::{SerialPort, TTYPort};

use super::wire::{DeviceWire, read_some};
use super::{Flash, SimError, SimOptions, SimShared, SimulatedDevice};

enum Input {
    /// Bytes the station sent, read at this instant.
    Bytes(Instant, Vec<u8>),
    /// A device put on the adapter.
    Plug(Arc<SimShared>),
    /// The device taken off.
    Unplug,
}

/// One slot's adapter (a pseudo-terminal) that simulated devices are put on and taken off.
pub struct SimAdapter {
    path: String,
    inputs: Sender<Input>,
    closed: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

/// A device on an adapter: what it holds and what crossed its wire.
pub struct PluggedDevice {
    shared: Arc<SimShared>,
}

impl PluggedDevice {
    /// A copy of the device's flash as it is now.
    pub fn flash(&self) -> Flash {
        self.shared.flash_copy()
    }

    /// Bytes (sent by the device, received by the device) so far.
    pub fn byte_counts(&self) -> (u64, u64) {
        self.shared.byte_counts()
    }

    /// Whether the disconnect fault fired.
    pub fn disconnected(&self) -> bool {
        self.shared.disconnected()
    }
}

impl SimAdapter {
    /// A new adapter on a new pseudo-terminal; [`SimAdapter::path`] is the end the station opens.
    pub fn start(slot: &str) -> Result<Self, SimError> {
        let pty_err = |source| SimError::Pty { index: 0, source };
        let (mut master, slave) = TTYPort::pair().map_err(pty_err)?;
        let path = slave.name().unwrap_or_default();
        // The station opens its end by path, as it would a real adapter's.
        drop(slave);
        master
            .set_timeout(Duration::from_millis(20))
            .map_err(pty_err)?;
        let mut writer = master.try_clone_native().map_err(pty_err)?;
        let (inputs, rx) = mpsc::channel::<Input>();
        let closed = Arc::new(AtomicBool::new(false));
        let reader = {
            let (inputs, closed) = (inputs.clone(), closed.clone());
            std::thread::Builder::new()
                .name(format!("sim-adapter-{slot}"))
                .spawn(move || {
                    let mut buf = [0u8; 1024];
                    while !closed.load(Ordering::Relaxed) {
                        if let Some(n) = read_some(&mut master, &mut buf)
                            && inputs
                                .send(Input::Bytes(Instant::now(), buf[..n].to_vec()))
                                .is_err()
                        {
                            return;
                        }
                    }
                })
                .map_err(|e| pty_err(e.into()))?
        };
        let device = {
            let closed = closed.clone();
            std::thread::Builder::new()
                .name(format!("sim-slot-{slot}"))
                .spawn(move || run_devices(&mut writer, &rx, &closed))
                .map_err(|e| pty_err(e.into()))?
        };
        Ok(Self {
            path,
            inputs,
            closed,
            threads: vec![reader, device],
        })
    }

    /// The port path the station opens (`/dev/pts/N`).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Whether the adapter is still there (a device's disconnect fault takes it away).
    pub fn is_alive(&self) -> bool {
        !self.closed.load(Ordering::Relaxed)
    }

    /// Puts device `index` (built with `options`) on the adapter: it boots and prints `BOOT`.
    pub fn plug(&self, index: usize, options: &SimOptions) -> Result<PluggedDevice, SimError> {
        let shared = SimulatedDevice::shared(index, options)?;
        // A closed adapter drops the message; the station then finds no port and says so.
        let _ = self.inputs.send(Input::Plug(shared.clone()));
        Ok(PluggedDevice { shared })
    }

    /// Takes the device off the adapter.
    pub fn unplug(&self) {
        let _ = self.inputs.send(Input::Unplug);
    }
}

impl Drop for SimAdapter {
    fn drop(&mut self) {
        self.closed.store(true, Ordering::Relaxed);
        self.unplug();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// The device side of the adapter: runs whichever device is plugged, until the adapter closes.
fn run_devices(port: &mut TTYPort, inputs: &Receiver<Input>, closed: &AtomicBool) {
    let mut current: Option<DeviceWire> = None;
    while !closed.load(Ordering::Relaxed) {
        let Ok(input) = inputs.recv_timeout(Duration::from_millis(100)) else {
            continue;
        };
        match input {
            Input::Plug(shared) => current = Some(DeviceWire::boot(shared, port)),
            Input::Unplug => current = None,
            Input::Bytes(at, bytes) => {
                // Bytes on an empty adapter go nowhere, as on a real one.
                if let Some(device) = current.as_mut()
                    && !device.receive(&bytes, at, port)
                {
                    // The cable went: the adapter's port closes with it.
                    closed.store(true, Ordering::Relaxed);
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::{ClientOptions, LineClient};

    #[test]
    fn devices_swapped_on_one_adapter_answer_over_the_same_open_port() {
        let adapter = SimAdapter::start("T1").unwrap();
        let mut client = LineClient::open(adapter.path(), ClientOptions::default()).unwrap();
        let first = adapter.plug(1, &SimOptions::default()).unwrap();
        let a = client.hello().unwrap();
        assert_eq!(a.serial, first.flash().serial);
        client.lock().unwrap();
        adapter.unplug();
        // The next device boots on the adapter: the open port sees its banner, then it answers.
        let second = adapter.plug(2, &SimOptions::default()).unwrap();
        assert!(client.wait_for_boot(Duration::from_secs(5)).unwrap());
        let b = client.hello().unwrap();
        assert_eq!(b.serial, second.flash().serial);
        assert_ne!(a.serial, b.serial);
        assert!(!b.locked, "the second device is a fresh one");
        assert!(first.flash().locked && !second.flash().locked);
        assert!(second.byte_counts().0 > 0 && second.byte_counts().1 > 0);
    }

    #[test]
    fn a_device_whose_cable_goes_takes_the_adapter_with_it() {
        let adapter = SimAdapter::start("T2").unwrap();
        let mut client = LineClient::open(adapter.path(), ClientOptions::default()).unwrap();
        let options = SimOptions {
            faults: super::super::SimFaults {
                disconnect_after: Some(1),
                ..Default::default()
            },
            ..SimOptions::default()
        };
        let device = adapter.plug(3, &options).unwrap();
        client.hello().unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while adapter.is_alive() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(device.disconnected());
        assert!(!adapter.is_alive());
        // The port itself fails (as an unplugged USB adapter's does), not just a silent line.
        let err = client.ping().unwrap_err();
        assert!(
            matches!(err, crate::device::DeviceError::Vanished { .. }),
            "{err}"
        );
    }
}
