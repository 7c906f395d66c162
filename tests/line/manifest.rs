//! Trust&GO on the line (issue 16): a batch with `[manifest] require = true` over simulated
//! boards whose secure elements answer `SE-INFO`. The station writes nothing; the 8 boards whose
//! elements are in the imported manifest pass and are enrolled in the emulator (and register
//! there with the keys the reel made), the one whose element is not in it fails with the
//! operator's message naming it.

use std::time::Duration;

use dps_station::device::simulator::SimOptions;
use dps_station::device::{ClientOptions, SecureElementInfo};
use dps_station::emulator::device_client::{self, DeviceCredential, DeviceRegistration};
use dps_station::identity::pem;
use dps_station::ledger::{IdentityState, Ledger, WriterIdentity};
use dps_station::manifest::build::{self, DeviceCa, ReelSigner};
use dps_station::manifest::{ManifestSigner, read_manifest};
use dps_station::secret::SecretString;
use dps_station::station::config::Mode;
use dps_station::station::demo::{DemoWorkspace, KeyStoreChoice, RunOptions};
use dps_station::station::engine::Engine;
use dps_station::station::manifest_import::{ImportOptions, ManifestEnrollment, import_manifest};
use dps_station::station::source::{DeviceSource, VirtualFixture};

#[test]
fn a_manifest_batch_passes_the_8_listed_secure_elements_and_fails_the_one_not_listed() {
    let ws = DemoWorkspace::create(KeyStoreChoice::Software).unwrap();
    let ca = DeviceCa::generate("Crypto Authentication Signer 2C00").unwrap();
    let signer = ReelSigner::generate("Manifest Signer 1").unwrap();
    let devices: Vec<_> = (1..=9)
        .map(|i| ca.device(&build::unique_id(i)).unwrap())
        .collect();
    // The reel's manifest lists the first 8; the 9th board's element came from elsewhere.
    let entries: Vec<_> = devices[..8]
        .iter()
        .map(|d| build::signed_entry(&build::payload(d, ca.cert_der()), &signer))
        .collect();
    let file = ws.dir.join("reel-T.json");
    std::fs::write(&file, serde_json::to_vec(&entries).unwrap()).unwrap();
    let report =
        read_manifest(&file, &ManifestSigner::from_der(signer.cert_der()).unwrap()).unwrap();
    {
        let mut ledger = Ledger::open(
            &ws.station.ledger,
            &WriterIdentity {
                station: "demo-station".into(),
                operator: "ann".into(),
            },
        )
        .unwrap();
        // Recorded without a DPS target: the line queues each identity as its board passes.
        let outcome = import_manifest(
            &mut ledger,
            &report,
            &ImportOptions {
                batch: "reel-T".into(),
                dps_target: None,
                enrollment: ManifestEnrollment::Individual,
            },
        )
        .unwrap();
        assert_eq!(outcome.recorded.len(), 8);
    }

    // 10 boards seated: the 8 listed, the stranger, and the first one seated again.
    let options = RunOptions {
        devices: 10,
        ..RunOptions::default()
    };
    let toml =
        ws.batch_toml(Mode::X509Csr, "tng-line", &options) + "\n[manifest]\nrequire = true\n";
    let elements = devices
        .iter()
        .chain(&devices[..1])
        .map(|d| SecureElementInfo {
            serial: d.unique_id.to_ascii_uppercase(),
            public_key: d.public_key(),
        })
        .collect();
    let fixture = VirtualFixture::with_secure_elements(
        10,
        SimOptions::default(),
        ClientOptions::default(),
        elements,
    );
    let sources: Vec<(String, Box<dyn DeviceSource>)> = (1..=8)
        .map(|i| {
            let slot = format!("S{i}");
            (
                slot.clone(),
                Box::new(fixture.slot(&slot)) as Box<dyn DeviceSource>,
            )
        })
        .collect();
    let engine = Engine::start(ws.engine_setup("tng-line", &toml, sources).unwrap()).unwrap();
    for _ in engine.events.iter() {}
    let summary = engine.join().unwrap();

    // The board seated twice passes again but is not counted: its place is given back.
    assert_eq!(summary.passed(), 8, "{:?}", summary.outcomes);
    assert_eq!(fixture.records().len(), 10, "every board was seated");
    let failures: Vec<_> = summary
        .outcomes
        .iter()
        .filter_map(|o| o.failure.as_ref())
        .collect();
    assert_eq!(failures.len(), 1, "{failures:?}");
    let (_, message) = failures[0];
    assert!(
        message.contains("in no imported manifest")
            && message.contains("set the device aside")
            && message.to_ascii_lowercase().contains(&devices[8].unique_id),
        "{message}"
    );
    // Passed devices carry the manifest's registration IDs; nothing was written to any board.
    let mut passed: Vec<String> = summary
        .outcomes
        .iter()
        .filter(|o| o.failure.is_none())
        .filter_map(|o| o.registration_id.clone())
        .collect();
    passed.sort();
    let mut listed: Vec<String> = devices[..8]
        .iter()
        .map(|d| format!("sn{}", d.unique_id))
        .collect();
    listed.sort();
    assert_eq!(passed, listed);
    for record in fixture.records() {
        assert!(
            record.flash.chain.is_none() && record.flash.config.is_none() && !record.flash.locked,
            "the station wrote to {}",
            record.flash.serial
        );
    }

    // Enrolled by the line's worker, then each board registers with its own key.
    assert_eq!(summary.enrollment.enrolled, 8, "{:?}", summary.enrollment);
    let ledger = Ledger::open_read_only(&ws.station.ledger).unwrap();
    for d in &devices[..8] {
        let rid = format!("sn{}", d.unique_id);
        let identity = ledger.find_identity(&rid).unwrap().unwrap();
        assert_eq!(identity.state, IdentityState::Enrolled, "{rid}");
        let chain_pem =
            pem::encode("CERTIFICATE", &d.cert_der) + &pem::encode("CERTIFICATE", ca.cert_der());
        let registration = DeviceRegistration {
            endpoint: ws.emulator.device_url(),
            id_scope: ws.emulator.id_scope().to_owned(),
            registration_id: rid.clone(),
            credential: DeviceCredential::X509 {
                chain_pem,
                key_pem: SecretString::new(pem::encode("PRIVATE KEY", &d.key_pkcs8_der)),
            },
            trust_pem: ws.emulator.ca_certificate_pem().map(str::to_owned),
            payload: None,
        };
        let status = device_client::register(&registration, Duration::from_secs(20))
            .unwrap()
            .status;
        assert_eq!(status, "assigned", "{rid}");
    }
    assert!(
        ledger
            .find_identity(&format!("sn{}", devices[8].unique_id))
            .unwrap()
            .is_none()
    );
    // Each pass is audited with the batch and the board it was seen on.
    let rid = format!("sn{}", devices[0].unique_id);
    let audit = ledger.audit_for(&rid).unwrap();
    let passes: Vec<_> = audit
        .iter()
        .filter(|a| a.action == "manifest.line_pass")
        .collect();
    assert_eq!(passes.len(), 1, "seated twice, audited and queued once");
    assert!(
        passes[0].details.contains("tng-line"),
        "{}",
        passes[0].details
    );
}
