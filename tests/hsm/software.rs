//! The software key store answers to the same trait and session as the HSM: a chain openssl
//! accepts, the derived-key vector, and it says it is not an HSM.

use std::process::Command;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use dps_station::identity::profile::CaProfile;
use dps_station::keystore::software_store::SoftwareKeyStore;
use dps_station::keystore::{KeyStore, KeyStoreError, Pkcs11Uri};
use dps_station::ledger::{Ledger, WriterIdentity};
use dps_station::secret::SecretBytes;
use dps_station::station::key_session::{CaHierarchyRequest, KeyInjectionSession};

#[test]
fn the_software_store_runs_the_same_session_and_says_it_is_not_an_hsm() {
    let dir = tempfile::tempdir().unwrap();
    let store = SoftwareKeyStore::open(&dir.path().join("keys")).unwrap();
    assert!(!store.token().hardware);
    let store: Arc<dyn KeyStore> = store;
    let mut ledger = Ledger::open(
        &dir.path().join("ledger.db"),
        &WriterIdentity {
            station: "dev".into(),
            operator: "dev".into(),
        },
    )
    .unwrap();
    let mut session = KeyInjectionSession::open(&mut ledger, store.clone(), "developer").unwrap();
    let ca = session
        .init_ca(&CaHierarchyRequest {
            root_label: "root".into(),
            root_id: vec![1],
            root_profile: CaProfile::root("Dev Root").unwrap(),
            intermediate_label: "intermediate".into(),
            intermediate_id: vec![2],
            intermediate_profile: CaProfile::intermediate("Dev Intermediate").unwrap(),
        })
        .unwrap();
    let group = B64.decode("8isrFI1sGsIlvvFSSFRiMfCNzv21fjbE/+ah/lSh3lF8e2YG1Te7w1KpZhJFFXJrqYKi9yegxkqIChbqOS9Egw==").unwrap();
    let uri = session
        .import_group_key("group", &[3], &SecretBytes::new(group))
        .unwrap();
    let key = session
        .derive_device_key(&uri, "sn-007-888-abc-mac-a1-b2-c3-d4-e5-f6")
        .unwrap();
    assert_eq!(key.expose(), "Jsm0lyGpjaVYVP2g3FnmnmG9dI/9qU24wNoykUmermc=");
    session.close().unwrap();

    std::fs::write(dir.path().join("root.pem"), ca.root.pem()).unwrap();
    std::fs::write(dir.path().join("int.pem"), ca.intermediate.pem()).unwrap();
    let out = Command::new("openssl")
        .current_dir(dir.path())
        .args(["verify", "-CAfile", "root.pem", "int.pem"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(store.certificates().unwrap().len(), 2);

    // Key files are 0600; the same label is never reused; URIs resolve as on a token.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.path().join("keys/root.key.pem"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0);
    assert!(matches!(
        store.generate_ec_p256("root", &[9]),
        Err(KeyStoreError::AlreadyExists { .. })
    ));
    let both: Pkcs11Uri = "pkcs11:token=software;object=root".parse().unwrap();
    assert!(matches!(
        store.find(&both),
        Err(KeyStoreError::KeyAmbiguous { .. })
    ));
    let none: Pkcs11Uri = "pkcs11:object=absent".parse().unwrap();
    assert!(matches!(
        store.find(&none),
        Err(KeyStoreError::KeyNotFound { .. })
    ));
    assert!(matches!(
        store.hmac_sha256(&ca.root_key, b"x"),
        Err(KeyStoreError::WrongKeyType { .. }) | Err(KeyStoreError::KeyNotFound { .. })
    ));
}
