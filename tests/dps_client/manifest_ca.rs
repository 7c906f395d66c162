//! Trust&GO group enrollment through a **verified CA** (issue 16): the emulator's CA registry
//! (upload, verification code, proof of possession, verified on upload) and X.509 groups whose
//! attestation names the CA by `caReferences`; a device whose chain ends at an unverified CA is
//! refused at registration, as DPS refuses it.

use std::time::Duration;

use dps_station::dps::payload::{self, EnrollmentSettings};
use dps_station::emulator::device_client::{self, DeviceCredential, DeviceRegistration};
use dps_station::identity::pem;
use dps_station::manifest::build::{Device, DeviceCa};
use dps_station::manifest::read_manifest;
use dps_station::secret::SecretString;
use dps_station::station::enrollment::{EnrollOptions, enroll_pending};
use dps_station::station::manifest_import::{
    ImportOptions, ManifestEnrollment, ensure_verified_ca_group, import_manifest,
};

use super::manifest::{open, reel, register, signer_of, write};
use crate::support;

fn try_register(
    emu: &dps_station::emulator::RunningEmulator,
    ca: &DeviceCa,
    d: &Device,
) -> Result<String, String> {
    let chain_pem =
        pem::encode("CERTIFICATE", &d.cert_der) + &pem::encode("CERTIFICATE", ca.cert_der());
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
        .map(|a| a.status)
        .map_err(|e| e.to_string())
}

#[test]
fn a_manifest_enrolls_through_a_verified_ca_group_and_8_of_its_devices_register() {
    let tmp = tempfile::tempdir().unwrap();
    let reel = reel(12);
    let file = write(tmp.path(), "reel-V.json", &reel.entries());
    let report = read_manifest(&file, &signer_of(&reel)).unwrap();
    let emu = support::emulator(|_| {});
    let client = support::client(&emu, |_| {});
    let mut ledger = open(&tmp.path().join("ledger.db"));
    let target = emu.host_name().to_string();
    let outcome = import_manifest(
        &mut ledger,
        &report,
        &ImportOptions {
            batch: "reel-V".into(),
            dps_target: Some(target.clone()),
            enrollment: ManifestEnrollment::Group {
                group_id: "tngtls-reel-v".into(),
                ca_name: Some("mchp-signer-2c00".into()),
            },
        },
    )
    .unwrap();
    assert_eq!(outcome.recorded.len(), 12);
    let ca_der = outcome.group_ca_der.clone().unwrap();
    ensure_verified_ca_group(
        &client,
        "tngtls-reel-v",
        "mchp-signer-2c00",
        &ca_der,
        &EnrollmentSettings::default(),
    )
    .unwrap();
    let held = client
        .find_ca_certificate("mchp-signer-2c00")
        .unwrap()
        .unwrap();
    assert!(held.properties.is_verified, "uploaded verified");
    // The group names the CA; it carries no signing certificate of its own.
    let groups = emu.groups_snapshot();
    let group = groups
        .iter()
        .find(|g| g["enrollmentGroupId"] == "tngtls-reel-v")
        .unwrap();
    let x509 = &group["attestation"]["x509"];
    assert_eq!(
        x509["caReferences"]["primary"], "mchp-signer-2c00",
        "{x509}"
    );
    assert!(
        x509.get("signingCertificates").is_none_or(|s| s.is_null()),
        "{x509}"
    );

    let summary = enroll_pending(
        &mut ledger,
        &client,
        &EnrollOptions {
            dps_target: target,
            settings: EnrollmentSettings::default(),
            reprovision: false,
            individual_keys: None,
            batch: Some("reel-V".into()),
        },
        |_| {},
    )
    .unwrap();
    assert_eq!((summary.by_group, summary.all_enrolled()), (12, true));
    assert!(
        support::stored_ids(&emu).is_empty(),
        "no individual enrollment"
    );
    for d in &reel.devices[..8] {
        assert_eq!(register(&emu, &reel, d), "assigned");
    }
    // Run again: the CA and the group are there and stay as they are.
    ensure_verified_ca_group(
        &client,
        "tngtls-reel-v",
        "mchp-signer-2c00",
        &ca_der,
        &EnrollmentSettings::default(),
    )
    .unwrap();
    // A CA name DPS holds for another certificate is refused, never replaced.
    let other = DeviceCa::generate("Another Signer").unwrap();
    let err = ensure_verified_ca_group(
        &client,
        "tngtls-reel-w",
        "mchp-signer-2c00",
        other.cert_der(),
        &EnrollmentSettings::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("another certificate"), "{err}");
}

