//! A whole station in a temporary workspace, with no hardware and no cloud account: the DPS
//! emulator, a virtual fixture of simulated devices on pseudo-terminals, a key store (a SoftHSM2
//! token when the module is installed, else the software store, said loudly), a ledger. It runs a
//! batch of each working mode and proves every device registers through the emulator's device API
//! with the credentials it stored. `dps-station demo`, the tests and `bench line` use it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use base64::Engine as _;
use base64::prelude::BASE64_STANDARD;
use p256::pkcs8::{EncodePrivateKey, LineEnding};

use super::config::{
    BatchConfig, DpsTarget, KeyRef, KeyStoreConfig, Mode, SecretSource, StationConfig,
};
use super::engine::{Engine, EngineSetup, RunSummary};
use super::events::Event;
use super::keys::StationKeys;
use super::source::{DeviceSource, SimulatedRecord, VirtualFixture};
use crate::device::simulator::{Flash, SimOptions};
use crate::device::{ClientOptions, FixtureMap};
use crate::dps::payload::{self, EnrollmentSettings};
use crate::dps::retry::RetryPolicy;
use crate::dps::{ConnectionString, DpsClient, DpsClientConfig, TlsTrust};
use crate::emulator::device_client::{DeviceCredential, DeviceRegistration, register};
use crate::emulator::mqtt_device::{MqttEndpoint, first_contact};
use crate::emulator::{Emulator, EmulatorConfig, RunningEmulator};
use crate::identity::issue;
use crate::identity::profile::CaProfile;
use crate::keystore::KeyStore;
use crate::keystore::pkcs11::token::find_slot_where;
use crate::keystore::pkcs11::{Pkcs11Config, Pkcs11KeyStore, TokenSelector, shared_context};
use crate::keystore::profile::HsmProfile;
use crate::keystore::software_store::SoftwareKeyStore;
use crate::secret::{SecretBytes, SecretString};

/// Where SoftHSM2's module is on Debian.
pub const SOFTHSM_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
const SO_PIN: &str = "demo-so-pin";
/// The user PIN of demo tokens (throwaway tokens in a temporary directory).
pub const USER_PIN: &str = "demo-user-pin";
const GROUP_NAME: &str = "demo-symmetric-group";
const X509_GROUP_NAME: &str = "demo-x509-group";

/// Why the demo workspace could not be built or a run failed; says which part.
#[derive(Debug, thiserror::Error)]
#[error("demo: {what}: {message}")]
pub struct DemoError {
    /// Which part.
    pub what: String,
    /// What happened.
    pub message: String,
}

fn err<E: std::fmt::Display>(what: &str) -> impl FnOnce(E) -> DemoError + '_ {
    move |e| DemoError {
        what: what.to_string(),
        message: e.to_string(),
    }
}

/// Which key store to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStoreChoice {
    /// SoftHSM2 if its module is installed, else software.
    Auto,
    /// SoftHSM2 (an error if the module is missing).
    SoftHsm,
    /// Files.
    Software,
}

/// The process-wide SoftHSM2 configuration: SoftHSM2 reads `SOFTHSM2_CONF` once, at
/// `C_Initialize`, so every workspace of a process shares one token directory.
fn softhsm_dir() -> Result<&'static Path, DemoError> {
    static DIR: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("dps-station-softhsm-{}-{:08x}", std::process::id(), rand::random::<u32>()));
        let tokens = dir.join("tokens");
        std::fs::create_dir_all(&tokens).map_err(|e| e.to_string())?;
        let conf = dir.join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!("directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n", tokens.display()),
        )
        .map_err(|e| e.to_string())?;
        // SAFETY: set once, before this process loads the PKCS#11 module (which reads it in
        // C_Initialize); no other code of the station reads or writes this variable.
        unsafe { std::env::set_var("SOFTHSM2_CONF", &conf) };
        Ok(dir)
    });
    dir.as_deref().map_err(|m| DemoError {
        what: "SoftHSM2 configuration".into(),
        message: m.clone(),
    })
}

