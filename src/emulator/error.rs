//! Why an emulator could not start or stop cleanly.

use std::path::PathBuf;

/// Errors of `Emulator::start` and friends; each names the file, address or key at fault.
#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    /// A listener could not bind.
    #[error("cannot listen on {address}: {source}; choose another port or stop what holds it")]
    Bind {
        /// The address or socket path.
        address: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// TLS material could not be made or loaded.
    #[error("TLS: {0}")]
    Tls(String),
    /// The state file could not be read or written.
    #[error("state file {path}: {message}")]
    State {
        /// The file.
        path: PathBuf,
        /// What went wrong and what to do.
        message: String,
    },
    /// The configuration is contradictory or incomplete.
    #[error("emulator configuration: {0}")]
    Config(String),
    /// The runtime could not start.
    #[error("cannot start the emulator's runtime: {0}")]
    Runtime(std::io::Error),
}
