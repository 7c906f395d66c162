//! The station as one cloneable handle: it owns the signed-in operator and role, starts batches
//! with keys, DPS client and device sources from a [`BatchProvider`] (opened once, shared by every
//! batch), and fans the engine's events out, stamped, to any number of listeners, each of which
//! gets a snapshot first. Every command answers with a `Result`. The GUI draws from it and never
//! changes engine state itself; the engine, not a screen, decides what a role may do.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use super::line_view::{LineView, Stamped, StationEvent};
use super::roles::{self, Role, RoleError};
use crate::device::ClientOptions;
use crate::dps::{ConnectionString, DpsClient, DpsClientConfig, TlsTrust};
use crate::identity::registration_id::IdUse;
use crate::identity::template::TemplateValues;
use crate::station::config::{
    BatchConfig, BatchSize, ConfigError, EnrollTiming, HSM_PIN_ENV, StationConfig,
};
use crate::station::engine::{Engine, EngineError, EngineSetup};
use crate::station::events::Command;
use crate::station::keys::{KeysError, StationKeys};
use crate::station::lease_gate::LeaseSetup;
use crate::station::report;
use crate::station::source::{DeviceSource, PortSource};

/// Why a station command was refused; each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum StationError {
    /// A role question.
    #[error(transparent)]
    Role(#[from] RoleError),
    /// A batch runs already.
    #[error("batch {0} is running; close it before starting another")]
    BatchRunning(String),
    /// No batch runs.
    #[error("no batch is running; start one first")]
    NoBatch,
    /// A name that cannot be signed in.
    #[error("sign in with your name or badge (an empty name was given)")]
    EmptyName,
    /// The batch file.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The key store.
    #[error(transparent)]
    Keys(#[from] KeysError),
    /// The batch could not start.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The DPS target.
    #[error("DPS target '{target}': {message}")]
    Dps {
        /// Target name.
        target: String,
        /// What is wrong and what to do.
        message: String,
    },
    /// A provider-specific problem (the demo's workspace).
    #[error("{0}")]
    Provider(String),
    /// The batch's engine ended while a command was sent.
    #[error("the batch has just ended; nothing to {0}")]
    Ended(&'static str),
}

/// What the operator can tell a running batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchCommand {
    /// Take no new device; devices in the slots finish.
    Pause,
    /// Take devices again.
    Resume,
    /// Finish devices in the slots, then end the run.
    Close,
}

/// Gives a batch what the engine needs: keys, DPS client and a device source per slot. The real
/// station's is [`FixtureProvider`]; the demo's runs simulated devices.
pub trait BatchProvider: Send + Sync {
    /// Everything the engine needs to run `batch` on `station`.
    fn setup(
        &self,
        station: &StationConfig,
        batch: BatchConfig,
    ) -> Result<EngineSetup, StationError>;

    /// The leases `batch` runs on when the station is joined to a central ledger (`None`: not
    /// joined, no lease gate).
    fn leases(
        &self,
        _station: &StationConfig,
        _batch: &BatchConfig,
    ) -> Result<Option<LeaseSetup>, StationError> {
        Ok(None)
    }
}

/// The real fixture: ports from station.toml, the key store opened once (PIN from
/// `DPS_STATION_HSM_PIN`), one DPS client per target, kept for every later batch.
#[derive(Default)]
pub struct FixtureProvider {
    keys: Mutex<Option<StationKeys>>,
    dps: Mutex<BTreeMap<String, Arc<DpsClient>>>,
}

impl BatchProvider for FixtureProvider {
    fn setup(
        &self,
        station: &StationConfig,
        batch: BatchConfig,
    ) -> Result<EngineSetup, StationError> {
        let keys = {
            let mut k = lock(&self.keys);
            match &*k {
                Some(keys) => keys.clone(),
                None => {
                    let keys = StationKeys::open_unattended(&station.keystore)?;
                    *k = Some(keys.clone());
                    keys
                }
            }
        };
        let dps = if batch.timing == EnrollTiming::Offline {
            None
        } else {
            let mut clients = lock(&self.dps);
            match clients.get(&batch.dps_target) {
                Some(c) => Some(c.clone()),
                None => {
                    let c = Arc::new(connect_dps(station, &batch.dps_target)?);
                    clients.insert(batch.dps_target.clone(), c.clone());
                    Some(c)
                }
            }
        };
        let sources = station
            .fixture
            .slots
            .iter()
            .map(|(slot, path)| {
                (
                    slot.clone(),
                    Box::new(PortSource::new(path.clone(), ClientOptions::default()))
                        as Box<dyn DeviceSource>,
                )
            })
            .collect();
        Ok(EngineSetup {
            station: station.clone(),
            batch,
            keys,
            dps,
            sources,
        })
    }
}

/// The DPS service client for a target of station.toml (connection string from its secret
/// source, TLS trust from its CA file or the platform).
pub fn connect_dps(station: &StationConfig, target: &str) -> Result<DpsClient, StationError> {
    connect_dps_tuned(station, target, |_| {})
}

/// [`connect_dps`] with the client's settings adjusted by `tune` (a one-attempt reachability
/// probe, for instance).
pub fn connect_dps_tuned(
    station: &StationConfig,
    target: &str,
    tune: impl FnOnce(&mut DpsClientConfig),
) -> Result<DpsClient, StationError> {
    let dps_err = |message: String| StationError::Dps {
        target: target.to_string(),
        message,
    };
    let t = station.dps.get(target).ok_or_else(|| {
        dps_err(format!(
            "not in {}; add a [dps.{target}] section or name another target in the batch",
            station.path.display()
        ))
    })?;
    let secret = t
        .connection_string
        .fetch(&format!("the connection string of DPS target '{target}'"))?;
    let connection = ConnectionString::parse(&secret).map_err(|e| dps_err(e.to_string()))?;
    let tls = match &t.ca_file {
        Some(path) => TlsTrust::only(
            std::fs::read(path)
                .map_err(|e| dps_err(format!("cannot read the CA file {}: {e}", path.display())))?,
        ),
        None => TlsTrust::platform(),
    };
    let mut config = DpsClientConfig {
        endpoint: t.endpoint.clone(),
        tls,
        ..DpsClientConfig::default()
    };
    if let Some(opm) = t.operations_per_minute {
        config.operations_per_minute = opm;
    }
    tune(&mut config);
    DpsClient::new(connection, config).map_err(|e| dps_err(e.to_string()))
}

/// What a batch file will do, shown before it starts; `problems` empty means it may start.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchPreview {
    /// The file.
    pub path: PathBuf,
    /// Batch name.
    pub name: String,
    /// Product.
    pub product: String,
    /// Mode (`x509-csr`, ...).
    pub mode: String,
    /// `count 500` or `serials A..B`.
    pub size: String,
    /// A registration ID made from the template for a sample serial.
    pub sample_id: String,
    /// DPS target name and endpoint.
    pub dps_target: String,
    /// Key URIs the batch uses.
    pub keys: Vec<String>,
    /// ID scope written into devices.
    pub id_scope: String,
    /// Serials come from the devices' labels, scanned by the operator (`serial_from = "label"`).
    pub serials_from_labels: bool,
    /// What stops it from starting.
    pub problems: Vec<String>,
}

