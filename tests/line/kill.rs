//! The kill test: the real `dps-station run`, SIGKILLed at random points of a batch several times,
//! restarted each time over the same simulated devices (their flash on disk), SoftHSM2 token and
//! emulator; the batch ends with every device enrolled once, no identity lost or duplicated, and
//! `ledger verify` passing.

use std::collections::HashSet;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use dps_station::device::simulator::{Fleet, SimFaults, SimOptions};
use dps_station::ledger::{IdentityFilter, IdentityState, Ledger};
use dps_station::station::config::Mode;
use dps_station::station::demo::{DemoWorkspace, KeyStoreChoice, RunOptions, USER_PIN};

use super::common::{BIN, ledger_verify, station_toml};

const DEVICES: usize = 6;
const KILLS: usize = 6;

fn spawn_run(dir: &std::path::Path, ws: &DemoWorkspace) -> Child {
    Command::new(BIN)
        .args(["run", "--headless", "--config"])
        .arg(dir.join("station.toml"))
        .arg("--batch")
        .arg(dir.join("batch.toml"))
        .env("DPS_STATION_HSM_PIN", USER_PIN)
        .env(
            "DPS_STATION_TEST_CS",
            ws.emulator.connection_string().expose(),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

struct Line {
    ws: DemoWorkspace,
    dir: tempfile::TempDir,
    fleet: Fleet,
}

/// A SoftHSM2 token, the emulator, DEVICES simulated devices paced at 9600 baud with their flash on
/// disk, and station.toml + batch.toml naming them.
fn line() -> Line {
    let ws = DemoWorkspace::create(KeyStoreChoice::SoftHsm).unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Paced like a UART so that a kill lands inside exchanges, not only between them.
    let sim = SimOptions {
        faults: SimFaults {
            baud: Some(9_600),
            ..SimFaults::default()
        },
        flash_dir: Some(dir.path().join("flash")),
        ..SimOptions::default()
    };
    std::fs::create_dir_all(dir.path().join("flash")).unwrap();
    let fleet = Fleet::start(DEVICES, &sim).unwrap();
    let station = station_toml(
        &ws,
        "kill-test",
        "connection_string_env = \"DPS_STATION_TEST_CS\"",
        &fleet.paths(),
    );
    std::fs::write(dir.path().join("station.toml"), station).unwrap();
    let options = RunOptions {
        devices: DEVICES as u64,
        ..RunOptions::default()
    };
    std::fs::write(
        dir.path().join("batch.toml"),
        ws.batch_toml(Mode::X509Csr, "kill", &options),
    )
    .unwrap();

    Line { ws, dir, fleet }
}

#[test]
fn sigkill_at_random_points_then_restart_loses_and_duplicates_nothing() {
    let Line { ws, dir, fleet } = line();
    let mut killed = 0;
    for round in 0..KILLS {
        let mut child = spawn_run(dir.path(), &ws);
        let wait = Duration::from_millis(100 + rand::random::<u64>() % 1400);
        std::thread::sleep(wait);
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            killed += 1;
        }
        let status = child.wait().unwrap();
        eprintln!("round {round}: after {wait:?}: {status}");
    }
    assert!(
        killed >= 2,
        "the batch finished before the station could be killed"
    );

    // The last run finishes the batch.
    let mut child = spawn_run(dir.path(), &ws);
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(60) {
            child.kill().unwrap();
            panic!("the final run did not finish in 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "final run: {status}");

    let ledger = Ledger::open_read_only(&dir.path().join("ledger.db")).unwrap();
    let identities = ledger
        .list_identities(&IdentityFilter {
            batch: Some("kill".into()),
            ..IdentityFilter::default()
        })
        .unwrap();
    let enrolled: HashSet<String> = identities
        .iter()
        .filter(|i| i.state == IdentityState::Enrolled)
        .map(|i| i.registration_id.clone())
        .collect();
    assert_eq!(identities.len(), DEVICES, "{identities:?}");
    assert_eq!(enrolled.len(), DEVICES, "{identities:?}");
    drop(ledger);
    let (ok, out) = ledger_verify(&dir.path().join("ledger.db"));
    assert!(ok, "{out}");

    let in_dps: Vec<String> = ws
        .emulator
        .enrollments_snapshot()
        .iter()
        .filter_map(|e| e["registrationId"].as_str().map(str::to_string))
        .collect();
    for id in &enrolled {
        assert_eq!(in_dps.iter().filter(|d| *d == id).count(), 1, "{id} in DPS");
    }
    for device in fleet.devices() {
        let flash = device.flash();
        assert!(flash.locked, "{} not locked", flash.serial);
        let chain = base64::prelude::BASE64_STANDARD
            .decode(flash.chain.as_ref().unwrap())
            .unwrap();
        assert!(!chain.is_empty());
        let rid = flash
            .config
            .as_ref()
            .unwrap()
            .iter()
            .find(|(k, _)| k == "regid")
            .unwrap()
            .1
            .clone();
        assert!(enrolled.contains(&rid), "{rid}");
        ws.register_device(&flash)
            .unwrap_or_else(|e| panic!("{rid}: {e}"));
    }
}

#[test]
fn ctrl_c_stops_taking_devices_leaves_no_identity_half_done_and_the_batch_resumes() {
    let Line { ws, dir, fleet } = line();
    let mut child = spawn_run(dir.path(), &ws);
    std::thread::sleep(Duration::from_millis(700));
    let pid = child.id().to_string();
    assert!(
        // The shell's builtin `kill`: Ctrl-C is SIGINT.
        Command::new("sh")
            .args(["-c", &format!("kill -INT {pid}")])
            .status()
            .unwrap()
            .success()
    );
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "Ctrl-C did not stop the run"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        status.code().is_some(),
        "the run died of the signal instead of pausing: {status}"
    );
    let ledger = Ledger::open_read_only(&dir.path().join("ledger.db")).unwrap();
    let identities = ledger
        .list_identities(&IdentityFilter {
            batch: Some("kill".into()),
            ..IdentityFilter::default()
        })
        .unwrap();
    assert!(
        identities.iter().all(|i| i.state != IdentityState::Issued),
        "{identities:?}"
    );
    drop(ledger);
    let mut child = spawn_run(dir.path(), &ws);
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    let ledger = Ledger::open_read_only(&dir.path().join("ledger.db")).unwrap();
    let enrolled = ledger
        .list_identities(&IdentityFilter {
            batch: Some("kill".into()),
            state: Some(IdentityState::Enrolled),
            ..IdentityFilter::default()
        })
        .unwrap();
    assert_eq!(enrolled.len(), DEVICES);
    assert!(fleet.devices().iter().all(|d| d.flash().locked));
    let reports: Vec<_> = std::fs::read_dir(dir.path().join("reports"))
        .unwrap()
        .filter_map(|e| e.ok())
        .collect();
    assert!(
        reports
            .iter()
            .any(|e| e.path().extension().is_some_and(|x| x == "md"))
    );
    assert!(
        reports
            .iter()
            .any(|e| e.path().extension().is_some_and(|x| x == "csv"))
    );
}
