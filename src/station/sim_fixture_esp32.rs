//! The ESP32 family of a virtual fixture (the line tests, the demo): each device a simulated ROM
//! bootloader on its own pseudo-terminal, its flash a file; what it keeps of a device is its
//! `esp_secure_cert` partition as flashed, and the proof is a DPS registration with the
//! credentials parsed from it, as the product's firmware would read them.

use std::path::PathBuf;
use std::time::Duration;

use super::demo::{DemoError, DemoWorkspace};
use super::sim_fixture::{SimFamily, SimFixture};
use crate::device::driver::{DeviceDriver, Family};
use crate::device::esp32::driver::{Esp32Driver, Esp32Options};
use crate::device::esp32::secure_cert::{
    SecureCertImage, TYPE_CA_CERT, TYPE_DEV_CERT, TYPE_ID_SCOPE, TYPE_PRIV_KEY,
    TYPE_REGISTRATION_ID,
};
use crate::device::esp32::symmetric::TYPE_SYMMETRIC_KEY;
use crate::device::simulator::{Esp32Faults, Esp32Sim};
use crate::emulator::device_client::{DeviceCredential, DeviceRegistration, register};
use crate::secret::SecretString;

/// A simulated ESP32 that went through a slot.
#[derive(Clone)]
pub struct Esp32Record {
    /// Slot.
    pub slot: String,
    /// Its serial (the MAC, as the station saw it).
    pub serial: String,
    /// The `esp_secure_cert` partition as flashed (it holds the device's key, as real flash does).
    pub partition: Vec<u8>,
    /// eFuse burns the chip recorded.
    pub efuse_burns: usize,
    /// Whether the station passed it.
    pub passed: bool,
    /// Bytes on its wire, both ways.
    pub wire_bytes: u64,
}

impl std::fmt::Debug for Esp32Record {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Esp32Record")
            .field("slot", &self.slot)
            .field("serial", &self.serial)
            .field("partition_len", &self.partition.len())
            .field("passed", &self.passed)
            .finish()
    }
}

/// The ESP32 family of a virtual fixture.
pub struct Esp32Family {
    /// Chip faults (baud emulation for the benchmark).
    pub faults: Esp32Faults,
    /// The driver's options (partition, eFuse policy).
    pub driver: Esp32Options,
    /// Where the chips' flash files go.
    pub flash_dir: PathBuf,
}

/// A virtual fixture of ESP32s.
pub type Esp32Fixture = SimFixture<Esp32Family>;

impl SimFamily for Esp32Family {
    type Sim = Esp32Sim;
    type Record = Esp32Record;

    fn family(&self) -> Family {
        Family::Esp32
    }

    fn start(&self, index: usize) -> Result<(Esp32Sim, Box<dyn DeviceDriver>), String> {
        let sim = Esp32Sim::on_pty(index, &self.flash_dir, self.faults.clone())
            .map_err(|e| e.to_string())?;
        let driver =
            Esp32Driver::open(sim.path(), self.driver.clone()).map_err(|e| e.to_string())?;
        Ok((sim, Box::new(driver)))
    }

    fn record(&self, slot: &str, serial: &str, sim: &Esp32Sim, passed: bool) -> Esp32Record {
        let p = self.driver.partition;
        sim.with_chip(|c| Esp32Record {
            slot: slot.to_string(),
            serial: serial.to_string(),
            partition: c
                .read_flash(p.offset as usize, p.size as usize)
                .unwrap_or_default(),
            efuse_burns: c.burns().len(),
            passed,
            wire_bytes: sim.wire_bytes(),
        })
    }
}

/// What an ESP32 would present to DPS, read from its partition as `esp_secure_cert_mgr` reads it:
/// device certificate + CA and the key (or the symmetric key of user data 4), the ID scope and
/// registration ID from the user-data entries.
pub fn esp32_registration(
    ws: &DemoWorkspace,
    device: &Esp32Record,
) -> Result<DeviceRegistration, DemoError> {
    let what = format!("esp32 {}", device.serial);
    let image = SecureCertImage::parse(&device.partition).map_err(|e| DemoError {
        what: what.clone(),
        message: e.to_string(),
    })?;
    let entry = |t: u8, name: &str| {
        image.text(t).ok_or_else(|| DemoError {
            what: what.clone(),
            message: format!("its esp_secure_cert partition holds no {name}"),
        })
    };
    // A symmetric identity: the derived key in user data 4, as firmware reads it (base64 text).
    let credential = if image.entry(TYPE_SYMMETRIC_KEY).is_some() {
        DeviceCredential::SymmetricKey(SecretString::new(entry(
            TYPE_SYMMETRIC_KEY,
            "symmetric key",
        )?))
    } else {
        let cert = entry(TYPE_DEV_CERT, "device certificate")?;
        let ca = entry(TYPE_CA_CERT, "CA certificate")?;
        DeviceCredential::X509 {
            chain_pem: format!("{}\n{}\n", cert.trim_end(), ca.trim_end()),
            key_pem: SecretString::new(entry(TYPE_PRIV_KEY, "private key")?),
        }
    };
    Ok(DeviceRegistration {
        endpoint: ws.emulator.device_url(),
        id_scope: entry(TYPE_ID_SCOPE, "ID scope")?,
        registration_id: entry(TYPE_REGISTRATION_ID, "registration ID")?,
        credential,
        trust_pem: ws.emulator.ca_certificate_pem().map(str::to_string),
        payload: None,
    })
}

/// Registers one ESP32 through the emulator's device API; returns the hub it was assigned.
pub fn register_esp32(ws: &DemoWorkspace, device: &Esp32Record) -> Result<String, DemoError> {
    let registration = esp32_registration(ws, device)?;
    let rid = registration.registration_id.clone();
    let assignment = register(&registration, Duration::from_secs(20)).map_err(|e| DemoError {
        what: format!("device registration of '{rid}'"),
        message: e.to_string(),
    })?;
    if assignment.status != "assigned" {
        return Err(DemoError {
            what: format!("device registration of '{rid}'"),
            message: format!("status {}", assignment.status),
        });
    }
    Ok(assignment.assigned_hub.unwrap_or_default())
}
