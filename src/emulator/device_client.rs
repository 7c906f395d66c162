//! A small device-side client of the registration API, so that tests (and the line engineer)
//! can prove that an identity the station made would register: with its certificate and key
//! over TLS client authentication, with its symmetric key (individual or group-derived), or with
//! its TPM endorsement key (the TPM challenge: a 401 carrying a key wrapped to the EK, recovered
//! with the EK's private part as the TPM's ActivateCredential would, then a SAS token signed with it).
//!
//! Blocking (reqwest's blocking client): call it from a plain thread, not from async code.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{Value, json};

use base64::Engine as _;
use base64::prelude::BASE64_STANDARD;
use p256::pkcs8::EncodePublicKey as _;

use super::clock;
use super::sas;
use super::tpm_credential;
use crate::identity::tpm_ek;
use crate::secret::{SecretBytes, SecretString};

/// How a device proves who it is.
#[derive(Debug, Clone)]
pub enum DeviceCredential {
    /// Its certificate chain (leaf first, PEM) and private key (PEM).
    X509 {
        /// Leaf first, then intermediates, PEM.
        chain_pem: String,
        /// The leaf's private key, PEM.
        key_pem: SecretString,
    },
    /// Its symmetric key: the individual enrollment's key, or the key derived from a group key.
    SymmetricKey(SecretString),
    /// Its TPM: the ECC P-256 endorsement key's private scalar (32 bytes), which stands for the
    /// TPM itself (it only ever activates the challenge here, as a TPM would).
    Tpm {
        /// The EK private scalar.
        ek_scalar: SecretBytes,
    },
}

/// Where and as whom to register.
#[derive(Debug, Clone)]
pub struct DeviceRegistration {
    /// `https://host:port` of the device API (the emulator's `device_url()`).
    pub endpoint: String,
    /// ID scope.
    pub id_scope: String,
    /// Registration ID.
    pub registration_id: String,
    /// Credential.
    pub credential: DeviceCredential,
    /// PEM of the CA that signed the endpoint's TLS certificate (the emulator's `ca_certificate_pem()`).
    pub trust_pem: Option<String>,
    /// Optional custom payload.
    pub payload: Option<Value>,
}

/// The outcome of a registration.
#[derive(Debug, Clone, PartialEq)]
pub struct Assignment {
    /// `assigned`, `disabled`, `failed`.
    pub status: String,
    /// IoT hub the device is assigned to.
    pub assigned_hub: Option<String>,
    /// Device id in that hub.
    pub device_id: Option<String>,
    /// The full `registrationState` the service returned.
    pub registration_state: Value,
    /// TPM: the key the device activated from DPS's `authenticationKey`; it signs the device's
    /// SAS tokens for the hub, as a TPM device's firmware does. `None` for other credentials.
    pub tpm_hub_key: Option<SecretString>,
}

impl Assignment {
    /// The outcome in a registration operation's answer (the same JSON over HTTPS and MQTT), or
    /// `None` while DPS is still `assigning` and the operation must be polled again.
    pub(crate) fn from_operation(answer: &Value) -> Option<Assignment> {
        let status = answer.get("status").and_then(Value::as_str).unwrap_or("");
        if status == "assigning" || status == "unassigned" {
            return None;
        }
        let state = answer
            .get("registrationState")
            .cloned()
            .unwrap_or(Value::Null);
        let text = |f: &str| state.get(f).and_then(Value::as_str).map(str::to_owned);
        Some(Assignment {
            status: status.to_owned(),
            assigned_hub: text("assignedHub"),
            device_id: text("deviceId"),
            registration_state: state,
            tpm_hub_key: None,
        })
    }
}

/// Why a registration did not complete.
#[derive(Debug, thiserror::Error)]
pub enum DeviceClientError {
    /// The credential or trust PEM cannot be used.
    #[error("registration ID '{registration_id}': {message}")]
    Credential {
        /// Who.
        registration_id: String,
        /// What is wrong.
        message: String,
    },
    /// The request did not get an answer.
    #[error("registration ID '{registration_id}': request to {url} failed: {source}")]
    Http {
        /// Who.
        registration_id: String,
        /// Where.
        url: String,
        /// Why.
        source: reqwest::Error,
    },
    /// The service refused.
    #[error("registration ID '{registration_id}': DPS answered {status} {body}")]
    Refused {
        /// Who.
        registration_id: String,
        /// HTTP status.
        status: u16,
        /// The error body.
        body: String,
    },
    /// The operation did not finish in time.
    #[error("registration ID '{registration_id}': still '{status}' after {seconds} s")]
    Timeout {
        /// Who.
        registration_id: String,
        /// Last status seen.
        status: String,
        /// How long we polled.
        seconds: u64,
    },
}

