//! The HSM PIN of `run` (issue 17, point 6) comes from the same sources as the `hsm` commands':
//! `DPS_STATION_HSM_PIN_FILE`, `DPS_STATION_HSM_PIN`, station.toml `[keystore] pin_file`, or a
//! prompt on the terminal. A PIN file others can read is refused, naming it.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use dps_station::device::simulator::{Fleet, SimOptions};
use dps_station::station::config::Mode;
use dps_station::station::demo::{DemoWorkspace, KeyStoreChoice, RunOptions, USER_PIN};

use super::common::{BIN, station_toml};

struct Bench {
    ws: DemoWorkspace,
    dir: tempfile::TempDir,
    _fleet: Fleet,
}

/// One simulated device per batch, a batch file per name, station.toml with `extra_keystore`
/// lines in its [keystore].
fn bench() -> Bench {
    let ws = DemoWorkspace::create(KeyStoreChoice::SoftHsm).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let fleet = Fleet::start(1, &SimOptions::default()).unwrap();
    let station = station_toml(
        &ws,
        "pins",
        "connection_string_env = \"DPS_STATION_TEST_CS\"",
        &fleet.paths(),
    );
    std::fs::write(dir.path().join("station.toml"), station).unwrap();
    Bench {
        ws,
        dir,
        _fleet: fleet,
    }
}

impl Bench {
    fn set_station_pin_file(&self, file: &Path) {
        let path = self.dir.path().join("station.toml");
        let text: String = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with("pin_file = "))
            .map(|l| format!("{l}\n"))
            .collect::<String>()
            .replacen(
                "[keystore]\n",
                &format!("[keystore]\npin_file = {:?}\n", file.display().to_string()),
                1,
            );
        std::fs::write(path, text).unwrap();
    }

    /// `run` of a new one-device batch `name`, without any PIN in the environment.
    fn run(&self, name: &str) -> Command {
        let options = RunOptions {
            devices: 1,
            ..RunOptions::default()
        };
        let batch = self.dir.path().join(format!("{name}.toml"));
        std::fs::write(&batch, self.ws.batch_toml(Mode::X509Csr, name, &options)).unwrap();
        let mut cmd = Command::new("setsid");
        // setsid: no controlling terminal, as under a service manager or CI.
        cmd.args(["-w", BIN, "run", "--headless", "--config"])
            .arg(self.dir.path().join("station.toml"))
            .arg("--batch")
            .arg(&batch)
            .env_remove("DPS_STATION_HSM_PIN")
            .env_remove("DPS_STATION_HSM_PIN_FILE")
            .env(
                "DPS_STATION_TEST_CS",
                self.ws.emulator.connection_string().expose(),
            );
        cmd
    }

    fn pin_file(&self, name: &str, mode: u32) -> std::path::PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, format!("{USER_PIN}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn run_takes_the_pin_from_a_file_the_environment_or_station_toml_and_refuses_an_open_file() {
    let b = bench();

    let none = b.run("none").output().unwrap();
    assert!(!none.status.success());
    assert!(
        text(&none).contains("DPS_STATION_HSM_PIN_FILE")
            && text(&none).contains("pin_file")
            && text(&none).contains("no terminal to ask on"),
        "{}",
        text(&none)
    );

    let open = b.pin_file("open-pin", 0o644);
    let refused = b
        .run("open")
        .env("DPS_STATION_HSM_PIN_FILE", &open)
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(
        text(&refused).contains(&format!("the PIN file {} can be read", open.display()))
            && text(&refused).contains("chmod 600"),
        "{}",
        text(&refused)
    );

    let private = b.pin_file("pin", 0o600);
    let by_env_file = b
        .run("env-file")
        .env("DPS_STATION_HSM_PIN_FILE", &private)
        .output()
        .unwrap();
    assert!(by_env_file.status.success(), "{}", text(&by_env_file));
    assert!(
        text(&by_env_file).contains("1 passed"),
        "{}",
        text(&by_env_file)
    );

    let by_env = b
        .run("env")
        .env("DPS_STATION_HSM_PIN", USER_PIN)
        .output()
        .unwrap();
    // The device was provisioned above (refused as seen before): the key store opened.
    assert!(
        text(&by_env).contains("[env] batch Running"),
        "{}",
        text(&by_env)
    );

    b.set_station_pin_file(&open);
    let refused = b.run("station-open").output().unwrap();
    assert!(
        !refused.status.success() && text(&refused).contains("chmod 600"),
        "{}",
        text(&refused)
    );
    b.set_station_pin_file(&private);
    let by_station = b.run("from-station").output().unwrap();
    assert!(
        text(&by_station).contains("[from-station] batch Running"),
        "{}",
        text(&by_station)
    );
}

/// On a terminal (a pseudo-terminal made by `script`) the PIN is asked for.
#[test]
fn run_asks_for_the_pin_on_a_terminal() {
    let b = bench();
    let cmd = b.run("prompted");
    let line: Vec<String> = std::iter::once(BIN.to_string())
        .chain(
            cmd.get_args()
                .skip(2)
                .map(|a| a.to_string_lossy().into_owned()),
        )
        .map(|a| format!("'{a}'"))
        .collect();
    let mut child = Command::new("script")
        .args(["-qfec", &line.join(" "), "/dev/null"])
        .env_remove("DPS_STATION_HSM_PIN")
        .env_remove("DPS_STATION_HSM_PIN_FILE")
        .env(
            "DPS_STATION_TEST_CS",
            b.ws.emulator.connection_string().expose(),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    stdin.write_all(format!("{USER_PIN}\n").as_bytes()).unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        assert!(started.elapsed() < Duration::from_secs(60), "run hangs");
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    assert!(shown.contains("user PIN of HSM token"), "{shown}");
    assert!(shown.contains("1 passed"), "{shown}");
    assert!(!shown.contains(USER_PIN), "the PIN is not echoed: {shown}");
}
