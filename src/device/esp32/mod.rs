//! The `esp32` family: Espressif ESP32 chips, whose device identity lives in the
//! `esp_secure_cert` flash partition (`docs/devices/esp32.md`). This session brings the partition
//! image; the serial-bootloader driver comes later.

pub mod rom;
pub mod secure_cert;

pub use secure_cert::{SecureCertError, SecureCertImage, SecureCertInputs, TlvEntry};
