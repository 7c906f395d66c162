//! Devices on the line: the station line protocol, the serial transport, port discovery, the simulator.
//!
//! The station talks to devices only through [`DeviceDriver`]; [`LineClient`] is the driver for our
//! own protocol (`docs/device-protocol.md`). Drivers for other firmware (nRF91 AT commands, ESP-AT,
//! Zephyr SMP) implement the same trait beside it.

pub mod client;
pub mod crc;
pub mod driver;
pub mod error;
pub mod fixture;
pub mod frame;
pub mod protocol;
pub mod session;
pub mod simulator;
pub mod transport;

pub use client::{ClientOptions, LineClient, Timeouts, WireEvent};
pub use driver::{DeviceDriver, DeviceInfo, Readback, StoredItem, TpmEk};
pub use error::{DeviceError, Step};
pub use fixture::FixtureMap;
pub use protocol::DeviceConfig;
