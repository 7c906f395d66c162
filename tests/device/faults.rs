//! Each fault mode of the simulator ends in its defined outcome: the retry succeeds, or the step
//! fails with a clear error within its time bound, and nothing is reported as written that the
//! device did not confirm.

use std::collections::BTreeSet;

use serialport::SerialPort;
use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dps_station::device::client::{ClientOptions, LineClient, WireEvent};
use dps_station::device::driver::DeviceConfig;
use dps_station::device::error::DeviceError;
use dps_station::device::frame::Frame;
use dps_station::device::protocol::sha256_hex;
use dps_station::device::replies::Expected;
use dps_station::device::simulator::{FirmwareOptions, Fleet, SimFaults, SimOptions};

use crate::common::{Client, device, fast_options, issue_chain};

fn cfg() -> DeviceConfig {
    DeviceConfig {
        registration_id: "fault-test-1".into(),
        id_scope: "0ne00ABCDEF".into(),
        global_endpoint: "global.azure-devices-provisioning.net".into(),
        extra: Default::default(),
    }
}

/// Runs the X.509 flow and checks the readback; returns (frames sent, distinct request ids).
fn full_flow(client: &mut Client) -> (usize, usize) {
    let sent = Arc::new(Mutex::new(Vec::<u32>::new()));
    let record = sent.clone();
    client.set_observer(move |event| {
        if let WireEvent::Sent(bytes) = event {
            record.lock().unwrap().push(Frame::parse(bytes).unwrap().id);
        }
    });
    client.hello().unwrap();
    let public = client.keygen().unwrap();
    let chain = issue_chain(client.csr("fault-test-1").unwrap());
    client.put_certificate_chain(chain.as_bytes()).unwrap();
    client.config(&cfg()).unwrap();
    let expected = Expected {
        key: Some(sha256_hex(&public)),
        chain: Some(sha256_hex(chain.as_bytes())),
        config: Some(cfg().digest_hex()),
        ..Expected::default()
    };
    assert_eq!(
        client.readback().unwrap().differences(&expected),
        Vec::<&str>::new()
    );
    client.lock().unwrap();
    let ids = sent.lock().unwrap().clone();
    let distinct: BTreeSet<u32> = ids.iter().copied().collect();
    (ids.len(), distinct.len())
}

fn faulty(faults: SimFaults) -> SimOptions {
    SimOptions {
        faults,
        ..SimOptions::default()
    }
}

#[test]
fn dropped_and_corrupted_bytes_are_retried_to_success() {
    let fleet = Fleet::start(
        1,
        &faulty(SimFaults {
            drop_rate: 0.0005,
            corrupt_rate: 0.0008,
            seed: 7,
            ..SimFaults::default()
        }),
    )
    .unwrap();
    let options = ClientOptions {
        attempts: 10,
        ..fast_options()
    };
    let mut client = LineClient::open(&fleet.paths()[0], options).unwrap();
    let (sent, distinct) = full_flow(&mut client);
    assert!(
        sent > distinct,
        "the noise must have caused retries ({sent} frames for {distinct} requests)"
    );
}

#[test]
fn garbage_between_frames_costs_no_retry() {
    let (_fleet, mut client) = device(&faulty(SimFaults {
        garbage: true,
        ..SimFaults::default()
    }));
    let (sent, distinct) = full_flow(&mut client);
    assert_eq!(sent, distinct, "noise lines are skipped, not retried");
}

#[test]
fn uart_speed_is_emulated() {
    let (_fleet, mut client) = device(&faulty(SimFaults {
        baud: Some(115_200),
        ..SimFaults::default()
    }));
    let started = Instant::now();
    full_flow(&mut client);
    let (sent, received) = client.byte_counts();
    let lower = Duration::from_secs_f64((sent + received) as f64 * 10.0 / 115_200.0);
    assert!(
        started.elapsed() >= lower,
        "{:?} is faster than the wire allows ({lower:?})",
        started.elapsed()
    );
}

#[test]
fn a_device_that_never_answers_fails_within_the_timeout() {
    // A pty with nothing behind it: the master end is held open but never read.
    let (_master, slave) = serialport::TTYPort::pair().unwrap();
    let path = slave.name().unwrap();
    let mut client = LineClient::open(&path, fast_options()).unwrap();
    let started = Instant::now();
    let err = client.hello().unwrap_err();
    let waited = started.elapsed();
    assert!(
        matches!(err, DeviceError::NoAnswer { attempts: 3, .. }),
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.contains("stopped answering during HELLO") && text.contains("check the cable"),
        "{text}"
    );
    // 3 attempts × (400 ms + wire time of 1 KiB at 115200 ≈ 90 ms) plus scheduling slack.
    assert!(
        waited >= Duration::from_millis(1200) && waited < Duration::from_millis(4000),
        "{waited:?}"
    );
}