#[test]
fn an_unverified_ca_is_refused_at_registration_until_possession_of_its_key_is_proven() {
    let emu = support::emulator(|_| {});
    let client = support::client(&emu, |_| {});
    let ca = DeviceCa::generate("Line CA 7").unwrap();
    let device = ca.device("0123aabbccddeeff01").unwrap();
    let ca_pem = pem::encode("CERTIFICATE", ca.cert_der());
    let uploaded = client
        .upload_ca_certificate("line-ca-7", &ca_pem, false)
        .unwrap();
    assert!(!uploaded.properties.is_verified);
    let group = payload::x509_group_ca_reference(
        "line-7",
        "line-ca-7",
        None,
        &EnrollmentSettings::default(),
    )
    .unwrap();
    client.create_group(&group).unwrap();

    let refused = try_register(&emu, &ca, &device).unwrap_err();
    assert!(
        refused.contains("line-ca-7") && refused.contains("not verified"),
        "{refused}"
    );

    // Proof of possession: a certificate with the code as CN, signed by the CA's key.
    let code = client.ca_verification_code("line-ca-7").unwrap();
    let impostor = DeviceCa::generate("Line CA 7").unwrap();
    let err = client
        .verify_ca_certificate("line-ca-7", &impostor.proof_of_possession(&code).unwrap())
        .unwrap_err();
    assert!(err.to_string().contains("not signed"), "{err}");
    let wrong_code = client
        .verify_ca_certificate("line-ca-7", &ca.proof_of_possession("0000").unwrap())
        .unwrap_err();
    assert!(
        wrong_code.to_string().contains("verification code"),
        "{wrong_code}"
    );
    let verified = client
        .verify_ca_certificate("line-ca-7", &ca.proof_of_possession(&code).unwrap())
        .unwrap();
    assert!(verified.properties.is_verified);
    assert_eq!(try_register(&emu, &ca, &device).unwrap(), "assigned");

    // A device of another CA does not pass through this group.
    let stranger = DeviceCa::generate("Other CA").unwrap();
    let outsider = stranger.device("0123aabbccddeeff02").unwrap();
    assert!(try_register(&emu, &stranger, &outsider).is_err());
}

/// `manifest import --group ID --ca-name NAME`: the CLI uploads the device CA verified, makes the
/// group over the reference and enrolls the reel's identities through it.
#[test]
fn the_cli_enrolls_a_reel_through_a_verified_ca() {
    use std::os::unix::fs::OpenOptionsExt;
    use std::process::Command;

    let tmp = tempfile::tempdir().unwrap();
    let reel = reel(3);
    let file = write(tmp.path(), "reel-C.json", &reel.entries());
    let signer_pem = tmp.path().join("signer.pem");
    std::fs::write(&signer_pem, reel.signer.cert_pem()).unwrap();
    let emu = support::emulator(|_| {});
    let cs_file = tmp.path().join("dps.cs");
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&cs_file)
            .unwrap();
        f.write_all(emu.connection_string().expose().as_bytes())
            .unwrap();
    }
    let trust = tmp.path().join("emulator-ca.pem");
    std::fs::write(&trust, emu.ca_certificate_pem().unwrap()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_dps-station"))
        .args(["manifest", "import"])
        .arg(&file)
        .arg("--signer")
        .arg(&signer_pem)
        .arg("--connection-string-file")
        .arg(&cs_file)
        .args(["--endpoint", &emu.service_url()])
        .arg("--trust-ca")
        .arg(&trust)
        .args(["--group", "tngtls-reel-c", "--ca-name", "mchp-signer-c"])
        .env_remove("DPS_CONNECTION_STRING")
        .env("DPS_STATION_LEDGER", tmp.path().join("ledger.db"))
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("3 by group"), "{text}");
    let client = support::client(&emu, |_| {});
    let held = client
        .find_ca_certificate("mchp-signer-c")
        .unwrap()
        .unwrap();
    assert!(held.properties.is_verified);
    assert_eq!(register(&emu, &reel, &reel.devices[0]), "assigned");
}
