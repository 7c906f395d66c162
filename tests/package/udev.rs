//! The package's udev rule and the per-slot rules `fixture udev-rules` prints: checked with
//! `udevadm verify` where the installed udev has it (systemd 253+), and always with the parser.

use std::process::Command;

use dps_station::station::setup::udev::{check_rules, udevadm_can_verify};

const BIN: &str = env!("CARGO_BIN_EXE_dps-station");
const PACKAGE_RULE: &str = include_str!("../../installer/udev/60-dps-station.rules");

fn verify_if_possible(text: &str) {
    check_rules(text).unwrap();
    if udevadm_can_verify() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("99-test.rules");
        std::fs::write(&file, text).unwrap();
        let out = Command::new("udevadm")
            .arg("verify")
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn the_package_rule_gives_every_fixture_adapter_family_to_the_group_and_nothing_to_everyone() {
    verify_if_possible(PACKAGE_RULE);
    for (vendor, vid) in [
        ("FTDI", "0403"),
        ("CP210x", "10c4"),
        ("CH34", "1a86"),
        ("Prolific", "067b"),
        ("Nordic", "1915"),
        ("Espressif", "303a"),
        ("ST-Link", "0483"),
    ] {
        let line = PACKAGE_RULE
            .lines()
            .find(|l| l.contains(&format!("ATTRS{{idVendor}}==\"{vid}\"")))
            .unwrap_or_else(|| panic!("no rule for {vendor} ({vid})"));
        assert!(
            line.contains("GROUP=\"dps-station\"") && line.contains("MODE=\"0660\""),
            "{line}"
        );
    }
    // Only ttys on USB are touched.
    assert!(PACKAGE_RULE.contains("SUBSYSTEM!=\"tty\", GOTO=\"dps_station_end\""));
}

#[test]
fn printed_slot_rules_are_valid_and_bad_slots_are_refused() {
    let out = Command::new(BIN)
        .args([
            "fixture",
            "udev-rules",
            "--slot",
            "A1=pci-0000:00:14.0-usb-0:1.1:1.0",
            "--slot",
            "A2=pci-0000:00:14.0-usb-0:1.2:1.0",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.matches("SYMLINK+=\"dps-fixture/").count(), 2, "{text}");
    verify_if_possible(&text);

    let out = Command::new(BIN)
        .args(["fixture", "udev-rules", "--slot", "A1=x\",RUN+=\"/bin/sh"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a udev ID_PATH"));
}

#[test]
fn slots_from_station_toml_that_are_not_usb_adapters_are_named_and_left_out() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("station.toml");
    // /dev/null is no USB adapter; a missing port is not plugged in.
    std::fs::write(
        &path,
        "name = \"s\"\n[fixture.slots]\nA1 = \"/dev/null\"\nA2 = \"/dev/dps-fixture/not-plugged\"\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["fixture", "udev-rules", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("slot A1") && stderr.contains("slot A2"),
        "{stderr}"
    );
    assert!(stderr.contains("plug them in"), "{stderr}");
}

#[test]
fn detect_says_when_no_adapter_appeared_and_writes_nothing_without_a_slot() {
    let dir = tempfile::tempdir().unwrap();
    let station = dir.path().join("station.toml");
    let rules = dir.path().join("61-dps-fixture.rules");
    let mut child = Command::new(BIN)
        .args(["fixture", "detect", "--slots", "A1", "--config"])
        .arg(&station)
        .arg("--rules-out")
        .arg(&rules)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    // Enter without plugging anything, then the input ends.
    child.stdin.take().unwrap().write_all(b"\n").unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("no new adapter appeared for slot A1"),
        "{stdout}"
    );
    assert!(stdout.contains("nothing written"), "{stdout}");
    assert_eq!(out.status.code(), Some(1));
    assert!(!station.exists() && !rules.exists());
}
