//! The emulator keeps its key off the screen when asked for a file (issue 17, point 9): with
//! `--connection-string-file` it says where the string went, never the key, and when it stops it
//! says so and where the state was saved.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn with_a_connection_string_file_the_key_is_not_printed_and_the_stop_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let cs_file = dir.path().join("dps.cs");
    let state = dir.path().join("state.json");
    let mut child = Command::new(env!("CARGO_BIN_EXE_dps-station"))
        .args(["dps-emulator", "--listen", "127.0.0.1:0", "--state"])
        .arg(&state)
        .arg("--connection-string-file")
        .arg(&cs_file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut shown = String::new();
    while !shown.contains("Ctrl-C") {
        let mut line = String::new();
        assert!(reader.read_line(&mut line).unwrap() > 0, "{shown}");
        shown += &line;
    }
    let cs = std::fs::read_to_string(&cs_file).unwrap();
    let key = cs
        .trim()
        .split(';')
        .find_map(|p| p.strip_prefix("SharedAccessKey="))
        .unwrap()
        .to_string();
    assert!(key.len() > 20, "{cs}");
    assert!(!shown.contains(&key), "the key is on screen: {shown}");
    assert!(
        shown.contains(&format!(
            "connection string:    written to {}",
            cs_file.display()
        )),
        "{shown}"
    );
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&cs_file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "no stop");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut rest = String::new();
    reader.read_to_string(&mut rest).unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(status.success(), "{status}: {err}");
    assert!(
        rest.contains("SIGTERM: stopping the DPS emulator"),
        "{rest}"
    );
    assert!(
        rest.contains(&format!(
            "DPS emulator stopped; state saved to {}",
            state.display()
        )),
        "{rest}"
    );
    assert!(state.exists());
    assert!(!rest.contains(&key) && !err.contains(&key), "{rest}{err}");
}
