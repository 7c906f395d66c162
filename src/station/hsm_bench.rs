//! The HSM benchmark behind `dps-station bench hsm`: device certificates issued per second from
//! CSRs (CSR check + certificate + signature in the token) with 1, 2 and 4 sessions, next to the
//! raw signatures per second the same token gives through cryptoki — the ceiling issuing is
//! measured against.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::identity::issue::{self, Issuer};
use crate::identity::profile::{CaProfile, DeviceProfile};
use crate::identity::registration_id::RegistrationId;
use crate::keystore::pkcs11::{Pkcs11Config, Pkcs11KeyStore};
use crate::keystore::{KeyStore, KeyStoreError, Pkcs11Uri};
use crate::secret::SecretString;

/// Why the benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The token failed.
    #[error(transparent)]
    KeyStore(#[from] KeyStoreError),
    /// Making the CA or a device certificate failed.
    #[error("issuing failed during the benchmark: {0}")]
    Issue(String),
    /// Making the CSRs failed.
    #[error("cannot make benchmark CSRs: {0}")]
    Csr(String),
}

/// One line of results: rates for one session count, each the median of the runs.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BenchRow {
    /// Sessions used (at most this many calls in the token at once).
    pub sessions: usize,
    /// Worker threads sharing them.
    pub threads: usize,
    /// Raw `CKM_ECDSA` signatures of a digest per second.
    pub raw_signatures_per_sec: f64,
    /// Device certificates issued from CSRs per second.
    pub certificates_per_sec: f64,
    /// CSR checks (parse + signature verification) per second on the same threads, without
    /// issuing: the host-side work each issued certificate adds to its signature.
    pub csr_checks_per_sec: f64,
    /// Certificates issued per second for public keys whose CSRs were already checked (the line
    /// checks a CSR when the device returns it): certificate building and the HSM signature only.
    pub certificates_from_checked_keys_per_sec: f64,
}

impl BenchRow {
    /// Issuing as a share of the raw signing rate.
    pub fn ratio(&self) -> f64 {
        if self.raw_signatures_per_sec > 0.0 {
            self.certificates_per_sec / self.raw_signatures_per_sec
        } else {
            0.0
        }
    }
}

/// What to measure.
#[derive(Debug, Clone)]
pub struct BenchPlan {
    /// Session counts to measure (e.g. 1, 2, 4).
    pub sessions: Vec<usize>,
    /// Length of one timed run.
    pub run: Duration,
    /// Runs per measurement; the median is reported.
    pub runs: usize,
    /// Worker threads per session, for both measurements. The station's line slots are threads
    /// sharing a smaller pool of sessions; with more threads than sessions a thread checks a CSR
    /// and builds a certificate while another holds the session to sign. The pool never lets
    /// more than `sessions` calls reach the token at once, so the raw rate does not grow with it.
    pub threads_per_session: usize,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Runs `threads` workers calling `work(thread, i)` until `run` has passed; returns calls per second.
fn timed<E: Send>(
    threads: usize,
    run: Duration,
    work: &(dyn Fn(usize, u64) -> Result<(), E> + Sync),
) -> Result<f64, E> {
    let stop = AtomicBool::new(false);
    let done = AtomicU64::new(0);
    let start = Instant::now();
    let results: Vec<Result<(), E>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let stop = &stop;
                let done = &done;
                scope.spawn(move || {
                    let mut i = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        if let Err(e) = work(t, i) {
                            stop.store(true, Ordering::Relaxed);
                            return Err(e);
                        }
                        i += 1;
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(())
                })
            })
            .collect();
        std::thread::sleep(run);
        stop.store(true, Ordering::Relaxed);
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    let elapsed = start.elapsed().as_secs_f64();
    for r in results {
        r?;
    }
    Ok(done.load(Ordering::Relaxed) as f64 / elapsed.max(f64::EPSILON))
}

/// Makes `count` device CSRs (P-256 keys made here, as devices would make their own).
pub fn make_csrs(count: usize) -> Result<Vec<Vec<u8>>, BenchError> {
    (0..count)
        .map(|i| {
            let key = rcgen::KeyPair::generate().map_err(|e| BenchError::Csr(e.to_string()))?;
            let mut params = rcgen::CertificateParams::new(Vec::<String>::new())
                .map_err(|e| BenchError::Csr(e.to_string()))?;
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, format!("bench-device-{i}"));
            let csr = params
                .serialize_request(&key)
                .map_err(|e| BenchError::Csr(e.to_string()))?;
            Ok(csr.der().to_vec())
        })
        .collect()
}

