//! The DPS service client: one per DPS instance, shared by reference between threads. It paces
//! every call to the quota, signs each send with a fresh SAS token, retries what is worth retrying
//! and types what is not. The operations themselves live in `enrollments`, `groups`, `bulk`,
//! `query` and `registrations`, as `impl DpsClient` blocks.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::connection_string::ConnectionString;
use super::error::{DpsError, ServiceError};
use super::model::ProvisioningServiceErrorDetails;
use super::rate_limit::{DEFAULT_OPERATIONS_PER_MINUTE, RateLimiter};
use super::retry::{RetryPolicy, is_retryable_status, parse_retry_after};
use super::sas;
use super::transport::{Answer, Request, TlsTrust, Transport};

/// How to reach and pace one DPS instance.
#[derive(Debug, Clone)]
pub struct DpsClientConfig {
    /// Base URL override (`https://127.0.0.1:8443` for an emulator); default `https://{HostName}`.
    pub endpoint: Option<String>,
    /// Trusted CAs.
    pub tls: TlsTrust,
    /// The instance's operation quota (default 1,000/min); the client never sends faster.
    pub operations_per_minute: u32,
    /// Retries of 429, 5xx and broken connections.
    pub retry: RetryPolicy,
    /// Whole-exchange timeout of one send.
    pub timeout: Duration,
    /// TCP + TLS connect timeout.
    pub connect_timeout: Duration,
    /// Lifetime of each SAS token (a fresh one is made per send).
    pub token_lifetime: Duration,
    /// Seconds added to the local clock when computing token expiry, for a station whose clock is
    /// known to be off (DPS refuses tokens outside its 5-minute skew).
    pub clock_correction_secs: i64,
}

impl Default for DpsClientConfig {
    fn default() -> Self {
        Self {
            endpoint: None,
            tls: TlsTrust::platform(),
            operations_per_minute: DEFAULT_OPERATIONS_PER_MINUTE,
            retry: RetryPolicy::default(),
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            token_lifetime: Duration::from_secs(3_600),
            clock_correction_secs: 0,
        }
    }
}

/// Counters of what the client did, for summaries and the benchmark.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// HTTP requests sent (= operations billed).
    pub requests: u64,
    /// 429 answers received.
    pub throttled: u64,
    /// 5xx / 408 answers received.
    pub server_errors: u64,
    /// Sends that got no answer (timeout, dropped connection).
    pub transport_failures: u64,
}

#[derive(Debug, Default)]
struct Counters {
    requests: AtomicU64,
    throttled: AtomicU64,
    server_errors: AtomicU64,
    transport_failures: AtomicU64,
}

/// A client for one DPS instance's service API. Blocking; `Sync`, so threads may share it.
pub struct DpsClient {
    transport: Transport,
    connection: ConnectionString,
    resource_uri: String,
    limiter: RateLimiter,
    retry: RetryPolicy,
    token_lifetime: Duration,
    clock_correction_secs: i64,
    counters: Counters,
}

impl std::fmt::Debug for DpsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DpsClient")
            .field("endpoint", &self.transport.base_url())
            .field("connection", &self.connection)
            .finish_non_exhaustive()
    }
}

/// What an operation is, for logs and error messages.
pub(crate) struct Op<'a> {
    pub operation: &'a str,
    pub target: &'a str,
}

/// The result of [`DpsClient::execute`].
pub(crate) enum Executed {
    /// The service answered with 2xx.
    Answer(Answer),
    /// A send may have landed, and the re-send check found it applied: nothing re-sent.
    AlreadyApplied,
}

/// Called before re-sending a request whose earlier send may have been applied; `Ok(true)` means
/// it was, and the request is not sent again.
pub(crate) type ResendCheck<'a> = &'a dyn Fn() -> Result<bool, DpsError>;

impl DpsClient {
    /// A client for the instance of `connection`.
    pub fn new(connection: ConnectionString, config: DpsClientConfig) -> Result<Self, DpsError> {
        let base_url = match &config.endpoint {
            Some(endpoint) => normalise_endpoint(endpoint)?,
            None => format!("https://{}", connection.host_name()),
        };
        let transport = Transport::new(
            base_url,
            &config.tls,
            config.timeout,
            config.connect_timeout,
        )?;
        Ok(Self {
            transport,
            resource_uri: connection.host_name().to_ascii_lowercase(),
            connection,
            limiter: RateLimiter::new(config.operations_per_minute),
            retry: RetryPolicy {
                max_attempts: config.retry.max_attempts.max(1),
                ..config.retry
            },
            token_lifetime: config.token_lifetime,
            clock_correction_secs: config.clock_correction_secs,
            counters: Counters::default(),
        })
    }