#[test]
fn a_disconnect_is_reported_and_nothing_more_is_claimed() {
    let (fleet, mut client) = device(&faulty(SimFaults {
        disconnect_after: Some(3),
        ..SimFaults::default()
    }));
    client.hello().unwrap();
    client.keygen().unwrap();
    let csr = client.csr("gone-1").unwrap();
    let started = Instant::now();
    let err = client
        .put_certificate_chain(issue_chain(csr).as_bytes())
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    assert!(fleet.devices()[0].disconnected());
    assert!(
        matches!(
            err,
            DeviceError::Vanished { .. } | DeviceError::NoAnswer { .. }
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains("PUT of the certificate chain"),
        "{err}"
    );
    assert_eq!(
        fleet.flash(0).unwrap().chain,
        None,
        "the device holds no chain"
    );
}

#[test]
fn a_reboot_in_the_middle_of_a_put_is_reported_and_leaves_no_half_chain() {
    // Frames: 1 HELLO, 2 KEYGEN, 3 CSR, 4 first chain chunk, 5 second chunk → reboot.
    let (fleet, mut client) = device(&faulty(SimFaults {
        reboot_at: Some(5),
        ..SimFaults::default()
    }));
    let first = client.hello().unwrap();
    client.keygen().unwrap();
    let chain = issue_chain(client.csr("reboot-1").unwrap());
    let err = client.put_certificate_chain(chain.as_bytes()).unwrap_err();
    assert!(matches!(err, DeviceError::Restarted { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("restarted during PUT of the certificate chain"),
        "{err}"
    );
    let again = client.hello().unwrap();
    assert_eq!(again.boot_counter, first.boot_counter + 1);
    let readback = client.readback().unwrap();
    assert_eq!(readback.chain, None, "no half-written chain");
    assert!(readback.key.is_some(), "the key survived in flash");
    assert_eq!(fleet.flash(0).unwrap().chain, None);
    // The station runs the step again and it completes.
    client.put_certificate_chain(chain.as_bytes()).unwrap();
    assert_eq!(
        client.readback().unwrap().chain,
        Some(sha256_hex(chain.as_bytes()))
    );
}

#[test]
fn a_reboot_loses_the_session_and_the_secret_is_refused_not_half_stored() {
    // Frames: 1 HELLO, 2 SESSION, 3 PUT symmetric-key → reboot instead of answering.
    let (fleet, mut client) = device(&faulty(SimFaults {
        reboot_at: Some(3),
        ..SimFaults::default()
    }));
    client.hello().unwrap();
    client.open_session().unwrap();
    let err = client
        .put_symmetric_key(&dps_station::secret::SecretBytes::new(vec![9; 32]))
        .unwrap_err();
    assert!(matches!(err, DeviceError::Restarted { .. }), "{err}");
    assert_eq!(fleet.flash(0).unwrap().symmetric_key, None);
    // The session is gone with the reboot: the client will not send the secret without a new one.
    let err = client
        .put_symmetric_key(&dps_station::secret::SecretBytes::new(vec![9; 32]))
        .unwrap_err();
    assert!(matches!(err, DeviceError::NoSession { .. }), "{err}");
}

#[test]
fn slow_key_generation_is_kept_alive_by_busy_frames() {
    let options = SimOptions {
        firmware: FirmwareOptions {
            keygen_delay: Duration::from_millis(1500),
            ..FirmwareOptions::default()
        },
        ..SimOptions::default()
    };
    let (_fleet, mut client) = device(&options);
    client.hello().unwrap();
    let started = Instant::now();
    // 1.5 s is longer than the 1 s idle timeout: only the BUSY keep-alives make this succeed.
    client.keygen().unwrap();
    assert!(started.elapsed() >= Duration::from_millis(1500));
}

#[test]
fn an_overlong_line_is_rejected_and_the_device_resyncs() {
    let fleet = Fleet::start(1, &SimOptions::default()).unwrap();
    let path = fleet.paths()[0].clone();
    {
        let mut raw = serialport::new(&path, 115_200)
            .timeout(Duration::from_millis(50))
            .open()
            .unwrap();
        let mut junk = vec![b'A'; 3000];
        junk.push(b'\n');
        raw.write_all(&junk).unwrap();
        let mut seen = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline && !String::from_utf8_lossy(&seen).contains("TOO_LONG") {
            let mut buf = [0u8; 256];
            if let Ok(n) = raw.read(&mut buf) {
                seen.extend_from_slice(&buf[..n]);
            }
        }
        assert!(
            String::from_utf8_lossy(&seen).contains("@0 ERR code=TOO_LONG"),
            "{}",
            String::from_utf8_lossy(&seen)
        );
    }
    let mut client = LineClient::open(&path, fast_options()).unwrap();
    client.hello().unwrap();
}

#[test]
fn a_hopelessly_noisy_line_fails_clearly_and_in_bounded_time() {
    let (_fleet, mut client) = device(&faulty(SimFaults {
        corrupt_rate: 0.2,
        seed: 3,
        ..SimFaults::default()
    }));
    let started = Instant::now();
    let err = client.hello().unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    assert!(
        matches!(
            err,
            DeviceError::Garbled { .. } | DeviceError::NoAnswer { .. }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("check the cable"), "{err}");
}

#[test]
fn a_babbling_device_never_panics_the_client_and_fails_in_bounded_time() {
    // A broken device that sends random bytes (with newlines and '@' among them) without pause.
    let (mut master, slave) = serialport::TTYPort::pair().unwrap();
    let path = slave.name().unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let babbler = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut rng = dps_station::device::simulator::FaultRng::new(42);
            let deadline = Instant::now() + Duration::from_secs(5);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < deadline {
                let chunk: Vec<u8> = (0..64)
                    .map(|_| match rng.next_u64() % 16 {
                        0 => b'\n',
                        1 => b'@',
                        _ => rng.next_u64() as u8,
                    })
                    .collect();
                let _ = master.write_all(&chunk);
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    let mut client = LineClient::open(&path, fast_options()).unwrap();
    let started = Instant::now();
    let err = client.hello().unwrap_err();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    babbler.join().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    assert!(
        matches!(
            err,
            DeviceError::Garbled { .. } | DeviceError::NoAnswer { .. }
        ),
        "{err}"
    );
    drop(slave);
}
