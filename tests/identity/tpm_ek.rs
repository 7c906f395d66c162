//! The EK conversion against a real TPM 2.0 implementation: `swtpm` (libtpms) creates the default
//! EKs with `tpm2_createek`, whose `-u` output is the TPM's own TPM2B_PUBLIC; our conversion of
//! the PEM that `tpm2_readpublic -f pem` exports must give the same bytes.
//!
//! Needs `swtpm` and `tpm2-tools` (`installer/deps.sh --test`); without them the test fails and
//! says so: it is never skipped.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::prelude::BASE64_STANDARD;
use dps_station::identity::tpm_ek::{self, EkKey};

use super::support::temp_dir;

/// A running `swtpm`, killed when dropped.
struct Swtpm {
    child: Child,
    tcti: String,
}

impl Drop for Swtpm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tool(name: &str) -> Command {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {name}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        found,
        "'{name}' is not installed: the EK conversion is cross-checked against swtpm + tpm2-tools; run installer/deps.sh --test"
    );
    Command::new(name)
}

/// Two consecutive free TCP ports (server, control), as the swtpm TCTI expects.
fn free_port_pair() -> u16 {
    for _ in 0..50 {
        let Ok(a) = TcpListener::bind("127.0.0.1:0") else {
            continue;
        };
        let Ok(addr) = a.local_addr() else { continue };
        let port = addr.port();
        if port == u16::MAX {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            drop(a);
            return port;
        }
    }
    panic!("no two consecutive free TCP ports on 127.0.0.1");
}

fn start_swtpm(state: &Path) -> Swtpm {
    let port = free_port_pair();
    let child = tool("swtpm")
        .args([
            "socket",
            "--tpm2",
            "--server",
            &format!("type=tcp,port={port},bindaddr=127.0.0.1"),
            "--ctrl",
            &format!("type=tcp,port={},bindaddr=127.0.0.1", port + 1),
            "--tpmstate",
            &format!("dir={}", state.display()),
            "--flags",
            "not-need-init,startup-clear",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("swtpm starts");
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "swtpm did not listen on port {port} within 10 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Swtpm {
        child,
        tcti: format!("swtpm:host=127.0.0.1,port={port}"),
    }
}

fn tpm2(tpm: &Swtpm, dir: &Path, name: &str, args: &[&str]) {
    let out = tool(name)
        .args(args)
        .env("TPM2TOOLS_TCTI", &tpm.tcti)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{name} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn pem_to_der(pem: &str) -> Vec<u8> {
    let body: String = pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<Vec<_>>()
        .concat();
    BASE64_STANDARD.decode(body).unwrap()
}

#[test]
fn our_tpm2b_public_of_the_ek_pem_equals_what_the_tpm_reports_byte_for_byte() {
    let dir = temp_dir();
    let tpm = start_swtpm(dir.path());
    for (alg, kind) in [("ecc", "ECC NIST P-256"), ("rsa", "RSA 2048")] {
        let (ctx, public, pem) = (
            format!("ek-{alg}.ctx"),
            format!("ek-{alg}.pub"),
            format!("ek-{alg}.pem"),
        );
        tpm2(
            &tpm,
            dir.path(),
            "tpm2_createek",
            &["-G", alg, "-c", &ctx, "-u", &public],
        );
        tpm2(
            &tpm,
            dir.path(),
            "tpm2_readpublic",
            &["-c", &ctx, "-f", "pem", "-o", &pem],
        );
        // The TPM holds few transient objects; free this one before the next EK.
        tpm2(&tpm, dir.path(), "tpm2_flushcontext", &["-t"]);
        let theirs = std::fs::read(dir.path().join(&public)).unwrap();
        let spki = pem_to_der(&std::fs::read_to_string(dir.path().join(&pem)).unwrap());
        let ours = tpm_ek::spki_to_tpm2b_public(&spki).unwrap();
        assert_eq!(
            hex::encode(&ours),
            hex::encode(&theirs),
            "{alg}: our TPM2B_PUBLIC differs from the TPM's"
        );
        let parsed = tpm_ek::parse_tpm2b_public(&theirs).unwrap();
        assert!(parsed.is_default_template(), "{alg}");
        assert_eq!(parsed.key.kind(), kind);
        assert_eq!(parsed.key, tpm_ek::key_from_spki(&spki).unwrap());
        if let EkKey::EccP256 { .. } = parsed.key {
            assert!(parsed.key.ecc_point().is_some());
        }
    }
}
