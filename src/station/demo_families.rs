//! The demo's batches per device family: one `x509-csr` batch whose fixture holds slots of our
//! own protocol beside slots of simulated nRF91 modems and Zephyr SMP devices (a mixed fixture),
//! and the proof that each registers through the emulator's device API with what it stored.

use std::sync::Arc;
use std::time::Duration;

use super::config::Mode;
use super::demo::{DemoError, DemoWorkspace, RunOptions};
use super::engine::{Engine, RunSummary};
use super::events::Event;
use super::sim_fixture::{ModemFixture, ModemRecord, SimFixture, SmpRecord, ZephyrFamily};
use super::source::{DeviceSource, SimulatedRecord, VirtualFixture};
use crate::device::ClientOptions;
use crate::device::nrf91::Nrf91Options;
use crate::device::simulator::{ModemFaults, SmpFaults};
use crate::device::smp::driver::SmpOptions;
use crate::emulator::device_client::{DeviceCredential, DeviceRegistration, register};
use crate::secret::SecretString;

/// How a mixed batch is laid out.
#[derive(Debug, Clone)]
pub struct MixedOptions {
    /// Station-protocol devices, and the slots they share.
    pub station_devices: u64,
    /// Their slots.
    pub station_slots: usize,
    /// nRF91 modems.
    pub modem_devices: u64,
    /// Their slots.
    pub modem_slots: usize,
    /// Modem faults (baud emulation for the benchmark).
    pub modem_faults: ModemFaults,
    /// Zephyr SMP devices.
    pub zephyr_devices: u64,
    /// Their slots.
    pub zephyr_slots: usize,
}

impl Default for MixedOptions {
    fn default() -> Self {
        Self {
            station_devices: 8,
            station_slots: 4,
            modem_devices: 8,
            modem_slots: 4,
            modem_faults: ModemFaults::default(),
            zephyr_devices: 8,
            zephyr_slots: 4,
        }
    }
}

/// One mixed batch's run.
pub struct MixedRun {
    /// The engine's summary.
    pub summary: RunSummary,
    /// The station-protocol devices, with their flash.
    pub station_devices: Vec<SimulatedRecord>,
    /// The modems, with what they hold.
    pub modems: Vec<ModemRecord>,
    /// The Zephyr SMP devices, with what they hold.
    pub zephyr: Vec<SmpRecord>,
    /// Every event.
    pub events: Vec<Event>,
}

/// Runs one `x509-csr` batch over a fixture of station-protocol slots `S<i>`, nRF91 slots `N<i>`
/// and Zephyr SMP slots `Z<i>` at once.
pub fn run_mixed(
    ws: &DemoWorkspace,
    name: &str,
    options: &MixedOptions,
    on_event: &mut dyn FnMut(&Event),
) -> Result<MixedRun, DemoError> {
    let total = options.station_devices + options.modem_devices + options.zephyr_devices;
    let text = ws.batch_toml(
        Mode::X509Csr,
        name,
        &RunOptions {
            devices: total,
            ..RunOptions::default()
        },
    );
    let station = VirtualFixture::new(
        options.station_devices,
        RunOptions::default().sim,
        ClientOptions::default(),
    );
    // Modems numbered apart from earlier batches' so that their IMEIs are new.
    let first = 1000 + ws.emulator.enrollments_snapshot().len();
    let modems = ModemFixture::new(
        options.modem_devices,
        first,
        options.modem_faults.clone(),
        Nrf91Options::default(),
    );
    let zephyr = SimFixture::of(
        options.zephyr_devices,
        first,
        ZephyrFamily {
            faults: SmpFaults::default(),
            driver: SmpOptions::default(),
        },
    );
    let mut sources: Vec<(String, Box<dyn DeviceSource>)> = Vec::new();
    for i in 1..=options.station_slots {
        let slot = format!("S{i}");
        sources.push((slot.clone(), Box::new(station.slot(&slot))));
    }
    for i in 1..=options.modem_slots {
        let slot = format!("N{i}");
        sources.push((slot.clone(), Box::new(Arc::clone(&modems).slot(&slot))));
    }
    for i in 1..=options.zephyr_slots {
        let slot = format!("Z{i}");
        sources.push((slot.clone(), Box::new(zephyr.slot(&slot))));
    }
    let setup = ws.engine_setup(name, &text, sources)?;
    let engine = Engine::start(setup).map_err(|e| DemoError {
        what: "engine".into(),
        message: e.to_string(),
    })?;
    let mut events = Vec::new();
    for event in engine.events.iter() {
        on_event(&event);
        events.push(event);
    }
    let summary = engine.join().ok_or_else(|| DemoError {
        what: "engine".into(),
        message: "the batch thread panicked".into(),
    })?;
    Ok(MixedRun {
        summary,
        station_devices: station.records(),
        modems: modems.records(),
        zephyr: zephyr.records(),
        events,
    })
}

