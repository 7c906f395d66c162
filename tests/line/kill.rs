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
    spawn_run_with(dir, ws, &[], false)
}

/// `run --headless` with extra environment; its output goes to `run-N.out`/`.err` in `dir` when
/// `keep_output`.
fn spawn_run_with(
    dir: &std::path::Path,
    ws: &DemoWorkspace,
    env: &[(&str, &str)],
    keep_output: bool,
) -> Child {
    let (out, err) = if keep_output {
        (
            Stdio::from(std::fs::File::create(dir.join("run.out")).unwrap()),
            Stdio::from(std::fs::File::create(dir.join("run.err")).unwrap()),
        )
    } else {
        (Stdio::null(), Stdio::null())
    };
    Command::new(BIN)
        .envs(env.iter().copied())
        .args(["run", "--headless", "--config"])
        .arg(dir.join("station.toml"))
        .arg("--batch")
        .arg(dir.join("batch.toml"))
        .env("DPS_STATION_HSM_PIN", USER_PIN)
        .env(
            "DPS_STATION_TEST_CS",
            ws.emulator.connection_string().expose(),
        )
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap()
}

fn output(dir: &std::path::Path) -> (String, String) {
    (
        std::fs::read_to_string(dir.join("run.out")).unwrap_or_default(),
        std::fs::read_to_string(dir.join("run.err")).unwrap_or_default(),
    )
}

fn signal(child: &Child, name: &str) {
    assert!(
        Command::new("sh")
            .args(["-c", &format!("kill -{name} {}", child.id())])
            .status()
            .unwrap()
            .success()
    );
}

/// station.toml with slots on these ports only.
fn write_station(dir: &std::path::Path, ws: &DemoWorkspace, ports: &[String]) {
    let station = station_toml(
        ws,
        "kill-test",
        "connection_string_env = \"DPS_STATION_TEST_CS\"",
        ports,
    );
    std::fs::write(dir.join("station.toml"), station).unwrap();
}

