//! Helpers shared by the DPS client tests: certificates made with rcgen, the OpenAPI schema.

#![allow(dead_code)]

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};

/// A self-signed leaf certificate (PEM) with subject CN `cn`, as a device would present.
pub fn device_cert(cn: &str) -> String {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, cn);
    let key = KeyPair::generate().unwrap();
    params.self_signed(&key).unwrap().pem()
}

/// A self-signed CA certificate (PEM), as a group's signing certificate.
pub fn ca_cert(cn: &str) -> String {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let key = KeyPair::generate().unwrap();
    params.self_signed(&key).unwrap().pem()
}

/// The official 2021-10-01 service OpenAPI file (a verbatim copy of Azure/azure-rest-api-specs).
pub fn openapi() -> serde_json::Value {
    serde_json::from_str(include_str!("service-2021-10-01.json")).unwrap()
}

/// A TPM's `endorsementKey` as DPS holds it: base64 of the TPM2B_PUBLIC of a P-256 EK made from `seed`.
pub fn tpm_ek_b64(seed: u8) -> String {
    use base64::Engine as _;
    use p256::pkcs8::EncodePublicKey as _;
    let secret = p256::SecretKey::from_slice(&[seed.max(1); 32]).unwrap();
    let spki = secret.public_key().to_public_key_der().unwrap();
    let public = dps_station::identity::tpm_ek::spki_to_tpm2b_public(spki.as_bytes()).unwrap();
    base64::prelude::BASE64_STANDARD.encode(public)
}

/// A base64 key of `n` bytes.
pub fn key_b64(n: usize, fill: u8) -> String {
    use base64::Engine as _;
    base64::prelude::BASE64_STANDARD.encode(vec![fill; n])
}

use std::time::Duration;

use dps_station::dps::retry::RetryPolicy;
use dps_station::dps::{ConnectionString, DpsClient, DpsClientConfig, TlsTrust};
use dps_station::emulator::{Emulator, EmulatorConfig, RunningEmulator};

/// An in-process emulator on 127.0.0.1 (HTTP and HTTPS, OS-chosen ports).
pub fn emulator(tweak: impl FnOnce(&mut EmulatorConfig)) -> RunningEmulator {
    let mut config = EmulatorConfig::loopback();
    tweak(&mut config);
    Emulator::start(config).unwrap()
}

/// Client settings for tests: HTTPS trusting only the emulator's CA, short timeouts, quick retries.
pub fn client_config(emu: &RunningEmulator) -> DpsClientConfig {
    DpsClientConfig {
        endpoint: Some(emu.service_url()),
        tls: TlsTrust::only(emu.ca_certificate_pem().unwrap().as_bytes().to_vec()),
        operations_per_minute: 60_000,
        retry: RetryPolicy {
            max_attempts: 8,
            base_delay: Duration::from_millis(20),
            max_delay: Duration::from_secs(2),
        },
        timeout: Duration::from_secs(10),
        connect_timeout: Duration::from_secs(5),
        ..DpsClientConfig::default()
    }
}

/// A client for the emulator with its own connection string.
pub fn client(emu: &RunningEmulator, tweak: impl FnOnce(&mut DpsClientConfig)) -> DpsClient {
    let mut config = client_config(emu);
    tweak(&mut config);
    let cs = ConnectionString::parse(&emu.connection_string()).unwrap();
    DpsClient::new(cs, config).unwrap()
}

/// Registration IDs the emulator holds, sorted.
pub fn stored_ids(emu: &RunningEmulator) -> Vec<String> {
    let mut ids: Vec<String> = emu
        .enrollments_snapshot()
        .iter()
        .map(|e| e["registrationId"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}
