//! Trust&GO manifests (issue 16): manifests made here with our own signer (Microchip's key is not
//! ours), verified, recorded in a real SQLite ledger, enrolled in our DPS emulator over HTTPS, and
//! devices registered with the keys the test made; every kind of bad entry refused by name.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use dps_station::dps::payload::EnrollmentSettings;
use dps_station::emulator::device_client::{self, DeviceCredential, DeviceRegistration};
use dps_station::identity::pem;
use dps_station::ledger::{IdentityState, Ledger, WriterIdentity};
use dps_station::manifest::build::{self, Device, DeviceCa, ReelSigner};
use dps_station::manifest::{EntryProblem, ManifestError, ManifestSigner, read_manifest};
use dps_station::secret::SecretString;
use dps_station::station::enrollment::{EnrollOptions, enroll_pending};
use dps_station::station::manifest_import::{
    ImportOptions, ManifestEnrollment, ensure_group, import_manifest,
};
use serde_json::Value;

use crate::support;

pub(super) struct Reel {
    pub(super) signer: ReelSigner,
    pub(super) ca: DeviceCa,
    pub(super) devices: Vec<Device>,
}

pub(super) fn reel(n: u64) -> Reel {
    let ca = DeviceCa::generate("Crypto Authentication Signer 2C00").unwrap();
    let devices = (1..=n)
        .map(|i| ca.device(&build::unique_id(i)).unwrap())
        .collect();
    Reel {
        signer: ReelSigner::generate("Manifest Signer 1").unwrap(),
        ca,
        devices,
    }
}

impl Reel {
    pub(super) fn entries(&self) -> Vec<Value> {
        self.devices
            .iter()
            .map(|d| build::signed_entry(&build::payload(d, self.ca.cert_der()), &self.signer))
            .collect()
    }
}

pub(super) fn write(dir: &Path, name: &str, entries: &[Value]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_vec_pretty(entries).unwrap()).unwrap();
    path
}

pub(super) fn signer_of(reel: &Reel) -> ManifestSigner {
    ManifestSigner::from_der(reel.signer.cert_der()).unwrap()
}

pub(super) fn open(path: &Path) -> Ledger {
    Ledger::open(
        path,
        &WriterIdentity {
            station: "line-1".into(),
            operator: "ann".into(),
        },
    )
    .unwrap()
}

/// Replaces the signed payload of an entry with `edit` applied to it (the signature stays).
fn tamper(entry: &mut Value, edit: impl FnOnce(&mut Value)) {
    let b64 = entry["payload"].as_str().unwrap();
    let mut payload: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(b64).unwrap()).unwrap();
    edit(&mut payload);
    entry["payload"] = URL_SAFE_NO_PAD.encode(payload.to_string()).into();
}

pub(super) fn register(
    emu: &dps_station::emulator::RunningEmulator,
    reel: &Reel,
    d: &Device,
) -> String {
    let chain_pem =
        pem::encode("CERTIFICATE", &d.cert_der) + &pem::encode("CERTIFICATE", reel.ca.cert_der());
    let reg = DeviceRegistration {
        endpoint: emu.device_url(),
        id_scope: emu.id_scope().to_owned(),
        registration_id: format!("sn{}", d.unique_id),
        credential: DeviceCredential::X509 {
            chain_pem,
            key_pem: SecretString::new(pem::encode("PRIVATE KEY", &d.key_pkcs8_der)),
        },
        trust_pem: emu.ca_certificate_pem().map(str::to_owned),
        payload: None,
    };
    device_client::register(&reg, Duration::from_secs(10))
        .unwrap()
        .status
}

