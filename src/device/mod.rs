//! Devices on the line: the station line protocol, the serial transport, port discovery, the simulator.
//!
//! The station talks to devices only through [`DeviceDriver`], which reports a family's
//! [`Capabilities`] and offers operations by intent; [`LineClient`] is the driver for our own
//! protocol (`docs/device-protocol.md`, family `station`). Drivers for other firmware implement
//! the same trait beside it (`docs/devices/`).

pub mod client;
pub mod crc;
pub mod driver;
pub mod error;
pub mod esp32;
pub mod fixture;
pub mod frame;
pub mod nrf91;
pub mod protocol;
pub mod replies;
pub mod session;
pub mod simulator;
pub mod smp;
pub mod station_driver;
pub mod transport;

pub use client::{ClientOptions, LineClient, Timeouts, WireEvent};
pub use driver::{
    Bundle, Capabilities, DeviceDriver, DeviceInfo, Family, GeneratedKey, Held, Holdings,
    SecureElementInfo, Stored, TpmEk,
};
pub use error::{DeviceError, Step};
pub use fixture::FixtureMap;
pub use protocol::DeviceConfig;

/// Opens `port` with the driver of `family`: what a slot of the fixture talks to its devices with.
/// `options.baud` is the speed of every family; `options.esp32` the `esp32` family's batch
/// options; the rest applies to our own protocol.
pub fn open_driver(
    family: Family,
    port: &str,
    options: &ClientOptions,
) -> Result<Box<dyn DeviceDriver>, DeviceError> {
    Ok(match family {
        Family::Station => Box::new(LineClient::open(port, options.clone())?),
        Family::Nrf91 => Box::new(nrf91::Nrf91Driver::open(
            port,
            nrf91::Nrf91Options {
                baud: options.baud,
                ..nrf91::Nrf91Options::default()
            },
        )?),
        Family::ZephyrSmp => Box::new(smp::driver::ZephyrSmpDriver::open(
            port,
            smp::driver::SmpOptions {
                baud: options.baud,
                ..smp::driver::SmpOptions::default()
            },
        )?),
        Family::Esp32 => Box::new(esp32::driver::Esp32Driver::open(
            port,
            esp32::driver::Esp32Options {
                baud: options.baud,
                ..options.esp32.clone()
            },
        )?),
    })
}
