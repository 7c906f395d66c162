//! The DPS emulator over real HTTP(S) on 127.0.0.1: the tolerances and semantics of the service
//! API, SAS, limits, faults, the state file, the device registration API, and the official
//! Node and Python service SDKs run against it.

#[path = "dps_emulator/cli.rs"]
mod cli;
#[path = "dps_emulator/clients.rs"]
mod clients;
#[path = "dps_emulator/common.rs"]
mod common;
#[path = "dps_emulator/device.rs"]
mod device;
#[path = "dps_emulator/key_output.rs"]
mod key_output;
#[path = "dps_emulator/limits.rs"]
mod limits;
#[path = "dps_emulator/mqtt.rs"]
mod mqtt;
#[path = "dps_emulator/mqtt_clients.rs"]
mod mqtt_clients;
#[path = "dps_emulator/official_clients.rs"]
mod official_clients;
#[path = "dps_emulator/service.rs"]
mod service;
#[path = "dps_emulator/tpm.rs"]
mod tpm;