#[test]
fn a_reel_of_100_is_imported_enrolled_and_8_devices_register_while_a_tampered_entry_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let reel = reel(101);
    let mut entries = reel.entries();
    // Entry #37 changed after signing: a serial number edited in the payload.
    tamper(&mut entries[37], |p| {
        p["provisioningTimestamp"] = "2020-01-01T00:00:00.000Z".into()
    });
    let file = write(tmp.path(), "reel-A.json", &entries);
    let report = read_manifest(&file, &signer_of(&reel)).unwrap();
    assert_eq!((report.verified.len(), report.refused.len()), (100, 1));
    let bad = &report.refused[0];
    assert_eq!(bad.index, 37);
    assert_eq!(bad.problem, EntryProblem::BadSignature);
    let text = bad.to_string();
    assert!(
        text.contains("#37") && text.contains(&reel.devices[37].unique_id),
        "{text}"
    );

    let emu = support::emulator(|_| {});
    let client = support::client(&emu, |_| {});
    let mut ledger = open(&tmp.path().join("ledger.db"));
    let target = emu.host_name().to_string();
    let options = ImportOptions {
        batch: "reel-A".into(),
        dps_target: Some(target.clone()),
        enrollment: ManifestEnrollment::Individual,
    };
    let outcome = import_manifest(&mut ledger, &report, &options).unwrap();
    assert_eq!(outcome.recorded.len(), 100);
    // Recorded as provisioned at Microchip, with the manifest's provenance.
    let first = &reel.devices[0];
    let id = ledger
        .find_identity(&format!("sn{}", first.unique_id))
        .unwrap()
        .unwrap();
    assert_eq!(id.state, IdentityState::Written);
    assert_eq!(
        id.certificate_der.as_deref(),
        Some(first.cert_der.as_slice())
    );
    let m = ledger.manifest_entry(&first.unique_id).unwrap().unwrap();
    assert_eq!(m.manifest_file, "reel-A.json");
    assert_eq!(m.manifest_sha256, report.provenance.file_sha256);
    assert_eq!(m.signer_thumbprint, signer_of(&reel).thumbprint());
    assert_eq!(m.public_key, first.public_key());
    assert!(
        ledger
            .find_identity(&format!("sn{}", reel.devices[37].unique_id))
            .unwrap()
            .is_none()
    );

    let summary = enroll_pending(
        &mut ledger,
        &client,
        &EnrollOptions {
            dps_target: target,
            settings: EnrollmentSettings::default(),
            reprovision: false,
            individual_keys: None,
            batch: Some("reel-A".into()),
        },
        |_| {},
    )
    .unwrap();
    assert_eq!(
        (summary.created, summary.all_enrolled()),
        (100, true),
        "{summary:?}"
    );
    assert_eq!(support::stored_ids(&emu).len(), 100);
    for d in reel
        .devices
        .iter()
        .filter(|d| d.unique_id != reel.devices[37].unique_id)
        .step_by(12)
        .take(8)
    {
        assert_eq!(register(&emu, &reel, d), "assigned", "{}", d.unique_id);
    }
    // The tampered entry's device was never enrolled: DPS refuses it.
    let d37 = &reel.devices[37];
    let chain_pem = pem::encode("CERTIFICATE", &d37.cert_der);
    let refused = device_client::register(
        &DeviceRegistration {
            endpoint: emu.device_url(),
            id_scope: emu.id_scope().to_owned(),
            registration_id: format!("sn{}", d37.unique_id),
            credential: DeviceCredential::X509 {
                chain_pem,
                key_pem: SecretString::new(pem::encode("PRIVATE KEY", &d37.key_pkcs8_der)),
            },
            trust_pem: emu.ca_certificate_pem().map(str::to_owned),
            payload: None,
        },
        Duration::from_secs(10),
    );
    assert!(refused.is_err(), "{refused:?}");

    // The same manifest again: every entry named as already in the ledger, nothing twice.
    let again = import_manifest(&mut ledger, &report, &options).unwrap();
    assert!(again.recorded.is_empty());
    assert_eq!(again.refused.len(), 101);
    assert!(matches!(
        again.refused[0].problem,
        EntryProblem::AlreadyRecorded { .. }
    ));
}

#[test]
fn a_group_enrolls_through_the_device_certificates_ca_and_its_devices_register() {
    let tmp = tempfile::tempdir().unwrap();
    let reel = reel(6);
    let file = write(tmp.path(), "reel-G.json", &reel.entries());
    let report = read_manifest(&file, &signer_of(&reel)).unwrap();
    let emu = support::emulator(|_| {});
    let client = support::client(&emu, |_| {});
    let mut ledger = open(&tmp.path().join("ledger.db"));
    let target = emu.host_name().to_string();
    let outcome = import_manifest(
        &mut ledger,
        &report,
        &ImportOptions {
            batch: "reel-G".into(),
            dps_target: Some(target.clone()),
            enrollment: ManifestEnrollment::Group {
                group_id: "tngtls-reel-g".into(),
                ca_name: None,
            },
        },
    )
    .unwrap();
    assert_eq!(outcome.recorded.len(), 6);
    assert_eq!(outcome.group_ca_der.as_deref(), Some(reel.ca.cert_der()));
    ensure_group(
        &client,
        "tngtls-reel-g",
        reel.ca.cert_der(),
        &EnrollmentSettings::default(),
    )
    .unwrap();
    let summary = enroll_pending(
        &mut ledger,
        &client,
        &EnrollOptions {
            dps_target: target,
            settings: EnrollmentSettings::default(),
            reprovision: false,
            individual_keys: None,
            batch: Some("reel-G".into()),
        },
        |_| {},
    )
    .unwrap();
    assert_eq!((summary.by_group, summary.all_enrolled()), (6, true));
    assert!(
        support::stored_ids(&emu).is_empty(),
        "no individual enrollment"
    );
    for d in &reel.devices[..2] {
        assert_eq!(register(&emu, &reel, d), "assigned");
    }
}

