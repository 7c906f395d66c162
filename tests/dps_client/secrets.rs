//! The DPS shared access key, the SAS signatures made from it and the symmetric keys of
//! enrollments never appear in the logs of a run, at any level, nor in error messages.

use std::io::Write;
use std::sync::{Arc, Mutex};

use dps_station::dps::model::BulkMode;
use dps_station::dps::payload::{self, EnrollmentSettings};
use dps_station::dps::{ConnectionString, DpsClient};
use dps_station::emulator::Faults;
use dps_station::secret::SecretString;

use crate::support::{client, client_config, emulator, key_b64};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn keys_and_signatures_never_reach_the_logs() {
    let captured = Captured::default();
    let writer = captured.clone();
    // Global, at TRACE, with `log` records bridged: every thread (reqwest's, the emulator's) and
    // every crate is captured. No other test of this binary installs a subscriber.
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .try_init()
        .expect("the only subscriber of this test binary");

    let emu = emulator(|c| {
        c.faults = Faults {
            error_rate: 0.2,
            drop_rate: 0.1,
            ..Faults::default()
        }
    });
    let policy_key = emu.primary_key().expose().to_string();
    let dps = client(&emu, |_| {});
    let device_keys: Vec<String> = (0..12).map(|i| key_b64(32, 0x40 + i)).collect();
    let batch: Vec<_> = device_keys
        .iter()
        .enumerate()
        .map(|(i, k)| {
            payload::symmetric_key_individual(
                &format!("secret-{i:02}"),
                Some(SecretString::new(k.clone())),
                None,
                &EnrollmentSettings::default(),
            )
            .unwrap()
        })
        .collect();
    let report = dps.bulk_enrollments(&batch, BulkMode::Create);
    assert!(report.all_succeeded());
    for e in &batch[..3] {
        dps.create_enrollment(e).unwrap();
        let keys = dps.enrollment_attestation(&e.registration_id).unwrap();
        tracing::info!(?keys, enrollment = ?e, "debug output of secret-holding values");
    }
    let wrong = key_b64(32, 0xEE);
    let cs = ConnectionString::from_parts(
        &emu.host(),
        emu.policy_name(),
        SecretString::new(wrong.clone()),
    )
    .unwrap();
    tracing::info!(?cs, "a connection string");
    let refused = DpsClient::new(cs, client_config(&emu)).unwrap();
    let err = refused.get_enrollment("secret-00").unwrap_err();
    tracing::error!("{err}");
    tracing::error!("{err:?}");
    tracing::info!(client = ?dps, "the client");

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("secret-00"), "the run was not captured");
    assert!(
        logs.len() > 1_000,
        "too little was captured to mean anything"
    );
    for secret in std::iter::once(&policy_key)
        .chain(&device_keys)
        .chain([&wrong])
    {
        assert!(!logs.contains(secret.as_str()), "a key reached the logs");
        // The URL-encoded form too.
        assert!(
            !logs.contains(
                &secret
                    .replace('=', "%3D")
                    .replace('+', "%2B")
                    .replace('/', "%2F")
            )
        );
    }
    assert!(
        !logs.contains("SharedAccessSignature"),
        "a SAS token reached the logs"
    );
    assert!(!logs.contains("sig="), "a signature reached the logs");
}
