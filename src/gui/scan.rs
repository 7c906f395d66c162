//! Keyboard-wedge barcode scanners type a code and Enter faster than any hand. The collector
//! watches every frame's key input wherever focus is; a run of at least [`MIN_LEN`] characters
//! ended by Enter whose characters came in at under [`MAX_AVG`] seconds each on average is a
//! scan, and its Enter is taken out of the frame so it does not also press a focused button.
//! The average, not each gap, decides: on a slow frame (software GL) a scanner's characters
//! arrive in bunches, one frame apart, and the gap between bunches says nothing of its speed.

use egui::{Event, Key};

/// Shortest scan.
pub const MIN_LEN: usize = 4;
/// Longest mean time per character of a scan (people type at 60 ms a character and slower;
/// scanners at 1 to 10 ms).
pub const MAX_AVG: f64 = 0.03;
/// A pause this long starts a new run.
pub const MAX_PAUSE: f64 = 0.3;

/// Collects scanner bursts across frames.
#[derive(Debug, Default)]
pub struct ScanCollector {
    buffer: String,
    first: Option<f64>,
    last: Option<f64>,
}

impl ScanCollector {
    /// Looks at this frame's input; returns a finished scan.
    pub fn take(&mut self, ctx: &egui::Context) -> Option<String> {
        let mut scan = None;
        ctx.input_mut(|i| {
            let now = i.time;
            let mut enter_at = None;
            for (n, e) in i.events.iter().enumerate() {
                match e {
                    Event::Text(t) => {
                        if self.last.is_some_and(|l| now - l > MAX_PAUSE) {
                            self.buffer.clear();
                            self.first = None;
                        }
                        self.buffer.push_str(t);
                        self.first.get_or_insert(now);
                        self.last = Some(now);
                    }
                    Event::Key {
                        key: Key::Enter,
                        pressed: true,
                        ..
                    } => {
                        let chars = self.buffer.chars().count();
                        let fast = self.first.is_some_and(|f| {
                            now - self.last.unwrap_or(f) <= MAX_PAUSE
                                && (now - f) / chars.max(1) as f64 <= MAX_AVG
                        });
                        if fast && chars >= MIN_LEN {
                            scan = Some(std::mem::take(&mut self.buffer));
                            enter_at = Some(n);
                        }
                        self.buffer.clear();
                        self.first = None;
                        self.last = None;
                        break;
                    }
                    _ => {}
                }
            }
            if let Some(n) = enter_at {
                i.events.remove(n);
            }
        });
        scan
    }
}