/// What a modem would present to DPS: its client certificate and the CA chain as stored, its own
/// key, the registration ID its certificate names (the CN), and the ID scope its firmware carries.
pub fn modem_registration(
    ws: &DemoWorkspace,
    modem: &ModemRecord,
) -> Result<DeviceRegistration, DemoError> {
    let missing = |what: &str| DemoError {
        what: format!("modem {}", modem.imei),
        message: format!("holds no {what}"),
    };
    let cert = modem
        .credential(1)
        .ok_or_else(|| missing("client certificate"))?;
    let chain = modem.credential(0).ok_or_else(|| missing("CA chain"))?;
    let key = modem.credential(2).ok_or_else(|| missing("private key"))?;
    let pem = x509_parser::pem::parse_x509_pem(cert.as_bytes())
        .map_err(|e| DemoError {
            what: format!("modem {} certificate", modem.imei),
            message: e.to_string(),
        })?
        .1;
    let parsed = pem.parse_x509().map_err(|e| DemoError {
        what: format!("modem {} certificate", modem.imei),
        message: e.to_string(),
    })?;
    let registration_id = parsed
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .ok_or_else(|| missing("certificate CN"))?
        .to_string();
    Ok(DeviceRegistration {
        endpoint: ws.emulator.device_url(),
        id_scope: ws.emulator.id_scope().to_string(),
        registration_id,
        credential: DeviceCredential::X509 {
            chain_pem: format!("{}\n{}\n", cert.trim_end(), chain.trim_end()),
            key_pem: SecretString::new(key),
        },
        trust_pem: ws.emulator.ca_certificate_pem().map(str::to_string),
        payload: None,
    })
}

/// Registers one modem through the emulator's device API; returns the hub it was assigned.
pub fn register_modem(ws: &DemoWorkspace, modem: &ModemRecord) -> Result<String, DemoError> {
    let registration = modem_registration(ws, modem)?;
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

/// What a Zephyr device would present to DPS: the certificate and CA chain files, its key, and the
/// registration ID and ID scope from its saved settings (as its firmware reads them).
pub fn smp_registration(
    ws: &DemoWorkspace,
    device: &SmpRecord,
) -> Result<DeviceRegistration, DemoError> {
    let missing = |what: &str| DemoError {
        what: format!("zephyr device {}", device.serial),
        message: format!("holds no {what}"),
    };
    let text = |b: &Option<Vec<u8>>, what: &str| {
        b.as_ref()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .ok_or_else(|| missing(what))
    };
    let cert = text(&device.certificate, "certificate file")?;
    let chain = text(&device.ca_chain, "CA chain file")?;
    let key = device
        .key_pem
        .clone()
        .ok_or_else(|| missing("device key"))?;
    let [regid, scope, _] = &device.settings;
    Ok(DeviceRegistration {
        endpoint: ws.emulator.device_url(),
        id_scope: scope.clone().ok_or_else(|| missing("dps/scope setting"))?,
        registration_id: regid.clone().ok_or_else(|| missing("dps/regid setting"))?,
        credential: DeviceCredential::X509 {
            chain_pem: format!("{cert}{chain}"),
            key_pem: SecretString::new(&key),
        },
        trust_pem: ws.emulator.ca_certificate_pem().map(str::to_string),
        payload: None,
    })
}

/// Registers one Zephyr device through the emulator's device API; returns the hub it was assigned.
pub fn register_smp(ws: &DemoWorkspace, device: &SmpRecord) -> Result<String, DemoError> {
    let registration = smp_registration(ws, device)?;
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
