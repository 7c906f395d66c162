//! Devices over serial: each family's driver against its simulator over real pseudo-terminal pairs.

#[path = "device/cli.rs"]
mod cli;
#[path = "device/common.rs"]
mod common;
#[path = "device/esp32_driver.rs"]
mod esp32_driver;
#[path = "device/esp32_esptool.rs"]
mod esp32_esptool;
#[path = "device/esp32_secure_cert.rs"]
mod esp32_secure_cert;
#[path = "device/faults.rs"]
mod faults;
#[path = "device/nrf91.rs"]
mod nrf91;
#[path = "device/roundtrip.rs"]
mod roundtrip;
#[path = "device/secrets.rs"]
mod secrets;
#[path = "device/vendor_tools.rs"]
mod vendor_tools;
#[path = "device/zephyr.rs"]
mod zephyr;
