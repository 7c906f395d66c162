//! Serial numbers read from the device's label by the operator's barcode scanner, for devices
//! that cannot report their own (a blank HELLO serial) or for batches whose product serial is the
//! printed label (`serial_from = "label"`). Slots that wait for a label queue in the order their
//! devices arrived; each scan goes to the slot that has waited longest, as an operator seats a
//! device and then scans it. A scan while no slot waits, or of a label another slot holds, is
//! refused with the reason: a label is never guessed onto a device.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

/// Where a device's serial comes from (`serial_from` in batch.toml).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SerialFrom {
    /// What the device reports in its HELLO; a device that reports none waits for its label.
    #[default]
    Device,
    /// Always the label: the product's serial is printed, the device knows only a chip id.
    Label,
}

impl SerialFrom {
    /// From batch.toml (`"device"`, `"label"`, absent = device).
    pub fn parse(text: Option<&str>) -> Result<Self, String> {
        match text.map(str::trim) {
            None | Some("device") => Ok(SerialFrom::Device),
            Some("label") => Ok(SerialFrom::Label),
            Some(other) => Err(format!(
                "'{other}' is not a serial source; write \"device\" (what the device reports) or \"label\" (the operator scans each device's label)"
            )),
        }
    }

    /// Its name in batch.toml.
    pub fn as_str(self) -> &'static str {
        match self {
            SerialFrom::Device => "device",
            SerialFrom::Label => "label",
        }
    }
}

/// Where a scanned label went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LabelOutcome {
    /// It is the serial of the device in this slot now.
    Taken {
        /// The slot.
        slot: String,
    },
    /// Refused; the text says why and what to do.
    Refused(String),
}

#[derive(Default)]
struct Inner {
    waiting: VecDeque<String>,
    given: HashMap<String, String>,
    /// Serials of devices in slots now (given and not yet finished): the same label twice is a
    /// double scan, not a second device.
    held: HashMap<String, String>,
}

/// The slots waiting for a label and the labels handed to them.
#[derive(Default)]
pub struct LabelDesk {
    inner: Mutex<Inner>,
}

impl LabelDesk {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A slot thread that panicked while holding the lock left nothing half-done here.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `slot` has a device and waits for its label.
    pub fn wait(&self, slot: &str) {
        let mut i = self.lock();
        if !i.waiting.iter().any(|s| s == slot) {
            i.waiting.push_back(slot.to_string());
        }
    }

    /// The label scanned for `slot`, once there is one (taken: asked again it is `None`).
    pub fn take(&self, slot: &str) -> Option<String> {
        self.lock().given.remove(slot)
    }

    /// `slot` stops waiting (the batch stopped, the device left); a label given but not yet
    /// taken is dropped with it.
    pub fn cancel(&self, slot: &str) {
        let mut i = self.lock();
        i.waiting.retain(|s| s != slot);
        if let Some(serial) = i.given.remove(slot) {
            i.held.remove(&serial);
        }
    }

    /// The device in `slot` left (passed or failed): its label may be scanned again.
    pub fn release(&self, slot: &str) {
        self.lock().held.retain(|_, s| s != slot);
    }

    /// An operator scanned `serial`.
    pub fn scanned(&self, serial: &str) -> LabelOutcome {
        let serial = serial.trim();
        let mut i = self.lock();
        if serial.is_empty() {
            return LabelOutcome::Refused(
                "the scan was empty; scan the device's label again".into(),
            );
        }
        if let Some(slot) = i.held.get(serial) {
            return LabelOutcome::Refused(format!(
                "label {serial} was already scanned for the device in slot {slot}; scan the label of the device that waits"
            ));
        }
        let Some(slot) = i.waiting.pop_front() else {
            return LabelOutcome::Refused(format!(
                "no slot waits for a label; seat the device first, then scan {serial}"
            ));
        };
        i.held.insert(serial.to_string(), slot.clone());
        i.given.insert(slot.clone(), serial.to_string());
        LabelOutcome::Taken { slot }
    }

    /// Slots waiting, longest first.
    pub fn waiting(&self) -> Vec<String> {
        self.lock().waiting.iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_go_to_slots_in_the_order_their_devices_arrived() {
        let d = LabelDesk::default();
        d.wait("S2");
        d.wait("S1");
        assert_eq!(
            d.scanned("LBL-1"),
            LabelOutcome::Taken { slot: "S2".into() }
        );
        assert_eq!(
            d.scanned(" LBL-2 "),
            LabelOutcome::Taken { slot: "S1".into() }
        );
        assert_eq!(d.take("S1").as_deref(), Some("LBL-2"));
        assert_eq!(d.take("S1"), None);
        assert_eq!(d.take("S2").as_deref(), Some("LBL-1"));
        assert!(d.waiting().is_empty());
    }

    #[test]
    fn a_scan_with_no_slot_waiting_or_twice_is_refused_with_the_reason() {
        let d = LabelDesk::default();
        match d.scanned("LBL-1") {
            LabelOutcome::Refused(why) => assert!(why.contains("no slot waits"), "{why}"),
            other => panic!("{other:?}"),
        }
        d.wait("S1");
        d.wait("S2");
        assert_eq!(
            d.scanned("LBL-1"),
            LabelOutcome::Taken { slot: "S1".into() }
        );
        match d.scanned("LBL-1") {
            LabelOutcome::Refused(why) => assert!(why.contains("slot S1"), "{why}"),
            other => panic!("{other:?}"),
        }
        // S2 still waits for its own label; once S1's device leaves, LBL-1 is free again.
        assert_eq!(d.waiting(), ["S2"]);
        d.release("S1");
        assert_eq!(
            d.scanned("LBL-1"),
            LabelOutcome::Taken { slot: "S2".into() }
        );
    }

    #[test]
    fn a_cancelled_slot_gives_up_its_place_and_its_label() {
        let d = LabelDesk::default();
        d.wait("S1");
        d.wait("S2");
        d.cancel("S1");
        assert_eq!(
            d.scanned("LBL-9"),
            LabelOutcome::Taken { slot: "S2".into() }
        );
        d.cancel("S2");
        d.wait("S1");
        assert_eq!(
            d.scanned("LBL-9"),
            LabelOutcome::Taken { slot: "S1".into() }
        );
    }
}
