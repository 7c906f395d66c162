//! A local Azure IoT Hub Device Provisioning Service, close enough to the real one that the
//! official service SDKs work against it unchanged: the 15 operations of the service API (2021-10-01),
//! SAS verification, quotas, throttling, injected faults, a state file, and the device
//! registration API with X.509, symmetric-key and TPM (ECC P-256 EK) attestation. Factory test
//! benches have no route to Azure; this is what the station's client and its tests talk to instead.
//!
//! It runs on its own tokio runtime and threads, so blocking callers and tests use it directly:
//! `Emulator::start(EmulatorConfig::loopback())`.

mod api_error;
mod app;
mod ca_registry;
mod certinfo;
mod clock;
mod config;
mod device_api;
pub mod device_client;
mod enrollment;
mod error;
pub mod hub;
mod hub_api;
mod ids;
mod limits;
pub mod mqtt;
pub mod mqtt_device;
mod paging;
mod persistence;
mod routes;
pub mod sas;
mod server;
mod service_api;
mod store;
mod tls;
pub mod tpm_credential;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use axum::Router;
use serde_json::Value;
use tokio::sync::{Notify, watch};

pub use config::{
    DEFAULT_HOST_NAME, DEFAULT_IOT_HUB, DEFAULT_POLICY_NAME, EmulatorConfig, Faults, Limits,
    TlsIdentity,
};
pub use error::EmulatorError;

use app::App;
use limits::RateLimiter;
use store::State;

use crate::secret::SecretString;

/// Starts emulators.
pub struct Emulator;

/// A running emulator; dropping it shuts it down.
pub struct RunningEmulator {
    runtime: Option<tokio::runtime::Runtime>,
    app: Arc<App>,
    http: Option<SocketAddr>,
    https: Option<SocketAddr>,
    mqtt: Option<SocketAddr>,
    unix_socket: Option<PathBuf>,
    trust_pem: Option<String>,
    shutdown: watch::Sender<bool>,
}

fn generate_scope() -> String {
    let mut bytes = [0u8; 4];
    rand::fill(&mut bytes);
    format!("0ne{}", hex::encode_upper(bytes))
}

/// The linked hubs: the configured ones plus the local hub, which is always linked; none
/// configured keeps "any hub an enrollment names".
fn linked_hubs(config: &EmulatorConfig) -> Vec<String> {
    let mut hubs = config.iot_hubs.clone();
    if !hubs.is_empty()
        && !hubs
            .iter()
            .any(|h| h.eq_ignore_ascii_case(&config.hub_host_name))
    {
        hubs.push(config.hub_host_name.clone());
    }
    hubs
}

fn loopback_if_unspecified(addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], addr.port()))
    } else {
        addr
    }
}

