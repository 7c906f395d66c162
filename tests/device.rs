//! Devices over serial: the line protocol against the simulator over real pseudo-terminal pairs.

#[path = "device/cli.rs"]
mod cli;
#[path = "device/common.rs"]
mod common;
#[path = "device/faults.rs"]
mod faults;
#[path = "device/roundtrip.rs"]
mod roundtrip;
#[path = "device/secrets.rs"]
mod secrets;
