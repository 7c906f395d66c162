//! station.toml `connection_string_file` (issue 17, point 7): the DPS connection string read
//! from a file beside the environment variable and the keyring, refused (naming the file, before
//! any device is touched) unless only its owner can read it.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use dps_station::device::simulator::{Fleet, SimOptions};
use dps_station::station::config::Mode;
use dps_station::station::demo::{DemoWorkspace, KeyStoreChoice, RunOptions, USER_PIN};

use super::common::{BIN, station_toml};

#[test]
fn a_connection_string_file_enrolls_the_batch_only_when_owner_only() {
    let ws = DemoWorkspace::create(KeyStoreChoice::SoftHsm).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let fleet = Fleet::start(1, &SimOptions::default()).unwrap();
    // Relative to station.toml.
    let station = station_toml(
        &ws,
        "cs-file",
        "connection_string_file = \"secrets/dps.cs\"",
        &fleet.paths(),
    );
    std::fs::write(dir.path().join("station.toml"), station).unwrap();
    let options = RunOptions {
        devices: 1,
        ..RunOptions::default()
    };
    std::fs::write(
        dir.path().join("batch.toml"),
        ws.batch_toml(Mode::X509Csr, "cs-file", &options),
    )
    .unwrap();
    let secrets = dir.path().join("secrets");
    std::fs::create_dir(&secrets).unwrap();
    let file = secrets.join("dps.cs");
    std::fs::write(
        &file,
        format!("{}\n", ws.emulator.connection_string().expose()),
    )
    .unwrap();
    let run = || {
        Command::new(BIN)
            .args(["run", "--headless", "--config"])
            .arg(dir.path().join("station.toml"))
            .arg("--batch")
            .arg(dir.path().join("batch.toml"))
            .env("DPS_STATION_HSM_PIN", USER_PIN)
            .output()
            .unwrap()
    };

    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o640)).unwrap();
    let refused = run();
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        err.contains(&format!("{} can be read by its group", file.display()))
            && err.contains("chmod 600"),
        "{err}"
    );
    assert!(
        !err.contains(ws.emulator.primary_key().expose()),
        "no key in the message"
    );
    assert!(!dir.path().join("reports").exists(), "no device touched");

    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let ok = run();
    let out = String::from_utf8_lossy(&ok.stdout);
    assert!(
        ok.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(
        out.contains("1 passed") && out.contains("1 enrolled"),
        "{out}"
    );
    assert_eq!(ws.emulator.enrollments_snapshot().len(), 1);
}
