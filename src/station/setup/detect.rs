//! `fixture detect`: the operator plugs one adapter after another into the fixture's USB ports and
//! presses Enter; each slot gets the USB port (`ID_PATH`) that appeared. The session logic is
//! separate from the terminal and from udev, so that it is tested with scripted answers and ports.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, Write};
use std::path::PathBuf;

use super::udev::SlotPort;

/// The USB serial ports plugged in now: `ID_PATH` → device node.
pub type PortScan = BTreeMap<String, PathBuf>;

/// Why detection stopped.
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    /// The terminal went away.
    #[error("cannot talk to the operator: {0}")]
    Terminal(#[from] std::io::Error),
    /// The ports could not be listed.
    #[error("cannot list the USB serial ports: {0}")]
    Scan(String),
    /// No slot names.
    #[error("no fixture slots to detect: pass --slots A1,A2,... or --count N")]
    NoSlots,
}

/// One session's memory: which ports were there before, which slot has which port. The GUI's
/// first-run screen drives it directly ([`DetectSession::start`], [`DetectSession::look`],
/// [`DetectSession::accept`]); [`detect_slots`] drives it from a terminal.
#[derive(Debug, Default)]
pub struct DetectSession {
    /// Ports that were plugged in before their slot was asked for (not fixture adapters, or not
    /// yet re-plugged). A port leaves this set when it disappears, so unplugging and plugging an
    /// adapter back makes it count as new.
    ignored: BTreeSet<String>,
    assigned: Vec<SlotPort>,
    /// Assigned ports reported missing already (said once, not on every prompt).
    missing: BTreeSet<String>,
}

/// What one look at the ports found for the slot being asked for.
#[derive(Debug, PartialEq, Eq)]
pub enum Look {
    /// Exactly one new port: its `ID_PATH` and device node.
    Found(String, PathBuf),
    /// No new port since the last look.
    NothingNew,
    /// More than one new port: the operator plugged several; none is guessed.
    Several(Vec<PathBuf>),
}

impl DetectSession {
    /// A session whose ports plugged in now are ignored until they are re-plugged.
    pub fn start(now: PortScan) -> Self {
        DetectSession {
            ignored: now.into_keys().collect(),
            ..Default::default()
        }
    }

    /// The slots found so far, in order.
    pub fn assigned(&self) -> &[SlotPort] {
        &self.assigned
    }

    /// Records `id_path` as `slot`'s port (after a [`Look::Found`]).
    pub fn accept(&mut self, slot: &str, id_path: String) {
        self.assigned.push(SlotPort {
            slot: slot.to_owned(),
            id_path,
        });
    }

    /// Slots whose adapter has just disappeared (to say so once) and what is new for this slot.
    pub fn look(&mut self, now: &PortScan) -> (Vec<SlotPort>, Look) {
        self.ignored.retain(|p| now.contains_key(p));
        let mut gone = Vec::new();
        for s in &self.assigned {
            if now.contains_key(&s.id_path) {
                self.missing.remove(&s.id_path);
            } else if self.missing.insert(s.id_path.clone()) {
                gone.push(s.clone());
            }
        }
        let new: Vec<(&String, &PathBuf)> = now
            .iter()
            .filter(|(p, _)| !self.ignored.contains(*p))
            .filter(|(p, _)| !self.assigned.iter().any(|s| &s.id_path == *p))
            .collect();
        let look = match new.as_slice() {
            [] => Look::NothingNew,
            [(p, d)] => Look::Found((*p).clone(), (*d).clone()),
            many => Look::Several(many.iter().map(|(_, d)| (*d).clone()).collect()),
        };
        (gone, look)
    }
}

/// Walks the operator through `slots` in order: plug that slot's adapter, press Enter. `s` skips
/// a slot, `q` ends early; ports already plugged in at the start are ignored until re-plugged.
/// Returns the slots found, in order. `scan` lists the USB serial ports now.
pub fn detect_slots(
    slots: &[String],
    scan: &mut dyn FnMut() -> Result<PortScan, String>,
    input: &mut dyn BufRead,
    out: &mut dyn Write,
) -> Result<Vec<SlotPort>, DetectError> {
    if slots.is_empty() {
        return Err(DetectError::NoSlots);
    }
    let first = scan().map_err(DetectError::Scan)?;
    if !first.is_empty() {
        writeln!(
            out,
            "{} USB serial adapter(s) are plugged in already ({}); they are ignored until unplugged and plugged in again.",
            first.len(),
            first
                .values()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )?;
    }
    let mut session = DetectSession::start(first);
    let mut index = 0;
    while index < slots.len() {
        let slot = &slots[index];
        write!(
            out,
            "Plug the adapter of slot {slot} into its USB port, then press Enter (s: skip this slot, q: stop): "
        )?;
        out.flush()?;
        let mut answer = String::new();
        if input.read_line(&mut answer)? == 0 {
            writeln!(out, "\nno more input: stopping here.")?;
            break;
        }
        match answer.trim() {
            "q" | "Q" => break,
            "s" | "S" => {
                writeln!(out, "slot {slot} skipped.")?;
                index += 1;
                continue;
            }
            _ => {}
        }
        let now = scan().map_err(DetectError::Scan)?;
        let (gone, look) = session.look(&now);
        for g in gone {
            writeln!(
                out,
                "the adapter of slot {} (USB port {}) was unplugged; slot {} stays on that USB port, going on.",
                g.slot, g.id_path, g.slot
            )?;
        }
        match look {
            Look::Found(id_path, device) => {
                writeln!(
                    out,
                    "slot {slot}: {} on USB port {id_path}",
                    device.display()
                )?;
                session.accept(slot, id_path);
                index += 1;
            }
            Look::NothingNew => writeln!(
                out,
                "no new adapter appeared for slot {slot}: check its cable and USB port, and try again."
            )?,
            Look::Several(devices) => writeln!(
                out,
                "{} new adapters appeared ({}): plug in one slot at a time; unplug all but slot {slot}'s and try again.",
                devices.len(),
                devices
                    .iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )?,
        }
    }
    Ok(session.assigned)
}

