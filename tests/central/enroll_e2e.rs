//! Central enrollment end to end on the service: a station's outbox rows with `central_enrollment`
//! identities go through ingest, which queues the jobs; the worker enrolls them in the emulator;
//! the station's next receipt carries each outcome once; the station's `enrolled` rows then bring
//! the service's identities to `enrolled` too.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use clap::Parser;
use dps_station::central::service::enroll_args::EnrollArgs;

use crate::enroll_support::{CountingDps, device_cert};
use crate::ingest_support::{Central, Chain, runtime, snapshot};
use crate::pg::{PgCluster, wait_for};
use crate::service::{CentralService, JoinedStation};

#[derive(Parser)]
struct Serve {
    #[command(flatten)]
    enroll: EnrollArgs,
}

#[test]
fn ingested_identities_are_enrolled_centrally_and_the_next_receipt_carries_the_outcomes() {
    let rt = runtime();
    let central = Central::start(&rt, &["st-e2e"]);
    let dps = CountingDps::start();

    // The station provisions 12 X.509 devices and one symmetric-key device, all left to the
    // service to enroll: each identity issued, then written.
    let mut chain = Chain::new("st-e2e");
    let mut certificates = Vec::new();
    for n in 0..13 {
        let rid = format!("e2e-{n:02}");
        let mut s = snapshot(&rid, &format!("SN{n:04}"), "issued");
        s.central_enrollment = true;
        if n == 12 {
            s.attestation = "symmetric".into();
            s.certificate_pem = None;
        } else {
            s.certificate_pem = Some(device_cert(&rid));
        }
        certificates.push(s.certificate_pem.clone());
        chain.push("identity.issued", &rid, Some(s.clone()));
        s.state = "written".into();
        chain.push("identity.written", &rid, Some(s));
    }
    let first = rt.block_on(central.ingest(&chain.batch(1, 26))).unwrap();
    assert_eq!(first.stored, 26);
    assert!(first.enrollments.is_empty());
    assert_eq!(
        central.sql("SELECT count(*) FROM enrollment_jobs WHERE state = 'pending'"),
        "13"
    );

    // The service's worker, started as `central serve --dps-connection-string-file ...` starts it.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dps");
    std::fs::write(&file, dps.emulator.connection_string().expose()).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let args = Serve::parse_from([
        "serve",
        "--dps-connection-string-file",
        file.to_str().unwrap(),
        "--dps-endpoint",
        &dps.endpoint(),
        "--enroll-rate",
        "1000",
        "--enroll-poll-seconds",
        "1",
    ])
    .enroll;
    let worker = args
        .start(&central.service_url)
        .unwrap()
        .expect("the worker starts when a connection string file is given");
    let settled = wait_for(Duration::from_secs(60), || {
        central.sql("SELECT count(*) FROM enrollment_jobs WHERE state <> 'pending'") == "13"
    });
    worker.stop();
    assert!(settled, "the worker did not settle the jobs");

    // The next ingest's receipt carries every outcome, once.
    chain.push("station.note", "line", None);
    let second = rt.block_on(central.ingest(&chain.batch(27, 27))).unwrap();
    assert_eq!(second.enrollments.len(), 13);
    let etags = dps.etags();
    for outcome in &second.enrollments {
        if outcome.registration_id == "e2e-12" {
            assert_eq!(outcome.status, "failed");
            let error = outcome.error.as_deref().unwrap_or_default();
            assert!(error.contains("symmetric-key"), "{error}");
        } else {
            assert_eq!(outcome.status, "enrolled", "{outcome:?}");
            assert!(outcome.etag.is_some());
            assert_eq!(outcome.etag.as_ref(), etags.get(&outcome.registration_id));
        }
    }
    assert_eq!(etags.len(), 12);
    assert!(dps.creates().values().all(|&n| n == 1));
    chain.push("station.note", "line", None);
    let third = rt.block_on(central.ingest(&chain.batch(28, 28))).unwrap();
    assert!(third.enrollments.is_empty(), "outcomes were reported twice");

    // The station records the results in its ledger; those rows reach the service as well.
    for outcome in second.enrollments.iter().filter(|o| o.status == "enrolled") {
        let rid = &outcome.registration_id;
        let n: usize = rid.trim_start_matches("e2e-").parse().unwrap();
        let mut s = snapshot(rid, &format!("SN{n:04}"), "enrolled");
        s.central_enrollment = true;
        s.certificate_pem = certificates[n].clone();
        chain.push("identity.enrolled", rid, Some(s));
    }
    let last = chain.rows.len() as i64;
    rt.block_on(central.ingest(&chain.batch(29, last))).unwrap();
    assert_eq!(
        central.sql("SELECT count(*) FROM identities WHERE state = 'enrolled'"),
        "12"
    );
}

