//! Where a PIN comes from: the environment (`DPS_STATION_HSM_PIN`), a file, or an interactive prompt
//! on the terminal with echo off — never the command line, where it would sit in `ps` and shell history.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::secret::SecretString;

/// The environment variable a PIN may come from (for unattended stations and tests).
pub const PIN_ENV: &str = "DPS_STATION_HSM_PIN";

/// Why no PIN could be had.
#[derive(Debug, thiserror::Error)]
pub enum PinError {
    /// The PIN file could not be read.
    #[error("cannot read PIN file {path}: {error}")]
    File {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
    /// The PIN is empty.
    #[error("the PIN from {origin} is empty")]
    Empty {
        /// Where it came from.
        origin: String,
    },
    /// No terminal to prompt on.
    #[error("no PIN given and no terminal to ask on: set {PIN_ENV} or pass --pin-file <file>")]
    NoTerminal,
}

/// Gets a PIN: from `pin_file` if given, else from `$DPS_STATION_HSM_PIN`, else by prompting `prompt`
/// on the controlling terminal.
pub fn obtain_pin(pin_file: Option<&Path>, prompt: &str) -> Result<SecretString, PinError> {
    if let Some(path) = pin_file {
        let text = std::fs::read_to_string(path).map_err(|error| PinError::File {
            path: path.to_owned(),
            error,
        })?;
        let pin = SecretString::new(text.trim_end_matches(['\r', '\n']).to_owned());
        drop(SecretString::new(text));
        return non_empty(pin, &path.display().to_string());
    }
    if let Ok(value) = std::env::var(PIN_ENV) {
        return non_empty(SecretString::new(value), PIN_ENV);
    }
    let pin = prompt_hidden(prompt)?;
    non_empty(pin, "the prompt")
}

fn non_empty(pin: SecretString, origin: &str) -> Result<SecretString, PinError> {
    if pin.expose().is_empty() {
        return Err(PinError::Empty {
            origin: origin.to_owned(),
        });
    }
    Ok(pin)
}

/// Reads one line from `/dev/tty` with echo switched off (through `stty`, which every Unix has).
pub fn prompt_hidden(prompt: &str) -> Result<SecretString, PinError> {
    let tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .map_err(|_| PinError::NoTerminal)?;
    let stty = |arg: &str| {
        tty.try_clone().ok().and_then(|t| {
            Command::new("stty")
                .arg(arg)
                .stdin(Stdio::from(t))
                .status()
                .ok()
        })
    };
    let mut out = tty.try_clone().map_err(|_| PinError::NoTerminal)?;
    let _ = write!(out, "{prompt}");
    let _ = out.flush();
    stty("-echo");
    let mut line = String::new();
    let read = std::io::BufReader::new(&tty).read_line(&mut line);
    stty("echo");
    let _ = writeln!(out);
    read.map_err(|_| PinError::NoTerminal)?;
    let pin = SecretString::new(line.trim_end_matches(['\r', '\n']).to_owned());
    drop(SecretString::new(line));
    Ok(pin)
}
