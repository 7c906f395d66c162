//! [`HttpsLink`]: the station's [`CentralLink`] over HTTPS with mutual TLS (reqwest blocking over a
//! preconfigured rustls client: the service's CA as the only root, the station's certificate and
//! its key, in the HSM where it has one).
//!
//! Answers map onto [`LinkError`]: no connection, a timeout or a 5xx (the service's database is
//! away) is `Unreachable` (retried with backoff); a 4xx with a `Refusal` body is `Refused` (a
//! person must act); a body that is not what the API promises is `BadAnswer`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::tls::{Trust, client_config, pem_certificates};
use crate::central::link::{CentralLink, LinkError};
use crate::central::signing::Signed;
use crate::central::wire::{
    IngestBatch, Lease, LeaseRequest, LeaseReturn, LeaseReturned, Receipt, Refusal, StatusReport,
    paths,
};
use crate::identity::signer::CaSigner;

/// A whole request may take this long (a batch of 1000 rows is well under a megabyte).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Connecting may take this long: a service that is away is noticed quickly.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The station's HTTPS client for one central service.
pub struct HttpsLink {
    http: reqwest::blocking::Client,
    base_url: String,
}

impl std::fmt::Debug for HttpsLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpsLink")
            .field("base_url", &self.base_url)
            .finish()
    }
}

impl HttpsLink {
    /// A link trusting the CA in `ca_pem`, authenticating with `certificate_pem` and `key`.
    pub fn new(
        base_url: &str,
        ca_pem: &str,
        certificate_pem: &str,
        key: Arc<dyn CaSigner>,
    ) -> Result<Self, LinkError> {
        let bad = |what: &str, reason: String| LinkError::BadAnswer {
            reason: format!("{what} {reason}; join the central service again"),
        };
        let ca = pem_certificates(ca_pem).map_err(|e| bad("the service's CA file", e))?;
        let chain = pem_certificates(certificate_pem)
            .map_err(|e| bad("the station's client certificate file", e))?;
        let tls = client_config(Trust::Ca(ca), Some((chain, key)))
            .map_err(|e| bad("the TLS settings", e))?;
        Self::with_tls(base_url, tls)
    }

    /// A link from the files `[central]` names (the key already opened by the caller).
    pub fn from_files(
        base_url: &str,
        ca: &Path,
        certificate: &Path,
        key: Arc<dyn CaSigner>,
    ) -> Result<Self, LinkError> {
        let read = |p: &Path| {
            std::fs::read_to_string(p).map_err(|e| LinkError::BadAnswer {
                reason: format!(
                    "cannot read {} ({e}); join the central service again or fix [central] in station.toml",
                    p.display()
                ),
            })
        };
        Self::new(base_url, &read(ca)?, &read(certificate)?, key)
    }

    /// A link over any rustls configuration (join uses the pinning one).
    pub fn with_tls(base_url: &str, tls: rustls::ClientConfig) -> Result<Self, LinkError> {
        let base_url = base_url.trim_end_matches('/').to_string();
        let http = reqwest::blocking::Client::builder()
            .tls_backend_preconfigured(tls)
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("dps-station/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| LinkError::BadAnswer {
                reason: format!("cannot build the HTTP client: {e}"),
            })?;
        Ok(Self { http, base_url })
    }

    /// The service's base URL.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// `POST` a JSON body, parse a JSON answer.
    pub fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, LinkError> {
        let url = format!("{}{path}", self.base_url);
        let answer = self.http.post(&url).json(body).send();
        self.answer(&url, answer)
    }

    fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, LinkError> {
        let url = format!("{}{path}", self.base_url);
        let answer = self.http.get(&url).send();
        self.answer(&url, answer)
    }

    fn answer<T: DeserializeOwned>(
        &self,
        url: &str,
        answer: reqwest::Result<reqwest::blocking::Response>,
    ) -> Result<T, LinkError> {
        let unreachable = |reason: String| LinkError::Unreachable {
            url: url.to_string(),
            reason,
        };
        let response = answer.map_err(|e| unreachable(error_chain(&e)))?;
        let status = response.status();
        let body = response
            .bytes()
            .map_err(|e| unreachable(format!("the answer was cut off: {}", error_chain(&e))))?;
        if status.is_success() {
            return serde_json::from_slice(&body).map_err(|e| LinkError::BadAnswer {
                reason: format!("{url} answered {status} with a body that does not parse: {e}"),
            });
        }
        let refusal: Option<Refusal> = serde_json::from_slice(&body).ok();
        if status.is_server_error() || status.as_u16() == 429 {
            return Err(unreachable(match refusal {
                Some(r) => format!("{status}: {} ({})", r.message, r.code),
                None => status.to_string(),
            }));
        }
        Err(match refusal {
            Some(r) => LinkError::Refused {
                code: r.code,
                message: r.message,
            },
            None => LinkError::Refused {
                code: format!("http_{}", status.as_u16()),
                message: format!(
                    "{url} answered {status} without an explanation; check the URL in station.toml [central]"
                ),
            },
        })
    }
}

/// An error with its causes (reqwest hides the TLS reason in its source chain).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

impl CentralLink for HttpsLink {
    fn ingest(&self, batch: &IngestBatch) -> Result<Signed<Receipt>, LinkError> {
        self.post(paths::INGEST, batch)
    }

    fn lease(&self, request: &LeaseRequest) -> Result<Signed<Lease>, LinkError> {
        self.post(paths::LEASES, request)
    }

    fn return_lease(&self, request: &LeaseReturn) -> Result<Signed<LeaseReturned>, LinkError> {
        self.post(paths::LEASE_RETURN, request)
    }

    fn status(&self) -> Result<StatusReport, LinkError> {
        self.get(paths::STATUS)
    }
}
