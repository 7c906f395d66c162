//! The simulated ESP32's serial side: a pseudo-terminal, the UART's pace at the chip's current
//! speed, SLIP packets in and answers out, and download mode again when the station's end closes.

use std::io::{ErrorKind, Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serialport::{SerialPort, TTYPort};

use super::SimError;
use super::esp32::{Esp32Chip, Esp32Faults, PACKET_LIMIT};
use crate::device::esp32::rom::{SlipDecoder, slip_encode};

/// A simulated ESP32 on a pseudo-terminal.
pub struct Esp32Sim {
    path: String,
    chip: Arc<Mutex<Esp32Chip>>,
    bytes: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Esp32Sim {
    /// Starts chip `index` on a new pseudo-terminal, in download mode, its flash in
    /// `flash_dir/esp32-<index>.bin`.
    pub fn on_pty(index: usize, flash_dir: &Path, faults: Esp32Faults) -> Result<Self, SimError> {
        let pty = |source| SimError::Pty { index, source };
        let flash_path = flash_dir.join(format!("esp32-{index}.bin"));
        let pace = faults.baud.is_some();
        let chip =
            Esp32Chip::new(index, &flash_path, faults).map_err(|source| SimError::Flash {
                path: flash_path.clone(),
                source,
            })?;
        let (mut master, slave) = TTYPort::pair().map_err(pty)?;
        let path = slave.name().unwrap_or_default();
        drop(slave);
        master.set_timeout(Duration::from_millis(20)).map_err(pty)?;
        let chip = Arc::new(Mutex::new(chip));
        let stop = Arc::new(AtomicBool::new(false));
        let bytes = Arc::new(AtomicU64::new(0));
        let thread = {
            let (chip, stop, bytes) = (chip.clone(), stop.clone(), bytes.clone());
            std::thread::Builder::new()
                .name(format!("sim-esp32-{index}"))
                .spawn(move || run(&mut master, &chip, &stop, &bytes, pace))
                .map_err(|e| pty(e.into()))?
        };
        Ok(Self {
            path,
            chip,
            bytes,
            stop,
            thread: Some(thread),
        })
    }

    /// The port the station (or esptool) opens.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Runs `f` on the chip's state as it is now.
    pub fn with_chip<T>(&self, f: impl FnOnce(&Esp32Chip) -> T) -> T {
        f(&self.chip.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Bytes on the wire so far, both ways.
    pub fn wire_bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
}

impl Drop for Esp32Sim {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The time `bytes` take on a UART at `baud` (10 bits a byte: start, 8 data, stop).
fn wire_time(bytes: usize, baud: u32) -> Duration {
    Duration::from_secs_f64(bytes as f64 * 10.0 / f64::from(baud.max(1)))
}

fn run(
    port: &mut TTYPort,
    chip: &Mutex<Esp32Chip>,
    stop: &AtomicBool,
    bytes: &AtomicU64,
    pace: bool,
) {
    let mut decoder = SlipDecoder::new(PACKET_LIMIT);
    let mut buf = [0u8; 4096];
    // Paced, the wire time owed since the last answer: the command's bytes as they arrive, then
    // the answer's. It is slept once, before the answer goes out, so that one exchange costs one
    // sleep (and one scheduler wake-up), as one command and its answer cost the UART their bytes'
    // time and no more.
    let mut owed = Duration::ZERO;
    while !stop.load(Ordering::Relaxed) {
        let n = match port.read(&mut buf) {
            Ok(0) => continue,
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock) => continue,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            // The station's end is closed (EIO on a pty): the fixture resets the chip into
            // download mode for the next station that opens it.
            Err(_) => {
                let mut c = chip.lock().unwrap_or_else(|p| p.into_inner());
                c.in_download_mode = true;
                c.write = None;
                drop(c);
                decoder = SlipDecoder::new(PACKET_LIMIT);
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
        };
        bytes.fetch_add(n as u64, Ordering::Relaxed);
        let baud = chip.lock().unwrap_or_else(|p| p.into_inner()).baud();
        owed += wire_time(n, baud);
        for &b in &buf[..n] {
            let Some(packet) = decoder.push(b) else {
                continue;
            };
            let mut c = chip.lock().unwrap_or_else(|p| p.into_inner());
            let baud_before = c.baud();
            let answers = c.handle(&packet);
            drop(c);
            let mut out = Vec::new();
            for a in &answers {
                out.extend(slip_encode(&a.encode()));
            }
            if out.is_empty() {
                continue;
            }
            // A baud change is answered at the old speed, then the UART switches.
            owed += wire_time(out.len(), baud_before);
            if pace {
                std::thread::sleep(std::mem::take(&mut owed));
            }
            owed = Duration::ZERO;
            bytes.fetch_add(out.len() as u64, Ordering::Relaxed);
            if port.write_all(&out).and_then(|()| port.flush()).is_err() {
                break;
            }
        }
    }
}
