//! `bench mqtt`: the emulator's MQTT side under load (issue 13, point 8). Registrations per second
//! over MQTT with X.509 (CA-signed, one group) and with SAS (group-derived keys), beside the same
//! SAS registrations over the HTTPS device API; then telemetry messages per second into the local
//! hub from N devices connected at once, with the process's resident memory before and after they
//! connect. Emulator and clients share this process (and the machine's cores), so the memory is an
//! upper bound for the emulator and the rates a lower bound.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::dps::client::{DpsClient, DpsClientConfig};
use crate::dps::connection_string::ConnectionString;
use crate::dps::error::DpsError;
use crate::dps::payload::{self, EnrollmentSettings};
use crate::dps::transport::TlsTrust;
use crate::emulator::device_client::{self, DeviceCredential, DeviceRegistration};
use crate::emulator::mqtt_device::{self, MqttDevice, MqttDeviceError, MqttEndpoint, tls_config};
use crate::emulator::{Emulator, EmulatorConfig, EmulatorError, RunningEmulator};
use crate::identity::symmetric::derive_device_key;
use crate::secret::SecretString;

/// What to measure.
#[derive(Debug, Clone)]
pub struct MqttBenchOptions {
    /// Devices registered in each phase and connected at once for telemetry.
    pub devices: usize,
    /// Messages each connected device sends.
    pub messages_per_device: usize,
    /// Registrations in flight at once.
    pub concurrency: usize,
}

impl Default for MqttBenchOptions {
    fn default() -> Self {
        Self {
            devices: 1000,
            messages_per_device: 10,
            concurrency: 128,
        }
    }
}

/// One timed phase.
#[derive(Debug, Clone, Serialize)]
pub struct Phase {
    /// Operations completed.
    pub count: usize,
    /// Wall time.
    pub seconds: f64,
    /// `count / seconds`.
    pub per_second: f64,
    /// CPU time the process (emulator and clients) spent in the phase, user + system.
    pub cpu_seconds: f64,
    /// `count / cpu_seconds`: what the work costs, whatever else the machine was running;
    /// `None` when the phase used less CPU than the kernel counts (a clock tick, 10 ms).
    pub per_cpu_second: Option<f64>,
    /// CPU time of the emulator's own threads (its runtime's workers, named `dps-emulator`).
    pub emulator_cpu_seconds: f64,
    /// `count / emulator_cpu_seconds`: the server side's cost alone; `None` as above.
    pub per_emulator_cpu_second: Option<f64>,
}

/// CPU seconds so far: the whole process, and the emulator's threads.
#[derive(Clone, Copy)]
struct CpuMark(f64, f64);

impl CpuMark {
    fn now() -> Self {
        Self(cpu_seconds(), emulator_cpu_seconds())
    }
}

impl Phase {
    fn new(count: usize, seconds: f64, since: CpuMark) -> Self {
        let now = CpuMark::now();
        let (cpu, emulator) = (now.0 - since.0, now.1 - since.1);
        Self {
            count,
            seconds,
            per_second: count as f64 / seconds.max(f64::EPSILON),
            cpu_seconds: cpu,
            per_cpu_second: (cpu > 0.0).then(|| count as f64 / cpu),
            emulator_cpu_seconds: emulator,
            per_emulator_cpu_second: (emulator > 0.0).then(|| count as f64 / emulator),
        }
    }
}

/// User + system seconds from a `stat` line (fields 14 and 15, in clock ticks of 1/100 s), and the
/// thread's name.
fn stat_seconds(stat: &str) -> Option<(&str, f64)> {
    let (head, rest) = stat.rsplit_once(')')?;
    let name = head.split_once('(')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((name, (utime + stime) / 100.0))
}

/// CPU seconds of the emulator runtime's threads (`dps-emulator`), from `/proc/self/task`.
fn emulator_cpu_seconds() -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    tasks
        .filter_map(Result::ok)
        .filter_map(|t| std::fs::read_to_string(t.path().join("stat")).ok())
        .filter_map(|s| {
            stat_seconds(&s)
                .filter(|(name, _)| *name == "dps-emulator")
                .map(|(_, secs)| secs)
        })
        .sum()
}

/// The process's CPU time so far (user + system, from `/proc/self/stat`, in clock ticks of 1/100 s).
fn cpu_seconds() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| stat_seconds(&s).map(|(_, secs)| secs))
        .unwrap_or(0.0)
}