    /// The base URL requests go to.
    pub fn endpoint(&self) -> &str {
        self.transport.base_url()
    }

    /// What the client has done so far.
    pub fn stats(&self) -> ClientStats {
        ClientStats {
            requests: self.counters.requests.load(Ordering::Relaxed),
            throttled: self.counters.throttled.load(Ordering::Relaxed),
            server_errors: self.counters.server_errors.load(Ordering::Relaxed),
            transport_failures: self.counters.transport_failures.load(Ordering::Relaxed),
        }
    }

    /// Sends with pacing and retries; returns the 2xx answer or a typed error.
    pub(crate) fn execute(
        &self,
        op: &Op<'_>,
        req: &Request<'_>,
        resend_check: Option<ResendCheck<'_>>,
    ) -> Result<Executed, DpsError> {
        let mut attempt = 0u32;
        let mut maybe_applied = false;
        loop {
            if attempt > 0
                && maybe_applied
                && let Some(check) = resend_check
            {
                if check()? {
                    tracing::info!(
                        operation = op.operation,
                        target = op.target,
                        "an earlier send was applied; not re-sending"
                    );
                    return Ok(Executed::AlreadyApplied);
                }
                maybe_applied = false;
            }
            attempt += 1;
            self.limiter.acquire();
            let expiry = sas::expiry_from_now(self.token_lifetime, self.clock_correction_secs)?;
            let auth = sas::authorization_header(
                self.connection.key_name(),
                self.connection.key(),
                &self.resource_uri,
                expiry,
            )?;
            self.counters.requests.fetch_add(1, Ordering::Relaxed);
            let result = self.transport.send(req, auth.expose());
            drop(auth);
            let retry_after = match result {
                Ok(answer) if (200..300).contains(&answer.status) && !is_foreign_page(&answer) => {
                    tracing::debug!(
                        method = %req.method, path = %req.path, status = answer.status, attempt,
                        "DPS answered"
                    );
                    return Ok(Executed::Answer(answer));
                }
                Ok(answer) if (200..300).contains(&answer.status) => {
                    // A 2xx that is not DPS talking (a proxy's or gateway's HTML page): never a
                    // success, even for a DELETE whose real answer has no body. Retried like a
                    // 5xx, since such pages come and go; it may have been applied behind the proxy.
                    self.counters.server_errors.fetch_add(1, Ordering::Relaxed);
                    maybe_applied = true;
                    tracing::warn!(
                        operation = op.operation,
                        target_name = op.target,
                        attempt,
                        status = answer.status,
                        "an answer that is not from DPS"
                    );
                    if attempt >= self.retry.max_attempts {
                        return Err(DpsError::UnexpectedAnswer {
                            operation: op.operation.to_string(),
                            target: op.target.to_string(),
                            status: answer.status,
                            detail: format!(
                                "{} body starting with {:?}",
                                answer.header("content-type").unwrap_or("untyped"),
                                snippet(&answer.body)
                            ),
                        });
                    }
                    None
                }
                Ok(answer) => {
                    tracing::debug!(
                        method = %req.method, path = %req.path, status = answer.status, attempt,
                        "DPS refused"
                    );
                    if answer.status == 429 {
                        self.counters.throttled.fetch_add(1, Ordering::Relaxed);
                    } else if answer.status >= 500 || answer.status == 408 {
                        self.counters.server_errors.fetch_add(1, Ordering::Relaxed);
                        // A 5xx may come after the change was applied.
                        maybe_applied = true;
                    }
                    if !is_retryable_status(answer.status) || attempt >= self.retry.max_attempts {
                        return Err(service_error(op, &answer, attempt));
                    }
                    let after = answer.header("retry-after").and_then(parse_retry_after);
                    if answer.status == 429 {
                        // Hold every thread of this client back, not just this call.
                        let pause = self.retry.delay(attempt, after);
                        self.limiter.pause(pause);
                        tracing::warn!(
                            target_name = op.target,
                            attempt,
                            ?pause,
                            "DPS throttled (429); pausing"
                        );
                        continue;
                    }
                    after
                }
                Err(failure) => {
                    self.counters
                        .transport_failures
                        .fetch_add(1, Ordering::Relaxed);
                    maybe_applied |= failure.maybe_applied;
                    tracing::warn!(
                        operation = op.operation, target_name = op.target, attempt,
                        detail = %failure.detail, "no answer from DPS"
                    );
                    if attempt >= self.retry.max_attempts {
                        return Err(DpsError::Transport {
                            operation: op.operation.to_string(),
                            target: op.target.to_string(),
                            endpoint: self.transport.base_url().to_string(),
                            detail: failure.detail,
                            attempts: attempt,
                        });
                    }
                    None
                }
            };
            std::thread::sleep(self.retry.delay(attempt, retry_after));
        }
    }

