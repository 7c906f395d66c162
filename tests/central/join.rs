//! Joining the central service, and who gets through: tokens (once, not mistyped, not expired, for
//! the right station), client certificates (the service's CA only, known, not revoked), station
//! clocks, and health when the database is read-only. Refusals name the station.

use std::time::Duration;

use dps_station::central::wire::{Health, StatusReport, paths};

use crate::pg::PgCluster;
use crate::service::{CentralService, JoinedStation, https_client};

fn get(service: &CentralService, station: Option<&JoinedStation>, path: &str) -> (u16, String) {
    let response = service
        .client(station)
        .get(format!("{}{path}", service.url()))
        .send()
        .expect("the service answers");
    (response.status().as_u16(), response.text().unwrap())
}

fn refusal_code(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body).unwrap()["code"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn a_token_joins_one_station_once_and_the_certificate_opens_the_api() {
    let pg = PgCluster::start();
    let service = CentralService::start(&pg);

    let token = service.token("st-1");
    let station = service.try_join("st-1", &token).expect("st-1 joins");
    assert_eq!(station.response.ca_certificate_pem, service.ca_pem());
    let (status, body) = get(&service, Some(&station), paths::STATUS);
    assert_eq!(status, 200, "{body}");
    let report: StatusReport = serde_json::from_str(&body).unwrap();
    assert_eq!(report.stations.len(), 1);
    assert_eq!(report.stations[0].station_id, "st-1");
    assert!(report.stations[0].last_seen.is_some(), "{report:?}");

    // The same token again: refused, naming the station and who used it.
    let (status, refusal) = service.try_join("st-1", &token).unwrap_err();
    assert_eq!((status, refusal.code.as_str()), (403, "token_used"));
    assert!(refusal.message.contains("st-1"), "{}", refusal.message);

    // A mistyped secret, a token for another station, an expired token.
    let fresh = service.token("st-2");
    let last = fresh.rfind('.').unwrap();
    let flipped = if &fresh[last - 1..last] == "0" {
        "1"
    } else {
        "0"
    };
    let mistyped = format!("{}{flipped}{}", &fresh[..last - 1], &fresh[last..]);
    let (status, refusal) = service.try_join("st-2", &mistyped).unwrap_err();
    assert_eq!((status, refusal.code.as_str()), (403, "bad_token"));
    assert!(refusal.message.contains("st-2"), "{}", refusal.message);
    let (_, refusal) = service.try_join("st-3", &fresh).unwrap_err();
    assert_eq!(refusal.code, "token_other_station");
    assert!(refusal.message.contains("st-3") && refusal.message.contains("st-2"));
    let short = service.token_with(Some("st-2"), "1s");
    std::thread::sleep(Duration::from_millis(1500));
    let (_, refusal) = service.try_join("st-2", &short).unwrap_err();
    assert_eq!(refusal.code, "token_expired");
    assert!(refusal.message.contains("st-2"), "{}", refusal.message);
    // The refused tokens did not burn the good one.
    service
        .try_join("st-2", &fresh)
        .expect("st-2 joins with its token");

    // Without a certificate only join and health are open.
    let (status, body) = get(&service, None, paths::STATUS);
    assert_eq!(
        (status, refusal_code(&body).as_str()),
        (401, "no_client_certificate")
    );
    let (status, _) = get(&service, None, paths::HEALTH);
    assert_eq!(status, 200);

    // Re-join after a lost key: the new certificate replaces the old one.
    let again = service.join("st-1");
    let (status, body) = get(&service, Some(&station), paths::STATUS);
    assert_eq!(
        (status, refusal_code(&body).as_str()),
        (403, "unknown_station")
    );
    assert!(body.contains("st-1"), "{body}");
    assert_eq!(get(&service, Some(&again), paths::STATUS).0, 200);

    // Every join and refusal is in the service's chain; no token secret is stored anywhere.
    let joined = pg.psql(
        "central",
        "SELECT count(*) FROM central_audit WHERE action = 'station.joined'",
    );
    assert_eq!(joined, "3");
    let refused = pg.psql(
        "central",
        "SELECT string_agg(subject, ',' ORDER BY position) FROM central_audit WHERE action = 'request.refused'",
    );
    assert_eq!(
        refused,
        "token_used,bad_token,token_other_station,token_expired,unknown_station"
    );
    let secret = token.split('.').nth(2).unwrap();
    let dump = pg.psql(
        "central",
        "SELECT string_agg(t::text, ' ') FROM (SELECT * FROM join_tokens) t",
    ) + &pg.psql(
        "central",
        "SELECT string_agg(a::text, ' ') FROM (SELECT * FROM central_audit) a",
    );
    assert!(!dump.contains(secret), "a token secret was stored");
    let log = service.log();
    assert!(log.contains("station joined"), "{log}");
    assert!(!log.contains(secret), "a token secret was logged");
}

#[test]
fn foreign_certificates_revoked_stations_and_far_off_clocks_are_refused() {
    let pg = PgCluster::start();
    let service = CentralService::start(&pg);
    let replica = service.replica();
    let station = service.join("st-1");

    // A client certificate from another CA, even with the right name, fails the handshake.
    let other_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "st-1");
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let forged = JoinedStation {
        station_id: "st-1".into(),
        key_pem: other_key.serialize_pem(),
        response: dps_station::central::wire::JoinResponse {
            client_certificate_pem: params.self_signed(&other_key).unwrap().pem(),
            ..station.response.clone()
        },
    };
    let sent = https_client(&service.ca_pem(), Some(&forged))
        .get(format!("{}{}", service.url(), paths::STATUS))
        .send();
    assert!(
        sent.is_err(),
        "a foreign certificate got an answer: {sent:?}"
    );

    // Revoked on the service host: both replicas refuse it at once, naming the station.
    assert_eq!(get(&replica, Some(&station), paths::STATUS).0, 200);
    let out = service.central(&["station", "revoke", "st-1", "--reason", "stolen PC"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for answering in [&service, &replica] {
        let (status, body) = get(answering, Some(&station), paths::STATUS);
        assert_eq!((status, refusal_code(&body).as_str()), (403, "revoked"));
        assert!(
            body.contains("st-1") && body.contains("stolen PC"),
            "{body}"
        );
    }
    // Revoked stays revoked: no re-join under that name, no second revocation.
    let (_, refusal) = service
        .try_join("st-1", &service.token("st-1"))
        .unwrap_err();
    assert_eq!(refusal.code, "revoked");
    let out = service.central(&["station", "revoke", "st-1", "--reason", "again"]);
    assert!(!out.status.success());
    let table = service.central(&["status"]);
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.contains("st-1") && table.contains("revoked"),
        "{table}"
    );

    // A station whose clock is 10 minutes off cannot join.
    let token = service.token("st-2");
    let off = (time::OffsetDateTime::now_utc() - time::Duration::minutes(10))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let (status, refusal) = service.try_join_at("st-2", &token, &off).unwrap_err();
    assert_eq!((status, refusal.code.as_str()), (400, "clock_skew"));
    assert!(refusal.message.contains("st-2"), "{}", refusal.message);
    assert_eq!(
        pg.psql(
            "central",
            "SELECT count(*) FROM central_audit WHERE action = 'request.refused' AND station_id = 'st-2' AND subject = 'clock_skew'",
        ),
        "1"
    );
}

#[test]
fn health_says_read_only_when_the_database_is_and_sigterm_stops_the_service() {
    let pg = PgCluster::start();
    let mut service = CentralService::start(&pg);
    let (status, body) = get(&service, None, paths::HEALTH);
    let health: Health = serde_json::from_str(&body).unwrap();
    assert_eq!(status, 200);
    assert!(health.ok && health.writable, "{health:?}");
    assert!(health.schema_version >= 10, "{health:?}");
    let token = service.token("st-5");

    pg.psql(
        "central",
        "ALTER DATABASE central SET default_transaction_read_only = on",
    );
    service.restart(); // new connections take the setting
    let (status, body) = get(&service, None, paths::HEALTH);
    let health: Health = serde_json::from_str(&body).unwrap();
    assert_eq!(status, 503);
    assert!(!health.ok && !health.writable, "{health:?}");
    // A join against a read-only database: 503 (retry later), naming the station and the cause.
    let (status, refusal) = service.try_join("st-5", &token).unwrap_err();
    assert_eq!(
        (status, refusal.code.as_str()),
        (503, "database_unavailable")
    );
    assert!(
        refusal.message.contains("st-5") && refusal.message.contains("read-only"),
        "{}",
        refusal.message
    );

    let exit = service.terminate().expect("the service exits on SIGTERM");
    assert!(exit.success(), "{exit:?}");
}

#[test]
fn with_postgresql_stopped_requests_get_503_and_the_service_recovers_when_it_is_back() {
    let pg = PgCluster::start();
    let service = CentralService::start(&pg);
    let station = service.join("st-1");
    assert_eq!(get(&service, Some(&station), paths::STATUS).0, 200);

    // The throwaway cluster runs with synchronous_commit=off and stops with `-m immediate`: without
    // a checkpoint the join's commit could still be in WAL buffers and be lost with them.
    pg.psql("central", "CHECKPOINT");
    pg.stop();
    let (status, body) = get(&service, Some(&station), paths::STATUS);
    assert_eq!(
        (status, refusal_code(&body).as_str()),
        (503, "database_unavailable"),
        "{body}"
    );
    assert!(body.contains("st-1"), "{body}");
    let (status, body) = get(&service, None, paths::HEALTH);
    assert_eq!(status, 503, "{body}");

    pg.start_again();
    let mut last = (0, String::new());
    let back = crate::pg::wait_for(Duration::from_secs(20), || {
        last = get(&service, Some(&station), paths::STATUS);
        last.0 == 200
    });
    assert!(
        back,
        "the service did not recover after PostgreSQL came back: {last:?}\n{}",
        service.log()
    );
    assert_eq!(get(&service, None, paths::HEALTH).0, 200);
}

#[test]
fn status_counts_what_is_left_on_open_leases_and_the_conflicts_of_each_station() {
    let pg = PgCluster::start();
    let service = CentralService::start(&pg);
    service.join("st-1");
    service.join("st-2");
    // Rows as ingest and leases would write them: st-1 has an open lease of 10 with 3 identities
    // issued from it, an expired one and a returned one (neither counts), and 2 quarantined.
    pg.psql(
        "central",
        "INSERT INTO batches (batch, cap) VALUES ('B1', 100);
         INSERT INTO leases (lease_id, batch, station_id, count, issued_at, expires_at) VALUES
           ('L-open', 'B1', 'st-1', 10, now(), now() + interval '1 day'),
           ('L-expired', 'B1', 'st-1', 20, now() - interval '2 days', now() - interval '1 day');
         INSERT INTO leases (lease_id, batch, station_id, count, issued_at, expires_at, used, returned_at) VALUES
           ('L-returned', 'B1', 'st-1', 30, now(), now() + interval '1 day', 5, now());
         INSERT INTO identities (station_id, registration_id, device_model, device_serial, batch, state,
                                 attestation, lease_id, live, first_seq, last_seq)
           SELECT 'st-1', 'dev-' || n, 'M', 'S' || n, 'B1', 'written', 'x509', 'L-open', true, n, n
           FROM generate_series(1, 3) n;
         INSERT INTO quarantine (station_id, seq, registration_id, device_model, device_serial, reason, held_by)
           VALUES ('st-1', 7, 'dev-x', 'M', 'S9', 'held', 'st-2'), ('st-1', 8, 'dev-y', 'M', 'S10', 'held', 'st-2');",
    );
    let out = service.central(&["status", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: StatusReport = serde_json::from_slice(&out.stdout).unwrap();
    let ids: Vec<_> = report
        .stations
        .iter()
        .map(|s| s.station_id.as_str())
        .collect();
    assert_eq!(ids, ["st-1", "st-2"]);
    let (one, two) = (&report.stations[0], &report.stations[1]);
    assert_eq!((one.lease_left, one.conflicts), (7, 2), "{one:?}");
    assert_eq!((two.lease_left, two.conflicts), (0, 0), "{two:?}");
    assert!(!one.revoked && one.last_seen.is_none(), "{one:?}");

    let table = service.central(&["status"]);
    let table = String::from_utf8_lossy(&table.stdout);
    let line = table.lines().find(|l| l.starts_with("st-1")).unwrap();
    assert!(line.contains(" 7 ") && line.contains("never"), "{table}");
}

#[test]
fn a_joined_station_ingests_through_the_real_service_and_its_receipt_verifies() {
    use dps_station::central::signing::{Signed, SignerCertificate};
    use dps_station::central::wire::Receipt;
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;

    let pg = PgCluster::start();
    let service = CentralService::start(&pg);
    let station = service.join("st-1");
    let signer = SignerCertificate::from_der(
        &CertificateDer::from_pem_slice(station.response.signer_certificate_pem.as_bytes())
            .unwrap(),
    )
    .unwrap();
    let mut chain = crate::ingest_support::Chain::new("st-1");
    chain.fill(5);
    let post = |batch: &dps_station::central::wire::IngestBatch| {
        let response = service
            .client(Some(&station))
            .post(format!("{}{}", service.url(), paths::INGEST))
            .json(batch)
            .send()
            .unwrap();
        (response.status().as_u16(), response.text().unwrap())
    };

    let (status, body) = post(&chain.batch(1, 5));
    assert_eq!(status, 200, "{body}");
    let signed: Signed<Receipt> = serde_json::from_str(&body).unwrap();
    let receipt = signer.verify(&signed).expect("the receipt verifies");
    assert_eq!((receipt.head_seq, receipt.stored), (5, 5));
    // A re-send (the station did not see the answer) stores nothing.
    let (status, body) = post(&chain.batch(1, 5));
    assert_eq!(status, 200, "{body}");
    let again: Receipt = signer
        .verify(&serde_json::from_str(&body).unwrap())
        .unwrap();
    assert_eq!((again.head_seq, again.stored), (5, 0));

    // Speaking for another station is refused, naming both.
    let mut other = chain.batch(1, 5);
    other.station_id = "st-9".into();
    let (status, body) = post(&other);
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("st-1") && body.contains("st-9"), "{body}");
    let (status, body) = get(&service, Some(&station), paths::STATUS);
    assert_eq!(status, 200);
    let report: StatusReport = serde_json::from_str(&body).unwrap();
    assert_eq!(report.stations[0].head_seq, 5);

    // `central verify` (in the same command tree) finds every chain and receipt whole.
    let signer_pem = service.dir().join("signer.pem");
    let out = service.central(&[
        "verify",
        "--signer-certificate",
        signer_pem.to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("station st-1: 5 rows"), "{text}");
}
