//! udev rules for the fixture: one rule per slot naming the adapter by the physical USB port it sits
//! on (`ID_PATH`), so `/dev/dps-fixture/<slot>` stays the slot whatever adapter is plugged there
//! (16 identical adapters have no serial number to tell them apart; `/dev/serial/by-id` cannot).
//!
//! Also a syntax check of rules files for systems whose `udevadm` has no `verify` (udev < 253,
//! Debian 12's 252): the package's own rule and every generated one go through it in the tests.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The system group that owns the fixture's ports, the ledger and the reports.
pub const STATION_GROUP: &str = "dps-station";

/// Where the per-slot symlinks appear: `/dev/dps-fixture/<slot>`.
pub const FIXTURE_DEV_DIR: &str = "/dev/dps-fixture";

/// Where `fixture detect` installs the per-slot rules (after the package's 60-dps-station.rules).
pub const FIXTURE_RULES_FILE: &str = "/etc/udev/rules.d/61-dps-fixture.rules";

/// One fixture slot and the USB port (udev `ID_PATH`) its adapter is plugged into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotPort {
    /// The slot name (`A1`), as in `[fixture.slots]`.
    pub slot: String,
    /// udev's `ID_PATH` of the port, e.g. `pci-0000:00:14.0-usb-0:1.4:1.0`.
    pub id_path: String,
}

impl SlotPort {
    /// The stable path the station opens for this slot.
    pub fn device_path(&self) -> PathBuf {
        Path::new(FIXTURE_DEV_DIR).join(&self.slot)
    }
}

/// Why rules could not be made or looked up.
#[derive(Debug, thiserror::Error)]
pub enum UdevError {
    /// A slot name that cannot be a file name under `/dev/dps-fixture`.
    #[error(
        "fixture slot name '{0}' must be 1-32 characters of letters, digits, '-' or '_' (it becomes /dev/dps-fixture/{0})"
    )]
    SlotName(String),
    /// An `ID_PATH` with characters that would break the rule's quoting or act as a glob.
    #[error("'{0}' is not a udev ID_PATH (expected something like pci-0000:00:14.0-usb-0:1.4:1.0)")]
    IdPath(String),
    /// Two slots on one USB port.
    #[error("fixture slots '{0}' and '{1}' both name USB port {2}; each slot needs its own port")]
    DuplicatePort(String, String, String),
    /// Two entries for one slot.
    #[error("fixture slot '{0}' is given twice")]
    DuplicateSlot(String),
    /// `udevadm` is not there or failed.
    #[error("cannot ask udev about {device}: {message}; is udev installed and running?")]
    Udevadm {
        /// The device asked about.
        device: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The port is not on USB (a pseudo-terminal, a built-in UART).
    #[error("{0} has no USB port path (ID_PATH); only USB serial adapters can be named by port")]
    NoIdPath(PathBuf),
}

/// Whether `slot` is a usable slot name (the rules of `device::FixtureMap`).
pub fn valid_slot_name(slot: &str) -> bool {
    (1..=32).contains(&slot.len())
        && slot
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn valid_id_path(id_path: &str) -> bool {
    !id_path.is_empty()
        && id_path.len() <= 200
        && id_path
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | ':' | '.' | '+'))
}

