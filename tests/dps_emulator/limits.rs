//! Quotas, throttling, injected faults and the state file.

use std::time::{Duration, Instant};

use dps_station::emulator::{Emulator, EmulatorConfig, Faults, Limits};
use serde_json::json;

use crate::common::{V, loopback, none_enrollment, start};

#[test]
fn quotas_refuse_the_enrollment_over_the_limit() {
    let dps = start(EmulatorConfig {
        limits: Limits {
            max_individual_enrollments: 2,
            max_symmetric_key_groups: 1,
            ..Limits::default()
        },
        ..EmulatorConfig::loopback()
    });
    assert_eq!(dps.put("/enrollments/a", &none_enrollment("a")).status, 200);
    assert_eq!(dps.put("/enrollments/b", &none_enrollment("b")).status, 200);
    let over = dps.put("/enrollments/c", &none_enrollment("c"));
    assert_eq!(over.status, 403, "{}", over.body);
    assert!(over.body["message"].as_str().unwrap().contains("maximum"));
    let update = dps.call(
        "PUT",
        &format!("/enrollments/a?{V}"),
        Some(&none_enrollment("a")),
        &[("if-match", "*")],
    );
    assert_eq!(update.status, 200, "updates do not count against the quota");
    let group =
        |id: &str| json!({ "enrollmentGroupId": id, "attestation": { "type": "symmetricKey" } });
    assert_eq!(dps.put("/enrollmentGroups/g1", &group("g1")).status, 200);
    assert_eq!(dps.put("/enrollmentGroups/g2", &group("g2")).status, 403);
}

#[test]
fn the_operation_rate_is_enforced_with_429_and_retry_after() {
    let dps = start(EmulatorConfig {
        limits: Limits {
            operations_per_minute: Some(5),
            ..Limits::default()
        },
        ..EmulatorConfig::loopback()
    });
    for i in 0..5 {
        assert_eq!(
            dps.get("/enrollments/x").status,
            404,
            "request {i} within the rate"
        );
    }
    let throttled = dps.get("/enrollments/x");
    assert_eq!(throttled.status, 429);
    assert_eq!(throttled.error_code(), 429001);
    let retry: u64 = throttled.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=12).contains(&retry), "Retry-After {retry}");
}

#[test]
fn faults_give_500s_and_dropped_connections_on_demand() {
    let dps = loopback();
    dps.emu
        .set_faults(Faults {
            error_rate: 1.0,
            ..Faults::default()
        })
        .unwrap();
    let r = dps.get("/enrollments/x");
    assert_eq!((r.status, r.error_code()), (500, 500000));

    dps.emu
        .set_faults(Faults {
            garbage_rate: 1.0,
            ..Faults::default()
        })
        .unwrap();
    let r = dps.put("/enrollments/garbage", &none_enrollment("garbage"));
    assert_eq!(r.status, 200);
    assert!(r.body.is_string(), "not JSON: {}", r.body);
    assert_eq!(r.header("content-type"), Some("text/html"));
    dps.emu.set_faults(Faults::default()).unwrap();
    assert_eq!(
        dps.get("/enrollments/garbage").status,
        404,
        "a garbage answer was not processed"
    );

    dps.emu
        .set_faults(Faults {
            drop_rate: 1.0,
            ..Faults::default()
        })
        .unwrap();
    let url = format!("{}/enrollments/dropped?{V}", dps.emu.service_url());
    for _ in 0..4 {
        let sent = dps
            .client
            .put(&url)
            .header("authorization", dps.token())
            .body(none_enrollment("dropped").to_string())
            .send();
        assert!(sent.is_err(), "the connection is dropped without an answer");
    }
    dps.emu
        .set_faults(Faults {
            slow_rate: 1.0,
            slow_delay: Duration::from_millis(300),
            ..Faults::default()
        })
        .unwrap();
    let t = Instant::now();
    assert!(dps.get("/enrollments/x").status == 404 || dps.get("/enrollments/x").status == 200);
    assert!(
        t.elapsed() >= Duration::from_millis(300),
        "slow answers are slow"
    );
    dps.emu.set_faults(Faults::default()).unwrap();
    let r = dps.call(
        "PUT",
        &format!("/enrollments/after?{V}"),
        Some(&none_enrollment("after")),
        &[],
    );
    assert_eq!(r.status, 200);
    assert!(
        dps.emu
            .set_faults(Faults {
                error_rate: 1.5,
                ..Faults::default()
            })
            .is_err()
    );
}

