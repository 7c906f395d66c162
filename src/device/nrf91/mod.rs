//! The `nrf91` family: Nordic nRF91 modems driven with AT commands (`docs/devices/nrf91.md`).

pub mod at;
pub mod cose;
pub mod driver;

pub use driver::{DEFAULT_SEC_TAG, Nrf91Driver, Nrf91Options};