/// Removes the process-wide SoftHSM2 token directory (call once, at the end of the process).
pub fn remove_softhsm_dir() {
    if let Ok(dir) = softhsm_dir() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// Makes a new token on SoftHSM2's free slot with the demo PINs ([`USER_PIN`]); returns its
/// label. Tests of the officer's screen make one per test this way.
pub fn fresh_token() -> Result<String, DemoError> {
    static N: AtomicUsize = AtomicUsize::new(0);
    static INIT: Mutex<()> = Mutex::new(());
    softhsm_dir()?;
    let label = format!(
        "demo-{}-{}",
        std::process::id() % 100_000,
        N.fetch_add(1, Ordering::SeqCst)
    );
    let _guard = INIT.lock().unwrap_or_else(|e| e.into_inner());
    let e = err("SoftHSM2 token");
    let ctx = shared_context(Path::new(SOFTHSM_MODULE)).map_err(err("SoftHSM2 module"))?;
    use cryptoki::session::UserType;
    use cryptoki::types::AuthPin;
    let free = find_slot_where(&ctx, Path::new(SOFTHSM_MODULE), 50, |t| {
        !t.token_initialized()
    })
    .map_err(err("SoftHSM2 slots"))?
    .ok_or_else(|| DemoError {
        what: "SoftHSM2".into(),
        message: "no free slot".into(),
    })?;
    ctx.init_token(free, &AuthPin::from(SO_PIN.to_owned()), &label)
        .map_err(err("SoftHSM2 init token"))?;
    // SoftHSM2 renumbers slots after C_InitToken: find the token by its label.
    let slot = find_slot_where(&ctx, Path::new(SOFTHSM_MODULE), 50, |t| {
        t.token_initialized() && t.label().trim_end() == label
    })
    .map_err(err("SoftHSM2 slots"))?
    .ok_or_else(|| DemoError {
        what: "SoftHSM2".into(),
        message: format!("token {label} vanished"),
    })?;
    let session = ctx.open_rw_session(slot).map_err(err("SoftHSM2 session"))?;
    session
        .login(UserType::So, Some(&AuthPin::from(SO_PIN.to_owned())))
        .map_err(err("SoftHSM2 SO login"))?;
    session
        .init_pin(&AuthPin::from(USER_PIN.to_owned()))
        .map_err(e)?;
    let _ = session.logout();
    Ok(label)
}

/// The keys of a demo workspace.
struct DemoKeys {
    keys: StationKeys,
    ca_key: KeyRef,
    group_key: KeyRef,
    master: KeyRef,
    chain_pem: String,
    root_pem: String,
    group_key_b64: SecretString,
    keystore: KeyStoreConfig,
}

fn hsm_keys(dir: &Path) -> Result<DemoKeys, DemoError> {
    let label = fresh_token()?;
    let profile = HsmProfile::built_in("softhsm2").map_err(err("HSM profile"))?;
    let config = Pkcs11Config {
        profile,
        module: Some(PathBuf::from(SOFTHSM_MODULE)),
        token: TokenSelector::Label(label.clone()),
        sessions: Some(8),
    };
    let store = Pkcs11KeyStore::open(&config, SecretString::new(USER_PIN))
        .map_err(err("SoftHSM2 login"))?;
    let root = store
        .generate_ec_p256("demo-root-ca", b"root")
        .map_err(err("root CA key"))?;
    let inter = store
        .generate_ec_p256("demo-intermediate-ca", b"inter")
        .map_err(err("intermediate CA key"))?;
    let master = store
        .generate_secret("demo-device-master", b"master", 32)
        .map_err(err("device key master"))?;
    let group_bytes: [u8; 32] = rand::random();
    let group_key_b64 = SecretString::new(BASE64_STANDARD.encode(group_bytes));
    let group = store
        .import_secret(
            "demo-group-key",
            b"group",
            &SecretBytes::new(group_bytes.to_vec()),
        )
        .map_err(err("group key import"))?;
    let root_signer = store.signer(&root).map_err(err("root signer"))?;
    let inter_pub = store
        .public_key_sec1(&inter)
        .map_err(err("intermediate key"))?;
    let (chain_pem, root_pem) = make_chain(root_signer.as_ref(), &inter_pub)?;
    std::fs::write(dir.join("ca-chain.pem"), &chain_pem).map_err(err("CA chain file"))?;
    Ok(DemoKeys {
        keys: StationKeys::Hsm(store as Arc<dyn KeyStore>),
        ca_key: KeyRef::Pkcs11(inter),
        group_key: KeyRef::Pkcs11(group),
        master: KeyRef::Pkcs11(master),
        chain_pem,
        root_pem,
        group_key_b64,
        keystore: KeyStoreConfig::Pkcs11 {
            profile: "softhsm2".into(),
            token_label: label,
            module: Some(PathBuf::from(SOFTHSM_MODULE)),
            sessions: Some(8),
            pin_file: None,
        },
    })
}

fn software_keys(dir: &Path) -> Result<DemoKeys, DemoError> {
    let keys_dir = dir.join("software-keys");
    std::fs::create_dir_all(&keys_dir).map_err(err("software key directory"))?;
    // The same store and file layout a station's `kind = "software"` key store reads.
    let store = SoftwareKeyStore::open(&keys_dir).map_err(err("software key store"))?;
    let root_uri = store
        .generate_ec_p256("root", &[1])
        .map_err(err("root CA key"))?;
    let root = store.signer(&root_uri).map_err(err("root CA key"))?;
    let inter_uri = store
        .generate_ec_p256("intermediate", &[2])
        .map_err(err("intermediate CA key"))?;
    let inter_pub = store
        .public_key_sec1(&inter_uri)
        .map_err(err("intermediate CA key"))?;
    let (chain_pem, root_pem) = make_chain(root.as_ref(), &inter_pub)?;
    let group_bytes: [u8; 32] = rand::random();
    let group_key_b64 = SecretString::new(BASE64_STANDARD.encode(group_bytes));
    store
        .import_secret("group", &[3], &SecretBytes::new(group_bytes.to_vec()))
        .map_err(err("group key file"))?;
    let master: [u8; 32] = rand::random();
    store
        .import_secret("master", &[4], &SecretBytes::new(master.to_vec()))
        .map_err(err("master key file"))?;
    std::fs::write(dir.join("ca-chain.pem"), &chain_pem).map_err(err("CA chain file"))?;
    Ok(DemoKeys {
        keys: StationKeys::Software(store),
        ca_key: KeyRef::File("intermediate.key.pem".into()),
        group_key: KeyRef::File("group.secret".into()),
        master: KeyRef::File("master.secret".into()),
        chain_pem,
        root_pem,
        group_key_b64,
        keystore: KeyStoreConfig::Software { dir: keys_dir },
    })
}

/// Root CA (self-signed) and an intermediate for `inter_pub`; returns (intermediate+root PEM, root PEM).
fn make_chain(
    root: &dyn crate::identity::signer::CaSigner,
    inter_pub: &[u8],
) -> Result<(String, String), DemoError> {
    let root_cert = issue::make_root_ca(
        &CaProfile::root("dps-station demo root CA").map_err(err("root profile"))?,
        root,
    )
    .map_err(err("root CA certificate"))?;
    let issuer = issue::Issuer::new(root_cert.der.clone(), root).map_err(err("root issuer"))?;
    let inter_cert = issue::make_intermediate_ca(
        &CaProfile::intermediate("dps-station demo intermediate CA")
            .map_err(err("intermediate profile"))?,
        inter_pub,
        &issuer,
    )
    .map_err(err("intermediate CA certificate"))?;
    Ok((
        format!("{}{}", inter_cert.pem(), root_cert.pem()),
        root_cert.pem(),
    ))
}

/// A whole station in a temporary directory.
pub struct DemoWorkspace {
    /// The directory (removed on drop).
    pub dir: PathBuf,
    /// The running emulator.
    pub emulator: RunningEmulator,
    /// The station config (ledger inside `dir`).
    pub station: StationConfig,
    keys: DemoKeys,
    client: Arc<DpsClient>,
}

/// One mode's run in the demo.
pub struct ModeRun {
    /// The mode.
    pub mode: Mode,
    /// The engine's summary.
    pub summary: RunSummary,
    /// The simulated devices, with what they hold.
    pub devices: Vec<SimulatedRecord>,
    /// Every event, in order.
    pub events: Vec<Event>,
}

/// How a run's devices are simulated.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Devices in the batch.
    pub devices: u64,
    /// Slots of the virtual fixture.
    pub slots: usize,
    /// Simulator options (faults, baud).
    pub sim: SimOptions,
    /// Enrollment timing (`immediately`, `batch-end`, `offline`).
    pub timing: &'static str,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            devices: 8,
            slots: 8,
            sim: SimOptions::default(),
            timing: "immediately",
        }
    }
}