/// Waits for the run to end, at most `limit`.
fn wait(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            panic!("the run did not end within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until the run's output shows a device seen (the run is inside the batch).
fn wait_for_device(dir: &std::path::Path) {
    let started = Instant::now();
    while !output(dir).0.contains(": device ") {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no device seen: {:?}",
            output(dir)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A last run finishes the batch: every device enrolled once in the ledger and in DPS, locked,
/// registering with what it holds, and `ledger verify` passing.
fn finish_and_check(dir: &std::path::Path, ws: &DemoWorkspace, fleet: &Fleet) {
    let mut child = spawn_run_with(dir, ws, &[], true);
    let status = wait(&mut child, Duration::from_secs(60));
    assert!(status.success(), "final run: {status}: {:?}", output(dir));
    let ledger = Ledger::open_read_only(&dir.join("ledger.db")).unwrap();
    let identities = ledger
        .list_identities(&IdentityFilter {
            batch: Some("kill".into()),
            state: Some(IdentityState::Enrolled),
            ..IdentityFilter::default()
        })
        .unwrap();
    let states: Vec<_> = ledger
        .list_identities(&IdentityFilter {
            batch: Some("kill".into()),
            ..IdentityFilter::default()
        })
        .unwrap()
        .into_iter()
        .map(|i| (i.registration_id, i.state))
        .collect();
    assert_eq!(identities.len(), DEVICES, "{states:?}\n{:?}", output(dir));
    drop(ledger);
    let (ok, out) = ledger_verify(&dir.join("ledger.db"));
    assert!(ok, "{out}");
    let in_dps: Vec<String> = ws
        .emulator
        .enrollments_snapshot()
        .iter()
        .filter_map(|e| e["registrationId"].as_str().map(str::to_string))
        .collect();
    for identity in &identities {
        let id = &identity.registration_id;
        assert_eq!(in_dps.iter().filter(|d| *d == id).count(), 1, "{id} in DPS");
    }
    for device in fleet.devices() {
        let flash = device.flash();
        assert!(flash.locked, "{} not locked", flash.serial);
        ws.register_device(&flash)
            .unwrap_or_else(|e| panic!("{}: {e}", flash.serial));
    }
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

/// The first Ctrl-C is acknowledged at once with the devices in flight, the batch ends Paused
/// with a non-success status and the way to resume; the same command resumes it with progress
/// counted from what the ledger holds, and finishes it (issue 17, points 4 and 5).
#[test]
fn ctrl_c_pauses_the_batch_and_the_same_command_resumes_it() {
    let Line { ws, dir, fleet } = line();
    // Half the fixture first, so that the batch cannot complete in this run.
    write_station(dir.path(), &ws, &fleet.paths()[..DEVICES / 2]);
    let mut child = spawn_run_with(dir.path(), &ws, &[], true);
    wait_for_device(dir.path());
    signal(&child, "INT");
    let status = wait(&mut child, Duration::from_secs(30));
    let (out, err) = output(dir.path());
    assert_eq!(status.code(), Some(130), "{status}\n{out}\n{err}");
    assert!(
        err.contains("Ctrl-C: pausing: ") && err.contains("device(s) in flight will finish"),
        "{err}"
    );
    assert!(!err.contains("aborting"), "{err}");
    assert!(out.contains("batch kill: Paused"), "{out}");
    assert!(
        out.contains("batch kill is paused, not finished: run the same command to resume"),
        "{out}"
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
        "in-flight devices finished: {identities:?}"
    );
    let done = identities.len();
    assert!(done <= DEVICES / 2, "{identities:?}");
    drop(ledger);

    write_station(dir.path(), &ws, &fleet.paths());
    finish_and_check(dir.path(), &ws, &fleet);
    let (out, _) = output(dir.path());
    if done > 0 {
        assert!(
            out.contains(&format!(
                "resuming: the ledger holds {done} of {DEVICES} device(s)"
            )),
            "{out}"
        );
    }
    let first = out
        .lines()
        .find(|l| l.contains("progress: "))
        .unwrap_or_else(|| panic!("no progress line: {out}"));
    // "progress: N/6 done (P passed, F failed in this run)": N counts on from the ledger's
    // devices (N = done + P + F). Slots finishing together may all report the same snapshot, so
    // the first line need not say done + 1.
    let numbers: Vec<usize> = first
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect();
    let (n, passed, failed) = match numbers[..] {
        [.., n, total, passed, failed] if total == DEVICES => (n, passed, failed),
        _ => panic!("a progress line of another shape: {first}"),
    };
    assert!(
        n > done && n == done + passed + failed,
        "progress counts from the ledger's {done}: {first}"
    );
    assert!(out.contains("batch kill: Closed"), "{out}");
    // No slot calls the batch complete while another still works on a device.
    let last_pass = out.rfind(": PASS ").unwrap();
    assert!(
        out.find("(the batch is complete)")
            .is_none_or(|first| first > last_pass),
        "{out}"
    );
    // The text reports (each run's SVG plots sit next to them).
    let text_reports = || -> Vec<_> {
        std::fs::read_dir(dir.path().join("reports"))
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "md" || x == "csv"))
            .collect()
    };
    let reports = text_reports();
    assert_eq!(reports.len(), 4, "two runs, .md and .csv each: {reports:?}");

    // Once closed, the same command says so and writes no report.
    let mut child = spawn_run_with(dir.path(), &ws, &[], true);
    let status = wait(&mut child, Duration::from_secs(30));
    let (out, err) = output(dir.path());
    assert!(status.success(), "{status}\n{out}\n{err}");
    assert!(
        out.contains(&format!(
            "batch kill is closed: it holds {DEVICES} device(s) done"
        )),
        "{out}"
    );
    assert_eq!(text_reports().len(), 4, "no empty report");
}

/// A second Ctrl-C aborts the devices in flight: the process ends at once, and the next run
/// voids what was cut off and finishes the batch with nothing lost or enrolled twice.
#[test]
fn a_second_ctrl_c_aborts_through_the_crash_rollback() {
    let Line { ws, dir, fleet } = line();
    let mut child = spawn_run_with(dir.path(), &ws, &[], true);
    wait_for_device(dir.path());
    signal(&child, "INT");
    std::thread::sleep(Duration::from_millis(30));
    signal(&child, "INT");
    let status = wait(&mut child, Duration::from_secs(5));
    let (out, err) = output(dir.path());
    assert_eq!(status.code(), Some(130), "{status}\n{out}\n{err}");
    assert!(err.contains("aborting (a second Ctrl-C)"), "{err}");
    finish_and_check(dir.path(), &ws, &fleet);
}

/// SIGTERM pauses like the first Ctrl-C, but waits for the devices in flight only as long as
/// DPS_STATION_STOP_TIMEOUT says; then it aborts them (the next run rolls them back).
#[test]
fn sigterm_pauses_with_a_bounded_wait() {
    // A device takes about 4 s at 9600 baud: longer than the grace.
    let Line { ws, dir, fleet } = line();
    let mut child = spawn_run_with(dir.path(), &ws, &[("DPS_STATION_STOP_TIMEOUT", "1")], true);
    wait_for_device(dir.path());
    signal(&child, "TERM");
    let sent = Instant::now();
    let status = wait(&mut child, Duration::from_secs(20));
    let (out, err) = output(dir.path());
    assert_eq!(status.code(), Some(143), "{status}\n{out}\n{err}");
    assert!(err.contains("SIGTERM: pausing: "), "{err}");
    assert!(
        err.contains("did not finish within 1 s of SIGTERM"),
        "{err}"
    );
    assert!(
        sent.elapsed() < Duration::from_secs(5),
        "{:?}",
        sent.elapsed()
    );
    finish_and_check(dir.path(), &ws, &fleet);
}

/// SIGTERM with time enough: the devices in flight finish and the batch ends Paused (143).
#[test]
fn sigterm_lets_devices_in_flight_finish() {
    let Line { ws, dir, fleet } = line();
    write_station(dir.path(), &ws, &fleet.paths()[..DEVICES / 2]);
    let mut child = spawn_run_with(dir.path(), &ws, &[], true);
    wait_for_device(dir.path());
    signal(&child, "TERM");
    let status = wait(&mut child, Duration::from_secs(30));
    let (out, err) = output(dir.path());
    assert_eq!(status.code(), Some(143), "{status}\n{out}\n{err}");
    assert!(!err.contains("aborting"), "{err}");
    assert!(out.contains("batch kill: Paused"), "{out}");
    write_station(dir.path(), &ws, &fleet.paths());
    finish_and_check(dir.path(), &ws, &fleet);
}
