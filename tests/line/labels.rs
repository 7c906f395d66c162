//! Labels scanned into a headless run (issue 10, point 7): a batch with `serial_from = "label"`
//! asks for each seated device's label, reads it from standard input (a USB scanner types into
//! the terminal), and records it as the device's serial; a label typed twice is refused.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use dps_station::device::simulator::{Fleet, SimOptions};
use dps_station::ledger::{IdentityFilter, Ledger};
use dps_station::station::config::Mode;
use dps_station::station::demo::{DemoWorkspace, KeyStoreChoice, RunOptions, USER_PIN};

use super::common::{BIN, station_toml};

#[test]
fn a_headless_run_takes_device_labels_from_standard_input() {
    let ws = DemoWorkspace::create(KeyStoreChoice::SoftHsm).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let fleet = Fleet::start(2, &SimOptions::default()).unwrap();
    let station = station_toml(
        &ws,
        "labels",
        "connection_string_env = \"DPS_CS\"",
        &fleet.paths(),
    );
    std::fs::write(dir.path().join("station.toml"), station).unwrap();
    let options = RunOptions {
        devices: 2,
        ..RunOptions::default()
    };
    let batch = format!(
        "serial_from = \"label\"\n{}",
        ws.batch_toml(Mode::X509Csr, "labelled", &options)
    );
    std::fs::write(dir.path().join("batch.toml"), batch).unwrap();
    let mut child = Command::new(BIN)
        .args(["run", "--headless", "--config"])
        .arg(dir.path().join("station.toml"))
        .arg("--batch")
        .arg(dir.path().join("batch.toml"))
        .env("DPS_STATION_HSM_PIN", USER_PIN)
        .env("DPS_CS", ws.emulator.connection_string().expose())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut out = String::new();
    let mut asked = 0;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "timed out; output so far:\n{out}");
        let Ok(line) = rx.recv_timeout(left) else {
            break;
        };
        out += &line;
        out.push('\n');
        if line.contains("scan the label of the device in this slot") {
            asked += 1;
            // The first label twice: the second is a double scan, refused with the slot.
            let labels: &[&str] = if asked == 1 {
                &["LBL-A1", "LBL-A1"]
            } else {
                &["LBL-A2"]
            };
            for l in labels {
                writeln!(stdin, "{l}").unwrap();
            }
        }
    }
    let status = child.wait().unwrap();
    assert!(status.success(), "{out}");
    assert_eq!(asked, 2, "one label asked for per device:\n{out}");
    assert!(out.contains("label LBL-A1 is the device's serial"), "{out}");
    assert!(out.contains("label LBL-A1 not taken"), "{out}");
    assert!(out.contains("2 passed"), "{out}");

    let ledger = Ledger::open_read_only(&dir.path().join("ledger.db")).unwrap();
    let filter = IdentityFilter {
        batch: Some("labelled".into()),
        ..Default::default()
    };
    let mut serials: Vec<String> = ledger
        .list_identities(&filter)
        .unwrap()
        .iter()
        .filter_map(|i| i.device.as_ref().map(|d| d.serial_number.clone()))
        .collect();
    serials.sort();
    assert_eq!(serials, ["LBL-A1", "LBL-A2"]);
}
