//! Writing into a closed pipe (issue 17, point 8): `dps-station run --headless | head -2` pauses
//! the batch (the devices in flight finish) and ends with status 141 without a panic, the ledger
//! consistent; any other command piped into a reader that went away ends quietly by SIGPIPE.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dps_station::device::simulator::{Fleet, SimFaults, SimOptions};
use dps_station::ledger::{IdentityFilter, IdentityState, Ledger};
use dps_station::station::config::Mode;
use dps_station::station::demo::{DemoWorkspace, KeyStoreChoice, RunOptions, USER_PIN};

use super::common::{BIN, ledger_verify, station_toml};

#[test]
fn a_closed_stdout_pauses_the_run_and_ends_other_commands_quietly() {
    let ws = DemoWorkspace::create(KeyStoreChoice::SoftHsm).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sim = SimOptions {
        faults: SimFaults {
            baud: Some(9_600),
            ..SimFaults::default()
        },
        ..SimOptions::default()
    };
    let fleet = Fleet::start(3, &sim).unwrap();
    std::fs::write(
        dir.path().join("station.toml"),
        station_toml(
            &ws,
            "pipe",
            "connection_string_env = \"DPS_STATION_TEST_CS\"",
            &fleet.paths(),
        ),
    )
    .unwrap();
    let options = RunOptions {
        devices: 3,
        ..RunOptions::default()
    };
    std::fs::write(
        dir.path().join("batch.toml"),
        ws.batch_toml(Mode::X509Csr, "pipe", &options),
    )
    .unwrap();
    let mut child = Command::new(BIN)
        .args(["run", "--headless", "--config"])
        .arg(dir.path().join("station.toml"))
        .arg("--batch")
        .arg(dir.path().join("batch.toml"))
        .env("DPS_STATION_HSM_PIN", USER_PIN)
        .env(
            "DPS_STATION_TEST_CS",
            ws.emulator.connection_string().expose(),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // `| head -2`: two lines, then the reader is gone.
    {
        let mut reader = BufReader::new(child.stdout.take().unwrap());
        for _ in 0..2 {
            let mut line = String::new();
            assert!(reader.read_line(&mut line).unwrap() > 0);
        }
    }
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "run hangs");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(status.code(), Some(141), "{status}: {err}");
    assert!(!err.contains("panicked"), "{err}");
    let ledger_path = dir.path().join("ledger.db");
    let ledger = Ledger::open_read_only(&ledger_path).unwrap();
    let identities = ledger
        .list_identities(&IdentityFilter {
            batch: Some("pipe".into()),
            ..IdentityFilter::default()
        })
        .unwrap();
    assert!(
        identities.iter().all(|i| i.state != IdentityState::Issued),
        "devices in flight finished: {identities:?}"
    );
    drop(ledger);
    let (ok, out) = ledger_verify(&ledger_path);
    assert!(ok, "{out}");

    // Another command into a pipe whose reader is gone: SIGPIPE's quiet end, no panic.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = Command::new(BIN)
        .args(["ledger", "list", "--ledger"])
        .arg(&ledger_path)
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.signal(), Some(13), "{:?}: {err}", out.status);
    assert!(!err.contains("panicked"), "{err}");
}
