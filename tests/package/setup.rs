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

/// A SoftHSM2 configuration in `dir` with one token labelled `label`, made by `softhsm2-util`.
fn softhsm_with_token(dir: &std::path::Path, label: &str) -> std::path::PathBuf {
    let tokens = dir.join("tokens");
    std::fs::create_dir_all(&tokens).unwrap();
    let conf = dir.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\n",
            tokens.display()
        ),
    )
    .unwrap();
    let out = Command::new("softhsm2-util")
        .args([
            "--init-token",
            "--free",
            "--label",
            label,
            "--so-pin",
            "12345678",
            "--pin",
            "1234",
        ])
        .env("SOFTHSM2_CONF", &conf)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    conf
}

#[test]
fn setup_check_finds_the_station_token_and_names_a_missing_one() {
    let dir = tempfile::tempdir().unwrap();
    let conf = softhsm_with_token(dir.path(), "line-ca");
    let path = dir.path().join("station.toml");
    let station = |label: &str| {
        format!(
            "name = \"s\"\nledger = \"l.db\"\n[fixture.slots]\nA1 = \"/dev/dps-fixture/A1\"\n[keystore]\nkind = \"pkcs11\"\nprofile = \"softhsm2\"\ntoken_label = \"{label}\"\n"
        )
    };
    let check = || {
        let out = Command::new(BIN)
            .args(["setup", "--check", "--config"])
            .arg(&path)
            .env("SOFTHSM2_CONF", &conf)
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    std::fs::write(&path, station("line-ca")).unwrap();
    let text = check();
    assert!(text.contains("ok      HSM token `line-ca`"), "{text}");
    std::fs::write(&path, station("other-ca")).unwrap();
    let text = check();
    assert!(
        text.contains("MISSING HSM token `other-ca`") && text.contains("tokens there: line-ca"),
        "{text}"
    );
}

#[test]
fn setup_at_a_terminal_asks_for_what_the_options_did_not_give() {
    // `script` (util-linux, essential on Debian) gives the binary a pseudo-terminal, as an
    // administrator's shell would.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("station.toml");
    let mut child = Command::new("script")
        .args(["-qec"])
        .arg(format!(
            "{BIN} setup --config {} --slot A1=/dev/dps-fixture/A1",
            path.display()
        ))
        .arg("/dev/null")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    // Name, ledger, HSM profile (default), token label, connection-string variable.
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"line-7\nledger.db\n\nmy-token\nMY_DPS_ENV\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("Station name") && stdout.contains("HSM profile [softhsm2]"),
        "{stdout}"
    );
    let doc: toml::Table = toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(doc["name"].as_str(), Some("line-7"));
    assert_eq!(doc["keystore"]["profile"].as_str(), Some("softhsm2"));
    assert_eq!(doc["keystore"]["token_label"].as_str(), Some("my-token"));
    assert_eq!(
        doc["dps"]["production"]["connection_string_env"].as_str(),
        Some("MY_DPS_ENV")
    );
}

#[test]
fn run_on_an_unconfigured_station_prints_the_first_run_steps() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("station.toml");
    std::fs::write(&path, TEMPLATE).unwrap();
    let out = Command::new(BIN)
        .args(["run", "--headless", "--batch", "batch.toml", "--config"])
        .arg(&path)
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("does not configure a station yet") && stdout.contains("fixture detect"),
        "{stdout}"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("sudo dps-station setup"));
    // The help does not show whichever default the build machine's directory happened to give.
    let help = Command::new(BIN).args(["run", "--help"]).output().unwrap();
    assert!(
        !String::from_utf8_lossy(&help.stdout).contains("[default: "),
        "run --help shows a default"
    );
}
