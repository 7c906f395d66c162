//! A secret never crosses the wire in plaintext: every byte both ways is recorded while a private
//! key and a symmetric key are injected, and the secrets are searched for in every encoding.

use std::io::{Read, Write};
use std::sync::{Arc, Mutex};

use base64::Engine;
use dps_station::device::client::LineClient;
use dps_station::device::protocol::b64_encode;
use dps_station::device::simulator::{Fleet, SimOptions};
use dps_station::secret::SecretBytes;

use crate::common::fast_options;

/// The port with a tap: every byte written and read is appended to `log`.
struct Recording<P> {
    port: P,
    log: Arc<Mutex<Vec<u8>>>,
}

impl<P: Read> Read for Recording<P> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.port.read(buf)?;
        self.log.lock().unwrap().extend_from_slice(&buf[..n]);
        Ok(n)
    }
}

impl<P: Write> Write for Recording<P> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.port.write(buf)?;
        self.log.lock().unwrap().extend_from_slice(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.port.flush()
    }
}

/// Every form the secret could take on a text line: raw, hex (both cases), base64 (standard and
/// URL-safe, at each of the three alignments it can have inside a longer base64 string).
fn forms(secret: &[u8]) -> Vec<Vec<u8>> {
    let mut out = vec![
        secret.to_vec(),
        hex::encode(secret).into_bytes(),
        hex::encode_upper(secret).into_bytes(),
    ];
    for engine in [
        base64::engine::general_purpose::STANDARD,
        base64::engine::general_purpose::URL_SAFE,
    ] {
        for pad in 0..3 {
            let mut shifted = vec![0u8; pad];
            shifted.extend_from_slice(secret);
            let text = engine.encode(&shifted);
            // Drop the characters that mix with the padding bytes and the tail: the core is
            // what would appear wherever the secret sits in a longer encoded payload.
            let core = &text.as_bytes()[(pad * 4).div_ceil(3) + 1..text.len() - 4];
            out.push(core.to_vec());
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn injected_secrets_appear_on_the_wire_in_no_form() {
    let fleet = Fleet::start(1, &SimOptions::default()).unwrap();
    let path = fleet.paths()[0].clone();
    let log = Arc::new(Mutex::new(Vec::new()));
    let port = dps_station::device::transport::open(&path, 115_200).unwrap();
    let mut client = LineClient::new(
        &path,
        Recording {
            port,
            log: log.clone(),
        },
        fast_options(),
    );

    let private = SecretBytes::new((1..=32).map(|i| i * 7).collect());
    let symmetric = SecretBytes::new((0..32).map(|i| 0xA0 ^ i).collect());
    client.hello().unwrap();
    client.open_session().unwrap();
    client.put_private_key(&private).unwrap();
    client.put_symmetric_key(&symmetric).unwrap();
    client.readback().unwrap();

    // The secrets did arrive.
    let flash = fleet.flash(0).unwrap();
    assert_eq!(flash.key, Some(hex::encode(private.expose())));
    assert_eq!(flash.symmetric_key, Some(hex::encode(symmetric.expose())));

    let wire = log.lock().unwrap().clone();
    assert!(
        contains(&wire, b"PUT item=private-key enc=aes256gcm"),
        "the recording holds the PUT frames"
    );
    for secret in [private.expose(), symmetric.expose()] {
        for form in forms(secret) {
            assert!(
                !contains(&wire, &form),
                "secret found on the wire as {:?}",
                String::from_utf8_lossy(&form)
            );
        }
    }
    // Self-check of the search: a plaintext PUT would have been caught.
    assert!(
        forms(symmetric.expose())
            .iter()
            .any(|f| contains(b64_encode(symmetric.expose()).as_bytes(), f))
    );
}

#[test]
fn the_device_refuses_a_plaintext_secret() {
    let fleet = Fleet::start(1, &SimOptions::default()).unwrap();
    let mut client = LineClient::open(&fleet.paths()[0], fast_options()).unwrap();
    client.hello().unwrap();
    client.open_session().unwrap();
    let reply = client
        .raw(&format!(
            "PUT item=symmetric-key off=0 total=32 data={}",
            b64_encode(&[1u8; 32])
        ))
        .unwrap();
    assert_eq!(reply.get("code"), Some("PLAINTEXT_REFUSED"));
    assert_eq!(fleet.flash(0).unwrap().symmetric_key, None);
}
