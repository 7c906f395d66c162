//! The simulated device's wire: a UART at a given speed with the faults a production line sees
//! (dropped and corrupted bytes, garbage between frames), and the device's main loop.

use std::io::{ErrorKind, Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tracing::debug;

use super::firmware::{Firmware, line_error};
use super::{SimFaults, SimShared};
use crate::device::frame::{Frame, FrameError, Line, LineAssembler};
use crate::device::protocol::ErrorCode;

/// A small seeded generator (SplitMix64) for fault injection, so a failing run can be replayed
/// with the same `--seed`. Key material never comes from here.
pub struct FaultRng(u64);

impl FaultRng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
}

/// Drops and corrupts bytes at the configured rates.
fn mangle(bytes: &[u8], faults: &SimFaults, rng: &mut FaultRng) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    for &b in bytes {
        if rng.chance(faults.drop_rate) {
            continue;
        }
        if rng.chance(faults.corrupt_rate) {
            // Flip one bit, as line noise does; never produce '\n' so framing is kept.
            let flipped = b ^ (1 << (rng.next_u64() % 8));
            out.push(if flipped == b'\n' { b'~' } else { flipped });
        } else {
            out.push(b);
        }
    }
    out
}

/// The sending half: paces bytes at the baud rate and applies faults.
struct Tx<'a, P: Write> {
    port: &'a mut P,
    faults: &'a SimFaults,
    rng: &'a mut FaultRng,
    free_at: Instant,
    sent: &'a AtomicU64,
}

impl<P: Write> Tx<'_, P> {
    fn send_frame(&mut self, frame: &Frame) {
        let Ok(bytes) = frame.encode() else { return };
        if self.faults.garbage {
            // A firmware log line and a few binary bytes, as a chatty device or a noisy line emits.
            let mut noise = b"[log] sensor idle \x01\x7f\xfe".to_vec();
            noise.extend(
                (0..(self.rng.next_u64() % 8)).map(|_| (self.rng.next_u64() % 0x3f) as u8 + 0x20),
            );
            noise.extend_from_slice(b"\r\n");
            self.write_paced(&noise);
        }
        let bytes = mangle(&bytes, self.faults, self.rng);
        self.write_paced(&bytes);
    }

    fn write_paced(&mut self, bytes: &[u8]) {
        if let Some(baud) = self.faults.baud {
            // The whole frame is on the station's side when its last byte would have left a real UART.
            let wire =
                Duration::from_micros(bytes.len() as u64 * 10 * 1_000_000 / u64::from(baud.max(1)));
            self.free_at = self.free_at.max(Instant::now()) + wire;
            let wait = self.free_at.saturating_duration_since(Instant::now());
            std::thread::sleep(wait);
        }
        self.sent.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        // Nobody on the other end is not the device's problem: it keeps talking into the void.
        let _ = self.port.write_all(bytes).and_then(|()| self.port.flush());
    }
}

/// One device's side of the wire: its firmware and the state pacing and faults need. Driven by
/// [`run`] (a device with its own port) or by a fixture adapter that swaps devices on one port.
pub(crate) struct DeviceWire {
    shared: Arc<SimShared>,
    faults: SimFaults,
    rng: FaultRng,
    firmware: Firmware,
    lines: LineAssembler,
    rx_done_at: Instant,
    frames_seen: u64,
    rebooted: bool,
    free_at: Instant,
}

impl DeviceWire {
    /// Powers the device on: it boots and prints `BOOT` on `port`.
    pub(crate) fn boot<P: Write>(shared: Arc<SimShared>, port: &mut P) -> Self {
        let faults = shared.faults.clone();
        let mut rng = FaultRng::new(faults.seed ^ shared.index as u64);
        let (firmware, boot) = Firmware::boot(
            shared.flash.clone(),
            shared.flash_path.clone(),
            shared.firmware.clone(),
        );
        let mut tx = Tx {
            port,
            faults: &faults,
            rng: &mut rng,
            free_at: Instant::now(),
            sent: &shared.bytes_sent,
        };
        tx.send_frame(&boot);
        let free_at = tx.free_at;
        Self {
            shared,
            faults,
            rng,
            firmware,
            lines: LineAssembler::new(),
            rx_done_at: Instant::now(),
            frames_seen: 0,
            rebooted: false,
            free_at,
        }
    }

