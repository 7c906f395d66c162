//! `bench enroll`: how many enrollments per minute the client reaches against an emulator held to
//! a real instance's quota (1,000 operations per minute), with bulk calls of 10 and with one PUT
//! per device, beside what the quota allows for each, and how many 429s the service answered.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::dps::client::{DpsClient, DpsClientConfig};
use crate::dps::connection_string::ConnectionString;
use crate::dps::error::DpsError;
use crate::dps::model::{BulkMode, IndividualEnrollment};
use crate::dps::payload::{self, EnrollmentSettings};
use crate::dps::rate_limit::DEFAULT_OPERATIONS_PER_MINUTE;
use crate::dps::transport::TlsTrust;
use crate::emulator::{Emulator, EmulatorConfig, EmulatorError, Limits};
use crate::secret::SecretString;

/// What to measure.
#[derive(Debug, Clone)]
pub struct EnrollBenchOptions {
    /// Enrollments sent with bulk calls of 10.
    pub identities: usize,
    /// Enrollments sent one PUT each (a sample: at the quota this takes a minute per 1,000).
    pub single: usize,
    /// The quota the emulator enforces and the client is set to.
    pub operations_per_minute: u32,
    /// X.509 device certificates (true) or symmetric keys.
    pub x509: bool,
}

impl Default for EnrollBenchOptions {
    fn default() -> Self {
        Self {
            identities: 10_000,
            single: 500,
            operations_per_minute: DEFAULT_OPERATIONS_PER_MINUTE,
            x509: true,
        }
    }
}

/// One phase's figures.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseReport {
    /// Enrollments sent.
    pub enrollments: usize,
    /// Enrollments DPS holds afterwards.
    pub held: usize,
    /// HTTP requests (operations).
    pub operations: u64,
    /// Wall time from the first request to the last answer.
    pub seconds: f64,
    /// Enrollments per minute reached.
    pub per_minute: f64,
    /// Enrollments per minute the quota allows in this mode.
    pub quota_allows_per_minute: f64,
    /// `per_minute / quota_allows_per_minute`.
    pub share_of_quota: f64,
    /// 429 answers the service gave.
    pub throttled: u64,
    /// Items that failed.
    pub failed: usize,
}

/// The benchmark's result.
#[derive(Debug, Clone, Serialize)]
pub struct EnrollBenchReport {
    /// The quota used.
    pub operations_per_minute: u32,
    /// Attestation of the enrollments.
    pub attestation: &'static str,
    /// Bulk calls of 10.
    pub bulk: PhaseReport,
    /// One PUT per device.
    pub single: PhaseReport,
}

