//! The whole protocol against the simulator: identify, key, CSR, chain, config, readback, lock,
//! injection in a session, TPM EK, negotiation, persistence and the guarded factory reset.

use std::collections::BTreeMap;

use std::process::Command;
use x509_parser::prelude::FromDer;

use dps_station::device::LineClient;
use dps_station::device::driver::{DeviceConfig, DeviceDriver};
use dps_station::device::error::DeviceError;
use dps_station::device::protocol::{ErrorCode, caps, sha256_hex};
use dps_station::device::replies::Expected;
use dps_station::device::simulator::{FirmwareOptions, Fleet, SimOptions};
use dps_station::secret::SecretBytes;

use crate::common::{device, fast_options, issue_chain};

fn config(regid: &str) -> DeviceConfig {
    let mut extra = BTreeMap::new();
    extra.insert("product.color".to_string(), b"blue, with spaces".to_vec());
    DeviceConfig {
        registration_id: regid.into(),
        id_scope: "0ne00ABCDEF".into(),
        global_endpoint: "global.azure-devices-provisioning.net".into(),
        extra,
    }
}

/// `openssl req -verify` on a CSR: the independent check that the device's CSR is well formed and
/// signed by the key it claims. Returns openssl's subject line.
fn openssl_verify_csr(der: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("device.csr");
    std::fs::write(&path, der).unwrap();
    let out = Command::new("openssl")
        .args(["req", "-inform", "DER", "-in"])
        .arg(&path)
        .args(["-verify", "-noout", "-subject"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl rejected the CSR: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn x509_flow_writes_reads_back_and_locks() {
    let (fleet, mut client) = device(&SimOptions::default());
    let info = client.hello().unwrap();
    assert_eq!(info.serial, fleet.flash(0).unwrap().serial);
    assert_eq!(info.protocol, 1);
    assert!(!info.locked);
    for cap in [
        caps::P256_KEYGEN,
        caps::CSR,
        caps::ENCRYPTED_INJECTION,
        caps::SYMMETRIC_KEY,
        caps::LOCK,
        caps::TPM_EK,
    ] {
        assert!(info.has(cap), "missing {cap}");
    }

    let public = client.keygen().unwrap();
    let csr = client.csr("widget-0042").unwrap();
    assert!(
        openssl_verify_csr(&csr).contains("CN=widget-0042")
            || openssl_verify_csr(&csr).contains("CN = widget-0042")
    );
    let parsed = x509_parser::certification_request::X509CertificationRequest::from_der(&csr)
        .unwrap()
        .1;
    assert_eq!(
        parsed
            .certification_request_info
            .subject_pki
            .subject_public_key
            .data
            .as_ref(),
        public.as_slice()
    );

    let chain = issue_chain(csr);
    assert!(
        chain.len() > 2 * 512,
        "the chain must take several PUT chunks ({} bytes)",
        chain.len()
    );
    let stored = client.put_certificate_chain(chain.as_bytes()).unwrap();
    assert_eq!(stored.sha256, sha256_hex(chain.as_bytes()));
    let cfg = config("widget-0042");
    client.config(&cfg).unwrap();

    let readback = client.readback().unwrap();
    let expected = Expected {
        key: Some(sha256_hex(&public)),
        chain: Some(sha256_hex(chain.as_bytes())),
        config: Some(cfg.digest_hex()),
        ..Expected::default()
    };
    assert_eq!(readback.differences(&expected), Vec::<&str>::new());
    assert!(!readback.locked);
    assert_eq!(readback.symmetric_key, None);
    let flash = fleet.flash(0).unwrap();
    assert_eq!(
        flash.config.unwrap()[0],
        ("regid".to_string(), "widget-0042".to_string())
    );

    client.lock().unwrap();
    assert!(client.readback().unwrap().locked);
    assert!(client.hello().unwrap().locked);
    // After LOCK every write is refused, with words that say so.
    let err = client.put_certificate_chain(b"other chain").unwrap_err();
    assert!(
        matches!(
            &err,
            DeviceError::Refused {
                code: ErrorCode::Locked,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("locked"), "{err}");
    assert!(matches!(
        client.config(&config("x")),
        Err(DeviceError::Refused {
            code: ErrorCode::Locked,
            ..
        })
    ));
    assert!(matches!(
        client.keygen(),
        Err(DeviceError::Refused {
            code: ErrorCode::Locked,
            ..
        })
    ));
    // ...and nothing changed.
    assert_eq!(
        client.readback().unwrap().differences(&expected),
        Vec::<&str>::new()
    );
}

#[test]
fn injected_keys_travel_in_a_session_and_are_used() {
    let (fleet, mut client) = device(&SimOptions::default());
    client.hello().unwrap();
    // No session yet: the client refuses to send a secret at all.
    let key = SecretBytes::new(vec![0x5A; 32]);
    let err = client.put_symmetric_key(&key).unwrap_err();
    assert!(matches!(err, DeviceError::NoSession { .. }), "{err}");

    client.open_session().unwrap();
    let scalar = p256::SecretKey::from_slice(&[0x11; 32]).unwrap();
    let public = scalar.public_key().to_sec1_bytes();
    client
        .put_private_key(&SecretBytes::new(vec![0x11; 32]))
        .unwrap();
    client.put_symmetric_key(&key).unwrap();
    let readback = client.readback().unwrap();
    assert_eq!(readback.key, Some(sha256_hex(&public)));
    assert_eq!(readback.symmetric_key, Some(sha256_hex(key.expose())));
    assert_eq!(
        fleet.flash(0).unwrap().symmetric_key,
        Some(hex::encode(key.expose()))
    );
    // The CSR is signed with the injected key.
    let csr = client.csr("injected-1").unwrap();
    openssl_verify_csr(&csr);
    let parsed = x509_parser::certification_request::X509CertificationRequest::from_der(&csr)
        .unwrap()
        .1;
    assert_eq!(
        parsed
            .certification_request_info
            .subject_pki
            .subject_public_key
            .data
            .as_ref(),
        public.as_ref()
    );
}

#[test]
fn tpm_ek_is_reported_and_absence_is_a_clear_error() {
    let (_fleet, client) = device(&SimOptions::default());
    // The station holds drivers as trait objects, so other firmware families fit beside ours.
    let mut client: Box<dyn DeviceDriver> = Box::new(client);
    let info = client.identify().unwrap();
    assert!(info.capabilities.endorsement_key, "announced in HELLO");
    let ek = client.endorsement_key().unwrap();
    let (_, spki) = x509_parser::x509::SubjectPublicKeyInfo::from_der(&ek.public_der).unwrap();
    assert_eq!(
        spki.algorithm.algorithm.to_id_string(),
        "1.2.840.10045.2.1",
        "an EC key"
    );
    assert_eq!(client.endorsement_key().unwrap(), ek, "the EK is stable");
    assert!(ek.suggested_registration_id.is_some());

    let no_tpm = SimOptions {
        firmware: FirmwareOptions {
            tpm: false,
            ..FirmwareOptions::default()
        },
        ..SimOptions::default()
    };
    let (_fleet, mut client) = device(&no_tpm);
    client.hello().unwrap();
    let err = client.tpm_ek().unwrap_err();
    assert!(
        matches!(
            err,
            DeviceError::Unsupported {
                capability: "tpm-ek",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn unknown_version_and_command_get_error_frames() {
    let (_fleet, mut client) = device(&SimOptions::default());
    let reply = client.raw("HELLO v=7,9").unwrap();
    assert_eq!(
        (reply.verb.as_str(), reply.get("code")),
        ("ERR", Some("VERSION"))
    );
    let reply = client.raw("FROBNICATE").unwrap();
    assert_eq!(reply.get("code"), Some("UNKNOWN_COMMAND"));
    let reply = client.raw("CSR cn=d2lkZ2V0").unwrap();
    assert_eq!(reply.get("code"), Some("NO_KEY"));
    let reply = client
        .raw("PUT item=chain off=512 total=1000 data=AAAA")
        .unwrap();
    assert_eq!(
        reply.get("code"),
        Some("SEQUENCE"),
        "a chunk without its start is refused"
    );
}

#[test]
fn flash_persists_across_a_restart_of_the_simulator() {
    let dir = tempfile::tempdir().unwrap();
    let options = SimOptions {
        flash_dir: Some(dir.path().to_path_buf()),
        ..SimOptions::default()
    };
    let fleet = Fleet::start(1, &options).unwrap();
    let mut client = LineClient::open(&fleet.paths()[0], fast_options()).unwrap();
    let first = client.hello().unwrap();
    client.keygen().unwrap();
    client.config(&config("persisted-1")).unwrap();
    let before = client.readback().unwrap();
    drop(client);
    fleet.stop();

    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("sim-0.json")).unwrap()).unwrap();
    assert_eq!(json["serial"], first.serial.as_str());
    let fleet = Fleet::start(1, &options).unwrap();
    let mut client = LineClient::open(&fleet.paths()[0], fast_options()).unwrap();
    let second = client.hello().unwrap();
    assert_eq!(second.serial, first.serial);
    assert_eq!(second.boot_counter, first.boot_counter + 1);
    assert_eq!(client.readback().unwrap(), before);
}

#[test]
fn factory_reset_is_guarded_and_wipes_when_allowed() {
    let guarded = SimOptions {
        firmware: FirmwareOptions {
            reset_guarded: true,
            ..FirmwareOptions::default()
        },
        ..SimOptions::default()
    };
    let (_fleet, mut client) = device(&guarded);
    client.hello().unwrap();
    client.keygen().unwrap();
    client.lock().unwrap();
    let err = client.factory_reset().unwrap_err();
    assert!(
        matches!(
            err,
            DeviceError::Refused {
                code: ErrorCode::Guarded,
                ..
            }
        ),
        "{err}"
    );
    assert!(client.readback().unwrap().locked);

    let (_fleet, mut client) = device(&SimOptions::default());
    client.hello().unwrap();
    client.keygen().unwrap();
    client.lock().unwrap();
    // A RESET confirmation without the nonce of a preceding RESET is refused.
    let reply = client.raw("RESET nonce=00 serial=x").unwrap();
    assert_eq!(reply.get("code"), Some("BAD_ARG"));
    client.factory_reset().unwrap();
    let readback = client.readback().unwrap();
    assert!(!readback.locked);
    assert_eq!(readback.key, None);
}

#[test]
fn a_virtual_fixture_runs_devices_in_parallel() {
    let fleet = Fleet::start(4, &SimOptions::default()).unwrap();
    let paths = fleet.paths();
    assert_eq!(paths.len(), 4);
    let serials: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = paths
            .iter()
            .map(|p| {
                s.spawn(move || {
                    let mut client = LineClient::open(p, fast_options()).unwrap();
                    let serial = client.hello().unwrap().serial;
                    client.keygen().unwrap();
                    serial
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let unique: std::collections::BTreeSet<_> = serials.iter().collect();
    assert_eq!(unique.len(), 4, "each device has its own serial");
    for i in 0..4 {
        assert!(fleet.flash(i).unwrap().key.is_some());
    }
}

/// Reads lines from a raw port until `count` frames arrived (bounded by a deadline).
fn read_frames(
    port: &mut Box<dyn serialport::SerialPort>,
    count: usize,
) -> Vec<dps_station::device::frame::Frame> {
    use dps_station::device::frame::{Frame, Line, LineAssembler};
    let mut assembler = LineAssembler::new();
    let mut frames = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    while frames.len() < count && std::time::Instant::now() < deadline {
        let mut buf = [0u8; 512];
        if let Ok(n) = std::io::Read::read(port, &mut buf) {
            for line in assembler.push(&buf[..n]) {
                if let Line::Complete(l) = line
                    && let Ok(f) = Frame::parse(&l)
                    && f.verb != "BOOT"
                {
                    frames.push(f);
                }
            }
        }
    }
    frames
}

#[test]
fn a_retransmitted_request_is_answered_from_the_cache_not_run_twice() {
    use dps_station::device::frame::Frame;
    let fleet = Fleet::start(1, &SimOptions::default()).unwrap();
    let mut port = dps_station::device::transport::open(&fleet.paths()[0], 115_200).unwrap();
    let keygen = Frame::new(5, "KEYGEN").encode().unwrap();
    // The same bytes twice (a retry): one key, the same reply twice.
    std::io::Write::write_all(&mut port, &keygen).unwrap();
    let first = read_frames(&mut port, 1);
    std::io::Write::write_all(&mut port, &keygen).unwrap();
    let second = read_frames(&mut port, 1);
    assert_eq!(first.len(), 1);
    assert_eq!(first, second, "a retry must not generate a second key");
    // A new request id is a new command: a new key.
    std::io::Write::write_all(&mut port, &Frame::new(6, "KEYGEN").encode().unwrap()).unwrap();
    let third = read_frames(&mut port, 1);
    assert_ne!(third[0].get("pub"), first[0].get("pub"));
}
