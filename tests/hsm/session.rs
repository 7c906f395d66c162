//! Key-injection sessions: the ledger records who, when and which token, every key operation is
//! audited, closing logs out; `init_ca` makes a chain openssl accepts, stored on the token too.

use std::process::Command;
use std::sync::Arc;

use base64::Engine;
use dps_station::identity::profile::{CaProfile, Validity};
use dps_station::keystore::{KeyStore, KeyStoreError, Pkcs11Uri};
use dps_station::ledger::{Ledger, WriterIdentity};
use dps_station::secret::SecretBytes;
use dps_station::station::key_session::{CaHierarchyRequest, KeyInjectionSession, KeySessionError};

use crate::common::*;

fn ledger(dir: &tempfile::TempDir) -> Ledger {
    Ledger::open(
        &dir.path().join("ledger.db"),
        &WriterIdentity {
            station: "line-1".into(),
            operator: "station".into(),
        },
    )
    .unwrap()
}

#[test]
fn init_ca_stores_an_openssl_verified_chain_on_the_token_and_in_the_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let mut ledger = ledger(&dir);
    let (label, store) = open_fresh("init-ca");
    let store: Arc<dyn KeyStore> = store;
    let request = CaHierarchyRequest {
        root_label: "root-ca".into(),
        root_id: vec![1],
        root_profile: CaProfile::root("Test Root").unwrap(),
        intermediate_label: "intermediate-ca".into(),
        intermediate_id: vec![2],
        intermediate_profile: CaProfile::intermediate("Test Intermediate").unwrap(),
    };
    let mut session =
        KeyInjectionSession::open(&mut ledger, store.clone(), "officer-anna").unwrap();
    let ca = session.init_ca(&request).unwrap();
    let poe = session
        .verification_certificate(
            &format!("pkcs11:token={label};object=intermediate-ca")
                .parse()
                .unwrap(),
            "3A1F9C0D",
            &Validity::days_from_now(30).unwrap(),
        )
        .unwrap();
    let no_key: Pkcs11Uri = format!("pkcs11:token={label};object=nope").parse().unwrap();
    let err = session
        .verification_certificate(&no_key, "X1", &Validity::days_from_now(1).unwrap())
        .unwrap_err();
    assert!(
        matches!(
            err,
            KeySessionError::KeyStore(KeyStoreError::KeyNotFound { .. })
        ),
        "{err}"
    );
    let stored = store.certificates().unwrap();
    assert!(
        stored
            .iter()
            .any(|c| c.label == "root-ca" && c.der == ca.root.der)
    );
    session.close().unwrap();

    // The chain verifies with openssl; the PoE certificate's CN is the code, signed by the CA key.
    let d = dir.path();
    std::fs::write(d.join("root.pem"), ca.root.pem()).unwrap();
    std::fs::write(d.join("int.pem"), ca.intermediate.pem()).unwrap();
    std::fs::write(d.join("poe.pem"), poe.pem()).unwrap();
    for args in [
        vec!["verify", "-CAfile", "root.pem", "int.pem"],
        vec![
            "verify",
            "-CAfile",
            "root.pem",
            "-untrusted",
            "int.pem",
            "poe.pem",
        ],
    ] {
        let out = Command::new("openssl")
            .current_dir(d)
            .args(&args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(
        poe.info.subject_name.contains("CN=3A1F9C0D"),
        "{}",
        poe.info.subject_name
    );

    // On the token: two certificate objects next to their keys.
    let listing = pkcs11_tool_list(&label);
    assert_eq!(
        listing
            .matches("Certificate Object; type = X.509 cert")
            .count(),
        2,
        "{listing}"
    );

    // In the ledger: the session (who, which token, opened and closed), the CA certificates,
    // and an audit row for every key operation.
    let ledger = Ledger::open_read_only(&d.join("ledger.db")).unwrap();
    let sessions = ledger.key_sessions().unwrap();
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0].operator, "officer-anna");
    assert_eq!(sessions[0].token_label, label);
    assert_eq!(sessions[0].token_model, "SoftHSM v2");
    assert!(sessions[0].closed_at.is_some());
    let cas = ledger.ca_certificates().unwrap();
    assert_eq!(cas.len(), 2);
    assert!(
        cas.iter()
            .all(|c| c.key_uri.contains(&format!("token={label}")))
    );
    let root_audit = ledger.audit_for(&ca.root_key.to_string()).unwrap();
    assert!(
        root_audit
            .iter()
            .any(|a| a.action == "hsm.key.generated" && a.actor == "officer-anna")
    );
    let int_audit = ledger.audit_for(&ca.intermediate_key.to_string()).unwrap();
    assert!(int_audit.iter().any(
        |a| a.action == "hsm.verification_certificate.signed" && a.details.contains("3A1F9C0D")
    ));
    assert!(ledger.verify_audit_chain().unwrap().is_intact());

    // Closing logged out: the store now refuses to sign.
    let err = store
        .sign_p256_sha256(&ca.root_key, b"after close")
        .unwrap_err();
    assert!(matches!(err, KeyStoreError::LoggedOut { .. }), "{err}");
    assert!(err.to_string().contains(&label), "{err}");
}

#[test]
fn group_keys_are_audited_by_fingerprint_and_never_by_value() {
    let dir = tempfile::tempdir().unwrap();
    let mut ledger = ledger(&dir);
    let (label, store) = open_fresh("group-session");
    let group_key_b64 =
        "8isrFI1sGsIlvvFSSFRiMfCNzv21fjbE/+ah/lSh3lF8e2YG1Te7w1KpZhJFFXJrqYKi9yegxkqIChbqOS9Egw==";
    let raw = SecretBytes::new(
        base64::engine::general_purpose::STANDARD
            .decode(group_key_b64)
            .unwrap(),
    );
    let mut session = KeyInjectionSession::open(&mut ledger, store, "officer-ben").unwrap();
    let uri = session
        .import_group_key("dps-group", &[0x30], &raw)
        .unwrap();
    let device_key = session
        .derive_device_key(
            &"pkcs11:object=dps-group".parse().unwrap(),
            "sn-007-888-abc-mac-a1-b2-c3-d4-e5-f6",
        )
        .unwrap();
    assert_eq!(
        device_key.expose(),
        "Jsm0lyGpjaVYVP2g3FnmnmG9dI/9qU24wNoykUmermc="
    );
    session.close().unwrap();

    let ledger = Ledger::open_read_only(&dir.path().join("ledger.db")).unwrap();
    let rows = ledger.audit_for(&uri.to_string()).unwrap();
    let actions: Vec<_> = rows.iter().map(|r| r.action.as_str()).collect();
    assert!(
        actions.contains(&"hsm.key.imported") && actions.contains(&"hsm.device_key.derived"),
        "{actions:?}"
    );
    let db = std::fs::read(dir.path().join("ledger.db")).unwrap();
    let wal = std::fs::read(dir.path().join("ledger.db-wal")).unwrap_or_default();
    for secret in [group_key_b64, "Jsm0lyGpjaVYVP2g3FnmnmG9dI"] {
        let needle = secret.as_bytes();
        assert!(
            !db.windows(needle.len()).any(|w| w == needle),
            "{secret} in the ledger"
        );
        assert!(
            !wal.windows(needle.len()).any(|w| w == needle),
            "{secret} in the WAL"
        );
    }
    assert!(rows.iter().all(|r| r.details.contains(&label)));
}