/// Why the benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The emulator did not start.
    #[error("cannot start the DPS emulator for the benchmark: {0}")]
    Emulator(#[from] EmulatorError),
    /// The client could not be set up, or a single create failed.
    #[error(transparent)]
    Dps(#[from] DpsError),
    /// A test certificate could not be made.
    #[error("cannot make a test certificate: {0}")]
    Certificate(String),
}

/// Runs both phases, each against a fresh emulator over HTTPS on 127.0.0.1.
pub fn run_enroll_bench(
    options: &EnrollBenchOptions,
    mut log: impl FnMut(&str),
) -> Result<EnrollBenchReport, BenchError> {
    log(&format!(
        "making {} {} enrollments",
        options.identities + options.single,
        if options.x509 {
            "X.509"
        } else {
            "symmetric-key"
        }
    ));
    let all = make_enrollments(options.identities + options.single, options.x509)?;
    let (bulk_set, single_set) = all.split_at(options.identities);

    log(&format!(
        "bulk: {} enrollments, 10 per call, at {} operations/min (about {:.0} s)",
        bulk_set.len(),
        options.operations_per_minute,
        bulk_set.len().div_ceil(10) as f64 * 60.0 / f64::from(options.operations_per_minute)
    ));
    let bulk = phase(
        options,
        bulk_set,
        crate::dps::bulk::MAX_BULK_ITEMS,
        |client, set| {
            let report = client.bulk_enrollments(set, BulkMode::Create);
            Ok(report.failed().count())
        },
    )?;
    log(&format!(
        "bulk: {:.0} enrollments/min ({:.1}% of the {:.0} the quota allows), {} throttled",
        bulk.per_minute,
        bulk.share_of_quota * 100.0,
        bulk.quota_allows_per_minute,
        bulk.throttled
    ));

    log(&format!(
        "single: {} enrollments, one PUT each (about {:.0} s)",
        single_set.len(),
        single_set.len() as f64 * 60.0 / f64::from(options.operations_per_minute)
    ));
    let single = phase(options, single_set, 1, |client, set| {
        let mut failed = 0;
        for e in set {
            if client.create_enrollment(e).is_err() {
                failed += 1;
            }
        }
        Ok(failed)
    })?;
    log(&format!(
        "single: {:.0} enrollments/min ({:.1}% of the {:.0} the quota allows), {} throttled",
        single.per_minute,
        single.share_of_quota * 100.0,
        single.quota_allows_per_minute,
        single.throttled
    ));
    Ok(EnrollBenchReport {
        operations_per_minute: options.operations_per_minute,
        attestation: if options.x509 { "x509" } else { "symmetricKey" },
        bulk,
        single,
    })
}

fn phase(
    options: &EnrollBenchOptions,
    set: &[IndividualEnrollment],
    per_call: usize,
    send: impl FnOnce(&DpsClient, &[IndividualEnrollment]) -> Result<usize, BenchError>,
) -> Result<PhaseReport, BenchError> {
    let emu = Emulator::start(EmulatorConfig {
        limits: Limits {
            operations_per_minute: Some(options.operations_per_minute),
            ..Limits::real_quota()
        },
        ..EmulatorConfig::loopback()
    })?;
    let connection = ConnectionString::parse(&emu.connection_string()).map_err(DpsError::from)?;
    let tls = TlsTrust::only(
        emu.ca_certificate_pem()
            .map(|p| p.as_bytes().to_vec())
            .unwrap_or_default(),
    );
    let client = DpsClient::new(
        connection,
        DpsClientConfig {
            endpoint: Some(emu.service_url()),
            tls,
            operations_per_minute: options.operations_per_minute,
            timeout: Duration::from_secs(30),
            ..DpsClientConfig::default()
        },
    )?;
    let start = Instant::now();
    let failed = send(&client, set)?;
    let seconds = start.elapsed().as_secs_f64();
    let stats = client.stats();
    let held = emu.enrollments_snapshot().len();
    let per_minute = set.len() as f64 * 60.0 / seconds.max(f64::EPSILON);
    // Each call is one operation of the quota, whether it carries 1 enrollment or 10.
    let quota_allows = f64::from(options.operations_per_minute) * per_call as f64;
    Ok(PhaseReport {
        enrollments: set.len(),
        held,
        operations: stats.requests,
        seconds,
        per_minute,
        quota_allows_per_minute: quota_allows,
        share_of_quota: per_minute / quota_allows,
        throttled: stats.throttled,
        failed,
    })
}

fn make_enrollments(n: usize, x509: bool) -> Result<Vec<IndividualEnrollment>, BenchError> {
    let settings = EnrollmentSettings::default();
    (0..n)
        .map(|i| {
            let id = format!("bench-{i:06}");
            let built = if x509 {
                let key = rcgen::KeyPair::generate()
                    .map_err(|e| BenchError::Certificate(e.to_string()))?;
                let mut params = rcgen::CertificateParams::new(Vec::<String>::new())
                    .map_err(|e| BenchError::Certificate(e.to_string()))?;
                params
                    .distinguished_name
                    .push(rcgen::DnType::CommonName, id.as_str());
                let pem = params
                    .self_signed(&key)
                    .map_err(|e| BenchError::Certificate(e.to_string()))?
                    .pem();
                payload::x509_individual(&id, &pem, &settings)
            } else {
                let mut key = [0u8; 32];
                rand::fill(&mut key);
                use base64::Engine as _;
                payload::symmetric_key_individual(
                    &id,
                    Some(SecretString::new(
                        base64::prelude::BASE64_STANDARD.encode(key),
                    )),
                    None,
                    &settings,
                )
            };
            built.map_err(|e| BenchError::Dps(DpsError::Payload(e)))
        })
        .collect()
}
