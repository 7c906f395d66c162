//! Where a PIN comes from: the environment (`DPS_STATION_HSM_PIN`), a file, or an interactive prompt
//! on the terminal with echo off — never the command line, where it would sit in `ps` and shell history.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::secret::SecretString;

/// The environment variable a PIN may come from (for unattended stations and tests).
pub const PIN_ENV: &str = "DPS_STATION_HSM_PIN";

/// The environment variable naming a file the PIN is read from (owner-only permissions).
pub const PIN_FILE_ENV: &str = "DPS_STATION_HSM_PIN_FILE";

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
    /// The PIN file can be read by others than its owner.
    #[error(
        "the PIN file {path} can be read by its group or by others (mode {mode:03o}): make it \
         owner-only (chmod 600 {path}); it was not used"
    )]
    FileOpen {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The PIN is empty.
    #[error("the PIN from {origin} is empty")]
    Empty {
        /// Where it came from.
        origin: String,
    },
    /// No terminal to prompt on.
    #[error(
        "no PIN given and no terminal to ask on: set {PIN_ENV}, or {PIN_FILE_ENV} (or --pin-file, \
         or station.toml [keystore] pin_file) to an owner-only file holding it"
    )]
    NoTerminal,
}

/// Gets a PIN: from `pin_file` if given (a command-line flag), else as
/// [`obtain_configured_pin`] without a configured file.
pub fn obtain_pin(pin_file: Option<&Path>, prompt: &str) -> Result<SecretString, PinError> {
    match pin_file {
        Some(path) => read_pin_file(path),
        None => obtain_configured_pin(None, prompt),
    }
}

/// Gets a PIN from, in this order: the file `$DPS_STATION_HSM_PIN_FILE` names,
/// `$DPS_STATION_HSM_PIN`, the `configured` file (station.toml), a prompt on the terminal. The
/// environment comes first so that a service unit or a test can override the station's file.
pub fn obtain_configured_pin(
    configured: Option<&Path>,
    prompt: &str,
) -> Result<SecretString, PinError> {
    if let Some(pin) = unattended_pin(configured) {
        return pin;
    }
    let pin = prompt_hidden(prompt)?;
    non_empty(pin, "the prompt")
}

/// [`obtain_configured_pin`]'s sources without the prompt, for a program that must not block on
/// a terminal (the GUI's workers): `None` when none of them is set.
pub fn unattended_pin(configured: Option<&Path>) -> Option<Result<SecretString, PinError>> {
    if let Some(path) = std::env::var_os(PIN_FILE_ENV).filter(|p| !p.is_empty()) {
        return Some(read_pin_file(Path::new(&path)));
    }
    if let Ok(value) = std::env::var(PIN_ENV) {
        return Some(non_empty(SecretString::new(value), PIN_ENV));
    }
    configured.map(read_pin_file)
}

/// Reads a PIN file (one line; a trailing newline is dropped). Refused unless only its owner can
/// read it: a PIN readable by the group or by everyone is no secret.
pub fn read_pin_file(path: &Path) -> Result<SecretString, PinError> {
    let file_err = |error| PinError::File {
        path: path.to_owned(),
        error,
    };
    if let Some(mode) = crate::secret::open_to_others(path).map_err(file_err)? {
        return Err(PinError::FileOpen {
            path: path.to_owned(),
            mode,
        });
    }
    let text = std::fs::read_to_string(path).map_err(file_err)?;
    let pin = SecretString::new(text.trim_end_matches(['\r', '\n']).to_owned());
    drop(SecretString::new(text));
    non_empty(pin, &path.display().to_string())
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_pin_file_must_be_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pin");
        std::fs::write(&path, "1234\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let err = read_pin_file(&path).unwrap_err();
        assert!(
            matches!(err, PinError::FileOpen { mode: 0o640, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("chmod 600"), "{err}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_pin_file(&path).unwrap().expose(), "1234");
        std::fs::write(&path, "\n").unwrap();
        assert!(matches!(read_pin_file(&path), Err(PinError::Empty { .. })));
    }
}
