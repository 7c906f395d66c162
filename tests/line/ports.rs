//! Fixture port paths (issue 17, point 3): a path that can never be a serial port (a typo outside
//! /dev/serial/by-id/, `/dev/null`, a file) is refused at start naming the path; an absent by-id
//! path waits for the device to appear and says so, in the headless log too, with how long.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dps_station::device::simulator::{Fleet, SimOptions};
use dps_station::station::config::Mode;
use dps_station::station::demo::{DemoWorkspace, KeyStoreChoice, RunOptions, USER_PIN};
use dps_station::station::source::{PortCheckError, PortPresence, check_port};

use super::common::{BIN, station_toml};

#[test]
fn port_paths_are_checked_for_what_they_can_be() {
    let fleet = Fleet::start(1, &SimOptions::default()).unwrap();
    assert_eq!(
        check_port("S1", Path::new(&fleet.paths()[0])).unwrap(),
        PortPresence::Present
    );
    assert_eq!(
        check_port(
            "S1",
            Path::new("/dev/serial/by-id/usb-FTDI_not-plugged-yet-if00")
        )
        .unwrap(),
        PortPresence::MayAppear
    );
    // The per-slot names `fixture detect` has udev make, and `setup` writes into station.toml.
    assert_eq!(
        check_port("S1", Path::new("/dev/dps-fixture/S1")).unwrap(),
        PortPresence::MayAppear
    );
    let err = check_port("S1", Path::new("/dev/null")).unwrap_err();
    assert!(matches!(err, PortCheckError::NotSerial { .. }), "{err}");
    assert!(err.to_string().contains("/dev/null"), "{err}");
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("ttyUSB0");
    std::fs::write(&file, "").unwrap();
    assert!(matches!(
        check_port("S1", &file).unwrap_err(),
        PortCheckError::NotSerial { .. }
    ));
    let err = check_port("S2", Path::new("/dev/ttyUSB-typo")).unwrap_err();
    assert!(matches!(err, PortCheckError::Missing { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("slot S2: the port /dev/ttyUSB-typo does not exist"),
        "{err}"
    );
}

fn workspace_files(ws: &DemoWorkspace, dir: &Path, ports: &[String]) {
    std::fs::write(
        dir.join("station.toml"),
        station_toml(
            ws,
            "ports",
            "connection_string_env = \"DPS_STATION_TEST_CS\"",
            ports,
        ),
    )
    .unwrap();
    let options = RunOptions {
        devices: 1,
        ..RunOptions::default()
    };
    std::fs::write(
        dir.join("batch.toml"),
        ws.batch_toml(Mode::X509Csr, "ports", &options),
    )
    .unwrap();
}

fn run(dir: &Path, ws: &DemoWorkspace) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(["run", "--headless", "--config"])
        .arg(dir.join("station.toml"))
        .arg("--batch")
        .arg(dir.join("batch.toml"))
        .env("DPS_STATION_HSM_PIN", USER_PIN)
        .env(
            "DPS_STATION_TEST_CS",
            ws.emulator.connection_string().expose(),
        );
    cmd
}

#[test]
fn run_refuses_a_port_that_cannot_be_and_waits_visibly_for_an_absent_by_id_port() {
    let ws = DemoWorkspace::create(KeyStoreChoice::SoftHsm).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();

    workspace_files(
        &ws,
        dir,
        &["/dev/null".into(), "/dev/serial/byid/usb-line-2".into()],
    );
    let out = run(dir, &ws).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("slot S0: /dev/null is not a serial port")
            && err.contains("slot S1: the port /dev/serial/byid/usb-line-2 does not exist"),
        "{err}"
    );
    assert!(!dir.join("reports").exists(), "refused before the batch");

    let absent = "/dev/serial/by-id/usb-dps-station-test-absent-if00";
    workspace_files(&ws, dir, &[absent.into()]);
    let mut child = run(dir, &ws)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    // The first notice comes at once, the next after 10 s.
    std::thread::sleep(Duration::from_millis(11_500));
    let pid = child.id().to_string();
    Command::new("kill").args(["-INT", &pid]).status().unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        assert!(started.elapsed() < Duration::from_secs(10), "Ctrl-C");
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = reader.join().unwrap();
    assert!(
        out.contains(&format!(
            "slot S0: waiting for {absent} to appear (waited 0 s"
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "slot S0: waiting for {absent} to appear (waited 10 s"
        )),
        "{out}"
    );
}
