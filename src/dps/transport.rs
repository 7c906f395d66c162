//! One HTTP exchange with DPS: TLS set-up (rustls with `ring`), the URL, the SAS header, and the
//! answer read whole. Retries, pacing and error typing live in `client`.
//!
//! reqwest is built with `rustls-no-provider`, so we build the rustls `ClientConfig` ourselves and
//! hand it over preconfigured. Its blocking client runs its own runtime on an internal thread, so
//! no async runtime leaks into the station's worker threads.

use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use reqwest::header::HeaderMap;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use super::error::DpsError;

/// Which certificate authorities the client trusts for the DPS endpoint.
#[derive(Debug, Clone, Default)]
pub struct TlsTrust {
    /// Trust the platform's roots (what Azure needs). Off for an emulator with its own CA.
    pub platform_roots: bool,
    /// Extra trusted CA certificates, PEM (e.g. the emulator's self-signed certificate).
    pub extra_ca_pem: Vec<Vec<u8>>,
}

impl TlsTrust {
    /// The platform roots only: the right choice for Azure.
    pub fn platform() -> Self {
        Self {
            platform_roots: true,
            extra_ca_pem: Vec::new(),
        }
    }

    /// Only the given CA (PEM): for an emulator or a test bench with its own certificate.
    pub fn only(ca_pem: impl Into<Vec<u8>>) -> Self {
        Self {
            platform_roots: false,
            extra_ca_pem: vec![ca_pem.into()],
        }
    }
}

/// Builds the rustls configuration: `ring` provider, safe protocol versions, chosen roots.
pub fn rustls_config(trust: &TlsTrust) -> Result<rustls::ClientConfig, DpsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut extra = Vec::new();
    for (i, pem) in trust.extra_ca_pem.iter().enumerate() {
        let before = extra.len();
        for cert in CertificateDer::pem_slice_iter(pem) {
            extra.push(cert.map_err(|e| {
                DpsError::Tls(format!(
                    "extra trusted CA #{} is not a PEM certificate ({e}); give the PEM file of the \
                     emulator's or proxy's CA",
                    i + 1
                ))
            })?);
        }
        if extra.len() == before {
            return Err(DpsError::Tls(format!(
                "extra trusted CA #{} holds no PEM certificate",
                i + 1
            )));
        }
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| DpsError::Tls(e.to_string()))?;
    let config = if trust.platform_roots {
        let verifier = rustls_platform_verifier::Verifier::new_with_extra_roots(extra, provider)
            .map_err(|e| {
                DpsError::Tls(format!(
                    "cannot load the system's trusted CA certificates ({e}); install the \
                     ca-certificates package"
                ))
            })?;
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth()
    } else {
        let mut roots = rustls::RootCertStore::empty();
        for cert in extra {
            roots
                .add(cert)
                .map_err(|e| DpsError::Tls(format!("extra trusted CA refused: {e}")))?;
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    Ok(config)
}

/// A request as the client describes it; the transport adds host, api-version and auth.
pub(crate) struct Request<'a> {
    pub method: Method,
    /// Path with every id already percent-encoded, starting with `/`.
    pub path: String,
    pub if_match: Option<&'a str>,
    pub max_item_count: Option<u32>,
    pub continuation: Option<&'a str>,
    pub json_body: Option<Vec<u8>>,
}

/// A whole answer.
pub(crate) struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Why an exchange produced no answer.
pub(crate) struct SendFailure {
    pub detail: String,
    /// False when the request certainly never reached the service (connection refused); a
    /// timeout or a connection dropped mid-exchange may have been applied.
    pub maybe_applied: bool,
}

/// The HTTP client and the endpoint.
pub(crate) struct Transport {
    http: reqwest::blocking::Client,
    base_url: String,
}

impl Transport {
    pub fn new(
        base_url: String,
        trust: &TlsTrust,
        timeout: Duration,
        connect_timeout: Duration,
    ) -> Result<Self, DpsError> {
        let tls = rustls_config(trust)?;
        let http = reqwest::blocking::Client::builder()
            .tls_backend_preconfigured(tls)
            .timeout(timeout)
            .connect_timeout(connect_timeout)
            .user_agent(concat!("dps-station/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| DpsError::Tls(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self { http, base_url })
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Sends once with the given `Authorization` value.
    pub fn send(&self, req: &Request<'_>, authorization: &str) -> Result<Answer, SendFailure> {
        let url = format!(
            "{}{}?api-version={}",
            self.base_url,
            req.path,
            super::model::API_VERSION
        );
        let mut builder = self
            .http
            .request(req.method.clone(), &url)
            .header("Authorization", authorization)
            .header("Accept", "application/json")
            .header("Request-Id", uuid::Uuid::new_v4().to_string());
        if let Some(etag) = req.if_match {
            builder = builder.header("If-Match", etag);
        }
        if let Some(n) = req.max_item_count {
            builder = builder.header("x-ms-max-item-count", n.to_string());
        }
        if let Some(token) = req.continuation {
            builder = builder.header("x-ms-continuation", token);
        }
        if let Some(body) = &req.json_body {
            builder = builder
                .header("Content-Type", "application/json; charset=utf-8")
                .body(body.clone());
        }
        let response = builder.send().map_err(|e| SendFailure {
            maybe_applied: !e.is_connect(),
            detail: describe(&e),
        })?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.bytes().map_err(|e| SendFailure {
            maybe_applied: true,
            detail: describe(&e),
        })?;
        Ok(Answer {
            status,
            headers,
            body: body.to_vec(),
        })
    }
}

/// reqwest's error with its causes, without the URL's query (harmless, but long).
fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_body() || e.is_decode() {
        "answer cut off"
    } else {
        "request failed"
    };
    let mut text = kind.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
