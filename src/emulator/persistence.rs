//! The state file: the whole store as JSON, written atomically (temporary file, fsync, rename,
//! fsync of the directory) so that a crash leaves the old or the new state, never half of one.
//! It holds enrollment keys, so it is created readable by its owner only.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::error::EmulatorError;
use super::store::State;

fn state_error(path: &Path, message: impl Into<String>) -> EmulatorError {
    EmulatorError::State {
        path: path.to_owned(),
        message: message.into(),
    }
}

/// Reads the state, or `None` if the file does not exist yet.
pub fn load(path: &Path) -> Result<Option<State>, EmulatorError> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(state_error(path, format!("cannot be read: {e}"))),
    };
    serde_json::from_slice(&bytes).map(Some).map_err(|e| {
        state_error(
            path,
            format!("is not an emulator state file ({e}); move it away or pass another --state"),
        )
    })
}

/// The one writer of a state file: serialises writes and skips a snapshot older than the
/// last one written (a background write may finish after the final write at shutdown).
#[derive(Debug)]
pub struct StateWriter {
    path: PathBuf,
    last_written: std::sync::Mutex<Option<u64>>,
}

impl StateWriter {
    /// A writer for `path`.
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            last_written: std::sync::Mutex::new(None),
        }
    }

    /// Writes `state` unless a newer generation is already on disk.
    pub fn save(&self, state: &State) -> Result<(), EmulatorError> {
        let mut last = self.last_written.lock().unwrap_or_else(|p| p.into_inner());
        if last.is_some_and(|g| g > state.generation) {
            return Ok(());
        }
        save(&self.path, state)?;
        *last = Some(state.generation);
        Ok(())
    }
}

/// Writes the state atomically.
pub fn save(path: &Path, state: &State) -> Result<(), EmulatorError> {
    let bytes = serde_json::to_vec(state)
        .map_err(|e| state_error(path, format!("cannot be serialised: {e}")))?;
    write_atomically(path, &bytes)
}

fn temp_path(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".tmp");
    path.with_file_name(name)
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), EmulatorError> {
    let tmp = temp_path(path);
    let io = |what: &str, e: std::io::Error| {
        state_error(
            path,
            format!("{what}: {e}; check the directory exists and is writable"),
        )
    };
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(&tmp)
        .map_err(|e| io("cannot create its temporary file", e))?;
    file.write_all(bytes).map_err(|e| io("cannot write", e))?;
    file.sync_all().map_err(|e| io("cannot sync", e))?;
    drop(file);
    fs::rename(&tmp, path).map_err(|e| io("cannot replace", e))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && let Ok(d) = fs::File::open(dir)
    {
        // Best effort: some file systems do not support syncing a directory.
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_older_snapshot_never_replaces_a_newer_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let writer = StateWriter::new(path.clone());
        let newer = State {
            generation: 5,
            id_scope: "0ne-newer".into(),
            ..State::default()
        };
        let older = State {
            generation: 4,
            id_scope: "0ne-older".into(),
            ..State::default()
        };
        writer.save(&newer).unwrap();
        writer.save(&older).unwrap();
        assert_eq!(load(&path).unwrap().unwrap().id_scope, "0ne-newer");
    }

    #[test]
    fn round_trip_and_corrupt_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        assert!(load(&path).unwrap().is_none());
        let mut s = State {
            id_scope: "0ne00000001".into(),
            ..State::default()
        };
        s.enrollments
            .insert("a".into(), serde_json::json!({"registrationId": "a"}));
        save(&path, &s).unwrap();
        let back = load(&path).unwrap().unwrap();
        assert_eq!(back.id_scope, "0ne00000001");
        assert_eq!(back.enrollments.len(), 1);
        assert!(!temp_path(&path).exists());
        fs::write(&path, b"{not json").unwrap();
        let err = load(&path).unwrap_err().to_string();
        assert!(err.contains("state.json"), "{err}");
    }
}
