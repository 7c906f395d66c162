//! `dps-station setup` and `setup --check` through the real binary, on the package's template.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_dps-station");
const TEMPLATE: &str = include_str!("../../installer/debian/station.toml");

#[test]
fn setup_with_options_fills_the_package_template_and_check_then_passes_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("station.toml");
    std::fs::write(&path, TEMPLATE).unwrap();
    let before = Command::new(BIN)
        .args(["setup", "--check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&before.stdout);
    assert_eq!(before.status.code(), Some(1), "{text}");
    assert!(
        text.contains("not set up yet") && text.contains("MISSING station file"),
        "{text}"
    );

    let out = Command::new(BIN)
        .args(["setup", "--config"])
        .arg(&path)
        .args([
            "--name",
            "line-3-a",
            "--ledger",
            "ledger.db",
            "--hsm-profile",
            "softhsm2",
            "--token-label",
            "factory-ca",
            "--slot",
            "A1=/dev/dps-fixture/A1",
            "--slot",
            "A2=/dev/dps-fixture/A2",
            "--dps-connection-env",
            "DPS_CS",
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("station line-3-a") && stdout.contains("2 fixture slot(s)"),
        "{stdout}"
    );
    assert!(stdout.contains("ok      station file"), "{stdout}");
    let written = std::fs::read_to_string(&path).unwrap();
    assert!(written.contains("name = \"line-3-a\""), "{written}");
    assert!(
        written.contains("# the variable holding the DPS connection string"),
        "{written}"
    );
    assert!(
        !written.contains("DPS_CS=") && !written.contains("SharedAccessKey"),
        "{written}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("station.toml.bak")).unwrap(),
        TEMPLATE
    );
}

#[test]
fn setup_without_a_terminal_prints_the_steps_and_names_the_missing_options() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("station.toml");
    let out = Command::new(BIN)
        .args(["setup", "--name", "x", "--config"])
        .arg(&path)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    for step in [
        "station name",
        "HSM profile and token",
        "fixture slots",
        "DPS target",
    ] {
        assert!(stdout.contains(step), "{step}: {stdout}");
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--ledger") && !stderr.contains("--name"),
        "{stderr}"
    );
    assert!(!path.exists());
}