/// The figures.
#[derive(Debug, Clone, Serialize)]
pub struct MqttBenchReport {
    /// Registrations over MQTT with X.509 client certificates (group CA).
    pub mqtt_x509: Phase,
    /// Registrations over MQTT with SAS (group-derived keys).
    pub mqtt_sas: Phase,
    /// The same kind of registrations over the HTTPS device API.
    pub https_sas: Phase,
    /// Devices connected to the hub at once.
    pub connections: usize,
    /// Connecting them (TLS + CONNECT with SAS).
    pub connect: Phase,
    /// Telemetry messages into the hub (QoS 1, each PUBACKed).
    pub telemetry: Phase,
    /// Resident memory of the process before the hub connections (MB).
    pub rss_before_mb: f64,
    /// Resident memory with all devices connected, after the telemetry (MB).
    pub rss_connected_mb: f64,
    /// Messages the hub kept.
    pub messages_kept: u64,
}

/// Why the benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum MqttBenchError {
    /// The emulator did not start.
    #[error("cannot start the DPS emulator for the benchmark: {0}")]
    Emulator(#[from] EmulatorError),
    /// Setting up the groups failed.
    #[error("cannot create the benchmark's enrollment groups: {0}")]
    Dps(#[from] DpsError),
    /// A device failed.
    #[error("{0}")]
    Device(String),
    /// Too few file descriptors for the connections.
    #[error(
        "{needed} connections need about {needed} file descriptors and this process may open {limit}; raise it (ulimit -n) or pass fewer --devices"
    )]
    Descriptors {
        /// Needed.
        needed: u64,
        /// Allowed.
        limit: u64,
    },
}

fn rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn open_file_limit() -> Option<u64> {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3)?.parse().ok())
        })
}

/// A root CA (rcgen) that signs the X.509 group's devices.
struct BenchCa {
    pem: String,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

fn bench_ca() -> Result<BenchCa, MqttBenchError> {
    let fail = |e: rcgen::Error| MqttBenchError::Device(format!("making the bench CA: {e}"));
    let key = rcgen::KeyPair::generate().map_err(fail)?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(fail)?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "bench mqtt CA");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params.self_signed(&key).map_err(fail)?;
    Ok(BenchCa {
        pem: cert.pem(),
        issuer: rcgen::Issuer::new(params, key),
    })
}

fn leaf(ca: &BenchCa, cn: &str) -> Result<DeviceCredential, MqttBenchError> {
    let fail = |e: rcgen::Error| MqttBenchError::Device(format!("making '{cn}': {e}"));
    let key = rcgen::KeyPair::generate().map_err(fail)?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(fail)?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.signed_by(&key, &ca.issuer).map_err(fail)?;
    Ok(DeviceCredential::X509 {
        chain_pem: cert.pem(),
        key_pem: SecretString::new(key.serialize_pem()),
    })
}

/// Runs `job(i)` for `0..count` with `concurrency` in flight, on `runtime`; the first error wins.
fn in_parallel<F, Fut>(
    runtime: &tokio::runtime::Runtime,
    count: usize,
    concurrency: usize,
    job: F,
) -> Result<Phase, MqttBenchError>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), MqttDeviceError>> + Send,
{
    let job = Arc::new(job);
    let next = Arc::new(AtomicUsize::new(0));
    let cpu = CpuMark::now();
    let started = Instant::now();
    runtime.block_on(async {
        let mut workers = Vec::new();
        for _ in 0..concurrency.max(1) {
            let job = job.clone();
            let next = next.clone();
            workers.push(tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= count {
                        return Ok::<(), MqttDeviceError>(());
                    }
                    job(i).await?;
                }
            }));
        }
        for w in workers {
            match w.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(MqttBenchError::Device(e.to_string())),
                Err(e) => return Err(MqttBenchError::Device(format!("a worker failed: {e}"))),
            }
        }
        Ok(())
    })?;
    Ok(Phase::new(count, started.elapsed().as_secs_f64(), cpu))
}

/// One bench device: its registration ID, its credential and its own TLS configuration.
type BenchDevice = (String, DeviceCredential, Arc<rustls::ClientConfig>);

/// Registers every device over MQTT, `concurrency` at once: one phase of the bench.
fn register_all(
    runtime: &tokio::runtime::Runtime,
    devices: &Arc<Vec<BenchDevice>>,
    endpoint: &Arc<MqttEndpoint>,
    scope: &Arc<str>,
    concurrency: usize,
) -> Result<Phase, MqttBenchError> {
    let (devices, endpoint, scope) = (devices.clone(), endpoint.clone(), scope.clone());
    in_parallel(runtime, devices.len(), concurrency, move |i| {
        let (devices, endpoint, scope) = (devices.clone(), endpoint.clone(), scope.clone());
        async move {
            let (id, cred, tls) = &devices[i];
            let a = mqtt_device::register(&endpoint, tls.clone(), &scope, id, cred).await?;
            assigned(id, &a.status)
        }
    })
}