    /// Takes bytes the station sent (read from the port at `at`) and answers what they complete.
    /// `false` once the disconnect fault fired: the device is gone.
    pub(crate) fn receive<P: Write>(&mut self, bytes: &[u8], at: Instant, port: &mut P) -> bool {
        let shared = self.shared.clone();
        let n = bytes.len();
        shared.bytes_received.fetch_add(n as u64, Ordering::Relaxed);
        if let Some(baud) = self.faults.baud {
            // The station's bytes also take wire time: a real device has them only this much later.
            let wire = Duration::from_micros(n as u64 * 10 * 1_000_000 / u64::from(baud.max(1)));
            self.rx_done_at = self.rx_done_at.max(at) + wire;
        }
        let bytes = mangle(bytes, &self.faults, &mut self.rng);
        for line in self.lines.push(&bytes) {
            // The device works on the request at once but answers no earlier than a real one
            // could: after the request's last byte arrived plus the time the work took. One sleep
            // per reply (in `write_paced`) keeps the pacing accurate on a loaded machine.
            let started = Instant::now();
            let rx_done_at = self.rx_done_at;
            let mut tx = Tx {
                port: &mut *port,
                faults: &self.faults,
                rng: &mut self.rng,
                free_at: self.free_at.max(rx_done_at),
                sent: &shared.bytes_sent,
            };
            let line = match line {
                Line::Complete(line) => line,
                Line::Overflow => {
                    tx.send_frame(&line_error(ErrorCode::TooLong));
                    self.free_at = tx.free_at;
                    continue;
                }
            };
            self.frames_seen += 1;
            shared.frames.store(self.frames_seen, Ordering::Relaxed);
            if self.faults.reboot_at == Some(self.frames_seen) && !self.rebooted {
                debug!(
                    device = shared.index,
                    frames_seen = self.frames_seen,
                    "simulated reboot"
                );
                self.rebooted = true;
                std::thread::sleep(Duration::from_millis(50));
                let boot = self.firmware.reboot();
                tx.send_frame(&boot);
                self.free_at = tx.free_at;
                continue;
            }
            match Frame::parse(&line) {
                Ok(request) => {
                    let reply = self
                        .firmware
                        .handle(&request, &mut |busy| tx.send_frame(busy));
                    if self.faults.baud.is_some() {
                        tx.free_at = tx.free_at.max(rx_done_at + started.elapsed());
                    }
                    tx.send_frame(&reply);
                }
                Err(FrameError::Noise) => {}
                Err(FrameError::BadCrc) => tx.send_frame(&line_error(ErrorCode::BadCrc)),
                Err(FrameError::TooLong) => tx.send_frame(&line_error(ErrorCode::TooLong)),
                Err(FrameError::Malformed(_)) => tx.send_frame(&line_error(ErrorCode::BadFrame)),
            }
            self.free_at = tx.free_at;
            if self
                .faults
                .disconnect_after
                .is_some_and(|n| self.frames_seen >= n)
            {
                debug!(
                    device = shared.index,
                    frames_seen = self.frames_seen,
                    "simulated disconnect"
                );
                // Let the last reply drain out of the pty before the "cable" is pulled.
                std::thread::sleep(Duration::from_millis(100));
                shared.disconnected.store(true, Ordering::Relaxed);
                return false;
            }
        }
        true
    }
}

/// Reads from `port` with its short timeout: `Some(n)` bytes, or `None` when nothing came (or no
/// station holds the other end of a pty yet, which reads EIO: then it waits a little).
pub(crate) fn read_some<P: Read>(port: &mut P, buf: &mut [u8]) -> Option<usize> {
    match port.read(buf) {
        Ok(0) => {
            std::thread::sleep(Duration::from_millis(5));
            None
        }
        Ok(n) => Some(n),
        Err(e)
            if matches!(
                e.kind(),
                ErrorKind::TimedOut | ErrorKind::WouldBlock | ErrorKind::Interrupted
            ) =>
        {
            None
        }
        Err(_) => {
            // A pty master reads EIO while no station has the other end open: wait for one.
            std::thread::sleep(Duration::from_millis(10));
            None
        }
    }
}

/// Runs one device on `port` until `stop` is set or a disconnect fault fires.
pub fn run<P: Read + Write>(mut port: P, shared: Arc<SimShared>, stop: Arc<AtomicBool>) {
    let mut device = DeviceWire::boot(shared, &mut port);
    let mut buf = [0u8; 1024];
    while !stop.load(Ordering::Relaxed) {
        let Some(n) = read_some(&mut port, &mut buf) else {
            continue;
        };
        if !device.receive(&buf[..n], Instant::now(), &mut port) {
            return;
        }
    }
}