impl DemoWorkspace {
    /// Builds the workspace: emulator, key store, CA chain, groups in DPS, station config.
    pub fn create(choice: KeyStoreChoice) -> Result<Self, DemoError> {
        Self::create_with_emulator(
            choice,
            EmulatorConfig {
                // The local IoT hub's devices connect here (issue 13): port from the OS.
                mqtt: Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0))),
                ..EmulatorConfig::loopback()
            },
        )
    }

    /// [`DemoWorkspace::create`] with an emulator of the given config: tests use it to give the
    /// emulator a low quota so that a batch really meets 429s.
    #[doc(hidden)]
    pub fn create_with_emulator(
        choice: KeyStoreChoice,
        emulator_config: EmulatorConfig,
    ) -> Result<Self, DemoError> {
        let softhsm = Path::new(SOFTHSM_MODULE).exists();
        let use_hsm = match choice {
            KeyStoreChoice::Auto => softhsm,
            KeyStoreChoice::SoftHsm if !softhsm => {
                return Err(DemoError {
                    what: "SoftHSM2".into(),
                    message: format!("{SOFTHSM_MODULE} is missing; install the softhsm2 package"),
                });
            }
            KeyStoreChoice::SoftHsm => true,
            KeyStoreChoice::Software => false,
        };
        if use_hsm {
            softhsm_dir()?;
        }
        let dir = std::env::temp_dir().join(format!(
            "dps-station-demo-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir).map_err(err("workspace directory"))?;
        let emulator = Emulator::start(emulator_config).map_err(err("DPS emulator"))?;
        let keys = if use_hsm {
            hsm_keys(&dir)?
        } else {
            software_keys(&dir)?
        };
        let ca_pem = emulator
            .ca_certificate_pem()
            .unwrap_or_default()
            .to_string();
        let connection = ConnectionString::parse(&emulator.connection_string())
            .map_err(err("emulator connection string"))?;
        let client = DpsClient::new(
            connection,
            DpsClientConfig {
                endpoint: Some(emulator.service_url()),
                tls: TlsTrust::only(ca_pem.clone().into_bytes()),
                // Short retries: on loopback a failed call is retried by the enrollment worker's
                // next round anyway, and a demo should not sit in backoff.
                retry: RetryPolicy {
                    max_attempts: 4,
                    base_delay: Duration::from_millis(50),
                    max_delay: Duration::from_secs(1),
                },
                ..DpsClientConfig::default()
            },
        )
        .map_err(err("DPS client"))?;
        // The symmetric group exists before the batch, as it would at a factory: its key was
        // made here, given to DPS and imported into the key store, and is dropped now.
        let group = payload::symmetric_key_group(
            GROUP_NAME,
            Some(keys.group_key_b64.clone()),
            None,
            &EnrollmentSettings {
                // The same initialTwin the demo batches carry, which the devices read on their hub.
                tags: Some(serde_json::Map::from_iter([(
                    "line".to_owned(),
                    "demo".into(),
                )])),
                desired_properties: Some(serde_json::Map::from_iter([(
                    "telemetry_interval_s".to_owned(),
                    DEMO_TELEMETRY_INTERVAL_S.into(),
                )])),
                ..EnrollmentSettings::default()
            },
        )
        .map_err(err("symmetric group payload"))?;
        client
            .create_group(&group)
            .map_err(err("creating the symmetric enrollment group"))?;
        std::fs::write(dir.join("emulator-ca.pem"), &ca_pem).map_err(err("emulator CA file"))?;
        let mut dps = std::collections::BTreeMap::new();
        dps.insert(
            "emulator".to_string(),
            DpsTarget {
                name: "emulator".into(),
                connection_string: SecretSource::Env("DPS_STATION_DEMO_CONNECTION_STRING".into()),
                endpoint: Some(emulator.service_url()),
                ca_file: Some(dir.join("emulator-ca.pem")),
                operations_per_minute: None,
            },
        );
        let station = StationConfig {
            path: dir.join("station.toml"),
            name: "demo-station".into(),
            operator: "demo".into(),
            ledger: dir.join("ledger.db"),
            reports: dir.join("reports"),
            fixture: FixtureMap::default(),
            keystore: keys.keystore.clone(),
            dps,
            desk: super::operator::settings::DeskSettings::resolve(
                &dir.join("station.toml"),
                &Default::default(),
                &Default::default(),
            ),
            officer: Default::default(),
            central: None,
        };
        Ok(Self {
            dir,
            emulator,
            station,
            keys,
            client: Arc::new(client),
        })
    }

    /// Points the `emulator` DPS target at an owner-only file in the workspace holding the
    /// emulator's connection string, as a station's `connection_string_file` would, so that the
    /// desk's engineer screens (enroll now, test the connection) reach the demo's DPS. Tests keep
    /// the unset environment variable, to see what a station without its secret says.
    pub fn keep_connection_string_in_file(&mut self) -> Result<(), DemoError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let path = self.dir.join("dps-connection-string");
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .map_err(err("DPS connection string file"))?;
        file.write_all(self.emulator.connection_string().expose().as_bytes())
            .map_err(err("DPS connection string file"))?;
        if let Some(target) = self.station.dps.get_mut("emulator") {
            target.connection_string = SecretSource::File(path);
        }
        Ok(())
    }

    /// Which key store the workspace uses, for the printout.
    pub fn keys_description(&self) -> String {
        self.keys.keys.describe()
    }

    /// The PKCS#11 key store, when the workspace uses SoftHSM2 (tests pull its plug).
    pub fn key_store(&self) -> Option<Arc<dyn KeyStore>> {
        match &self.keys.keys {
            StationKeys::Hsm(store) => Some(store.clone()),
            StationKeys::Software(_) => None,
        }
    }

    /// Whether the keys are in files.
    pub fn is_software(&self) -> bool {
        self.keys.keys.is_software()
    }

    /// The CA chain (intermediate, root) devices receive.
    pub fn chain_pem(&self) -> &str {
        &self.keys.chain_pem
    }

    /// The root CA certificate (PEM), the trust anchor of `openssl verify`.
    pub fn root_pem(&self) -> &str {
        &self.keys.root_pem
    }

    /// The DPS client the engine enrolls with.
    pub fn client(&self) -> Arc<DpsClient> {
        self.client.clone()
    }

    /// The batch file text of a mode.
    pub fn batch_toml(&self, mode: Mode, name: &str, options: &RunOptions) -> String {
        let mut keys = String::new();
        match mode {
            Mode::X509Csr | Mode::X509Group | Mode::X509Inject => {
                keys += &format!(
                    "ca_key = {:?}\nca_chain = {:?}\n",
                    self.keys.ca_key.to_string(),
                    self.dir.join("ca-chain.pem").display().to_string()
                );
            }
            Mode::SymmetricGroup => {
                keys += &format!("group_key = {:?}\n", self.keys.group_key.to_string())
            }
            Mode::SymmetricIndividual => {
                keys += &format!("device_key_master = {:?}\n", self.keys.master.to_string())
            }
            // The device's TPM holds its key already: nothing of the station's.
            Mode::Tpm => {}
        }
        let group = match mode {
            Mode::SymmetricGroup => format!("enrollment_group = {GROUP_NAME:?}\n"),
            Mode::X509Group => format!("enrollment_group = {X509_GROUP_NAME:?}\n"),
            _ => String::new(),
        };
        format!(
            "name = {name:?}\nproduct = \"demo\"\ncount = {}\nregistration_id = \"{{product}}-{mode}-{{serial}}\"\nmode = \"{mode}\"\nid_scope = {:?}\nglobal_endpoint = \"global.azure-devices-provisioning.net\"\ndps_target = \"emulator\"\nenrollment = {:?}\ncertificate_validity_days = 365\n{group}[initial_twin.tags]\nline = \"demo\"\n[initial_twin.desired]\ntelemetry_interval_s = {DEMO_TELEMETRY_INTERVAL_S}\n[keys]\n{keys}",
            options.devices,
            self.emulator.id_scope(),
            options.timing,
        )
    }

    /// An engine setup for a batch given as TOML text over the given device sources (tests drive
    /// real ports of simulated devices this way).
    pub fn engine_setup(
        &self,
        name: &str,
        batch_toml: &str,
        sources: Vec<(String, Box<dyn DeviceSource>)>,
    ) -> Result<EngineSetup, DemoError> {
        let batch = BatchConfig::from_toml(
            &self.dir.join(format!("{name}.toml")),
            batch_toml,
            &self.station,
        )
        .map_err(err("batch"))?;
        Ok(EngineSetup {
            station: self.station.clone(),
            batch,
            keys: self.keys.keys.clone(),
            dps: Some(self.client.clone()),
            sources,
        })
    }

    /// Runs one batch of `mode` on a virtual fixture; `on_event` sees every event as it comes.
    pub fn run_mode(
        &self,
        mode: Mode,
        name: &str,
        options: &RunOptions,
        on_event: &mut dyn FnMut(&Event),
    ) -> Result<ModeRun, DemoError> {
        let text = self.batch_toml(mode, name, options);
        let batch =
            BatchConfig::from_toml(&self.dir.join(format!("{name}.toml")), &text, &self.station)
                .map_err(err("batch"))?;
        let fixture = VirtualFixture::new(
            options.devices,
            options.sim.clone(),
            ClientOptions::default(),
        );
        let sources: Vec<(String, Box<dyn DeviceSource>)> = (1..=options.slots)
            .map(|i| {
                let slot = format!("S{i}");
                (
                    slot.clone(),
                    Box::new(fixture.slot(&slot)) as Box<dyn DeviceSource>,
                )
            })
            .collect();
        let engine = Engine::start(EngineSetup {
            station: self.station.clone(),
            batch,
            keys: self.keys.keys.clone(),
            dps: Some(self.client.clone()),
            sources,
        })
        .map_err(err("engine"))?;
        let mut events = Vec::new();
        for event in engine.events.iter() {
            on_event(&event);
            events.push(event);
        }
        let summary = engine.join().ok_or_else(|| DemoError {
            what: "engine".into(),
            message: "the batch thread panicked".into(),
        })?;
        Ok(ModeRun {
            mode,
            summary,
            devices: fixture.records(),
            events,
        })
    }

    /// Registers one simulated device through the emulator's device API with what its flash holds.
    pub fn register_device(&self, flash: &Flash) -> Result<String, DemoError> {
        let registration = device_registration(flash, &self.emulator)?;
        let assignment =
            register(&registration, Duration::from_secs(20)).map_err(err("device registration"))?;
        if assignment.status != "assigned" {
            return Err(DemoError {
                what: format!("device registration of '{}'", registration.registration_id),
                message: format!("status {}", assignment.status),
            });
        }
        Ok(assignment.assigned_hub.unwrap_or_default())
    }
}

