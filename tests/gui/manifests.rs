//! The engineer's Manifests screen: a Trust&GO manifest with one tampered entry imported from
//! the desk (picked files, the import on a worker), the tampered entry listed as refused with
//! its reason and the others as imported, then "Enroll now" enrolls them in the demo's DPS.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use dps_station::ledger::{IdentityState, Ledger};
use dps_station::manifest::build::{self, DeviceCa, ReelSigner};
use dps_station::station::demo::KeyStoreChoice;
use dps_station::station::demo_desk::DemoDeskOptions;
use serde_json::Value;

use super::common::{desk_with_dps, engineer_roles};

#[test]
fn a_manifest_with_a_tampered_entry_is_imported_from_the_desk_and_enrolled() {
    let mut d = desk_with_dps(
        KeyStoreChoice::Software,
        DemoDeskOptions {
            roles: engineer_roles("kim", "line-3-engineer"),
            pace: Duration::ZERO,
            ..DemoDeskOptions::default()
        },
    );
    let tmp = tempfile::tempdir().unwrap();
    let ca = DeviceCa::generate("Crypto Authentication Signer 2C00").unwrap();
    let signer = ReelSigner::generate("Manifest Signer 1").unwrap();
    let devices: Vec<_> = (1..=5)
        .map(|i| ca.device(&build::unique_id(i)).unwrap())
        .collect();
    let mut entries: Vec<Value> = devices
        .iter()
        .map(|d| build::signed_entry(&build::payload(d, ca.cert_der()), &signer))
        .collect();
    // Entry #2 edited after signing: its signature no longer verifies.
    let b64 = entries[2]["payload"].as_str().unwrap().to_string();
    let mut payload: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(b64).unwrap()).unwrap();
    payload["provisioningTimestamp"] = "2020-01-01T00:00:00.000Z".into();
    entries[2]["payload"] = URL_SAFE_NO_PAD.encode(payload.to_string()).into();
    let manifest = tmp.path().join("reel-desk.json");
    std::fs::write(&manifest, serde_json::to_vec(&entries).unwrap()).unwrap();
    let signer_file = tmp.path().join("signer.crt");
    std::fs::write(&signer_file, signer.cert_pem()).unwrap();

    d.become_engineer("kim", "line-3-engineer");
    d.click("Manifests");
    d.set_field("Manifest file (JSON)", &manifest.display().to_string());
    d.set_field("Signer certificate", &signer_file.display().to_string());
    d.click("Import");
    d.wait_shows("imported into batch", Duration::from_secs(30));
    assert!(
        d.shows("reel-desk.json: 5 entries, 4 imported into batch manifest-"),
        "the summary counts what was imported and refused"
    );
    assert!(d.shows("1 refused"));
    // The tampered entry: named by position and unique ID, refused with the reason.
    assert!(d.shows("#2"));
    assert_eq!(d.count(&devices[2].unique_id), 1, "only its unique ID cell");
    assert_eq!(d.count("refused: its signature does not verify"), 1);
    // The others: imported under their certificates' registration IDs.
    // The others: imported under their certificates' registration IDs (the rows that fit
    // the window are laid out: the refused row first, then the imported ones in file order).
    assert!(d.shows(&format!("sn{}", devices[0].unique_id)));
    assert!(d.count("imported") >= 2, "imported rows and the summary");
    assert!(
        !d.shows(&format!("sn{}", devices[2].unique_id)),
        "no registration ID for the tampered entry"
    );
    let ledger_path = d.harness.state().station().config().ledger.clone();
    {
        let ledger = Ledger::open_read_only(&ledger_path).unwrap();
        let rid = format!("sn{}", devices[0].unique_id);
        let identity = ledger.find_identity(&rid).unwrap().unwrap();
        assert_eq!(identity.state, IdentityState::Written);
        assert!(
            ledger
                .find_identity(&format!("sn{}", devices[2].unique_id))
                .unwrap()
                .is_none(),
            "nothing of the tampered entry is recorded"
        );
    }

    d.click("Enroll now");
    d.wait_shows("enrolled,", Duration::from_secs(60));
    assert!(
        d.shows("emulator: 4 pending sent, 4 enrolled"),
        "the four imported identities"
    );
    let ledger = Ledger::open_read_only(&ledger_path).unwrap();
    for (i, dev) in devices.iter().enumerate().filter(|(i, _)| *i != 2) {
        let identity = ledger
            .find_identity(&format!("sn{}", dev.unique_id))
            .unwrap()
            .unwrap();
        assert_eq!(identity.state, IdentityState::Enrolled, "entry #{i}");
    }
}
