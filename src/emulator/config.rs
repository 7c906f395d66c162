//! What an emulator is asked to be: where it listens, which keys it holds, its limits and faults.
//!
//! One struct serves the CLI (`dps-station dps-emulator`) and tests that start it in-process.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::secret::SecretString;

/// The policy name every DPS instance has and every official sample uses.
pub const DEFAULT_POLICY_NAME: &str = "provisioningserviceowner";

/// The host name the emulator answers to in SAS tokens and shows in its connection string.
pub const DEFAULT_HOST_NAME: &str = "emulator.azure-devices-provisioning.net";

/// The local IoT hub's default host name: devices whose enrollment names no hub are assigned to
/// it, and `localhost` is what the device SDKs then connect to (the emulator's MQTT listener).
pub const DEFAULT_IOT_HUB: &str = "localhost";

/// Where the HTTPS certificate comes from.
#[derive(Debug, Clone, Default)]
pub enum TlsIdentity {
    /// A CA and a server certificate for `localhost`, `127.0.0.1` and the host name, made at start.
    #[default]
    Generate,
    /// A PEM certificate chain (server certificate first) and its PEM private key.
    Given {
        /// PEM chain, server certificate first.
        cert_chain_pem: String,
        /// PEM private key (PKCS#8, SEC1 or PKCS#1).
        key_pem: SecretString,
    },
}

/// The limits of a real instance (REFERENCE.md §5), configurable so that tests can reach them.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Service-API operations per minute (each HTTP request is one operation); `None` = unlimited.
    pub operations_per_minute: Option<u32>,
    /// Operations the rate bucket holds (a burst allowed at once); `None` = one minute's worth.
    pub operations_burst: Option<u32>,
    /// Device registrations per minute; `None` = unlimited.
    pub registrations_per_minute: Option<u32>,
    /// Items allowed in one bulk call (10 on the real service).
    pub max_bulk_items: usize,
    /// Individual enrollments one instance holds.
    pub max_individual_enrollments: usize,
    /// Enrollment groups with X.509 attestation.
    pub max_x509_groups: usize,
    /// Enrollment groups with symmetric-key attestation.
    pub max_symmetric_key_groups: usize,
    /// Device registration records.
    pub max_registrations: usize,
    /// Largest request body accepted (96 KB on the real service).
    pub max_message_bytes: usize,
    /// How long an MQTT client may take from the TLS handshake to its CONNECT before it is
    /// dropped (a client that never sends CONNECT holds no connection for long).
    pub mqtt_connect_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            operations_per_minute: None,
            operations_burst: None,
            registrations_per_minute: None,
            max_bulk_items: 10,
            max_individual_enrollments: 1_000_000,
            max_x509_groups: 100,
            max_symmetric_key_groups: 100,
            max_registrations: 1_000_000,
            max_message_bytes: 96 * 1024,
            mqtt_connect_timeout: Duration::from_secs(10),
        }
    }
}

impl Limits {
    /// The real service's default quotas: 1,000 operations and 1,000 registrations per minute.
    pub fn real_quota() -> Self {
        Self {
            operations_per_minute: Some(1000),
            registrations_per_minute: Some(1000),
            ..Self::default()
        }
    }
}

/// Faults injected on demand, so clients prove they survive a bad network and a sick service.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Faults {
    /// Share of requests (0.0–1.0) answered with 500 before they are processed.
    pub error_rate: f64,
    /// Share of requests whose connection is dropped without an answer: half of them before
    /// the request is processed, half after (so the operation may have landed).
    pub drop_rate: f64,
    /// Share of requests answered 200 with an HTML page instead of JSON (a misbehaving proxy),
    /// without being processed: a client must not take that for success.
    pub garbage_rate: f64,
    /// Share of requests answered late.
    pub slow_rate: f64,
    /// How late a slow answer comes.
    pub slow_delay: Duration,
}

impl Faults {
    /// Checks that every share is a probability, so a typo does not silently disable a fault.
    pub fn validate(&self) -> Result<(), String> {
        for (name, v) in [
            ("error rate", self.error_rate),
            ("drop rate", self.drop_rate),
            ("garbage rate", self.garbage_rate),
            ("slow rate", self.slow_rate),
        ] {
            if !(0.0..=1.0).contains(&v) || v.is_nan() {
                return Err(format!("the {name} must be between 0.0 and 1.0, got {v}"));
            }
        }
        Ok(())
    }
}

/// Everything an emulator is started with.
#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    /// Plain-HTTP listener (service and device API; X.509 device registration needs HTTPS).
    pub http: Option<SocketAddr>,
    /// HTTPS listener (service and device API, asks for client certificates).
    pub https: Option<SocketAddr>,
    /// MQTT-over-TLS listener (DPS registration and the local IoT hub, as the device SDKs use
    /// them); on 127.0.0.1 the same port on `::1` is served too, where it can be bound.
    pub mqtt: Option<SocketAddr>,
    /// The local IoT hub's host name (in the TLS certificate, the hub CONNECT username, SAS `sr`).
    pub hub_host_name: String,
    /// A Unix socket with plain HTTP: the Node service SDK only speaks plain HTTP over one.
    pub unix_socket: Option<PathBuf>,
    /// The HTTPS certificate.
    pub tls: TlsIdentity,
    /// Host name in the connection string and accepted as SAS `sr`.
    pub host_name: String,
    /// ID scope served by the device API; generated (`0ne` + 8 hex digits) when `None`.
    pub id_scope: Option<String>,
    /// Shared-access policy name.
    pub policy_name: String,
    /// Primary policy key (base64); generated when `None`.
    pub primary_key: Option<SecretString>,
    /// Secondary policy key (base64); generated when `None`.
    pub secondary_key: Option<SecretString>,
    /// IoT hubs linked to the instance; empty = any hub an enrollment names is accepted.
    pub iot_hubs: Vec<String>,
    /// Quotas and rates.
    pub limits: Limits,
    /// Faults at start; change them later with `RunningEmulator::set_faults`.
    pub faults: Faults,
    /// JSON file the state is kept in across restarts.
    pub state_file: Option<PathBuf>,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        Self {
            http: None,
            https: None,
            mqtt: None,
            hub_host_name: DEFAULT_IOT_HUB.to_owned(),
            unix_socket: None,
            tls: TlsIdentity::Generate,
            host_name: DEFAULT_HOST_NAME.to_owned(),
            id_scope: None,
            policy_name: DEFAULT_POLICY_NAME.to_owned(),
            primary_key: None,
            secondary_key: None,
            iot_hubs: Vec::new(),
            limits: Limits::default(),
            faults: Faults::default(),
            state_file: None,
        }
    }
}

impl EmulatorConfig {
    /// Plain HTTP and HTTPS on 127.0.0.1 with ports the OS picks: what tests want.
    pub fn loopback() -> Self {
        let any: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 0));
        Self {
            http: Some(any),
            https: Some(any),
            ..Self::default()
        }
    }
}