/// The device API version the helper speaks.
pub const DEVICE_API_VERSION: &str = "2021-06-01";

fn client(reg: &DeviceRegistration) -> Result<reqwest::blocking::Client, DeviceClientError> {
    let err = |message: String| DeviceClientError::Credential {
        registration_id: reg.registration_id.clone(),
        message,
    };
    let config = tls_client_config(
        reg.trust_pem.as_deref().unwrap_or_default(),
        &reg.credential,
        rustls::DEFAULT_VERSIONS,
    )
    .map_err(err)?;
    reqwest::blocking::Client::builder()
        .tls_backend_preconfigured(config)
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| err(format!("cannot build the HTTP client: {e}")))
}

/// A device's TLS client configuration, for HTTPS here and MQTT in `mqtt_device`: trusts the
/// certificates in `trust_pem` and presents the credential's certificate for X.509 (none for a
/// symmetric key or a TPM, which prove themselves with a SAS token). The error says what is
/// wrong; the caller names the device.
pub(crate) fn tls_client_config(
    trust_pem: &str,
    credential: &DeviceCredential,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(trust_pem.as_bytes()) {
        let cert = cert.map_err(|e| format!("the trust PEM is not PEM: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("the trust certificate is unusable: {e}"))?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(versions)
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots);
    Ok(match credential {
        DeviceCredential::X509 { chain_pem, key_pem } => {
            let chain: Vec<CertificateDer<'static>> =
                CertificateDer::pem_slice_iter(chain_pem.as_bytes())
                    .collect::<Result<_, _>>()
                    .map_err(|e| format!("the certificate chain is not PEM: {e}"))?;
            let key = PrivateKeyDer::from_pem_slice(key_pem.expose().as_bytes())
                .map_err(|e| format!("the private key is not PEM: {e}"))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("the certificate and key do not fit together: {e}"))?
        }
        DeviceCredential::SymmetricKey(_) | DeviceCredential::Tpm { .. } => {
            builder.with_no_client_auth()
        }
    })
}

/// Registers and polls until the operation leaves `assigning` (at most `timeout`).
pub fn register(
    reg: &DeviceRegistration,
    timeout: Duration,
) -> Result<Assignment, DeviceClientError> {
    let http = client(reg)?;
    let base = format!(
        "{}/{}/registrations/{}",
        reg.endpoint.trim_end_matches('/'),
        sas::percent_encode(&reg.id_scope),
        sas::percent_encode(&reg.registration_id)
    );
    let sas_with = |key: &SecretString| {
        let resource = format!("{}/registrations/{}", reg.id_scope, reg.registration_id);
        sas::make_token(
            &resource,
            key,
            Some("registration"),
            clock::unix_now() + 3600,
        )
        .ok_or_else(|| DeviceClientError::Credential {
            registration_id: reg.registration_id.clone(),
            message: "the signing key is not base64".into(),
        })
    };
    let url = format!("{base}/register?api-version={DEVICE_API_VERSION}");
    let mut body = json!({ "registrationId": reg.registration_id });
    if let Some(p) = &reg.payload {
        body["payload"] = p.clone();
    }
    let mut tpm_hub_key = None;
    let auth = match &reg.credential {
        DeviceCredential::SymmetricKey(key) => Some(sas_with(key)?),
        DeviceCredential::X509 { .. } => None,
        DeviceCredential::Tpm { ek_scalar } => {
            body["tpm"] = json!({ "endorsementKey": endorsement_key(reg, ek_scalar)? });
            let key = tpm_challenge(reg, &http, &url, &body, ek_scalar)?;
            tpm_hub_key = Some(key.clone());
            Some(sas_with(&key)?)
        }
    };
    let send =
        |req: reqwest::blocking::RequestBuilder, url: &str| -> Result<Value, DeviceClientError> {
            let req = match &auth {
                Some(a) => req.header("authorization", a),
                None => req,
            };
            let resp = req.send().map_err(|source| DeviceClientError::Http {
                registration_id: reg.registration_id.clone(),
                url: url.to_owned(),
                source,
            })?;
            let status = resp.status();
            let text = resp.text().map_err(|source| DeviceClientError::Http {
                registration_id: reg.registration_id.clone(),
                url: url.to_owned(),
                source,
            })?;
            if !status.is_success() {
                return Err(DeviceClientError::Refused {
                    registration_id: reg.registration_id.clone(),
                    status: status.as_u16(),
                    body: text,
                });
            }
            serde_json::from_str(&text).map_err(|_| DeviceClientError::Refused {
                registration_id: reg.registration_id.clone(),
                status: status.as_u16(),
                body: text,
            })
        };
    let mut answer = send(http.put(&url).json(&body), &url)?;
    let started = Instant::now();
    loop {
        if let Some(assignment) = Assignment::from_operation(&answer) {
            return Ok(Assignment {
                tpm_hub_key,
                ..assignment
            });
        }
        if started.elapsed() > timeout {
            let status = answer.get("status").and_then(Value::as_str).unwrap_or("");
            return Err(DeviceClientError::Timeout {
                registration_id: reg.registration_id.clone(),
                status: status.to_owned(),
                seconds: timeout.as_secs(),
            });
        }
        std::thread::sleep(Duration::from_millis(100));
        let op = answer
            .get("operationId")
            .and_then(Value::as_str)
            .unwrap_or("");
        let url = format!(
            "{base}/operations/{}?api-version={DEVICE_API_VERSION}",
            sas::percent_encode(op)
        );
        answer = send(http.get(&url), &url)?;
    }
}

/// The EK as DPS holds it: base64 of the TPM2B_PUBLIC of the EK's public key.
fn endorsement_key(
    reg: &DeviceRegistration,
    ek_scalar: &SecretBytes,
) -> Result<String, DeviceClientError> {
    let err = |message: String| DeviceClientError::Credential {
        registration_id: reg.registration_id.clone(),
        message,
    };
    let secret = p256::SecretKey::from_slice(ek_scalar.expose())
        .map_err(|_| err("the TPM's endorsement key is not a P-256 scalar".into()))?;
    let spki = secret
        .public_key()
        .to_public_key_der()
        .map_err(|e| err(format!("cannot encode the endorsement key: {e}")))?;
    let public = tpm_ek::spki_to_tpm2b_public(spki.as_bytes()).map_err(|e| err(e.to_string()))?;
    Ok(BASE64_STANDARD.encode(public))
}

/// The first request of TPM attestation: the EK without credentials; DPS answers 401 with the
/// registration key wrapped to the EK, which the TPM activates. Returns that key, base64.
fn tpm_challenge(
    reg: &DeviceRegistration,
    http: &reqwest::blocking::Client,
    url: &str,
    body: &Value,
    ek_scalar: &SecretBytes,
) -> Result<SecretString, DeviceClientError> {
    let rid = || reg.registration_id.clone();
    let http_err = |source| DeviceClientError::Http {
        registration_id: rid(),
        url: url.to_owned(),
        source,
    };
    let resp = http.put(url).json(body).send().map_err(http_err)?;
    let status = resp.status().as_u16();
    let text = resp.text().map_err(http_err)?;
    let refused = || DeviceClientError::Refused {
        registration_id: rid(),
        status,
        body: text.clone(),
    };
    if status != 401 {
        return Err(refused());
    }
    let answer: Value = serde_json::from_str(&text).map_err(|_| refused())?;
    let Some(blob) = answer.get("authenticationKey").and_then(Value::as_str) else {
        return Err(refused());
    };
    let blob = BASE64_STANDARD
        .decode(blob)
        .map_err(|_| DeviceClientError::Credential {
            registration_id: rid(),
            message: "the TPM challenge's authenticationKey is not base64".into(),
        })?;
    let key =
        tpm_credential::activate(ek_scalar, &blob).map_err(|e| DeviceClientError::Credential {
            registration_id: rid(),
            message: e.to_string(),
        })?;
    Ok(SecretString::new(BASE64_STANDARD.encode(key.expose())))
}
