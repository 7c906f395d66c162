//! Helpers shared by the line tests.

use std::path::Path;
use std::process::Command;

use dps_station::device::ClientOptions;
use dps_station::identity::pem;
use dps_station::station::config::KeyStoreConfig;
use dps_station::station::demo::DemoWorkspace;
use dps_station::station::events::Event;
use dps_station::station::source::{DeviceSource, PortSource};

/// The station binary built for these tests.
pub const BIN: &str = env!("CARGO_BIN_EXE_dps-station");

/// `openssl verify` of a leaf against a root with the intermediates as untrusted.
pub fn openssl_verify(dir: &Path, chain_pem: &str, root_pem: &str) -> Result<(), String> {
    let blocks = pem::decode_all(chain_pem).map_err(|e| e.to_string())?;
    let certs: Vec<String> = blocks
        .iter()
        .map(|b| pem::encode(pem::label::CERTIFICATE, &b.der))
        .collect();
    let leaf = dir.join("leaf.pem");
    let untrusted = dir.join("untrusted.pem");
    let root = dir.join("root.pem");
    std::fs::write(&leaf, &certs[0]).unwrap();
    // Everything after the leaf except the root itself.
    let inter: String = certs[1..]
        .iter()
        .filter(|c| c.as_str() != root_pem)
        .cloned()
        .collect();
    std::fs::write(&untrusted, inter).unwrap();
    std::fs::write(&root, root_pem).unwrap();
    let out = Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(&root)
        .arg("-untrusted")
        .arg(&untrusted)
        .arg(&leaf)
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// The most devices in flight at once, from the event stream.
pub fn max_in_flight(events: &[Event]) -> usize {
    let (mut now, mut max) = (0usize, 0usize);
    for e in events {
        match e {
            Event::DeviceSeen { .. } => {
                now += 1;
                max = max.max(now);
            }
            Event::Passed { .. } | Event::Failed { .. } => now = now.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// `dps-station ledger verify` on a ledger file; true when it passes.
pub fn ledger_verify(ledger: &Path) -> (bool, String) {
    let out = Command::new(BIN)
        .args(["ledger", "verify", "--ledger"])
        .arg(ledger)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// station.toml for the real `dps-station run`: the workspace's SoftHSM2 token, its emulator as DPS
/// target `emulator` whose connection string comes from `dps_source` (TOML lines naming an
/// environment variable or a keyring entry), and one fixture slot `S<i>` per port.
pub fn station_toml(ws: &DemoWorkspace, name: &str, dps_source: &str, ports: &[String]) -> String {
    let KeyStoreConfig::Pkcs11 { token_label, .. } = &ws.station.keystore else {
        panic!("SoftHSM2 expected")
    };
    let mut station = format!(
        "name = {name:?}\nledger = \"ledger.db\"\n[keystore]\nkind = \"pkcs11\"\nprofile = \"softhsm2\"\ntoken_label = {token_label:?}\nmodule = \"/usr/lib/softhsm/libsofthsm2.so\"\n[dps.emulator]\n{dps_source}\nendpoint = {:?}\nca_file = {:?}\n[fixture.slots]\n",
        ws.emulator.service_url(),
        ws.dir.join("emulator-ca.pem").display().to_string(),
    );
    for (i, path) in ports.iter().enumerate() {
        station += &format!("S{i} = {path:?}\n");
    }
    station
}

/// One real-port device source `P<i>` per path, as `station.toml`'s fixture gives the engine.
pub fn port_sources(paths: &[String]) -> Vec<(String, Box<dyn DeviceSource>)> {
    paths
        .iter()
        .enumerate()
        .map(|(i, p)| {
            (
                format!("P{i}"),
                Box::new(PortSource::new(p.into(), ClientOptions::default()))
                    as Box<dyn DeviceSource>,
            )
        })
        .collect()
}