/// Awaits every task in order; the first failure ends the phase. `what` names the task kind.
async fn join_all<T>(
    tasks: Vec<tokio::task::JoinHandle<Result<T, MqttDeviceError>>>,
    what: &str,
) -> Result<Vec<T>, MqttBenchError> {
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        match t.await {
            Ok(Ok(d)) => out.push(d),
            Ok(Err(e)) => return Err(MqttBenchError::Device(e.to_string())),
            Err(e) => {
                return Err(MqttBenchError::Device(format!("a {what} task failed: {e}")));
            }
        }
    }
    Ok(out)
}

fn create_groups(
    emu: &RunningEmulator,
    ca_pem: &str,
    group_key: &SecretString,
) -> Result<(), MqttBenchError> {
    let connection = ConnectionString::parse(&emu.connection_string()).map_err(DpsError::from)?;
    let client = DpsClient::new(
        connection,
        DpsClientConfig {
            endpoint: Some(emu.service_url()),
            tls: TlsTrust::only(
                emu.ca_certificate_pem()
                    .unwrap_or_default()
                    .as_bytes()
                    .to_vec(),
            ),
            timeout: Duration::from_secs(30),
            ..DpsClientConfig::default()
        },
    )?;
    let settings = EnrollmentSettings::default();
    let x509 = payload::x509_group_signing_certificate("bench-x509", ca_pem, &settings)
        .map_err(|e| MqttBenchError::Device(e.to_string()))?;
    client.create_group(&x509)?;
    let sym = payload::symmetric_key_group("bench-sas", Some(group_key.clone()), None, &settings)
        .map_err(|e| MqttBenchError::Device(e.to_string()))?;
    client.create_group(&sym)?;
    Ok(())
}

