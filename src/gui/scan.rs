//! Keyboard-wedge barcode scanners type a code and Enter faster than any hand. The collector
//! watches every frame's key input wherever focus is; a run of at least [`MIN_LEN`] characters
//! typed with gaps under [`MAX_GAP`] seconds and ended by Enter is a scan, and its Enter is taken
//! out of the frame so it does not also press a focused button.

use egui::{Event, Key};

/// Shortest scan.
pub const MIN_LEN: usize = 4;
/// Longest gap between a scanner's characters (people type at 0.1 s and slower).
pub const MAX_GAP: f64 = 0.035;

/// Collects scanner bursts across frames.
#[derive(Debug, Default)]
pub struct ScanCollector {
    buffer: String,
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
                        if self.last.is_some_and(|l| now - l > MAX_GAP) {
                            self.buffer.clear();
                        }
                        self.buffer.push_str(t);
                        self.last = Some(now);
                    }
                    Event::Key {
                        key: Key::Enter,
                        pressed: true,
                        ..
                    } => {
                        let fresh = self.last.is_some_and(|l| now - l <= MAX_GAP);
                        if fresh && self.buffer.chars().count() >= MIN_LEN {
                            scan = Some(std::mem::take(&mut self.buffer));
                            enter_at = Some(n);
                        }
                        self.buffer.clear();
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
