//! `dps-station dps-emulator` as a user runs it: it prints where it listens, its ID scope and
//! connection string, serves them, and keeps its state across a SIGTERM and a restart.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use dps_station::emulator::sas;
use dps_station::secret::SecretString;
use serde_json::json;

struct Running {
    child: Child,
    lines: Vec<String>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run(args: &[&str]) -> Running {
    let mut child = Command::new(env!("CARGO_BIN_EXE_dps-station"))
        .arg("dps-emulator")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut reader = BufReader::new(stdout);
    let mut lines = Vec::new();
    for _ in 0..20 {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap() == 0 {
            break;
        }
        let done = line.contains("Ctrl-C");
        lines.push(line.trim_end().to_owned());
        if done {
            break;
        }
    }
    Running { child, lines }
}

fn field<'a>(lines: &'a [String], label: &str) -> &'a str {
    lines
        .iter()
        .find_map(|l| l.strip_prefix(label))
        .unwrap_or_else(|| panic!("no '{label}' in {lines:?}"))
        .trim()
}

fn terminate(mut r: Running) {
    let pid = r.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    for _ in 0..100 {
        if let Some(status) = r.child.try_wait().unwrap() {
            assert!(status.success(), "exit status {status}");
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the emulator did not stop on SIGTERM");
}

#[test]
fn the_command_prints_its_connection_string_and_keeps_state_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let state_arg = state.to_str().unwrap();
    let first = run(&["--listen", "127.0.0.1:0", "--state", state_arg]);
    let url = field(&first.lines, "service API (HTTP):").to_owned();
    let scope = field(&first.lines, "ID scope:").to_owned();
    let cs = field(&first.lines, "connection string:").to_owned();
    assert!(scope.starts_with("0ne"), "{scope}");
    let parts: Vec<(&str, &str)> = cs.split(';').map(|p| p.split_once('=').unwrap()).collect();
    assert_eq!(parts[0].0, "HostName");
    assert_eq!(
        parts[1],
        ("SharedAccessKeyName", "provisioningserviceowner")
    );
    let host = parts[0].1;
    assert_eq!(format!("http://{host}"), url);
    let key = SecretString::new(parts[2].1);

    let se = crate::common::now() + 600;
    let sig = sas::sign(key.expose(), &format!("{host}\n{se}")).unwrap();
    let token = format!(
        "SharedAccessSignature sr={host}&sig={}&se={se}&skn=provisioningserviceowner",
        sas::percent_encode(&sig)
    );
    let http = reqwest::blocking::Client::builder()
        .tls_backend_preconfigured(
            rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth(),
        )
        .build()
        .unwrap();
    let r = http
        .put(format!("{url}/enrollments/cli-1?api-version=2021-10-01"))
        .header("authorization", &token)
        .body(json!({ "registrationId": "cli-1", "attestation": { "type": "none" } }).to_string())
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    terminate(first);

    // Same state file: same scope, same generated key, the enrollment is still there.
    let second = run(&["--listen", "127.0.0.1:0", "--state", state_arg]);
    assert_eq!(field(&second.lines, "ID scope:"), scope);
    let cs2 = field(&second.lines, "connection string:");
    assert!(
        cs2.ends_with(key.expose()),
        "the key is kept in the state file"
    );
    let url2 = field(&second.lines, "service API (HTTP):").to_owned();
    let host2 = url2.trim_start_matches("http://");
    let sig = sas::sign(key.expose(), &format!("{host2}\n{se}")).unwrap();
    let token = format!(
        "SharedAccessSignature sr={host2}&sig={}&se={se}&skn=provisioningserviceowner",
        sas::percent_encode(&sig)
    );
    let r = http
        .get(format!("{url2}/enrollments/cli-1?api-version=2021-10-01"))
        .header("authorization", &token)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    terminate(second);

    // A key given in the environment is used and not printed.
    let given = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
    let mut child = Command::new(env!("CARGO_BIN_EXE_dps-station"))
        .args(["dps-emulator", "--listen", "127.0.0.1:0"])
        .env("DPS_EMULATOR_PRIMARY_KEY", given)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut printed = String::new();
    for _ in 0..20 {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap() == 0 || line.contains("Ctrl-C") {
            break;
        }
        printed.push_str(&line);
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        printed.contains("SharedAccessKey=<from DPS_EMULATOR_PRIMARY_KEY>"),
        "{printed}"
    );
    assert!(!printed.contains(given));

    let no_listener = Command::new(env!("CARGO_BIN_EXE_dps-station"))
        .arg("dps-emulator")
        .output()
        .unwrap();
    assert!(!no_listener.status.success());
    assert!(String::from_utf8_lossy(&no_listener.stderr).contains("--listen"));
}

/// `hub-telemetry` as a user runs it beside `dps-emulator --mqtt-listen`: a device registers over
/// MQTT, sends a message to the local hub, and the command shows it; the hub's identities outlive
/// a restart through the state file.
#[test]
fn hub_telemetry_shows_what_a_device_sent_and_hub_identities_are_kept_in_the_state_file() {
    use dps_station::emulator::device_client::DeviceCredential;
    use dps_station::emulator::mqtt_device::{self, MqttEndpoint, tls_config};
    use dps_station::identity::symmetric::derive_device_key;

    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    let args = [
        "--https-listen",
        "127.0.0.1:0",
        "--mqtt-listen",
        "127.0.0.1:0",
        "--ca-out",
        &p("ca.pem"),
        "--connection-string-file",
        &p("cs.txt"),
        "--state",
        &p("state.json"),
    ];
    let first = run(&args);
    let mqtt = field(&first.lines, "DPS + IoT hub (MQTT):").to_owned();
    let addr = mqtt
        .trim_start_matches("mqtts://")
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let scope = field(&first.lines, "ID scope:").to_owned();
    let url = field(&first.lines, "service API (HTTPS):").to_owned();
    let cs = std::fs::read_to_string(p("cs.txt")).unwrap();
    let key = SecretString::new(cs.rsplit_once("SharedAccessKey=").unwrap().1.trim());
    let host = url.trim_start_matches("https://");
    let se = crate::common::now() + 600;
    let sig = sas::sign(key.expose(), &format!("{host}\n{se}")).unwrap();
    let token = format!(
        "SharedAccessSignature sr={host}&sig={}&se={se}&skn=provisioningserviceowner",
        sas::percent_encode(&sig)
    );
    let ca = std::fs::read_to_string(p("ca.pem")).unwrap();
    let http = reqwest::blocking::Client::builder()
        .tls_backend_preconfigured(crate::common::tls_client(&ca))
        .build()
        .unwrap();
    let group_key = "c2VjcmV0LWdyb3VwLWtleS1mb3ItdGhlLWNsaS10ZXN0IQ==";
    let r = http
        .put(format!(
            "{url}/enrollmentGroups/cli-sym?api-version=2021-10-01"
        ))
        .header("authorization", &token)
        .header("content-type", "application/json")
        .body(
            json!({ "enrollmentGroupId": "cli-sym", "attestation": { "type": "symmetricKey",
                "symmetricKey": { "primaryKey": group_key, "secondaryKey": group_key } } })
            .to_string(),
        )
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);

    let cred = DeviceCredential::SymmetricKey(
        derive_device_key(&SecretString::new(group_key), "cli-dev-1").unwrap(),
    );
    let ep = MqttEndpoint {
        addr,
        server_name: "localhost".into(),
        trust_pem: ca.clone(),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let tls = tls_config("cli-dev-1", &ca, &cred).unwrap();
        let a = mqtt_device::register(&ep, tls, &scope, "cli-dev-1", &cred)
            .await
            .unwrap();
        assert_eq!(a.assigned_hub.as_deref(), Some("localhost"));
    });
    mqtt_device::first_contact(&ep, "localhost", "cli-dev-1", &cred, b"{\"hello\":1}").unwrap();

    let telemetry = |extra: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_dps-station"))
            .args([
                "hub-telemetry",
                "--ca",
                &p("ca.pem"),
                "--connection-string-file",
                &p("cs.txt"),
            ])
            .args(extra)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let shown = telemetry(&["--device", "cli-dev-1"]);
    assert!(shown.contains("1 message(s) from cli-dev-1"), "{shown}");
    assert!(shown.contains("{\"hello\":1}"), "{shown}");
    assert!(shown.contains("\"ct\":\"application/json\""), "{shown}");
    assert!(!shown.contains(key.expose()));
    terminate(first);

    // Restarted on the same state: the identity DPS created is still in the hub.
    let second = run(&args);
    let cs2 = std::fs::read_to_string(p("cs.txt")).unwrap();
    assert!(
        cs2.trim()
            .ends_with(&format!("SharedAccessKey={}", key.expose()))
    );
    let listed = telemetry(&[]);
    assert!(
        listed.contains("cli-dev-1  (sas, registration cli-dev-1, group cli-sym)"),
        "{listed}"
    );
    // A connection string file others can read is refused, as station.toml's is.
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(p("cs.txt"), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let open = Command::new(env!("CARGO_BIN_EXE_dps-station"))
        .args([
            "hub-telemetry",
            "--ca",
            &p("ca.pem"),
            "--connection-string-file",
            &p("cs.txt"),
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&open.stderr);
    assert!(!open.status.success(), "{stderr}");
    assert!(stderr.contains("chmod 600"), "{stderr}");
    assert!(!stderr.contains(key.expose()), "{stderr}");
    terminate(second);
}
