//! dps-station: a line-side provisioning station for Azure IoT Hub Device Provisioning Service.
//!
//! The library is the engine; the binary (`src/main.rs`, `src/cli/`) is a thin edge over it.
//! Arrows point inward: `cli` uses the modules below; `identity`, `keystore`, `device`, `ledger`
//! and `dps` do not know about each other, except that `keystore` implements the signing trait
//! that `identity` defines, so `identity` never sees PKCS#11. `emulator` (a local DPS and IoT hub:
//! a server, for tests, benches and the demo) uses only `identity`; `dps` never imports it.
//! `manifest` (Microchip Trust&GO manifests) also uses only `identity`. `central` (the central
//! ledger on PostgreSQL, issue 18) may use `ledger`, `identity` and `dps`.
//! See `docs/ARCHITECTURE.md`.

pub mod central;
pub mod device;
pub mod dn;
pub mod dps;
pub mod emulator;
pub mod gui;
pub mod identity;
pub mod keystore;
pub mod ledger;
pub mod manifest;
pub mod secret;
pub mod station;