#[test]
fn bad_manifests_and_bad_entries_are_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let reel = reel(6);
    let signer = signer_of(&reel);

    // Not JSON, not a list, empty: the whole file.
    let not_json = tmp.path().join("not.json");
    std::fs::write(&not_json, "[{\"payload\": \"abc\",").unwrap();
    let err = read_manifest(&not_json, &signer).unwrap_err();
    assert!(matches!(err, ManifestError::NotJson { .. }), "{err}");
    assert!(err.to_string().contains("not.json"), "{err}");
    std::fs::write(&not_json, "{\"uniqueId\": 1}").unwrap();
    assert!(matches!(
        read_manifest(&not_json, &signer),
        Err(ManifestError::NotJson { .. })
    ));
    std::fs::write(&not_json, "[]").unwrap();
    assert!(matches!(
        read_manifest(&not_json, &signer),
        Err(ManifestError::Empty { .. })
    ));

    // Another signer: every entry refused, naming the signer mismatch.
    let other = ReelSigner::generate("Someone Else").unwrap();
    let file = write(tmp.path(), "reel.json", &reel.entries());
    let report =
        read_manifest(&file, &ManifestSigner::from_der(other.cert_der()).unwrap()).unwrap();
    assert!(report.verified.is_empty());
    assert!(
        report
            .refused
            .iter()
            .all(|e| matches!(e.problem, EntryProblem::WrongSigner(_)))
    );

    let mut entries = reel.entries();
    // #1: a certificate whose key is not the manifest's (signed properly, by the signer).
    let stranger = reel.ca.device(&reel.devices[1].unique_id).unwrap();
    let mut payload = build::payload(&reel.devices[1], reel.ca.cert_der());
    let point = stranger.public_key();
    payload["publicKeySet"]["keys"][0]["x"] = URL_SAFE_NO_PAD.encode(&point[1..33]).into();
    payload["publicKeySet"]["keys"][0]["y"] = URL_SAFE_NO_PAD.encode(&point[33..65]).into();
    entries[1] = build::signed_entry(&payload, &reel.signer);
    // #2: the unprotected header names another secure element than the signed payload.
    entries[2]["header"]["uniqueId"] = reel.devices[3].unique_id.clone().into();
    // #4: a duplicate of #0.
    entries[4] = entries[0].clone();
    // #5: another algorithm in the protected header.
    let protected = URL_SAFE_NO_PAD.encode(
        serde_json::json!({"alg": "HS256", "kid": signer.kid(), "x5t#S256": signer.x5t_s256()})
            .to_string(),
    );
    entries[5]["protected"] = protected.into();
    let file = write(tmp.path(), "mixed.json", &entries);
    let report = read_manifest(&file, &signer).unwrap();
    let problems: Vec<(usize, &EntryProblem)> = report
        .refused
        .iter()
        .map(|e| (e.index, &e.problem))
        .collect();
    assert_eq!(problems.len(), 4, "{problems:?}");
    assert_eq!(problems[0], (1, &EntryProblem::KeyMismatch));
    assert!(matches!(
        problems[1],
        (2, EntryProblem::UniqueIdMismatch { .. })
    ));
    assert_eq!(problems[2], (4, &EntryProblem::Duplicate { first: 0 }));
    assert!(matches!(problems[3], (5, EntryProblem::Algorithm(a)) if a == "HS256"));
    let verified: Vec<usize> = report.verified.iter().map(|e| e.index).collect();
    assert_eq!(verified, [0, 3]);
    for e in &report.refused {
        let text = e.to_string();
        assert!(text.contains(&format!("#{}", e.index)), "{text}");
    }
}