    /// Sends and decodes a JSON answer.
    pub(crate) fn execute_json<T: DeserializeOwned>(
        &self,
        op: &Op<'_>,
        req: &Request<'_>,
    ) -> Result<T, DpsError> {
        match self.execute(op, req, None)? {
            Executed::Answer(answer) => decode(op, &answer),
            // Unreachable without a resend check, but typed rather than panicking.
            Executed::AlreadyApplied => Err(DpsError::UnexpectedAnswer {
                operation: op.operation.to_string(),
                target: op.target.to_string(),
                status: 0,
                detail: "no answer body".into(),
            }),
        }
    }
}

/// Serialises a request body; our types always serialise, but a failure is typed, not a panic.
pub(crate) fn to_body<T: Serialize>(op: &Op<'_>, value: &T) -> Result<Vec<u8>, DpsError> {
    serde_json::to_vec(value).map_err(|e| DpsError::UnexpectedAnswer {
        operation: op.operation.to_string(),
        target: op.target.to_string(),
        status: 0,
        detail: format!("cannot encode the request: {e}"),
    })
}

/// Decodes a 2xx JSON answer.
pub(crate) fn decode<T: DeserializeOwned>(op: &Op<'_>, answer: &Answer) -> Result<T, DpsError> {
    serde_json::from_slice(&answer.body).map_err(|e| DpsError::UnexpectedAnswer {
        operation: op.operation.to_string(),
        target: op.target.to_string(),
        status: answer.status,
        detail: format!("{e}; body starts with {:?}", snippet(&answer.body)),
    })
}

/// Types a non-2xx answer: DPS `errorCode` from the body, else from `x-ms-error-code`.
fn service_error(op: &Op<'_>, answer: &Answer, attempts: u32) -> DpsError {
    let details: Option<ProvisioningServiceErrorDetails> =
        serde_json::from_slice(&answer.body).ok();
    let header_code = answer
        .header("x-ms-error-code")
        .and_then(|v| v.trim().parse::<i64>().ok());
    let (error_code, tracking_id, message) = match details {
        Some(d) => (
            d.error_code.or(header_code),
            d.tracking_id,
            d.message.unwrap_or_default(),
        ),
        None if answer.body.is_empty() => (header_code, None, String::new()),
        None => (
            header_code,
            None,
            format!("(answer is not DPS JSON: {:?})", snippet(&answer.body)),
        ),
    };
    DpsError::Service(Box::new(ServiceError {
        operation: op.operation.to_string(),
        target: op.target.to_string(),
        status: answer.status,
        error_code,
        tracking_id,
        message,
        attempts,
    }))
}

/// A non-empty body that declares itself as something other than JSON.
fn is_foreign_page(answer: &Answer) -> bool {
    !answer.body.is_empty()
        && answer
            .header("content-type")
            .is_some_and(|t| !t.to_ascii_lowercase().contains("json"))
}

fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(120)]);
    text.chars().filter(|c| !c.is_control()).collect()
}

fn normalise_endpoint(endpoint: &str) -> Result<String, DpsError> {
    let trimmed = endpoint.trim().trim_end_matches('/');
    let rest = trimmed
        .strip_prefix("https://")
        .or_else(|| trimmed.strip_prefix("http://"));
    match rest {
        Some(host) if !host.is_empty() && !host.contains(['/', '?', '#', ' ']) => {
            Ok(trimmed.to_string())
        }
        _ => Err(DpsError::Endpoint(endpoint.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_checked() {
        assert_eq!(
            normalise_endpoint("http://127.0.0.1:8080/").unwrap(),
            "http://127.0.0.1:8080"
        );
        assert!(normalise_endpoint("127.0.0.1:8080").is_err());
        assert!(normalise_endpoint("https://").is_err());
        assert!(normalise_endpoint("https://h/path").is_err());
    }
}
