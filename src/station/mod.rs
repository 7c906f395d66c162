//! The engine layer: code that combines the areas below it (ledger + dps for enrollment, ledger +
//! keystore + identity for key-injection sessions, ...) and that the CLI and the GUI drive. The
//! areas themselves never import each other.

pub mod enrollment;
pub mod hsm_bench;
pub mod key_session;
