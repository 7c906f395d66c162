//! What bad input and bad answers get: typed errors that name the enrollment and the DPS error,
//! no retry where a retry cannot help, and nothing sent for an ID DPS would refuse.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::time::Duration;

use dps_station::dps::payload::{self, EnrollmentSettings};
use dps_station::dps::retry::RetryPolicy;
use dps_station::dps::{ConnectionString, DpsClient, DpsError, ServiceErrorKind, TlsTrust};
use dps_station::secret::SecretString;

use crate::support::{client, client_config, emulator, key_b64};

#[test]
fn wrong_key_is_401_without_retries_and_names_what_to_check() {
    let emu = emulator(|_| {});
    let wrong = key_b64(32, 0xEE);
    let cs = ConnectionString::from_parts(
        &emu.host(),
        emu.policy_name(),
        SecretString::new(wrong.clone()),
    )
    .unwrap();
    let dps = DpsClient::new(cs, client_config(&emu)).unwrap();
    let err = dps.get_enrollment("dev-1").unwrap_err();
    let service = err.service().expect("a service error");
    assert_eq!(service.kind(), ServiceErrorKind::Unauthorized);
    assert_eq!(service.attempts, 1, "a 401 is not retried");
    assert_eq!(dps.stats().requests, 1);
    let message = err.to_string();
    assert!(
        message.contains("401") && message.contains("dev-1"),
        "{message}"
    );
    assert!(
        message.contains("clock") && message.contains("DPS_CONNECTION_STRING"),
        "{message}"
    );
    assert!(!message.contains(&wrong));

    // The secondary key is accepted, as DPS does.
    let cs =
        ConnectionString::from_parts(&emu.host(), emu.policy_name(), emu.secondary_key().clone())
            .unwrap();
    let dps = DpsClient::new(cs, client_config(&emu)).unwrap();
    assert!(dps.get_enrollment("dev-1").unwrap_err().is_not_found());
}

#[test]
fn expired_token_is_401() {
    let emu = emulator(|_| {});
    // A station clock two hours behind makes tokens expire an hour before they are sent.
    let dps = client(&emu, |c| c.clock_correction_secs = -7_200);
    let err = dps.get_enrollment("dev-1").unwrap_err();
    assert_eq!(err.kind(), Some(ServiceErrorKind::Unauthorized), "{err}");
    // Within the 5-minute skew it works.
    let dps = client(&emu, |c| {
        c.clock_correction_secs = -3_600 - 120;
    });
    assert!(dps.get_enrollment("dev-1").unwrap_err().is_not_found());
}

#[test]
fn an_id_dps_would_refuse_is_not_sent() {
    let emu = emulator(|_| {});
    let dps = client(&emu, |_| {});
    let mut e =
        payload::symmetric_key_individual("dev-1", None, None, &EnrollmentSettings::default())
            .unwrap();
    for bad in ["Dev 1", "dev-1.", "dev/1", &"x".repeat(129)] {
        e.registration_id = bad.to_string();
        let err = dps.create_enrollment(&e).unwrap_err();
        assert!(matches!(err, DpsError::RegistrationId(_)), "{bad}: {err}");
        assert!(err.to_string().contains(bad), "{err}");
    }
    let mut group =
        payload::symmetric_key_group("grp", None, None, &EnrollmentSettings::default()).unwrap();
    group.enrollment_group_id = "grp!".into();
    assert!(matches!(
        dps.create_group(&group).unwrap_err(),
        DpsError::RegistrationId(_)
    ));
    assert_eq!(dps.stats().requests, 0, "nothing was sent");
}

/// A loopback HTTP server that answers every request with `response` (a captive portal, a
/// proxy's error page): up to `count` connections, then it stops.
fn fixed_answer_server(response: &'static str, count: usize) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(count) {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut content_length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    content_length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0u8; content_length];
            let _ = std::io::Read::read_exact(&mut reader, &mut body);
            let _ = stream.write_all(response.as_bytes());
        }
    });
    format!("http://{addr}")
}

fn plain_client(endpoint: String) -> DpsClient {
    let cs = ConnectionString::parse(&SecretString::new(format!(
        "HostName=mydps.azure-devices-provisioning.net;SharedAccessKeyName=provisioningserviceowner;SharedAccessKey={}",
        key_b64(32, 1)
    )))
    .unwrap();
    DpsClient::new(
        cs,
        dps_station::dps::DpsClientConfig {
            endpoint: Some(endpoint),
            retry: RetryPolicy {
                max_attempts: 3,
                base_delay: Duration::from_millis(10),
                max_delay: Duration::from_millis(50),
            },
            timeout: Duration::from_secs(5),
            ..Default::default()
        },
    )
    .unwrap()
}

#[test]
fn an_answer_that_is_not_json_is_named() {
    let endpoint = fixed_answer_server(
        "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 30\r\nConnection: close\r\n\r\n<html>Please log in</html>    ",
        20,
    );
    let dps = plain_client(endpoint);
    let err = dps.get_enrollment("dev-1").unwrap_err();
    assert!(
        matches!(err, DpsError::UnexpectedAnswer { status: 200, .. }),
        "{err}"
    );
    let message = err.to_string();
    assert!(
        message.contains("dev-1") && message.contains("Please log in"),
        "{message}"
    );
    // Not even a DELETE, whose real answer has no body, takes such a page for success.
    let err = dps.delete_enrollment("dev-1", None).unwrap_err();
    assert!(
        matches!(err, DpsError::UnexpectedAnswer { status: 200, .. }),
        "{err}"
    );
}

#[test]
fn a_proxy_error_page_is_retried_then_reported() {
    let endpoint = fixed_answer_server(
        "HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/html\r\nContent-Length: 22\r\nConnection: close\r\n\r\n<html>bad gateway</html",
        10,
    );
    let dps = plain_client(endpoint);
    let err = dps.get_enrollment("dev-1").unwrap_err();
    let service = err.service().expect("typed by status");
    assert_eq!(
        (service.status, service.attempts, service.error_code),
        (502, 3, None)
    );
    assert!(err.to_string().contains("bad gateway"), "{err}");
}

#[test]
fn an_unreachable_service_is_a_transport_error_naming_the_endpoint() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let dps = plain_client(endpoint.clone());
    let err = dps.get_enrollment("dev-1").unwrap_err();
    assert!(
        matches!(err, DpsError::Transport { attempts: 3, .. }),
        "{err}"
    );
    assert!(err.to_string().contains(&endpoint), "{err}");
}

#[test]
fn an_untrusted_certificate_is_refused() {
    let emu = emulator(|_| {});
    // Trust a CA that did not sign the emulator's certificate.
    let other_ca = crate::support::ca_cert("Someone else");
    let dps = client(&emu, |c| {
        c.tls = TlsTrust::only(other_ca.into_bytes());
        c.retry.max_attempts = 1;
    });
    let err = dps.get_enrollment("dev-1").unwrap_err();
    assert!(matches!(err, DpsError::Transport { .. }), "{err}");
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "{err}"
    );
    assert!(emu.enrollments_snapshot().is_empty());
}