/// The telemetry interval the demo batches put in their `initialTwin`: what each device then
/// reads from its hub twin.
pub const DEMO_TELEMETRY_INTERVAL_S: u32 = 60;

/// What one provisioned device did on its hub in the demo's last step.
#[derive(Debug, Clone)]
pub struct HubContact {
    /// The hub DPS assigned it.
    pub hub: String,
    /// Its device ID there.
    pub device_id: String,
    /// The desired properties it read from its twin (the batch's `initialTwin`).
    pub desired: serde_json::Value,
}

impl DemoWorkspace {
    /// The demo's end for one device (issue 13): it registers with the credential its flash
    /// holds, connects to the hub DPS assigned it over MQTT (X.509 client certificate, a SAS
    /// token from its key, or for TPM the key it activated), reads its twin and sends its first
    /// message, as its firmware would. Kept apart so the GUI demo can call it too.
    pub fn first_telemetry(&self, flash: &Flash) -> Result<HubContact, DemoError> {
        let registration = device_registration(flash, &self.emulator)?;
        let who = registration.registration_id.clone();
        let assignment =
            register(&registration, Duration::from_secs(20)).map_err(err("device registration"))?;
        let (Some(hub), Some(device_id)) = (assignment.assigned_hub, assignment.device_id) else {
            return Err(DemoError {
                what: format!("device registration of '{who}'"),
                message: format!("status {}, no hub assigned", assignment.status),
            });
        };
        let credential = match (registration.credential, assignment.tpm_hub_key) {
            (DeviceCredential::Tpm { .. }, Some(key)) => DeviceCredential::SymmetricKey(key),
            (credential, _) => credential,
        };
        let endpoint = MqttEndpoint {
            addr: self.emulator.mqtt_addr().ok_or_else(|| DemoError {
                what: "DPS emulator".into(),
                message: "it has no MQTT listener for the hub".into(),
            })?,
            server_name: "localhost".into(),
            trust_pem: self
                .emulator
                .ca_certificate_pem()
                .unwrap_or_default()
                .to_owned(),
        };
        let body = serde_json::json!({
            "serial": flash.serial,
            "registrationId": who,
            "message": "first telemetry after provisioning",
        });
        let twin = first_contact(
            &endpoint,
            &hub,
            &device_id,
            &credential,
            body.to_string().as_bytes(),
        )
        .map_err(err("hub telemetry"))?;
        Ok(HubContact {
            hub,
            device_id,
            desired: twin.get("desired").cloned().unwrap_or_default(),
        })
    }
}

