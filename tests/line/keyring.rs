//! The DPS connection string from the OS keyring: the real `dps-station run` inside a private D-Bus
//! session with a real Secret Service (gnome-keyring), the string stored with `secret-tool` and named
//! in station.toml only by service and account. A missing entry stops the batch before any device is
//! touched, with the `secret-tool store` command to fix it.

use std::path::Path;
use std::process::{Command, Output};

use dps_station::device::simulator::{Fleet, SimOptions};
use dps_station::ledger::{IdentityFilter, IdentityState, Ledger};
use dps_station::station::config::Mode;
use dps_station::station::demo::{DemoWorkspace, KeyStoreChoice, RunOptions, USER_PIN};

use super::common::{BIN, ledger_verify, station_toml};

const DEVICES: usize = 2;
const SERVICE: &str = "dps-station-test";

/// Starts a D-Bus session and an unlocked keyring in `home`, stores `$CS` under `store_account`
/// (unless empty), forgets it, and runs the station with station.toml + batch.toml from `dir`.
fn run_in_keyring_session(dir: &Path, home: &Path, store_account: &str, cs: &str) -> Output {
    let runtime = home.join("run");
    std::fs::create_dir_all(&runtime).unwrap();
    std::fs::set_permissions(
        &runtime,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    // The keyring's own password, not a DPS secret. `CS` is unset before the station starts, so the
    // keyring is the only place it can get the connection string from.
    let script = r#"
        printf 'keyring-test-password' | gnome-keyring-daemon --unlock --components=secrets >/dev/null || exit 90
        if [ -n "$ACCOUNT" ]; then
            printf '%s' "$CS" | secret-tool store --label 'dps-station test' service "$SERVICE" account "$ACCOUNT" || exit 91
        fi
        unset CS
        exec "$BIN" run --headless --config "$DIR/station.toml" --batch "$DIR/batch.toml"
    "#;
    Command::new("dbus-run-session")
        .args(["--", "sh", "-c", script])
        .env("HOME", home)
        .env("XDG_DATA_HOME", home.join("data"))
        .env("XDG_RUNTIME_DIR", &runtime)
        .env("CS", cs)
        .env("SERVICE", SERVICE)
        .env("ACCOUNT", store_account)
        .env("BIN", BIN)
        .env("DIR", dir)
        .env("DPS_STATION_HSM_PIN", USER_PIN)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run dbus-run-session ({e}); run installer/deps.sh --test (dbus, gnome-keyring, libsecret-tools)")
        })
}

#[test]
fn a_connection_string_in_the_os_keyring_enrolls_the_batch_and_a_missing_entry_says_how_to_store_it()
 {
    let ws = DemoWorkspace::create(KeyStoreChoice::SoftHsm).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    let fleet = Fleet::start(DEVICES, &SimOptions::default()).unwrap();
    let account = "line-7";
    let station = station_toml(
        &ws,
        "keyring-test",
        &format!("keyring_service = {SERVICE:?}\nkeyring_account = {account:?}"),
        &fleet.paths(),
    );
    std::fs::write(dir.path().join("station.toml"), station).unwrap();
    let options = RunOptions {
        devices: DEVICES as u64,
        ..RunOptions::default()
    };
    std::fs::write(
        dir.path().join("batch.toml"),
        ws.batch_toml(Mode::X509Csr, "keyring", &options),
    )
    .unwrap();
    let cs = ws.emulator.connection_string();
    let key = cs
        .expose()
        .split(';')
        .find_map(|p| p.strip_prefix("SharedAccessKey="))
        .unwrap()
        .to_string();

    // No entry under the configured account (the string is stored under another one): refused
    // before any device is provisioned, naming the entry and the command that stores it.
    let missing = run_in_keyring_session(dir.path(), home.path(), "another-line", cs.expose());
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(!missing.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "the keyring has no entry service={SERVICE} account={account}"
        )) && stderr.contains("secret-tool store"),
        "{stderr}"
    );
    for device in fleet.devices() {
        assert!(
            !device.flash().locked,
            "a device was provisioned without DPS"
        );
    }

    // Stored under the configured account: the batch runs and every device is enrolled.
    let out = run_in_keyring_session(dir.path(), home.path(), account, cs.expose());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    for text in [&stdout, &stderr] {
        assert!(!text.contains(&key), "the DPS key was printed");
    }
    let ledger = Ledger::open_read_only(&dir.path().join("ledger.db")).unwrap();
    let identities = ledger
        .list_identities(&IdentityFilter {
            batch: Some("keyring".into()),
            ..IdentityFilter::default()
        })
        .unwrap();
    assert_eq!(identities.len(), DEVICES, "{identities:?}");
    assert!(
        identities
            .iter()
            .all(|i| i.state == IdentityState::Enrolled),
        "{identities:?}"
    );
    drop(ledger);
    let (ok, verify) = ledger_verify(&dir.path().join("ledger.db"));
    assert!(ok, "{verify}");
    let in_dps = ws.emulator.enrollments_snapshot();
    for identity in &identities {
        assert!(
            in_dps
                .iter()
                .any(|e| e["registrationId"] == identity.registration_id.as_str()),
            "{} not in DPS",
            identity.registration_id
        );
    }
}