/// The cross-check with a JOSE library of another language: PyPI `jwcrypto` (pinned in
/// tests/clients/devices-requirements.txt) verifies our entry with the signer certificate's key,
/// and an entry jwcrypto signs is verified by our code.
#[test]
fn jwcrypto_verifies_our_entries_and_we_verify_its_entries() {
    let python =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/clients/.venv-devices/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run tests/clients/setup.sh (scripts/test.sh does) to install jwcrypto",
        python.display()
    );
    let tmp = tempfile::tempdir().unwrap();
    let reel = reel(2);
    let entries = reel.entries();
    let signer_pem = tmp.path().join("signer.pem");
    std::fs::write(&signer_pem, reel.signer.cert_pem()).unwrap();
    let ours = write(tmp.path(), "ours.json", &entries[..1]);
    // jwcrypto signs entry 2's payload with a key we hand it (PKCS#8 PEM) in general serialization.
    let jw_key = tmp.path().join("jw-key.pem");
    let jw_signer = ReelSigner::generate("jwcrypto signer").unwrap();
    std::fs::write(&jw_key, jw_signer.key_pkcs8_pem()).unwrap();
    let payload = build::payload(&reel.devices[1], reel.ca.cert_der()).to_string();
    let jw_signer_info = ManifestSigner::from_der(jw_signer.cert_der()).unwrap();
    let script = r#"
import json, sys
from jwcrypto import jwk, jws
from jwcrypto.common import json_encode
signer_pem, ours, key_pem, payload, kid, x5t, out = sys.argv[1:8]
cert_key = jwk.JWK.from_pem(open(signer_pem, 'rb').read())
for entry in json.load(open(ours)):
    token = jws.JWS()
    token.deserialize(json.dumps(entry), cert_key)
    assert json.loads(token.payload)['uniqueId'] == entry['header']['uniqueId']
key = jwk.JWK.from_pem(open(key_pem, 'rb').read())
token = jws.JWS(payload.encode())
# A first signature by a stranger: with two, jwcrypto writes the general serialization.
stranger = jwk.JWK.generate(kty='EC', crv='P-256')
token.add_signature(stranger, None, json_encode({'alg': 'ES256', 'kid': 'stranger', 'x5t#S256': 'stranger'}),
                    {'uniqueId': json.loads(payload)['uniqueId']})
token.add_signature(key, None, json_encode({'alg': 'ES256', 'kid': kid, 'x5t#S256': x5t}),
                    {'uniqueId': json.loads(payload)['uniqueId']})
open(out, 'w').write('[' + token.serialize() + ']')
print('ok')
"#;
    let theirs = tmp.path().join("theirs.json");
    let out = Command::new(&python)
        .arg("-c")
        .arg(script)
        .arg(&signer_pem)
        .arg(&ours)
        .arg(&jw_key)
        .arg(&payload)
        .arg(jw_signer_info.kid().unwrap())
        .arg(jw_signer_info.x5t_s256())
        .arg(&theirs)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "jwcrypto refused our entry: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&theirs).unwrap();
    assert!(
        text.contains("\"signatures\""),
        "general serialization: {text}"
    );
    let report = read_manifest(&theirs, &jw_signer_info).unwrap();
    assert_eq!(report.refused, []);
    assert_eq!(report.verified[0].unique_id, reel.devices[1].unique_id);
    // And our own signer's key does not verify jwcrypto's entry.
    let report = read_manifest(&theirs, &signer_of(&reel)).unwrap();
    assert!(matches!(
        report.refused[0].problem,
        EntryProblem::WrongSigner(_)
    ));
}