/// The rules file text for `slots`: each slot's port gets the symlink `dps-fixture/<slot>` and the
/// station's group.
pub fn fixture_rules(station: &str, slots: &[SlotPort]) -> Result<String, UdevError> {
    let mut ports: Vec<(&str, &str)> = Vec::new();
    let mut names = BTreeSet::new();
    for s in slots {
        if !valid_slot_name(&s.slot) {
            return Err(UdevError::SlotName(s.slot.clone()));
        }
        if !valid_id_path(&s.id_path) {
            return Err(UdevError::IdPath(s.id_path.clone()));
        }
        if !names.insert(s.slot.as_str()) {
            return Err(UdevError::DuplicateSlot(s.slot.clone()));
        }
        if let Some((other, _)) = ports.iter().find(|(_, p)| *p == s.id_path) {
            return Err(UdevError::DuplicatePort(
                (*other).to_owned(),
                s.slot.clone(),
                s.id_path.clone(),
            ));
        }
        ports.push((&s.slot, &s.id_path));
    }
    // The station name is free text from station.toml: keep it to one comment line.
    let station: String = station.chars().filter(|c| !c.is_control()).collect();
    let mut text = format!(
        "# Fixture slots of station {station}, made by `dps-station fixture udev-rules`.\n\
         # Each slot is the USB port its adapter is plugged into (udev ID_PATH): swapping adapters\n\
         # keeps the slot, moving a cable to another USB port moves the slot.\n\
         # Install: sudo cp THIS-FILE {FIXTURE_RULES_FILE}\n\
         #          sudo udevadm control --reload-rules && sudo udevadm trigger --subsystem-match=tty\n"
    );
    for (slot, id_path) in ports {
        text.push_str(&format!(
            "SUBSYSTEM==\"tty\", ENV{{ID_PATH}}==\"{id_path}\", SYMLINK+=\"dps-fixture/{slot}\", GROUP=\"{STATION_GROUP}\", MODE=\"0660\"\n"
        ));
    }
    Ok(text)
}