/// Runs the phases against a fresh in-process emulator on 127.0.0.1.
pub fn run_mqtt_bench(
    options: &MqttBenchOptions,
    mut progress: impl FnMut(&str),
) -> Result<MqttBenchReport, MqttBenchError> {
    let n = options.devices.max(1);
    let needed = (2 * n + 200) as u64;
    if let Some(limit) = open_file_limit()
        && limit < needed
    {
        return Err(MqttBenchError::Descriptors { needed, limit });
    }
    let emu = Emulator::start(EmulatorConfig {
        mqtt: Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0))),
        ..EmulatorConfig::loopback()
    })?;
    let trust = emu.ca_certificate_pem().unwrap_or_default().to_owned();
    let endpoint = Arc::new(MqttEndpoint {
        addr: emu
            .mqtt_addr()
            .ok_or_else(|| MqttBenchError::Device("the emulator has no MQTT listener".into()))?,
        server_name: "localhost".into(),
        trust_pem: trust.clone(),
    });
    let scope: Arc<str> = emu.id_scope().into();
    let ca = bench_ca()?;
    let group_key =
        crate::identity::symmetric::generate_key(crate::identity::symmetric::KeyLength::Bytes64);
    create_groups(&emu, &ca.pem, &group_key)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| MqttBenchError::Device(format!("cannot start the client runtime: {e}")))?;

    progress(&format!(
        "making {n} X.509 device certificates under one CA"
    ));
    let x509: Arc<Vec<BenchDevice>> = Arc::new(
        (0..n)
            .map(|i| {
                let id = format!("mqtt-x509-{i:05}");
                let cred = leaf(&ca, &id)?;
                let tls = tls_config(&id, &trust, &cred)
                    .map_err(|e| MqttBenchError::Device(e.to_string()))?;
                Ok((id, cred, tls))
            })
            .collect::<Result<_, MqttBenchError>>()?,
    );
    // Each device its own TLS configuration, so no device resumes another's TLS session.
    let sas: Arc<Vec<BenchDevice>> = Arc::new(
        (0..n)
            .map(|i| {
                let id = format!("mqtt-sas-{i:05}");
                let key = derive_device_key(&group_key, &id)
                    .map_err(|e| MqttBenchError::Device(e.to_string()))?;
                let cred = DeviceCredential::SymmetricKey(key);
                let tls = tls_config(&id, &trust, &cred)
                    .map_err(|e| MqttBenchError::Device(e.to_string()))?;
                Ok((id, cred, tls))
            })
            .collect::<Result<_, MqttBenchError>>()?,
    );

    progress(&format!(
        "{n} registrations over MQTT with X.509, {} at once",
        options.concurrency
    ));
    let mqtt_x509 = register_all(&runtime, &x509, &endpoint, &scope, options.concurrency)?;

    progress(&format!(
        "{n} registrations over MQTT with SAS, {} at once",
        options.concurrency
    ));
    let mqtt_sas = register_all(&runtime, &sas, &endpoint, &scope, options.concurrency)?;

    progress(&format!(
        "{n} registrations over HTTPS with SAS, {} at once",
        options.concurrency
    ));
    let https_sas = {
        let next = AtomicUsize::new(0);
        let failure = std::sync::Mutex::new(None);
        let cpu = CpuMark::now();
        let started = Instant::now();
        std::thread::scope(|s| {
            for _ in 0..options.concurrency.max(1) {
                s.spawn(|| {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= n {
                            return;
                        }
                        let id = format!("https-sas-{i:05}");
                        let result = derive_device_key(&group_key, &id)
                            .map_err(|e| e.to_string())
                            .and_then(|key| {
                                device_client::register(
                                    &DeviceRegistration {
                                        endpoint: emu.device_url(),
                                        id_scope: scope.to_string(),
                                        registration_id: id.clone(),
                                        credential: DeviceCredential::SymmetricKey(key),
                                        trust_pem: Some(trust.clone()),
                                        payload: None,
                                    },
                                    Duration::from_secs(30),
                                )
                                .map_err(|e| e.to_string())
                            });
                        if let Err(e) = result {
                            *failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                            next.store(n, Ordering::Relaxed);
                            return;
                        }
                    }
                });
            }
        });
        if let Some(e) = failure.into_inner().unwrap_or_else(|p| p.into_inner()) {
            return Err(MqttBenchError::Device(e));
        }
        Phase::new(n, started.elapsed().as_secs_f64(), cpu)
    };

    progress(&format!("connecting {n} hub devices at once"));
    let rss_before_mb = rss_mb();
    let cpu = CpuMark::now();
    let started = Instant::now();
    let devices: Vec<MqttDevice> = runtime.block_on(async {
        let mut tasks = Vec::with_capacity(n);
        for (id, cred, _) in sas.iter() {
            // A new TLS configuration, as the SDKs make for the hub client: no resumption.
            let tls =
                tls_config(id, &trust, cred).map_err(|e| MqttBenchError::Device(e.to_string()))?;
            let (endpoint, id, cred) = (endpoint.clone(), id.clone(), cred.clone());
            tasks.push(tokio::spawn(async move {
                mqtt_device::connect_to_hub(&endpoint, tls, "localhost", &id, &cred).await
            }));
        }
        join_all(tasks, "connection").await
    })?;
    let connect = Phase::new(devices.len(), started.elapsed().as_secs_f64(), cpu);

    let per_device = options.messages_per_device;
    progress(&format!(
        "{} messages from {n} connected devices",
        n * per_device
    ));
    let cpu = CpuMark::now();
    let started = Instant::now();
    let devices: Vec<MqttDevice> = runtime.block_on(async {
        let mut tasks = Vec::with_capacity(n);
        for (mut device, (id, _, _)) in devices.into_iter().zip(sas.iter()) {
            let id = id.clone();
            tasks.push(tokio::spawn(async move {
                for m in 0..per_device {
                    device
                        .send_telemetry(
                            &id,
                            &format!("%24.mid={m}&bench=1"),
                            br#"{"temperature":21.5,"humidity":40}"#,
                        )
                        .await?;
                }
                Ok::<_, MqttDeviceError>(device)
            }));
        }
        join_all(tasks, "telemetry").await
    })?;
    let telemetry = Phase::new(n * per_device, started.elapsed().as_secs_f64(), cpu);
    let rss_connected_mb = rss_mb();
    let connections = devices.len();
    runtime.block_on(async {
        for d in devices {
            d.disconnect().await;
        }
    });
    Ok(MqttBenchReport {
        mqtt_x509,
        mqtt_sas,
        https_sas,
        connections,
        connect,
        telemetry,
        rss_before_mb,
        rss_connected_mb,
        messages_kept: emu.telemetry_received(),
    })
}

fn assigned(id: &str, status: &str) -> Result<(), MqttDeviceError> {
    if status == "assigned" {
        Ok(())
    } else {
        Err(MqttDeviceError::Protocol {
            who: id.to_owned(),
            message: format!("registration ended '{status}', not assigned"),
        })
    }
}