/// The command line: `manifest verify` names the refused entry; `manifest import` records and
/// queues; a second import imports nothing twice.
#[test]
fn the_cli_verifies_and_imports_a_manifest() {
    let tmp = tempfile::tempdir().unwrap();
    let reel = reel(4);
    let mut entries = reel.entries();
    tamper(&mut entries[2], |p| {
        p["partNumber"] = "ATECC608B-TFLXTLS".into()
    });
    let file = write(tmp.path(), "reel.json", &entries);
    let signer_pem = tmp.path().join("signer.pem");
    std::fs::write(&signer_pem, reel.signer.cert_pem()).unwrap();
    let ledger = tmp.path().join("ledger.db");
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_dps-station"))
            .args(args)
            .env_remove("DPS_CONNECTION_STRING")
            .env("DPS_STATION_LEDGER", &ledger)
            .output()
            .unwrap();
        (
            out.status.code(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let f = file.to_str().unwrap();
    let s = signer_pem.to_str().unwrap();
    let (code, text) = run(&["manifest", "verify", f, "--signer", s]);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("#2") && text.contains(&reel.devices[2].unique_id),
        "{text}"
    );
    assert!(text.contains("4 entries, 3 verified, 1 refused"), "{text}");
    let (code, text) = run(&[
        "manifest",
        "import",
        f,
        "--signer",
        s,
        "--dps-target",
        "dps.example",
        "--operator",
        "ann",
    ]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("3 recorded as written"), "{text}");
    let (_, text) = run(&[
        "manifest",
        "import",
        f,
        "--signer",
        s,
        "--dps-target",
        "dps.example",
        "--operator",
        "ann",
    ]);
    assert!(
        text.contains("0 recorded") && text.contains("already in the ledger"),
        "{text}"
    );
    let l = Ledger::open_read_only(&ledger).unwrap();
    let pending = l.pending_enrollments("dps.example", 100).unwrap();
    assert_eq!(pending.len(), 3);
}

/// A device on the line whose secure element reports its serial and key (the station family's
/// `SE-INFO`, here the simulator carrying an element of the reel) passes only if the imported
/// manifest lists it with that key.
#[test]
fn a_device_on_the_line_passes_only_if_its_secure_element_is_in_the_manifest() {
    use dps_station::device::simulator::{FirmwareOptions, SimOptions, SimulatedDevice};
    use dps_station::device::{ClientOptions, DeviceDriver, LineClient, SecureElementInfo};
    use dps_station::station::manifest_import::{LineMatchError, check_on_line};

    let tmp = tempfile::tempdir().unwrap();
    let reel = reel(3);
    let file = write(tmp.path(), "reel-L.json", &reel.entries()[..2]);
    let report = read_manifest(&file, &signer_of(&reel)).unwrap();
    let ledger_path = tmp.path().join("ledger.db");
    {
        let mut ledger = open(&ledger_path);
        let options = ImportOptions {
            batch: "reel-L".into(),
            dps_target: None,
            enrollment: ManifestEnrollment::Individual,
        };
        assert_eq!(
            import_manifest(&mut ledger, &report, &options)
                .unwrap()
                .recorded
                .len(),
            2
        );
    }
    let ledger = Ledger::open_read_only(&ledger_path).unwrap();
    let on_line = |se: Option<SecureElementInfo>| {
        let sim = SimulatedDevice::on_pty(
            0,
            &SimOptions {
                firmware: FirmwareOptions {
                    secure_element: se,
                    ..FirmwareOptions::default()
                },
                ..SimOptions::default()
            },
        )
        .unwrap();
        let mut client = LineClient::open(sim.path(), ClientOptions::default()).unwrap();
        client.identify().unwrap();
        let verdict = check_on_line(&ledger, &mut client);
        drop(client);
        drop(sim);
        verdict
    };
    let element = |d: &Device, key: Vec<u8>| SecureElementInfo {
        serial: d.unique_id.to_ascii_uppercase(),
        public_key: key,
    };
    // In the manifest, with its key: passes, naming its identity.
    let d0 = &reel.devices[0];
    let pass = on_line(Some(element(d0, d0.public_key()))).unwrap();
    assert_eq!(pass.registration_id, format!("sn{}", d0.unique_id));
    assert_eq!(pass.manifest_file, "reel-L.json");
    // Not in the manifest (entry 2 was left out of the file).
    let d2 = &reel.devices[2];
    let err = on_line(Some(element(d2, d2.public_key()))).unwrap_err();
    assert!(matches!(err, LineMatchError::NotInManifest { .. }), "{err}");
    assert!(err.to_string().contains(&d2.unique_id), "{err}");
    // Its serial, another key: an element that is not the one Microchip shipped.
    let err = on_line(Some(element(d0, reel.devices[1].public_key()))).unwrap_err();
    assert!(matches!(err, LineMatchError::KeyMismatch { .. }), "{err}");
    // No secure element at all: refused as unsupported, never passed.
    let err = on_line(None).unwrap_err();
    assert!(matches!(err, LineMatchError::Device(_)), "{err}");
}
