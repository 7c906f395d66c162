//! The `esp32` family: Espressif ESP32 chips, whose device identity lives in the
//! `esp_secure_cert` flash partition (`docs/devices/esp32.md`): the partition image, the ROM
//! bootloader's protocol, the station's side of it and the driver.

pub mod driver;
pub mod loader;
pub mod partitions;
pub mod rom;
pub mod room;
pub mod secure_cert;
pub mod symmetric;

pub use secure_cert::{SecureCertError, SecureCertImage, SecureCertInputs, TlvEntry};