impl Emulator {
    /// Binds the listeners, loads the state file and starts serving on a runtime of its own.
    pub fn start(config: EmulatorConfig) -> Result<RunningEmulator, EmulatorError> {
        if config.http.is_none()
            && config.https.is_none()
            && config.unix_socket.is_none()
            && config.mqtt.is_none()
        {
            return Err(EmulatorError::Config(
                "no listener: give an HTTP, HTTPS, MQTT or Unix-socket address".into(),
            ));
        }
        ids::validate_host_name(&config.hub_host_name).map_err(EmulatorError::Config)?;
        config.faults.validate().map_err(EmulatorError::Config)?;
        if config.limits.max_bulk_items == 0 {
            return Err(EmulatorError::Config(
                "the bulk limit must be at least 1".into(),
            ));
        }
        let mut state = match &config.state_file {
            Some(path) => persistence::load(path)?.unwrap_or_default(),
            None => State::default(),
        };
        let id_scope = match (&config.id_scope, state.id_scope.is_empty()) {
            (Some(s), _) => s.clone(),
            (None, false) => state.id_scope.clone(),
            (None, true) => generate_scope(),
        };
        state.id_scope = id_scope.clone();
        let keys = match (&config.primary_key, &config.secondary_key) {
            (Some(p), Some(s)) => [p.clone(), s.clone()],
            (Some(p), None) => [p.clone(), SecretString::new(enrollment::generate_key())],
            (None, _) => {
                let (p, s) = state
                    .generated_keys
                    .clone()
                    .unwrap_or_else(|| (enrollment::generate_key(), enrollment::generate_key()));
                state.generated_keys = Some((p.clone(), s.clone()));
                [SecretString::new(p), SecretString::new(s)]
            }
        };
        for (name, key) in [("primary", &keys[0]), ("secondary", &keys[1])] {
            if sas::sign(key.expose(), "check").is_none() {
                return Err(EmulatorError::Config(format!(
                    "the {name} policy key is not base64"
                )));
            }
        }

        let tls_material = match (config.https, config.mqtt) {
            (None, None) => None,
            _ => Some(tls::material(
                &config.tls,
                &[config.host_name.as_str(), config.hub_host_name.as_str()],
            )?),
        };
        let http_listener = config.http.map(server::bind_tcp).transpose()?;
        let https_listener = config.https.map(server::bind_tcp).transpose()?;
        let mqtt_listeners = config.mqtt.map(mqtt::bind).transpose()?.unwrap_or_default();
        let mqtt_addr = mqtt_listeners
            .first()
            .map(|(_, a)| loopback_if_unspecified(*a));
        let unix_listener = config
            .unix_socket
            .as_deref()
            .map(server::bind_unix)
            .transpose()?;
        let http = http_listener
            .as_ref()
            .map(|(_, a)| loopback_if_unspecified(*a));
        let https = https_listener
            .as_ref()
            .map(|(_, a)| loopback_if_unspecified(*a));
        let listener_hosts = http
            .iter()
            .chain(https.iter())
            .map(|a| a.to_string())
            .collect();

        let changed = config.state_file.as_ref().map(|_| Arc::new(Notify::new()));
        let app = Arc::new(App {
            state: Mutex::new(state),
            host_name: config.host_name.clone(),
            listener_hosts,
            policy_name: config.policy_name.clone(),
            keys,
            id_scope,
            linked_hubs: linked_hubs(&config),
            hub_host_name: config.hub_host_name.clone(),
            telemetry: Mutex::new(hub::telemetry::TelemetryStore::default()),
            limits: config.limits.clone(),
            faults: RwLock::new(config.faults.clone()),
            operations: config
                .limits
                .operations_per_minute
                .map(|n| Mutex::new(RateLimiter::new(n, config.limits.operations_burst))),
            registrations: config
                .limits
                .registrations_per_minute
                .map(|n| Mutex::new(RateLimiter::new(n, None))),
            changed: changed.clone(),
            writer: config.state_file.clone().map(persistence::StateWriter::new),
        });
        app.save_now()?;

        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("dps-emulator")
            .enable_all()
            .build()
            .map_err(EmulatorError::Runtime)?;
        let router = Router::new()
            .fallback(routes::handle)
            .with_state(app.clone());
        let (shutdown, shutdown_rx) = watch::channel(false);

        if let Some((listener, _)) = http_listener {
            runtime.spawn(server::run_tcp(
                listener,
                router.clone(),
                shutdown_rx.clone(),
            ));
        }
        if let (Some((listener, _)), Some(material)) = (https_listener, &tls_material) {
            let acceptor =
                tokio_rustls::TlsAcceptor::from(tls::server_config(material, &[b"http/1.1"])?);
            runtime.spawn(server::run_tls(
                listener,
                acceptor,
                router.clone(),
                shutdown_rx.clone(),
            ));
        }
        if let (Some(listener), Some(path)) = (unix_listener, &config.unix_socket) {
            runtime.spawn(server::run_unix(
                listener,
                path.clone(),
                router.clone(),
                shutdown_rx.clone(),
            ));
        }
        if let Some(material) = &tls_material
            && !mqtt_listeners.is_empty()
        {
            let acceptor = tokio_rustls::TlsAcceptor::from(tls::server_config(material, &[])?);
            for (listener, _) in mqtt_listeners {
                runtime.spawn(mqtt::run(
                    listener,
                    acceptor.clone(),
                    app.clone(),
                    shutdown_rx.clone(),
                ));
            }
        }
        if let Some(changed) = changed {
            runtime.spawn(keep_state_file(app.clone(), changed, shutdown_rx.clone()));
        }
        tracing::info!(http = ?http, https = ?https, mqtt = ?mqtt_addr, unix = ?config.unix_socket, id_scope = %app.id_scope, hub = %app.hub_host_name, "DPS emulator listening");
        Ok(RunningEmulator {
            runtime: Some(runtime),
            app,
            http,
            https,
            mqtt: mqtt_addr,
            unix_socket: config.unix_socket,
            trust_pem: tls_material.map(|m| m.trust_pem),
            shutdown,
        })
    }
}

/// Writes the state file after changes, at most twice a second (a whole-file rewrite each time).
async fn keep_state_file(app: Arc<App>, changed: Arc<Notify>, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            () = changed.notified() => {}
            _ = shutdown.changed() => return,
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let app = app.clone();
        match tokio::task::spawn_blocking(move || app.save_now()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!("{e}"),
            Err(e) => tracing::error!("the state-file writer failed: {e}"),
        }
    }
}

impl RunningEmulator {
    /// `http://127.0.0.1:PORT` of the plain-HTTP listener.
    pub fn http_url(&self) -> Option<String> {
        self.http.map(|a| format!("http://{a}"))
    }

