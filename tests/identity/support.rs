//! Helpers shared by the identity tests: a temp dir per test and `openssl` runs that fail loudly.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A fresh temporary directory, removed when the test ends.
pub fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// Runs `openssl` with `args` in `dir` and returns its output, whatever the exit status.
pub fn openssl(dir: &Path, args: &[&str]) -> Output {
    Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl binary is installed (installer/deps.sh --test)")
}

/// Runs `openssl` and panics with its stderr unless it succeeds; returns stdout as text.
pub fn openssl_ok(dir: &Path, args: &[&str]) -> String {
    let out = openssl(dir, args);
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Writes `contents` to `dir/name` and returns the path.
pub fn write(dir: &Path, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}
