//! `docs/bench.md` (issue 17, point 10) run as written: its `sh` blocks, in order, in an empty
//! directory, with the built binary on PATH. If the walkthrough rots, this fails.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::common::BIN;

/// The fenced `sh` blocks of a Markdown file, in order.
fn sh_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        match (&mut current, line.trim_end()) {
            (None, "```sh") => current = Some(String::new()),
            (Some(_), "```") => blocks.extend(current.take()),
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

#[test]
fn the_bench_walkthrough_runs_as_written() {
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/bench.md"))
        .unwrap();
    let blocks = sh_blocks(&doc);
    assert!(blocks.len() >= 8, "{} sh blocks", blocks.len());
    let dir = tempfile::tempdir().unwrap();
    // Test-only prelude: no background process outlives a failed step.
    let script = format!(
        "trap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n{}",
        blocks.join("\n")
    );
    std::fs::write(dir.path().join("walkthrough.sh"), &script).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let bin_dir = Path::new(BIN).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut child = Command::new("bash")
        .arg("walkthrough.sh")
        .current_dir(dir.path())
        .env("PATH", path)
        .env("PORT", port.to_string())
        .env_remove("DPS_STATION_HSM_PIN")
        .env_remove("DPS_STATION_HSM_PIN_FILE")
        .env_remove("DPS_STATION_LEDGER")
        .env_remove("SOFTHSM2_CONF")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            panic!("the walkthrough did not finish in 120 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let (out, err) = (out.join().unwrap(), err.join().unwrap());
    assert!(status.success(), "{status}\n{out}\n{err}");
    for expected in [
        "connection string:    written to dps.cs",
        "batch bench-first: x509-csr, 2 device(s), registration IDs like 'sensor-sn000123'",
        "batch bench-first: Closed; 2 passed, 0 failed",
        "\"iotHubs\":[\"bench-hub.azure-devices.net\"]",
        "\"tags\":{\"line\":\"bench\"}",
        "DPS emulator stopped; state saved to emulator-state.json",
    ] {
        assert!(
            out.contains(expected),
            "{expected:?} missing:\n{out}\n{err}"
        );
    }
    assert_eq!(
        out.matches("\"registrationId\":\"sensor-sim").count(),
        2,
        "both devices enrolled, lowercased:\n{out}"
    );
    let cs = std::fs::read_to_string(dir.path().join("dps.cs")).unwrap();
    let key = cs.trim().rsplit("SharedAccessKey=").next().unwrap();
    assert!(
        !out.contains(key) && !err.contains(key),
        "the DPS key is never printed"
    );
}