/// Reads a batch file for the picker: what it will do, or why it cannot start.
pub fn preview(station: &StationConfig, path: &Path) -> Result<BatchPreview, ConfigError> {
    let batch = BatchConfig::load(path, station)?;
    let mut problems = Vec::new();
    let sample_serial = match &batch.size {
        BatchSize::SerialRange { first, .. } => first.clone(),
        BatchSize::Count(_) => "SN000123".to_string(),
    };
    let sample_id = match batch.template.render(
        &TemplateValues {
            product: Some(&batch.product),
            serial: Some(&sample_serial),
            model: batch.model.as_deref().or(Some("model")),
            hardware_id: Some("0011223344556677"),
            device_suggestion: Some("device"),
        },
        if batch.mode.is_x509() {
            IdUse::X509CommonName
        } else {
            IdUse::Any
        },
    ) {
        Ok(id) => format!("{id}  ({sample_serial})"),
        Err(e) => {
            problems.push(e.to_string());
            String::new()
        }
    };
    let dps_target = match station.dps.get(&batch.dps_target) {
        Some(t) => format!(
            "{} ({})",
            t.name,
            t.endpoint
                .as_deref()
                .unwrap_or("from the connection string")
        ),
        None if batch.timing == EnrollTiming::Offline => format!("{} (offline)", batch.dps_target),
        None => {
            problems.push(format!(
                "DPS target '{}' is not in {}",
                batch.dps_target,
                station.path.display()
            ));
            batch.dps_target.clone()
        }
    };
    let keys = [&batch.ca_key, &batch.group_key, &batch.device_key_master]
        .into_iter()
        .flatten()
        .map(|k| k.to_string())
        .collect();
    Ok(BatchPreview {
        path: path.to_path_buf(),
        name: batch.name.clone(),
        product: batch.product.clone(),
        mode: batch.mode.as_str().to_string(),
        size: match &batch.size {
            BatchSize::Count(n) => format!("{n}"),
            BatchSize::SerialRange { first, last } => format!("{first} … {last}"),
        },
        sample_id,
        dps_target,
        keys,
        id_scope: batch.id_scope.clone(),
        serials_from_labels: batch.serial_from == crate::station::labels::SerialFrom::Label,
        problems,
    })
}

