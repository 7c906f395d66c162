//! Espressif's own `esptool` (PyPI, pinned in `tests/clients/devices-requirements.txt`) accepts the
//! simulated ESP32 ROM bootloader unchanged over a pseudo-terminal, without its flasher stub and
//! without touching DTR/RTS (`--before no-reset --after no-reset --no-stub`): it detects the chip,
//! reads the MAC from the eFuses, writes flash (compressed and not), verifies it and reads it back,
//! and what it reads is what the simulated flash holds.

use std::path::PathBuf;
use std::process::Command;

use dps_station::device::simulator::{Esp32Faults, Esp32Sim};

fn esptool(port: &str, args: &[&str]) -> (bool, String) {
    let esptool =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/clients/.venv-devices/bin/esptool");
    assert!(
        esptool.exists(),
        "{} is missing: run tests/clients/setup.sh (scripts/test.sh does) to install esptool",
        esptool.display()
    );
    let out = Command::new(esptool)
        .args([
            "--port",
            port,
            "--before",
            "no-reset",
            "--after",
            "no-reset",
            "--no-stub",
        ])
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn esptool_reads_the_mac_writes_verifies_and_reads_back_flash() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Esp32Sim::on_pty(5, dir.path(), Esp32Faults::default()).unwrap();
    let port = sim.path().to_string();

    let (ok, out) = esptool(&port, &["read-mac"]);
    assert!(ok, "{out}");
    let mac = sim.with_chip(|c| c.mac());
    let mac_text = mac
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":");
    let line = out.lines().find(|l| l.starts_with("MAC:")).unwrap_or("");
    assert!(line.ends_with(&mac_text), "{out}");
    assert!(out.contains("Chip type:          ESP32-D0WD-V3"), "{out}");

    // 5000 bytes: more than four 0x400 blocks, not a multiple of one, with SLIP's special bytes.
    let image: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 256) as u8).collect();
    let bin = dir.path().join("image.bin");
    std::fs::write(&bin, &image).unwrap();
    let bin = bin.to_str().unwrap();

    let (ok, out) = esptool(&port, &["write-flash", "--no-compress", "0xD000", bin]);
    assert!(ok, "{out}");
    assert_eq!(
        sim.with_chip(|c| c.read_flash(0xD000, 5000).unwrap()),
        image
    );
    assert_eq!(
        sim.with_chip(|c| c.read_flash(0xD000 + 5000, 4).unwrap()),
        [0xFF; 4]
    );

    // esptool's default: zlib-compressed blocks the ROM inflates.
    let (ok, out) = esptool(&port, &["write-flash", "0x20000", bin]);
    assert!(ok, "{out}");
    assert!(out.contains("Hash of data verified"), "{out}");
    assert_eq!(
        sim.with_chip(|c| c.read_flash(0x20000, 5000).unwrap()),
        image
    );

    let (ok, out) = esptool(&port, &["verify-flash", "0xD000", bin]);
    assert!(ok && out.contains("Verification successful"), "{out}");

    let back = dir.path().join("back.bin");
    let (ok, out) = esptool(
        &port,
        &["read-flash", "0xD000", "5000", back.to_str().unwrap()],
    );
    assert!(ok, "{out}");
    assert_eq!(std::fs::read(&back).unwrap(), image);
}

#[test]
fn esptool_sees_a_flash_cell_that_does_not_keep_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Esp32Faults {
        bad_flash_write: true,
        ..Esp32Faults::default()
    };
    let sim = Esp32Sim::on_pty(6, dir.path(), faults).unwrap();
    let bin = dir.path().join("image.bin");
    std::fs::write(&bin, vec![0x5A; 2048]).unwrap();
    let (ok, out) = esptool(
        sim.path(),
        &["write-flash", "0xD000", bin.to_str().unwrap()],
    );
    assert!(!ok, "esptool must refuse a write whose MD5 differs: {out}");
    assert!(
        out.contains("MD5 of file does not match data in flash"),
        "{out}"
    );
}
