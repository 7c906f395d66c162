//! Helpers: an emulator on loopback and a raw HTTPS client that trusts it and signs SAS tokens.

use std::sync::Arc;

use dps_station::emulator::{Emulator, EmulatorConfig, RunningEmulator, sas};
use dps_station::secret::SecretString;
use reqwest::blocking::Client;
use reqwest::header::HeaderMap;
use serde_json::Value;

pub const V: &str = "api-version=2021-10-01";

/// An emulator and a client for its HTTPS service API.
pub struct Dps {
    pub emu: RunningEmulator,
    pub client: Client,
}

/// One answer: status, headers, body (JSON, or `Null` when empty, or a string when not JSON).
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn error_code(&self) -> u64 {
        self.body["errorCode"].as_u64().unwrap_or(0)
    }
}

/// A rustls client config (ring) trusting `ca_pem`, as reqwest here is built without a provider.
pub fn tls_client(ca_pem: &str) -> rustls::ClientConfig {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth()
}

pub fn start(config: EmulatorConfig) -> Dps {
    let emu = Emulator::start(config).unwrap();
    let client = Client::builder()
        .tls_backend_preconfigured(tls_client(emu.ca_certificate_pem().unwrap()))
        .timeout(std::time::Duration::from_secs(20))
        .build()
        .unwrap();
    Dps { emu, client }
}

pub fn loopback() -> Dps {
    start(EmulatorConfig::loopback())
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

impl Dps {
    /// A token as the Node SDK makes it: `sr` = the host, unencoded, fields sr/sig/skn/se.
    pub fn token(&self) -> String {
        self.token_with(self.emu.primary_key(), &self.emu.host(), now() + 3600)
    }

    pub fn token_with(&self, key: &SecretString, sr: &str, se: i64) -> String {
        let sig = sas::sign(key.expose(), &format!("{sr}\n{se}")).unwrap();
        format!(
            "SharedAccessSignature sr={sr}&sig={}&skn=provisioningserviceowner&se={se}",
            sas::percent_encode(&sig)
        )
    }

    pub fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Answer {
        let token = self.token();
        let mut all: Vec<(&str, &str)> = vec![("authorization", token.as_str())];
        all.extend_from_slice(headers);
        self.call_raw(method, path, body, &all)
    }

    /// A call with exactly these headers (no Authorization added).
    pub fn call_raw(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Answer {
        let url = format!("{}{path}", self.emu.service_url());
        self.request(method, &url, body, headers)
    }

    /// A call to a full URL (the service or the device API) with exactly these headers.
    pub fn request(
        &self,
        method: &str,
        url: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Answer {
        let mut req = self.client.request(method.parse().unwrap(), url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        let resp = req.send().unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Answer {
            status,
            headers,
            body,
        }
    }

    pub fn put(&self, path: &str, body: &Value) -> Answer {
        self.call("PUT", &format!("{path}?{V}"), Some(body), &[])
    }

    pub fn get(&self, path: &str) -> Answer {
        self.call("GET", &format!("{path}?{V}"), None, &[])
    }
}

/// A minimal individual enrollment with attestation `none`.
pub fn none_enrollment(id: &str) -> Value {
    serde_json::json!({ "registrationId": id, "attestation": { "type": "none" } })
}

/// A self-signed device certificate whose CN is `cn`: (certificate PEM, key PEM, DER).
pub fn device_cert(cn: &str) -> (String, String, Vec<u8>) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem(), cert.der().to_vec())
}
