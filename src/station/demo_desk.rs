//! The demo at the operator's desk: the demo workspace's emulator, key store and ledger behind a
//! [`BatchProvider`] whose slots are simulated devices, and a batch file per working mode in the
//! workspace's batches folder for the picker. `dps-station demo`, the GUI tests and `bench gui`
//! use it. Devices can be paced so that an operator can watch stages go by.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::config::{BatchConfig, Mode, StationConfig};
use super::demo::{DemoError, DemoWorkspace, RunOptions};
use super::engine::EngineSetup;
use super::operator::{BatchProvider, StationError, StationHandle};
use super::source::{Arrival, DeviceSource, VirtualFixture};
use crate::device::driver::Family;
use crate::device::simulator::{SimFaults, SimOptions};
use crate::device::{ClientOptions, DeviceDriver};

/// How the demo's fixture behaves.
#[derive(Debug, Clone)]
pub struct DemoDeskOptions {
    /// Slots of the virtual fixture.
    pub slots: usize,
    /// Devices per batch file.
    pub devices: u64,
    /// Time a slot waits before the next device is seated (0 for tests and benches).
    pub pace: Duration,
    /// The first device of slot 1 vanishes mid-write (its cable is pulled): one FAIL to see.
    pub faulty_first: bool,
    /// Who holds which role (the demo's station file has none).
    pub roles: super::operator::settings::RolesSection,
    /// The security officer's settings (`[officer]`: idle close, dual control).
    pub officer: super::config::officer::OfficerSettings,
    /// Run every batch on leases from this central service (`None`: not joined).
    pub leases: Option<DemoLeases>,
}

/// A central service for the demo desk's batches (tests give a small in-process one).
#[derive(Clone)]
pub struct DemoLeases {
    /// The service.
    pub link: Arc<dyn crate::central::link::CentralLink>,
    /// Its signer certificate.
    pub signer: crate::central::signing::SignerCertificate,
    /// How the lease keeper runs.
    pub keeper: crate::central::station_side::lease_keeper::KeeperConfig,
}

impl std::fmt::Debug for DemoLeases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DemoLeases")
            .field("signer", &self.signer.sha256())
            .field("keeper", &self.keeper)
            .finish_non_exhaustive()
    }
}

impl Default for DemoDeskOptions {
    fn default() -> Self {
        Self {
            slots: 8,
            devices: 8,
            pace: Duration::from_millis(1500),
            faulty_first: false,
            roles: Default::default(),
            officer: Default::default(),
            leases: None,
        }
    }
}

/// Simulated devices for every batch the desk starts.
pub struct DemoProvider {
    workspace: Arc<DemoWorkspace>,
    options: DemoDeskOptions,
}

impl BatchProvider for DemoProvider {
    fn leases(
        &self,
        _station: &StationConfig,
        _batch: &BatchConfig,
    ) -> Result<Option<super::lease_gate::LeaseSetup>, StationError> {
        Ok(self
            .options
            .leases
            .clone()
            .map(|l| super::lease_gate::LeaseSetup {
                link: l.link,
                signer: l.signer,
                keeper: l.keeper,
            }))
    }

    fn setup(
        &self,
        station: &StationConfig,
        batch: BatchConfig,
    ) -> Result<EngineSetup, StationError> {
        let text = std::fs::read_to_string(&batch.path).map_err(|e| {
            StationError::Provider(format!("cannot read {}: {e}", batch.path.display()))
        })?;
        let count = batch.target().unwrap_or(self.options.devices);
        let normal = VirtualFixture::new(
            count.saturating_sub(u64::from(self.options.faulty_first)),
            SimOptions::default(),
            ClientOptions::default(),
        );
        let faulty = VirtualFixture::new(
            u64::from(self.options.faulty_first),
            SimOptions {
                faults: SimFaults {
                    disconnect_after: Some(4),
                    ..SimFaults::default()
                },
                ..SimOptions::default()
            },
            ClientOptions::default(),
        );
        let sources = (1..=self.options.slots)
            .map(|i| {
                let slot = format!("S{i}");
                let mut chain: Vec<Box<dyn DeviceSource>> = Vec::new();
                if i == 1 {
                    chain.push(Box::new(faulty.slot(&slot)));
                }
                chain.push(Box::new(normal.slot(&slot)));
                let source = Paced {
                    chain,
                    current: 0,
                    pace: self.options.pace,
                    next_at: None,
                };
                (slot, Box::new(source) as Box<dyn DeviceSource>)
            })
            .collect();
        let mut setup = self
            .workspace
            .engine_setup(&batch.name, &text, sources)
            .map_err(|e| StationError::Provider(e.to_string()))?;
        setup.station = station.clone();
        setup.batch = batch;
        Ok(setup)
    }
}

/// Several sources one after the other, with a pause before each device after the first.
struct Paced {
    chain: Vec<Box<dyn DeviceSource>>,
    current: usize,
    pace: Duration,
    next_at: Option<Instant>,
}

impl DeviceSource for Paced {
    fn family(&self) -> Family {
        // The demo desk chains sources of one family (our line protocol's simulated devices).
        self.chain
            .get(self.current.min(self.chain.len().saturating_sub(1)))
            .map_or(Family::Station, |s| s.family())
    }

    fn next_device(&mut self, stop: &AtomicBool) -> Option<Arrival> {
        if let Some(at) = self.next_at {
            while Instant::now() < at {
                if stop.load(Ordering::SeqCst) {
                    return None;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        while self.current < self.chain.len() {
            if let Some(a) = self.chain[self.current].next_device(stop) {
                return Some(a);
            }
            self.current += 1;
        }
        None
    }

    fn finished(
        &mut self,
        driver: Option<Box<dyn DeviceDriver>>,
        serial: Option<&str>,
        passed: bool,
    ) {
        if let Some(s) = self.chain.get_mut(self.current) {
            s.finished(driver, serial, passed);
        }
        self.next_at = Some(Instant::now() + self.pace);
    }
}

/// A station handle over a demo workspace, with one batch file per working mode written into its
/// batches folder (`demo-x509-csr.toml`, ...).
pub fn demo_station(
    workspace: Arc<DemoWorkspace>,
    options: DemoDeskOptions,
) -> Result<StationHandle, DemoError> {
    let dir = &workspace.station.desk.batches;
    std::fs::create_dir_all(dir).map_err(|e| DemoError {
        what: format!("batches folder {}", dir.display()),
        message: e.to_string(),
    })?;
    let run = RunOptions {
        devices: options.devices,
        ..RunOptions::default()
    };
    for mode in Mode::WORKING {
        let name = format!("demo-{mode}");
        let text = workspace.batch_toml(mode, &name, &run);
        std::fs::write(dir.join(format!("{name}.toml")), text).map_err(|e| DemoError {
            what: format!("batch file {name}"),
            message: e.to_string(),
        })?;
    }
    let mut station = workspace.station.clone();
    station.desk.roles = options.roles.clone();
    station.officer = options.officer.clone();
    // The virtual fixture is built as two rows of four, like the line's 8-slot jigs.
    station.desk.columns = Some(options.slots.clamp(1, 4));
    Ok(StationHandle::open(
        station,
        Box::new(DemoProvider { workspace, options }),
    ))
}