/// Runs the benchmark on the token `config` names: creates a CA key labelled `ca_label` on it
/// (a persistent token object: use a development token) with a self-signed certificate, then
/// measures raw signing and issuing for each session count.
pub fn run(
    config: &Pkcs11Config,
    pin: &SecretString,
    ca_label: &str,
    plan: &BenchPlan,
    progress: &dyn Fn(&str),
) -> Result<Vec<BenchRow>, BenchError> {
    let max = plan.sessions.iter().copied().max().unwrap_or(1);
    let setup = Pkcs11KeyStore::open(
        &Pkcs11Config {
            sessions: Some(max),
            ..config.clone()
        },
        pin.clone(),
    )?;
    let id = ca_label.as_bytes().to_vec();
    let ca_uri: Pkcs11Uri = setup.generate_ec_p256(ca_label, &id)?;
    let signer = setup.p256_signer(&ca_uri)?;
    let profile = CaProfile::intermediate("dps-station bench CA")
        .map_err(|e| BenchError::Issue(e.to_string()))?;
    let ca_cert =
        issue::make_root_ca(&profile, &signer).map_err(|e| BenchError::Issue(e.to_string()))?;
    progress(&format!(
        "CA key {ca_uri} created on token \"{}\"",
        setup.token().label
    ));
    let csrs = make_csrs(256)?;
    let device =
        DeviceProfile::valid_for_days(365).map_err(|e| BenchError::Issue(e.to_string()))?;
    let ids: Vec<RegistrationId> = (0..csrs.len())
        .map(|i| {
            RegistrationId::parse(&format!("bench-device-{i:04}"))
                .map_err(|e| BenchError::Issue(e.to_string()))
        })
        .collect::<Result<_, _>>()?;
    let keys: Vec<Vec<u8>> = csrs
        .iter()
        .map(|c| {
            crate::identity::csr::verify_csr(c)
                .map(|v| v.public_key_sec1)
                .map_err(|e| BenchError::Csr(e.to_string()))
        })
        .collect::<Result<_, _>>()?;
    // Check once that what we issue verifies against the CA, so the rates count real certificates.
    let issuer =
        Issuer::new(ca_cert.der.clone(), &signer).map_err(|e| BenchError::Issue(e.to_string()))?;
    let sample = issue::issue_device_certificate(&csrs[0], &ids[0], &device, &issuer)
        .map_err(|e| BenchError::Issue(e.to_string()))?;
    issue::verify_issued_by(&sample.der, &ca_cert.der)
        .map_err(|e| BenchError::Issue(e.to_string()))?;
    drop(issuer);
    drop(signer);

    let mut rows = Vec::new();
    for &sessions in &plan.sessions {
        let threads = sessions * plan.threads_per_session.max(1);
        let store = Pkcs11KeyStore::open(
            &Pkcs11Config {
                sessions: Some(sessions),
                ..config.clone()
            },
            pin.clone(),
        )?;
        let signer = Arc::new(store.p256_signer(&ca_uri)?);
        let digest = [0x5au8; 32];
        let mut raw = Vec::new();
        let mut issued = Vec::new();
        let mut checks = Vec::new();
        let mut from_keys = Vec::new();
        for _ in 0..plan.runs.max(1) {
            let check = |t: usize, i: u64| {
                let n = (t * 7919 + i as usize) % csrs.len();
                crate::identity::csr::verify_csr(&csrs[n])
                    .map(|_| ())
                    .map_err(|e| BenchError::Issue(e.to_string()))
            };
            checks.push(timed(threads, plan.run, &check)?);
            let s = signer.clone();
            raw.push(timed(sessions, plan.run, &move |_, _| {
                s.sign_digest_raw(&digest).map(|_| ())
            })?);
            let issuer = Issuer::new(ca_cert.der.clone(), signer.as_ref())
                .map_err(|e| BenchError::Issue(e.to_string()))?;
            let work = |t: usize, i: u64| {
                let n = (t * 7919 + i as usize) % csrs.len();
                issue::issue_device_certificate(&csrs[n], &ids[n], &device, &issuer)
                    .map(|_| ())
                    .map_err(|e| BenchError::Issue(e.to_string()))
            };
            issued.push(timed(threads, plan.run, &work)?);
            let from_key = |t: usize, i: u64| {
                let n = (t * 7919 + i as usize) % keys.len();
                issue::issue_device_certificate_for_key(&keys[n], &ids[n], &device, &issuer)
                    .map(|_| ())
                    .map_err(|e| BenchError::Issue(e.to_string()))
            };
            from_keys.push(timed(threads, plan.run, &from_key)?);
        }
        let row = BenchRow {
            sessions,
            threads,
            raw_signatures_per_sec: median(raw),
            certificates_per_sec: median(issued),
            csr_checks_per_sec: median(checks),
            certificates_from_checked_keys_per_sec: median(from_keys),
        };
        progress(&format!(
            "{} session(s), {} threads: raw {:.0} signatures/s, issuing {:.0} certificates/s ({:.0}%), CSR checks alone {:.0}/s, issuing for checked keys {:.0}/s",
            row.sessions,
            row.threads,
            row.raw_signatures_per_sec,
            row.certificates_per_sec,
            row.ratio() * 100.0,
            row.csr_checks_per_sec,
            row.certificates_from_checked_keys_per_sec
        ));
        rows.push(row);
    }
    Ok(rows)
}