#[test]
fn a_share_of_faults_still_lets_a_retrying_client_finish_with_nothing_lost_or_doubled() {
    let dps = start(EmulatorConfig {
        faults: Faults {
            error_rate: 0.2,
            drop_rate: 0.2,
            ..Faults::default()
        },
        ..EmulatorConfig::loopback()
    });
    // A client that retries a create, and treats 409 after an unanswered attempt as "it landed".
    for i in 0..20 {
        let id = format!("f-{i}");
        let url = format!("{}/enrollments/{id}?{V}", dps.emu.service_url());
        let mut done = false;
        for _ in 0..40 {
            match dps
                .client
                .put(&url)
                .header("authorization", dps.token())
                .body(none_enrollment(&id).to_string())
                .send()
            {
                Ok(r) if r.status().as_u16() == 200 || r.status().as_u16() == 409 => {
                    done = true;
                    break;
                }
                _ => continue,
            }
        }
        assert!(done, "{id} never landed");
    }
    let stored = dps.emu.enrollments_snapshot();
    assert_eq!(stored.len(), 20);
}

#[test]
fn state_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dps-state.json");
    let config = EmulatorConfig {
        state_file: Some(file.clone()),
        ..EmulatorConfig::loopback()
    };
    let dps = start(config.clone());
    assert_eq!(
        dps.put("/enrollments/kept", &none_enrollment("kept"))
            .status,
        200
    );
    let group =
        json!({ "enrollmentGroupId": "kept-group", "attestation": { "type": "symmetricKey" } });
    assert_eq!(dps.put("/enrollmentGroups/kept-group", &group).status, 200);
    let scope = dps.emu.id_scope().to_owned();
    let key = dps.emu.primary_key().expose().to_owned();
    dps.emu.shutdown().unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "the state file holds keys: owner only");
    }
    let dps = start(config);
    assert_eq!(dps.emu.id_scope(), scope);
    assert_eq!(
        dps.emu.primary_key().expose(),
        key,
        "the generated key is kept too"
    );
    assert_eq!(dps.get("/enrollments/kept").status, 200);
    assert_eq!(dps.get("/enrollmentGroups/kept-group").status, 200);
    drop(dps);
    std::fs::write(&file, b"{broken").unwrap();
    let err = Emulator::start(EmulatorConfig {
        state_file: Some(file.clone()),
        ..EmulatorConfig::loopback()
    })
    .err()
    .unwrap();
    assert!(err.to_string().contains("dps-state.json"), "{err}");
}

#[test]
fn a_port_in_use_is_named() {
    let dps = loopback();
    let taken = dps
        .emu
        .https_url()
        .unwrap()
        .trim_start_matches("https://")
        .parse()
        .unwrap();
    let err = Emulator::start(EmulatorConfig {
        http: Some(taken),
        https: None,
        ..EmulatorConfig::default()
    })
    .err()
    .unwrap();
    assert!(err.to_string().contains(&taken.to_string()), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn it_starts_and_stops_inside_an_async_runtime_too() {
    let emu = Emulator::start(EmulatorConfig::loopback()).unwrap();
    let url = emu.http_url().unwrap();
    let addr = url.trim_start_matches("http://").to_owned();
    let stream = tokio::net::TcpStream::connect(&addr).await;
    assert!(stream.is_ok(), "listening on {addr}");
    drop(stream);
    drop(emu);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        tokio::net::TcpStream::connect(&addr).await.is_err(),
        "stopped listening on {addr}"
    );
}

#[test]
fn a_given_tls_certificate_is_served() {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let dps = start(EmulatorConfig {
        tls: dps_station::emulator::TlsIdentity::Given {
            cert_chain_pem: cert.pem(),
            key_pem: dps_station::secret::SecretString::new(key.serialize_pem()),
        },
        ..EmulatorConfig::loopback()
    });
    assert_eq!(dps.emu.ca_certificate_pem(), Some(cert.pem().as_str()));
    assert_eq!(
        dps.get("/enrollments/x").status,
        404,
        "a client trusting the given certificate connects"
    );
    let bad = Emulator::start(EmulatorConfig {
        tls: dps_station::emulator::TlsIdentity::Given {
            cert_chain_pem: "not pem".into(),
            key_pem: dps_station::secret::SecretString::new(key.serialize_pem()),
        },
        ..EmulatorConfig::loopback()
    });
    assert!(bad.err().unwrap().to_string().contains("TLS"));
}

#[test]
fn a_running_emulator_can_be_shared_between_threads() {
    fn shareable<T: Send + Sync>(_: &T) {}
    let dps = loopback();
    shareable(&dps.emu);
    std::thread::scope(|s| {
        for i in 0..4 {
            let dps = &dps;
            s.spawn(move || {
                let id = format!("t-{i}");
                assert_eq!(
                    dps.put(&format!("/enrollments/{id}"), &none_enrollment(&id))
                        .status,
                    200
                );
            });
        }
    });
    assert_eq!(dps.emu.enrollments_snapshot().len(), 4);
}
