//! A throttled emulator (60 operations per minute) and a faulty one (20% 500s and dropped
//! connections, half of them after the request was applied): a batch of enrollments completes
//! with none lost and none duplicated, and nothing is reported enrolled that DPS does not hold.

use std::time::{Duration, Instant};

use dps_station::dps::model::{BulkMode, IndividualEnrollment};
use dps_station::dps::payload::{self, EnrollmentSettings};
use dps_station::dps::{CreateOutcome, DpsClient};
use dps_station::emulator::Faults;
use dps_station::secret::SecretString;

use crate::support::{client, emulator, key_b64, stored_ids};

fn batch(prefix: &str, n: usize) -> Vec<IndividualEnrollment> {
    (0..n)
        .map(|i| {
            payload::symmetric_key_individual(
                &format!("{prefix}-{i:03}"),
                Some(SecretString::new(key_b64(32, i as u8))),
                None,
                &EnrollmentSettings::default(),
            )
            .unwrap()
        })
        .collect()
}

/// Every key DPS holds is the one we sent (nothing overwritten, nothing mixed up).
fn assert_keys_are_ours(dps: &DpsClient, batch: &[IndividualEnrollment]) {
    for e in batch {
        let sent = e
            .attestation
            .symmetric_key
            .as_ref()
            .unwrap()
            .primary_key
            .as_ref()
            .unwrap();
        let held = dps.enrollment_attestation(&e.registration_id).unwrap();
        assert_eq!(
            held.symmetric_key.unwrap().primary_key.unwrap().expose(),
            sent.expose()
        );
    }
}

#[test]
fn throttled_batch_completes_honouring_retry_after() {
    let emu = emulator(|c| c.limits.operations_per_minute = Some(60));
    // A client set far above the instance's quota meets 429s; it must wait them out.
    let dps = client(&emu, |c| c.operations_per_minute = 60_000);
    // Use up the instance's minute (60 operations) so that what follows is throttled.
    for i in 0..60 {
        let _ = dps.find_enrollment(&format!("warm-{i}"));
    }
    let wanted = batch("thr", 30);
    let start = Instant::now();
    let mut report = dps.bulk_enrollments(&wanted[..25], BulkMode::Create);
    for e in &wanted[25..] {
        let outcome = dps.create_enrollment(e).unwrap();
        assert!(matches!(outcome, CreateOutcome::Created(_)));
        report.items.push(dps_station::dps::ItemResult {
            id: e.registration_id.clone(),
            result: Ok(dps_station::dps::ItemOutcome::Created),
        });
    }
    let took = start.elapsed();
    assert!(
        report.all_succeeded(),
        "{:?}",
        report.failed().collect::<Vec<_>>()
    );
    let stats = dps.stats();
    assert!(stats.throttled > 0, "no 429 was met: {stats:?}");
    // 8 operations at one per second after the bucket ran dry: seconds, not minutes.
    assert!(
        took >= Duration::from_secs(5),
        "{took:?}: Retry-After was not honoured"
    );
    assert!(took < Duration::from_secs(40), "{took:?}");
    let expected: Vec<String> = wanted.iter().map(|e| e.registration_id.clone()).collect();
    assert_eq!(stored_ids(&emu), expected, "none lost, none duplicated");
}

#[test]
fn a_client_at_the_quota_is_never_throttled() {
    let emu = emulator(|c| c.limits.operations_per_minute = Some(600));
    // Another client has used up the instance's minute (600 operations).
    let greedy = client(&emu, |c| {
        c.operations_per_minute = 600_000;
        c.retry.max_attempts = 1;
    });
    for i in 0..600 {
        let _ = greedy.find_enrollment(&format!("drain-{i}"));
    }
    // The bucket refills at 10 per second; ours paces at the quota (with 1% headroom).
    std::thread::sleep(Duration::from_millis(200));
    let paced = client(&emu, |c| c.operations_per_minute = 600);
    let start = Instant::now();
    for i in 0..40 {
        assert!(
            paced
                .find_enrollment(&format!("paced-{i}"))
                .unwrap()
                .is_none()
        );
    }
    assert_eq!(paced.stats().throttled, 0, "{:?}", paced.stats());
    assert!(
        start.elapsed() >= Duration::from_millis(3_500),
        "{:?}",
        start.elapsed()
    );
    // The same work unpaced is throttled: the pacing is what kept the 429s away.
    let before = greedy.stats().throttled;
    for i in 0..40 {
        let _ = greedy.find_enrollment(&format!("unpaced-{i}"));
    }
    assert!(greedy.stats().throttled > before);
}

#[test]
fn faulty_service_loses_and_duplicates_nothing() {
    let emu = emulator(|c| {
        c.faults = Faults {
            error_rate: 0.2,
            drop_rate: 0.15,
            // And now and then a proxy's HTML page with a 200, which is no success.
            garbage_rate: 0.05,
            ..Faults::default()
        };
    });
    let dps = client(&emu, |_| {});
    let bulk = batch("flt-b", 60);
    let report = dps.bulk_enrollments(&bulk, BulkMode::Create);
    assert!(
        report.all_succeeded(),
        "{:?}",
        report.failed().collect::<Vec<_>>()
    );
    let singles = batch("flt-s", 30);
    for e in &singles {
        dps.create_enrollment(e).unwrap();
    }
    let stats = dps.stats();
    assert!(stats.server_errors > 0, "no 500 was injected: {stats:?}");
    assert!(
        stats.transport_failures > 0,
        "no connection was dropped: {stats:?}"
    );

    emu.set_faults(Faults::default()).unwrap();
    let mut expected: Vec<String> = bulk
        .iter()
        .chain(&singles)
        .map(|e| e.registration_id.clone())
        .collect();
    expected.sort();
    assert_eq!(stored_ids(&emu), expected, "none lost, none duplicated");
    assert_keys_are_ours(&dps, &bulk[..10]);
    assert_keys_are_ours(&dps, &singles[..10]);
}

#[test]
fn slow_answers_time_out_and_are_checked_not_duplicated() {
    let emu = emulator(|c| {
        c.faults = Faults {
            slow_rate: 0.3,
            slow_delay: Duration::from_millis(1_500),
            ..Faults::default()
        };
    });
    // Answers later than 400 ms count as lost: the create may still land after we gave up.
    let dps = client(&emu, |c| c.timeout = Duration::from_millis(400));
    let singles = batch("slow-s", 12);
    for e in &singles {
        dps.create_enrollment(e).unwrap();
    }
    let bulk = batch("slow-b", 30);
    let report = dps.bulk_enrollments(&bulk, BulkMode::Create);
    assert!(
        report.all_succeeded(),
        "{:?}",
        report.failed().collect::<Vec<_>>()
    );
    assert!(
        dps.stats().transport_failures > 0,
        "no answer came late: {:?}",
        dps.stats()
    );
    // Let the late requests finish before counting.
    std::thread::sleep(Duration::from_millis(1_600));
    emu.set_faults(Faults::default()).unwrap();
    let mut expected: Vec<String> = singles
        .iter()
        .chain(&bulk)
        .map(|e| e.registration_id.clone())
        .collect();
    expected.sort();
    assert_eq!(stored_ids(&emu), expected, "none lost, none duplicated");
    assert_keys_are_ours(&dps, &singles);
}