/// Parses `udevadm info --query=property` output (`KEY=value` lines) and returns `ID_PATH`.
pub fn id_path_from_properties(text: &str) -> Option<String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .find(|(k, _)| *k == "ID_PATH")
        .map(|(_, v)| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// The `ID_PATH` of a serial device node (or a symlink to one), asked from udev.
pub fn id_path_of(device: &Path) -> Result<String, UdevError> {
    let out = Command::new("udevadm")
        .args(["info", "--query=property", "--name"])
        .arg(device)
        .output()
        .map_err(|e| UdevError::Udevadm {
            device: device.to_owned(),
            message: format!("cannot run udevadm ({e})"),
        })?;
    if !out.status.success() {
        return Err(UdevError::Udevadm {
            device: device.to_owned(),
            message: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    id_path_from_properties(&String::from_utf8_lossy(&out.stdout))
        .ok_or_else(|| UdevError::NoIdPath(device.to_owned()))
}

/// A syntax error in a rules file.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("udev rules line {line}: {message}")]
pub struct RuleSyntaxError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

const MATCH_ONLY: &[&str] = &[
    "ACTION",
    "DEVPATH",
    "KERNEL",
    "KERNELS",
    "SUBSYSTEMS",
    "DRIVER",
    "DRIVERS",
    "ATTRS",
    "TAGS",
    "TEST",
    "PROGRAM",
    "RESULT",
    "CONST",
    "SUBSYSTEM",
];
const ASSIGN_ONLY: &[&str] = &[
    "OWNER", "GROUP", "MODE", "SECLABEL", "RUN", "LABEL", "GOTO", "IMPORT", "OPTIONS",
];
const EITHER: &[&str] = &["NAME", "SYMLINK", "ENV", "TAG", "ATTR", "SYSCTL"];
const WITH_ATTRIBUTE: &[&str] = &[
    "ATTR", "ATTRS", "ENV", "SYSCTL", "TEST", "IMPORT", "RUN", "SECLABEL", "CONST",
];

/// Checks the syntax of a udev rules file the way `udevadm verify` does for what this project
/// writes: `KEY[{attr}]OP"value"` pairs separated by commas, keys used with operators they accept,
/// attributes where a key needs one, octal modes, and every `GOTO` with its `LABEL`.
pub fn check_rules(text: &str) -> Result<(), RuleSyntaxError> {
    let mut labels = BTreeSet::new();
    let mut gotos = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let err = |message: String| RuleSyntaxError { line, message };
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if trimmed.ends_with('\\') {
            return Err(err("line continuations are not used in these rules".into()));
        }
        let mut rest = trimmed;
        let mut pairs = 0;
        while !rest.is_empty() {
            let key_len = rest
                .find(|c: char| !(c.is_ascii_uppercase() || c == '_'))
                .unwrap_or(rest.len());
            let key = &rest[..key_len];
            if key.is_empty() {
                return Err(err(format!("expected a key at '{rest}'")));
            }
            rest = &rest[key_len..];
            let attribute = if let Some(after) = rest.strip_prefix('{') {
                let close = after
                    .find('}')
                    .ok_or_else(|| err(format!("{key}{{ has no closing brace")))?;
                let attr = &after[..close];
                if attr.is_empty() {
                    return Err(err(format!("{key}{{}} names no attribute")));
                }
                rest = &after[close + 1..];
                Some(attr)
            } else {
                None
            };
            let op = ["==", "!=", "+=", "-=", ":=", "="]
                .into_iter()
                .find(|op| rest.starts_with(op))
                .ok_or_else(|| {
                    err(format!(
                        "{key}: expected an operator (==, !=, =, +=, -=, :=)"
                    ))
                })?;
            rest = &rest[op.len()..];
            let body = rest
                .strip_prefix('"')
                .ok_or_else(|| err(format!("{key}: the value must be in double quotes")))?;
            let close = body
                .find('"')
                .ok_or_else(|| err(format!("{key}: the value's quote is not closed")))?;
            let value = &body[..close];
            rest = body[close + 1..].trim_start();
            if let Some(after) = rest.strip_prefix(',') {
                rest = after.trim_start();
                if rest.is_empty() {
                    return Err(err("a comma ends the line".into()));
                }
            } else if !rest.is_empty() {
                return Err(err(format!("expected ',' before '{rest}'")));
            }
            pairs += 1;

            let is_match = op == "==" || op == "!=";
            let known_as_match = MATCH_ONLY.contains(&key) || EITHER.contains(&key);
            let known_as_assign = ASSIGN_ONLY.contains(&key) || EITHER.contains(&key);
            if !known_as_match && !known_as_assign {
                return Err(err(format!("unknown key {key}")));
            }
            if is_match && !known_as_match {
                return Err(err(format!("{key} cannot be matched with {op}")));
            }
            if !is_match && !known_as_assign {
                return Err(err(format!("{key} cannot be assigned with {op}")));
            }
            if WITH_ATTRIBUTE.contains(&key)
                && attribute.is_none()
                && !matches!(key, "IMPORT" | "RUN" | "TEST")
            {
                return Err(err(format!("{key} needs an attribute: {key}{{name}}")));
            }
            if attribute.is_some() && !WITH_ATTRIBUTE.contains(&key) {
                return Err(err(format!("{key} takes no {{attribute}}")));
            }
            if matches!(key, "MODE" | "OWNER" | "GROUP" | "LABEL" | "GOTO")
                && !matches!(op, "=" | ":=")
            {
                return Err(err(format!("{key} takes = or :=, not {op}")));
            }
            if key == "MODE"
                && !(value.len() == 4 && value.chars().all(|c| ('0'..='7').contains(&c)))
            {
                return Err(err(format!(
                    "MODE \"{value}\" is not a four-digit octal mode"
                )));
            }
            if key == "MODE" && value.ends_with(['2', '3', '6', '7']) {
                return Err(err(format!(
                    "MODE \"{value}\" makes the device world-writable"
                )));
            }
            if value.is_empty() && matches!(key, "GROUP" | "SYMLINK" | "LABEL" | "GOTO") {
                return Err(err(format!("{key} has an empty value")));
            }
            match key {
                "LABEL" => {
                    labels.insert(value.to_owned());
                }
                "GOTO" => gotos.push((line, value.to_owned())),
                _ => {}
            }
        }
        if pairs == 0 {
            return Err(err("no key on this line".into()));
        }
    }
    for (line, target) in gotos {
        if !labels.contains(&target) {
            return Err(RuleSyntaxError {
                line,
                message: format!("GOTO \"{target}\" has no LABEL \"{target}\""),
            });
        }
    }
    Ok(())
}

/// Whether the installed `udevadm` has `verify` (systemd 253 and later).
pub fn udevadm_can_verify() -> bool {
    Command::new("udevadm")
        .args(["verify", "--help"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(s: &str, p: &str) -> SlotPort {
        SlotPort {
            slot: s.into(),
            id_path: p.into(),
        }
    }

    #[test]
    fn rules_name_each_slot_by_its_usb_port_and_pass_the_checker() {
        let text = fixture_rules(
            "line-3",
            &[
                slot("A1", "pci-0000:00:14.0-usb-0:1.1:1.0"),
                slot("A2", "pci-0000:00:14.0-usb-0:1.2:1.0"),
            ],
        )
        .unwrap();
        assert!(text.contains(
            "SUBSYSTEM==\"tty\", ENV{ID_PATH}==\"pci-0000:00:14.0-usb-0:1.2:1.0\", SYMLINK+=\"dps-fixture/A2\", GROUP=\"dps-station\", MODE=\"0660\"\n"
        ));
        check_rules(&text).unwrap();
        assert_eq!(
            slot("B7", "x").device_path(),
            PathBuf::from("/dev/dps-fixture/B7")
        );
    }

    #[test]
    fn bad_slots_and_ports_are_refused_by_name() {
        let e = fixture_rules("s", &[slot("A/1", "pci-0")]).unwrap_err();
        assert!(e.to_string().contains("'A/1'"), "{e}");
        let e = fixture_rules("s", &[slot("A1", "pci\", RUN+=\"/bin/sh")]).unwrap_err();
        assert!(matches!(e, UdevError::IdPath(_)), "{e}");
        let e = fixture_rules("s", &[slot("A1", "p-1"), slot("A2", "p-1")]).unwrap_err();
        assert!(e.to_string().contains("'A1' and 'A2'"), "{e}");
        let e = fixture_rules("s", &[slot("A1", "p-1"), slot("A1", "p-2")]).unwrap_err();
        assert!(matches!(e, UdevError::DuplicateSlot(_)), "{e}");
        // A station name cannot inject a rule line.
        let text = fixture_rules("evil\nRUN+=\"/bin/sh\"", &[slot("A1", "p-1")]).unwrap();
        assert!(!text.lines().any(|l| l.starts_with("RUN")), "{text}");
        check_rules(&text).unwrap();
    }

    #[test]
    fn udevadm_properties_give_the_id_path() {
        let props = "DEVNAME=/dev/ttyUSB0\nID_PATH=pci-0000:00:14.0-usb-0:3:1.0\nID_PATH_TAG=x\n";
        assert_eq!(
            id_path_from_properties(props).as_deref(),
            Some("pci-0000:00:14.0-usb-0:3:1.0")
        );
        assert_eq!(id_path_from_properties("DEVNAME=/dev/pts/3\n"), None);
    }

    #[test]
    fn the_checker_refuses_what_udev_would() {
        for (bad, why) in [
            ("SUBSYSTEM==\"tty\", GROUP==\"x\"", "cannot be matched"),
            ("KERNEL=\"tty\"", "cannot be assigned"),
            ("SUBSYSTEM==\"tty\" GROUP=\"x\"", "expected ','"),
            ("SUBSYSTEM==tty", "double quotes"),
            ("SUBSYSTEM==\"tty", "not closed"),
            ("ATTRS==\"x\"", "needs an attribute"),
            ("GROUP{x}=\"y\"", "takes no"),
            ("FOO==\"x\"", "unknown key"),
            ("MODE=\"0666\"", "world-writable"),
            ("MODE=\"66\"", "octal"),
            ("GOTO=\"nowhere\"", "no LABEL"),
            ("SUBSYSTEM==\"tty\",", "comma ends"),
        ] {
            let e = check_rules(bad).unwrap_err();
            assert!(e.message.contains(why), "{bad}: {e}");
            assert_eq!(e.line, 1);
        }
        assert_eq!(check_rules("# c\n\nKERNEL=\"x\"\n").unwrap_err().line, 3);
    }
}