/// The USB serial ports plugged in now, by udev `ID_PATH` (ports without one, such as
/// pseudo-terminals, are left out).
pub fn usb_serial_ports() -> Result<PortScan, String> {
    let ports = crate::device::transport::list_ports().map_err(|e| e.to_string())?;
    let mut scan = BTreeMap::new();
    for p in ports.into_iter().filter(|p| p.usb.is_some()) {
        match super::udev::id_path_of(std::path::Path::new(&p.path)) {
            Ok(id_path) => {
                scan.insert(id_path, PathBuf::from(&p.path));
            }
            Err(super::udev::UdevError::NoIdPath(_)) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(scan)
}

/// Slot names `1`..=`count`, for `--count`.
pub fn numbered_slots(count: usize) -> Vec<String> {
    (1..=count).map(|n| n.to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan_of(ports: &[&str]) -> PortScan {
        ports
            .iter()
            .enumerate()
            .map(|(i, p)| (p.to_string(), PathBuf::from(format!("/dev/ttyUSB{i}"))))
            .collect()
    }

    /// Runs a session with the operator's answers and the port lists each scan returns.
    fn run(slots: &[&str], answers: &str, scans: Vec<PortScan>) -> (Vec<SlotPort>, String) {
        let slots: Vec<String> = slots.iter().map(|s| s.to_string()).collect();
        let mut scans = scans.into_iter();
        let mut scan = move || Ok(scans.next().unwrap_or_default());
        let mut out = Vec::new();
        let found = detect_slots(&slots, &mut scan, &mut answers.as_bytes(), &mut out).unwrap();
        (found, String::from_utf8(out).unwrap())
    }

    #[test]
    fn each_slot_gets_the_port_that_appeared_and_ports_there_before_are_ignored() {
        let (found, out) = run(
            &["A1", "A2"],
            "\n\n",
            vec![
                scan_of(&["hub-keyboard"]),
                scan_of(&["hub-keyboard", "usb-1"]),
                scan_of(&["hub-keyboard", "usb-1", "usb-2"]),
            ],
        );
        assert_eq!(
            found,
            vec![
                SlotPort {
                    slot: "A1".into(),
                    id_path: "usb-1".into()
                },
                SlotPort {
                    slot: "A2".into(),
                    id_path: "usb-2".into()
                },
            ]
        );
        assert!(out.contains("ignored until unplugged"), "{out}");
    }

    #[test]
    fn an_adapter_unplugged_while_waiting_is_reported_once_and_detection_goes_on() {
        let (found, out) = run(
            &["1", "2", "3"],
            "\n\n\n\n",
            vec![
                scan_of(&[]),
                scan_of(&["usb-1"]),
                // Slot 1's adapter falls out while slot 2 is asked for: nothing new either.
                scan_of(&[]),
                scan_of(&["usb-2"]),
                scan_of(&["usb-2", "usb-3"]),
            ],
        );
        assert_eq!(
            found.iter().map(|s| s.id_path.as_str()).collect::<Vec<_>>(),
            ["usb-1", "usb-2", "usb-3"]
        );
        assert_eq!(
            out.matches("slot 1 (USB port usb-1) was unplugged").count(),
            1,
            "{out}"
        );
        assert!(out.contains("no new adapter appeared for slot 2"), "{out}");
    }

    #[test]
    fn two_new_adapters_at_once_are_not_guessed_and_skip_and_quit_work() {
        let (found, out) = run(
            &["A1", "A2", "A3"],
            "\n\ns\nq\n",
            vec![
                scan_of(&[]),
                scan_of(&["usb-1", "usb-2"]),
                scan_of(&["usb-1"]),
            ],
        );
        assert!(out.contains("2 new adapters appeared"), "{out}");
        assert_eq!(
            found,
            vec![SlotPort {
                slot: "A1".into(),
                id_path: "usb-1".into()
            }]
        );
        assert!(out.contains("slot A2 skipped"), "{out}");
    }

    #[test]
    fn a_re_plugged_adapter_counts_as_new_and_input_ending_stops_cleanly() {
        let (found, out) = run(
            &["A1", "A2"],
            "\n\n",
            vec![scan_of(&["usb-1"]), scan_of(&[]), scan_of(&["usb-1"])],
        );
        // Asked again for A1 after nothing new: the re-plugged adapter is A1's.
        assert_eq!(
            found,
            vec![SlotPort {
                slot: "A1".into(),
                id_path: "usb-1".into()
            }]
        );
        assert!(out.contains("no new adapter appeared for slot A1"), "{out}");
        let (found, out) = run(&["A1"], "", vec![scan_of(&[])]);
        assert!(found.is_empty() && out.contains("no more input"), "{out}");
    }
}