    /// `https://127.0.0.1:PORT` of the HTTPS listener.
    pub fn https_url(&self) -> Option<String> {
        self.https.map(|a| format!("https://{a}"))
    }

    /// Where the service API is: HTTPS when there is a listener for it, else plain HTTP.
    pub fn service_url(&self) -> String {
        self.https_url()
            .or_else(|| self.http_url())
            .unwrap_or_else(|| "http://localhost".to_owned())
    }

    /// Where devices register: the HTTPS listener (X.509 needs it), else plain HTTP.
    pub fn device_url(&self) -> String {
        self.service_url()
    }

    /// The host (`127.0.0.1:PORT`) clients put in `HostName` and sign as SAS `sr`.
    pub fn host(&self) -> String {
        self.https
            .or(self.http)
            .map(|a| a.to_string())
            .unwrap_or_else(|| self.app.host_name.clone())
    }

    /// `127.0.0.1:PORT` of the MQTT listener (DPS registration and the local hub).
    pub fn mqtt_addr(&self) -> Option<SocketAddr> {
        self.mqtt
    }

    /// The local IoT hub's host name (what DPS assigns devices to).
    pub fn hub_host_name(&self) -> &str {
        &self.app.hub_host_name
    }

    /// The local hub's device identities with their twins (no keys).
    pub fn hub_devices(&self) -> Vec<Value> {
        self.app
            .lock()
            .hub_devices
            .values()
            .map(hub::describe)
            .collect()
    }

    /// The telemetry the local hub kept, of one device or all, oldest first.
    pub fn telemetry(&self, device_id: Option<&str>) -> Vec<hub::telemetry::TelemetryMessage> {
        self.app.telemetry().messages(device_id)
    }

    /// How many device-to-cloud messages the hub received since start.
    pub fn telemetry_received(&self) -> u64 {
        self.app.telemetry().received()
    }

    /// The Unix socket, if one was asked for.
    pub fn unix_socket(&self) -> Option<&std::path::Path> {
        self.unix_socket.as_deref()
    }

    /// The service connection string, `HostName` being this emulator's address.
    /// It holds the primary key: show it only to whoever runs the emulator.
    pub fn connection_string(&self) -> SecretString {
        SecretString::new(format!(
            "HostName={};SharedAccessKeyName={};SharedAccessKey={}",
            self.host(),
            self.app.policy_name,
            self.app.keys[0].expose()
        ))
    }

    /// The host name accepted as SAS `sr` besides the listener address.
    pub fn host_name(&self) -> &str {
        &self.app.host_name
    }

    /// The policy name.
    pub fn policy_name(&self) -> &str {
        &self.app.policy_name
    }

    /// The primary policy key.
    pub fn primary_key(&self) -> &SecretString {
        &self.app.keys[0]
    }

    /// The secondary policy key.
    pub fn secondary_key(&self) -> &SecretString {
        &self.app.keys[1]
    }

    /// The ID scope devices register in.
    pub fn id_scope(&self) -> &str {
        &self.app.id_scope
    }

    /// The PEM certificate clients must trust to reach the HTTPS listener.
    pub fn ca_certificate_pem(&self) -> Option<&str> {
        self.trust_pem.as_deref()
    }

    /// Changes the injected faults while running.
    pub fn set_faults(&self, faults: Faults) -> Result<(), EmulatorError> {
        faults.validate().map_err(EmulatorError::Config)?;
        *self.app.faults.write().unwrap_or_else(|p| p.into_inner()) = faults;
        Ok(())
    }

    /// The stored individual enrollments, keys and certificates included.
    pub fn enrollments_snapshot(&self) -> Vec<Value> {
        self.app.lock().enrollments.values().cloned().collect()
    }

    /// The stored enrollment groups, keys and certificates included.
    pub fn groups_snapshot(&self) -> Vec<Value> {
        self.app.lock().groups.values().cloned().collect()
    }

    /// The device registration states.
    pub fn registrations_snapshot(&self) -> Vec<Value> {
        self.app
            .lock()
            .registrations
            .values()
            .map(|r| r.state.clone())
            .collect()
    }

    /// Stops listening, writes the state file one last time and ends the runtime.
    pub fn shutdown(mut self) -> Result<(), EmulatorError> {
        self.stop()
    }

    fn stop(&mut self) -> Result<(), EmulatorError> {
        let Some(runtime) = self.runtime.take() else {
            return Ok(());
        };
        let _ = self.shutdown.send(true);
        // Blocking on the runtime's end is not allowed from inside another runtime (an async test).
        if tokio::runtime::Handle::try_current().is_ok() {
            runtime.shutdown_background();
        } else {
            runtime.shutdown_timeout(Duration::from_secs(2));
        }
        self.app.save_now()?;
        Ok(())
    }
}

impl Drop for RunningEmulator {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            tracing::error!("{e}");
        }
    }
}
