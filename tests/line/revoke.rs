//! Revoking an identity (the ledger screen's action and `ledger revoke`): its DPS individual
//! enrollment is deleted; with DPS unreachable the ledger is revoked anyway, the delete is marked
//! for later in the audit log, and revoking again finishes it.

use dps_station::ledger::{IdentityState, Ledger, WriterIdentity};
use dps_station::station::config::{Mode, SecretSource};
use dps_station::station::demo::{DemoWorkspace, KeyStoreChoice, RunOptions};
use dps_station::station::identity_actions::{DpsCleanup, IdentityActionError, revoke_identity};

fn engineer() -> WriterIdentity {
    WriterIdentity {
        station: "demo-station".into(),
        operator: "kim".into(),
    }
}

#[test]
fn revoke_deletes_the_dps_enrollment_or_marks_it_for_later_when_dps_is_unreachable() {
    let mut ws = DemoWorkspace::create(KeyStoreChoice::SoftHsm).unwrap();
    // As a site keeps it: the service connection string in an owner-only file.
    let secret = ws.dir.join("dps-connection-string");
    std::fs::write(&secret, ws.emulator.connection_string().expose()).unwrap();
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    for target in ws.station.dps.values_mut() {
        target.connection_string = SecretSource::File(secret.clone());
    }
    let options = RunOptions {
        devices: 2,
        slots: 1,
        ..RunOptions::default()
    };
    ws.run_mode(Mode::X509Csr, "revoke-test", &options, &mut |_| {})
        .unwrap();
    let ids: Vec<String> = Ledger::open_read_only(&ws.station.ledger)
        .unwrap()
        .list_identities(&Default::default())
        .unwrap()
        .into_iter()
        .filter(|i| i.state == IdentityState::Enrolled)
        .map(|i| i.registration_id)
        .collect();
    assert_eq!(ids.len(), 2, "{ids:?}");
    let client = ws.client();
    for id in &ids {
        client.get_enrollment(id).unwrap();
    }

    // No reason, no revoke.
    let err = revoke_identity(&ws.station, &engineer(), &ids[0], "  ").unwrap_err();
    assert!(matches!(err, IdentityActionError::NoReason), "{err}");

    // DPS reachable: deleted there, revoked here.
    let out = revoke_identity(&ws.station, &engineer(), &ids[0], "RMA 1").unwrap();
    assert!(out.revoked_now);
    assert!(
        matches!(&out.dps[..], [DpsCleanup::Deleted { .. }]),
        "{out:?}"
    );
    assert!(client.get_enrollment(&ids[0]).is_err(), "gone from DPS");

    // DPS unreachable: revoked here, the delete marked for later, the enrollment still at DPS.
    let mut offline = ws.station.clone();
    for target in offline.dps.values_mut() {
        target.endpoint = Some("https://127.0.0.1:9".into());
    }
    let out = revoke_identity(&offline, &engineer(), &ids[1], "RMA 2").unwrap();
    assert!(out.revoked_now);
    assert!(
        matches!(&out.dps[..], [DpsCleanup::Deferred { .. }]),
        "{out:?}"
    );
    client.get_enrollment(&ids[1]).unwrap();
    let reader = Ledger::open_read_only(&ws.station.ledger).unwrap();
    let actions: Vec<String> = reader
        .audit_for(&ids[1])
        .unwrap()
        .into_iter()
        .map(|a| a.action)
        .collect();
    assert!(
        actions.ends_with(&["identity.revoked".into(), "dps.delete_deferred".into()]),
        "{actions:?}"
    );
    assert_eq!(
        reader.live_or_last_revoked(&ids[1]).unwrap().unwrap().state,
        IdentityState::Revoked
    );

    // Revoking again once DPS answers finishes the delete.
    let out = revoke_identity(&ws.station, &engineer(), &ids[1], "RMA 2, DPS back").unwrap();
    assert!(!out.revoked_now);
    assert!(
        matches!(&out.dps[..], [DpsCleanup::Deleted { .. }]),
        "{out:?}"
    );
    assert!(client.get_enrollment(&ids[1]).is_err());
    // And again: nothing left to do.
    let out = revoke_identity(&ws.station, &engineer(), &ids[1], "again").unwrap();
    assert!(out.dps.is_empty(), "{out:?}");
    assert!(reader.verify_audit_chain().unwrap().is_intact());
}