impl Drop for DemoWorkspace {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What a simulated device would present to DPS, from its flash.
pub fn device_registration(
    flash: &Flash,
    emulator: &RunningEmulator,
) -> Result<DeviceRegistration, DemoError> {
    let config = flash.config.as_ref().ok_or_else(|| DemoError {
        what: "device".into(),
        message: format!("{} holds no config", flash.serial),
    })?;
    let field = |k: &str| {
        config
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let registration_id = field("regid");
    let id_scope = field("scope");
    let credential = if let Some(chain_b64) = &flash.chain {
        let chain = BASE64_STANDARD
            .decode(chain_b64)
            .map_err(err("device chain"))?;
        let scalar =
            hex::decode(flash.key.as_deref().unwrap_or_default()).map_err(err("device key"))?;
        let key = p256::SecretKey::from_slice(&scalar).map_err(err("device key"))?;
        let key_pem = key
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(err("device key"))?;
        DeviceCredential::X509 {
            chain_pem: String::from_utf8_lossy(&chain).into_owned(),
            key_pem: SecretString::new(key_pem.as_str()),
        }
    } else if let Some(sym) = &flash.symmetric_key {
        let bytes = hex::decode(sym).map_err(err("device symmetric key"))?;
        DeviceCredential::SymmetricKey(SecretString::new(BASE64_STANDARD.encode(bytes)))
    } else if let Some(ek) = &flash.tpm_ek {
        // The simulated TPM's EK private scalar: it answers the DPS TPM challenge.
        let scalar = hex::decode(ek).map_err(err("device TPM endorsement key"))?;
        DeviceCredential::Tpm {
            ek_scalar: SecretBytes::new(scalar),
        }
    } else {
        return Err(DemoError {
            what: "device".into(),
            message: format!("{} holds no credential", flash.serial),
        });
    };
    Ok(DeviceRegistration {
        endpoint: emulator.device_url(),
        id_scope,
        registration_id,
        credential,
        trust_pem: emulator.ca_certificate_pem().map(str::to_string),
        payload: None,
    })
}
