//! Running the official SDKs' scripts in `tests/clients/` (installed by `tests/clients/setup.sh`):
//! where they are, and the JSON lines (`{"step": ...}`) they print.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// `tests/clients/`.
pub fn clients_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients")
}

/// Fails the test, saying how to install the clients, when `path` is missing.
pub fn require(path: &Path) {
    assert!(
        path.exists(),
        "{} is missing: run tests/clients/setup.sh (scripts/test.sh does) to install the official SDKs",
        path.display()
    );
}

/// Runs a client script and returns the JSON lines it printed, checking it exited 0; `what`
/// names it in a failure.
pub fn run(mut cmd: Command, what: &str) -> Vec<Value> {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run the {what} client: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{what} client failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The line a script printed for step `name`.
pub fn step<'a>(lines: &'a [Value], name: &str) -> &'a Value {
    lines
        .iter()
        .find(|l| l["step"] == name)
        .unwrap_or_else(|| panic!("the client printed no step '{name}': {lines:?}"))
}
