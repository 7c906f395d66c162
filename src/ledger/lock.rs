//! The single-writer lock: `<ledger>.lock` next to the ledger, held with an exclusive OS file lock
//! (`flock` on Linux) for as long as the writing station runs, and naming its holder.
//!
//! SQLite's own locking would let two processes take turns writing; two stations interleaving
//! identities in one ledger is what we must refuse, with a message that says who holds it. The OS
//! releases the lock when the process dies, so a crashed station never leaves a stale lock behind
//! (a stale *file* is harmless: its content is only read when the lock is actually held).

use std::fmt;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::LedgerError;

/// Who holds a ledger for writing, as written into the lock file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockHolder {
    pub station: String,
    pub operator: String,
    pub host: String,
    pub pid: u32,
    /// RFC 3339, UTC.
    pub since: String,
}

impl fmt::Display for LockHolder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "station {} (operator {}) on host {}, pid {}, since {}",
            self.station, self.operator, self.host, self.pid, self.since
        )
    }
}

/// The held lock; dropping it releases the lock (the file stays, harmlessly).
#[derive(Debug)]
pub struct WriterLock {
    _file: File,
    path: PathBuf,
}

impl WriterLock {
    /// The lock file's path for a ledger: the ledger's path with `.lock` appended.
    pub fn path_for(ledger: &Path) -> PathBuf {
        let mut name = ledger.as_os_str().to_owned();
        name.push(".lock");
        PathBuf::from(name)
    }

    /// Takes the lock or says who has it. Never waits.
    pub fn acquire(ledger: &Path, holder: &LockHolder) -> Result<Self, LedgerError> {
        let path = Self::path_for(ledger);
        let io_err = |cause| LedgerError::LockFile {
            path: path.clone(),
            cause,
        };
        // No truncate on open: the file may belong to a running holder whose name we must read.
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_err)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut text = String::new();
                let holder = match file.read_to_string(&mut text) {
                    Ok(_) => serde_json::from_str(&text).unwrap_or_else(|_| unknown_holder()),
                    Err(_) => unknown_holder(),
                };
                return Err(LedgerError::Locked {
                    path: ledger.to_path_buf(),
                    holder: Box::new(holder),
                });
            }
            Err(TryLockError::Error(cause)) => return Err(io_err(cause)),
        }
        let text = serde_json::to_string_pretty(holder).unwrap_or_default();
        file.set_len(0).map_err(io_err)?;
        file.seek(SeekFrom::Start(0)).map_err(io_err)?;
        file.write_all(text.as_bytes()).map_err(io_err)?;
        file.write_all(b"\n").map_err(io_err)?;
        file.sync_all().map_err(io_err)?;
        Ok(Self { _file: file, path })
    }

    /// Where the lock file is.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The holder took the lock but had not written its name yet (a few microseconds after start).
fn unknown_holder() -> LockHolder {
    LockHolder {
        station: "(unknown: the lock file names no holder yet)".into(),
        operator: "?".into(),
        host: "?".into(),
        pid: 0,
        since: "?".into(),
    }
}

/// This machine's host name, for the lock file and the stations table.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown-host".to_string())
}
