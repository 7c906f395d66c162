//! The bench commands as a firmware engineer runs them: `simulate-device` prints paths, `device info`
//! and `device console` talk to them; and the simulator on a given port instead of its own pty.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use dps_station::device::client::LineClient;
use dps_station::device::simulator::{SimOptions, SimulatedDevice};
use serialport::SerialPort;

use crate::common::fast_options;

const BIN: &str = env!("CARGO_BIN_EXE_dps-station");

/// Kills the simulator process it holds when dropped, so a failing assertion leaves nothing running.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn simulate_device_info_and_console_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Command::new(BIN)
        .args(["simulate-device", "--count", "2", "--flash-dir"])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut sim = KillOnDrop(sim);
    let mut lines = BufReader::new(sim.0.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let second = lines.next().unwrap().unwrap();
    let path = first.split('\t').nth(1).unwrap().to_string();
    assert!(second.starts_with("1\t/dev/"), "{second}");

    let info = Command::new(BIN)
        .args(["device", "info", "--port", &path])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&info.stdout);
    assert!(
        info.status.success() && text.contains("serial number: SIM"),
        "{text}"
    );

    let console = Command::new(BIN)
        .args(["device", "console", "--port", &path, "READBACK"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&console.stdout);
    assert!(console.status.success(), "{text}");
    assert!(
        text.contains(" READBACK *") && text.contains(" OK key=- chain=-"),
        "{text}"
    );

    let refused = Command::new(BIN)
        .args(["device", "console", "--port", &path, "FROB"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stdout).contains("ERR code=UNKNOWN_COMMAND"));

    let missing = Command::new(BIN)
        .args(["device", "info", "--port", "/dev/serial/by-id/absent"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(
        !missing.status.success() && err.contains("/dev/serial/by-id/absent"),
        "{err}"
    );

    drop(sim);
    assert!(dir.path().join("sim-0.json").exists() && dir.path().join("sim-1.json").exists());
}

#[test]
fn the_simulator_runs_on_a_given_port() {
    // The simulator opens a port by path (here a pty's far end); the station holds the near end.
    let (mut near, far) = serialport::TTYPort::pair().unwrap();
    let far_path = far.name().unwrap();
    near.set_timeout(Duration::from_millis(20)).unwrap();
    let device = SimulatedDevice::on_port(&far_path, 115_200, &SimOptions::default()).unwrap();
    let mut client = LineClient::new("pty-near-end", near, fast_options());
    let info = client.hello().unwrap();
    assert_eq!(info.serial, device.flash().serial);
    client.keygen().unwrap();
    assert!(device.flash().key.is_some());
    drop(far);
}

#[test]
fn simulate_device_runs_each_family_and_refuses_another_familys_faults() {
    for (family, marker) in [
        ("nrf91", "imei 35"),
        ("zephyr-smp", "devid "),
        ("esp32", "mac 24:0a:c4:"),
    ] {
        let flash = tempfile::tempdir().unwrap();
        let sim = Command::new(BIN)
            .args(["simulate-device", "--family", family, "--count", "2"])
            .arg("--flash-dir")
            .arg(flash.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut sim = KillOnDrop(sim);
        let mut lines = BufReader::new(sim.0.stdout.take().unwrap()).lines();
        let first = lines.next().unwrap().unwrap();
        let second = lines.next().unwrap().unwrap();
        assert!(
            first.starts_with("0\t/dev/") && first.contains(marker),
            "{first}"
        );
        assert!(
            second.starts_with("1\t/dev/") && second.contains(marker),
            "{second}"
        );
        // The station's own driver of that family identifies the simulated device on the path.
        let path = first.split('\t').nth(1).unwrap();
        let family = dps_station::device::Family::parse(family).unwrap();
        let mut driver = dps_station::device::open_driver(
            family,
            path,
            &dps_station::device::ClientOptions::default(),
        )
        .unwrap();
        let info = driver.identify().unwrap();
        assert_eq!(info.family, family);
        assert!(first.contains(&info.serial), "{first} / {}", info.serial);
        drop(driver);
        // And `device info --family` on the other device.
        let path = second.split('\t').nth(1).unwrap();
        let out = Command::new(BIN)
            .args([
                "device",
                "info",
                "--family",
                family.as_str(),
                "--port",
                path,
            ])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success()
                && text.contains(&format!("family:        {family}"))
                && text.contains("lock:          None"),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = Command::new(BIN)
        .args([
            "simulate-device",
            "--family",
            "zephyr-smp",
            "--truncated-keygen",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && text.contains("--truncated-keygen do not apply to --family zephyr-smp"),
        "{text}"
    );
}
