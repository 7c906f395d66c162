//! End-to-end tests of the line: the engine over pseudo-terminals, SoftHSM2, the DPS emulator
//! and real SQLite ledgers; the real binary for `run`, `demo` and the kill test.

#[path = "line/bad_input.rs"]
mod bad_input;

#[path = "line/closed_pipe.rs"]
mod closed_pipe;

#[path = "line/common.rs"]
mod common;

#[path = "line/connection_file.rs"]
mod connection_file;

#[path = "line/disk_full.rs"]
mod disk_full;

#[path = "line/esp32.rs"]
mod esp32;

#[path = "line/esp32_symmetric.rs"]
mod esp32_symmetric;

#[path = "line/exports.rs"]
mod exports;

#[path = "line/families.rs"]
mod families;

#[path = "line/faults.rs"]
mod faults;

#[path = "line/keyring.rs"]
mod keyring;

#[path = "line/kill.rs"]
mod kill;

#[path = "line/labels.rs"]
mod labels;

#[path = "line/lifecycle.rs"]
mod lifecycle;

#[path = "line/manifest.rs"]
mod manifest;

#[path = "line/modes.rs"]
mod modes;

#[path = "line/offline_keys.rs"]
mod offline_keys;

#[path = "line/pin_sources.rs"]
mod pin_sources;

#[path = "line/ports.rs"]
mod ports;

#[path = "line/reprovision.rs"]
mod reprovision;

#[path = "line/reseat.rs"]
mod reseat;

#[path = "line/revoke.rs"]
mod revoke;

#[path = "line/throttled.rs"]
mod throttled;

#[path = "line/tpm.rs"]
mod tpm;

#[path = "line/walkthrough.rs"]
mod walkthrough;