/// The station as the desk drives it. Cheap to clone; every clone is the same station.
#[derive(Clone)]
pub struct StationHandle {
    inner: Arc<Inner>,
}

struct Inner {
    config: StationConfig,
    provider: Box<dyn BatchProvider>,
    state: Mutex<State>,
}

type Waker = Arc<dyn Fn() + Send + Sync>;

struct Listener {
    tx: Sender<Stamped<StationEvent>>,
    wake: Option<Waker>,
}

struct State {
    view: LineView,
    seq: u64,
    listeners: Vec<Listener>,
    operator: Option<String>,
    role: Role,
    running: Option<(String, Sender<Command>)>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A listener that panicked mid-update leaves a usable view; keep the station going.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl StationHandle {
    /// A station over `config` whose batches get their keys, DPS and devices from `provider`.
    pub fn open(config: StationConfig, provider: Box<dyn BatchProvider>) -> Self {
        Self {
            inner: Arc::new(Inner {
                config,
                provider,
                state: Mutex::new(State {
                    view: LineView::default(),
                    seq: 0,
                    listeners: Vec::new(),
                    operator: None,
                    role: Role::Operator,
                    running: None,
                }),
            }),
        }
    }

    /// The station's configuration.
    pub fn config(&self) -> &StationConfig {
        &self.inner.config
    }

    /// The line as it is now, and every event after it; `wake` is called after each event is
    /// queued (the GUI passes `request_repaint`).
    pub fn subscribe(&self, wake: Option<Waker>) -> (LineView, Receiver<Stamped<StationEvent>>) {
        let (tx, rx) = mpsc::channel();
        let mut s = lock(&self.inner.state);
        s.listeners.push(Listener { tx, wake });
        (s.view.clone(), rx)
    }

    fn publish(&self, event: StationEvent) {
        let mut s = lock(&self.inner.state);
        s.seq += 1;
        let stamped = Stamped {
            seq: s.seq,
            at: SystemTime::now(),
            event,
        };
        s.view.apply(&stamped);
        s.listeners.retain(|l| {
            let alive = l.tx.send(stamped.clone()).is_ok();
            if let (true, Some(w)) = (alive, &l.wake) {
                w();
            }
            alive
        });
    }

    /// Publishes `event` as if the engine had sent it: `bench gui` feeds the desk a measured
    /// event rate this way, without devices.
    #[doc(hidden)]
    pub fn inject(&self, event: StationEvent) {
        self.publish(event);
    }

    /// Refuses unless someone is signed in with a role that allows what needs `least`: the
    /// engineer's and officer's screens ask this before each action, so a screen cannot grant
    /// what the station has not.
    pub fn require(&self, least: Role) -> Result<(), StationError> {
        let s = lock(&self.inner.state);
        if s.operator.is_none() {
            return Err(RoleError::NotSignedIn.into());
        }
        if s.role.allows(least) {
            Ok(())
        } else {
            Err(RoleError::NotUnlocked {
                role: least.as_str(),
            }
            .into())
        }
    }

    /// Who is signed in, and in which role.
    pub fn operator(&self) -> (Option<String>, Role) {
        let s = lock(&self.inner.state);
        (s.operator.clone(), s.role)
    }

    /// Signs `name` in as operator (a badge scan resolves to a name first). The next batch run
    /// records them as the operator of every device it writes.
    pub fn sign_in(&self, name: &str) -> Result<(), StationError> {
        let name = name.trim();
        if name.is_empty() {
            return Err(StationError::EmptyName);
        }
        {
            let mut s = lock(&self.inner.state);
            s.operator = Some(name.to_string());
            s.role = Role::Operator;
            // A shift change mid-batch: the devices from now on are recorded with the new name.
            if let Some((_, tx)) = &s.running {
                let _ = tx.send(Command::SetOperator(name.to_string()));
            }
        }
        tracing::info!(operator = name, "signed in");
        self.publish(StationEvent::Operator {
            name: Some(name.to_string()),
            role: Role::Operator,
        });
        Ok(())
    }

    /// Signs the current person out (the role falls back to operator).
    pub fn sign_out(&self) {
        {
            let mut s = lock(&self.inner.state);
            s.operator = None;
            s.role = Role::Operator;
        }
        self.publish(StationEvent::Operator {
            name: None,
            role: Role::Operator,
        });
    }

    /// Takes `role` for the signed-in person if station.toml lists them and the password
    /// matches; going back to operator needs no password.
    pub fn unlock(&self, role: Role, password: &str) -> Result<(), StationError> {
        let name = lock(&self.inner.state)
            .operator
            .clone()
            .ok_or(RoleError::NotSignedIn)?;
        if let Err(e) = roles::check_unlock(&self.inner.config.desk.roles, &name, role, password) {
            tracing::warn!(operator = %name, role = role.as_str(), "role refused: {e}");
            return Err(e.into());
        }
        lock(&self.inner.state).role = role;
        tracing::info!(operator = %name, role = role.as_str(), "role taken");
        self.publish(StationEvent::Operator {
            name: Some(name),
            role,
        });
        Ok(())
    }

    /// The batch files of the station's batches folder, sorted.
    pub fn batch_files(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&self.inner.config.desk.batches)
            .map(|d| {
                d.filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        files
    }

    /// What the batch file will do, or why it cannot start.
    pub fn preview(&self, path: &Path) -> Result<BatchPreview, ConfigError> {
        preview(&self.inner.config, path)
    }

    /// Starts the batch in `path` with the signed-in operator recorded on its devices.
    pub fn start_batch(&self, path: &Path) -> Result<String, StationError> {
        let operator = lock(&self.inner.state)
            .operator
            .clone()
            .ok_or(RoleError::NotSignedIn)?;
        if let Some((name, _)) = &lock(&self.inner.state).running {
            return Err(StationError::BatchRunning(name.clone()));
        }
        let p = self.preview(path)?;
        if let Some(problem) = p.problems.first() {
            return Err(StationError::Provider(format!(
                "{}: {problem}",
                path.display()
            )));
        }
        let mut station = self.inner.config.clone();
        station.operator = operator;
        let batch = BatchConfig::load(path, &station)?;
        let name = batch.name.clone();
        let target = batch.target();
        let leases = self.inner.provider.leases(&station, &batch)?;
        let setup = self.inner.provider.setup(&station, batch)?;
        let slots: Vec<String> = setup.sources.iter().map(|(s, _)| s.clone()).collect();
        let keys_description = setup.keys.describe();
        let engine = match leases {
            Some(leases) => Engine::start_leased(setup, leases)?,
            None => Engine::start(setup)?,
        };
        lock(&self.inner.state).running = Some((name.clone(), engine.commands()));
        self.publish(StationEvent::BatchStarted {
            name: name.clone(),
            target,
            slots,
        });
        let me = self.clone();
        let batch_name = name.clone();
        let pump = move || {
            for event in engine.events.iter() {
                me.publish(StationEvent::Engine(event));
            }
            let (report, problem) = match engine.join() {
                Some(summary) => match report::write(
                    &station.reports,
                    &batch_name,
                    &station.name,
                    &keys_description,
                    &summary,
                ) {
                    Ok((md, _)) => (Some(md.display().to_string()), None),
                    Err(e) => (
                        None,
                        Some(format!(
                            "the report could not be written under {}: {e}",
                            station.reports.display()
                        )),
                    ),
                },
                None => (
                    None,
                    Some(
                        "the batch thread stopped unexpectedly; run the batch again to resume it"
                            .into(),
                    ),
                ),
            };
            lock(&me.inner.state).running = None;
            me.publish(StationEvent::BatchEnded { report, problem });
        };
        std::thread::Builder::new()
            .name("station-events".into())
            .spawn(pump)
            .map_err(|source| EngineError::Thread {
                what: "station events".into(),
                source,
            })?;
        Ok(name)
    }

    /// Pause, resume or close the running batch.
    pub fn batch(&self, command: BatchCommand) -> Result<(), StationError> {
        let s = lock(&self.inner.state);
        let (_, tx) = s.running.as_ref().ok_or(StationError::NoBatch)?;
        let (c, what) = match command {
            BatchCommand::Pause => (Command::Pause, "pause"),
            BatchCommand::Resume => (Command::Resume, "resume"),
            BatchCommand::Close => (Command::Close, "close"),
        };
        tx.send(c).map_err(|_| StationError::Ended(what))
    }

    /// A device label was scanned for a slot that waits for one: the engine gives it to the
    /// slot that has waited longest (or says why not, as an event).
    pub fn label(&self, serial: &str) -> Result<(), StationError> {
        let s = lock(&self.inner.state);
        let (_, tx) = s.running.as_ref().ok_or(StationError::NoBatch)?;
        tx.send(Command::Label(serial.to_string()))
            .map_err(|_| StationError::Ended("take a label"))
    }

    /// Whether a batch is running, and its name.
    pub fn running(&self) -> Option<String> {
        lock(&self.inner.state)
            .running
            .as_ref()
            .map(|(n, _)| n.clone())
    }

    /// The environment variable the key store's PIN comes from (shown when the key store refuses).
    pub fn pin_source(&self) -> &'static str {
        HSM_PIN_ENV
    }
}