/// One ingest over HTTPS with the station's certificate; the receipt, verified with the signer
/// certificate the station got at join.
fn post_ingest(
    service: &CentralService,
    station: &JoinedStation,
    batch: &dps_station::central::wire::IngestBatch,
) -> dps_station::central::wire::Receipt {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    let response = service
        .client(Some(station))
        .post(format!(
            "{}{}",
            service.url(),
            dps_station::central::wire::paths::INGEST
        ))
        .json(batch)
        .send()
        .expect("the ingest reaches the service");
    let status = response.status().as_u16();
    let text = response.text().unwrap();
    assert_eq!(status, 200, "{text}");
    let signed: dps_station::central::signing::Signed<dps_station::central::wire::Receipt> =
        serde_json::from_str(&text).unwrap();
    let der =
        CertificateDer::from_pem_slice(station.response.signer_certificate_pem.as_bytes()).unwrap();
    dps_station::central::signing::SignerCertificate::from_der(&der)
        .unwrap()
        .verify(&signed)
        .unwrap()
}

#[test]
fn two_serve_processes_given_the_flags_enroll_a_joined_stations_identities_once() {
    let pg = PgCluster::start();
    let dps = CountingDps::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dps");
    std::fs::write(&file, dps.emulator.connection_string().expose()).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let endpoint = dps.endpoint();
    let service = CentralService::start_with(
        &pg,
        &[
            "--dps-connection-string-file",
            file.to_str().unwrap(),
            "--dps-endpoint",
            &endpoint,
            "--enroll-rate",
            "1000",
            "--enroll-poll-seconds",
            "1",
        ],
    );
    let replica = service.replica();
    let station = service.join("st-p");

    let mut chain = Chain::new("st-p");
    for n in 0..20 {
        let rid = format!("p-{n:02}");
        let mut s = snapshot(&rid, &format!("P{n:04}"), "written");
        s.central_enrollment = true;
        s.certificate_pem = Some(device_cert(&rid));
        chain.push("identity.written", &rid, Some(s));
    }
    let first = post_ingest(&service, &station, &chain.batch(1, 20));
    assert_eq!(first.stored, 20);
    let settled = wait_for(Duration::from_secs(90), || {
        pg.psql(
            "central",
            "SELECT count(*) FROM enrollment_jobs WHERE state = 'enrolled'",
        ) == "20"
    });
    assert!(
        settled,
        "the replicas did not enroll the jobs; the service's log:\n{}",
        service.log()
    );
    chain.push("station.note", "line", None);
    // Through the other replica: any replica reports the outcomes.
    let second = post_ingest(&replica, &station, &chain.batch(21, 21));
    assert_eq!(second.enrollments.len(), 20);
    let etags = dps.etags();
    for outcome in &second.enrollments {
        assert_eq!(outcome.status, "enrolled");
        assert_eq!(outcome.etag.as_ref(), etags.get(&outcome.registration_id));
    }
    let creates = dps.creates();
    assert_eq!(creates.len(), 20);
    assert!(creates.values().all(|&n| n == 1), "{creates:?}");
    let log = service.log();
    assert!(log.contains("central enrollment worker started"), "{log}");
    assert!(!log.contains(dps.emulator.primary_key().expose()));
    drop(replica);
}
