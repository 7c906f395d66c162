//! The engine layer: where the key store, the ledger, the identity module, devices and DPS are
//! combined (none of them knows the others). The CLI and the GUI drive what lives here.

pub mod hsm_bench;
pub mod key_session;
