//! Opening tokens: found by label after slots are renumbered, a wrong PIN tried exactly once,
//! a locked PIN, a missing module, a token that is not there.

use std::path::{Path, PathBuf};

use dps_station::keystore::KeyStore;
use dps_station::keystore::KeyStoreError;
use dps_station::keystore::pkcs11::{Pkcs11Config, Pkcs11KeyStore, TokenSelector};
use dps_station::keystore::profile::HsmProfile;
use dps_station::secret::SecretString;

use crate::common::*;

#[test]
fn tokens_made_after_the_module_is_initialised_are_found_by_label_and_serial() {
    let (_a, first) = open_fresh("late-a");
    // Creating a token renumbers SoftHSM2's slots; the station finds the new one by label...
    let (b, second) = open_fresh("late-b");
    assert_eq!(second.token().label, b);
    assert_ne!(first.token().serial, second.token().serial);
    // ...and by serial.
    let mut config = softhsm_config(&b);
    config.token = TokenSelector::Serial(second.token().serial.clone());
    let by_serial = Pkcs11KeyStore::open(&config, SecretString::new(USER_PIN)).unwrap();
    assert_eq!(by_serial.token().label, b);
    assert!(
        !by_serial.token().hardware,
        "SoftHSM2 must be flagged as a software token"
    );
}

#[test]
fn a_wrong_pin_is_a_clear_error_and_is_presented_exactly_once() {
    let label = fresh_token("wrong-pin");
    // OpenSC's pkcs11-spy wraps the same SoftHSM2 instance and logs every PKCS#11 call made
    // through it, so the log counts our C_Login calls.
    let spy = Path::new("/usr/lib/x86_64-linux-gnu/pkcs11-spy.so");
    assert!(
        spy.is_file(),
        "opensc's pkcs11-spy.so is needed for this test"
    );
    // The harness pointed PKCS11SPY at SoftHSM2 and PKCS11SPY_OUTPUT at `spy_log()`.
    let config = Pkcs11Config {
        module: Some(spy.to_owned()),
        ..softhsm_config(&label)
    };
    let err = Pkcs11KeyStore::open(&config, SecretString::new("not-the-pin")).unwrap_err();
    assert!(matches!(err, KeyStoreError::PinIncorrect { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains(&label) && msg.contains("wrong user PIN") && msg.contains("not be retried"),
        "{msg}"
    );
    assert!(!msg.contains("not-the-pin"));
    let calls = std::fs::read_to_string(spy_log()).unwrap();
    assert_eq!(
        calls.matches("C_Login").count(),
        1,
        "exactly one login attempt:\n{calls}"
    );

    // The right PIN still works afterwards (the token was not locked by retries).
    Pkcs11KeyStore::open(&softhsm_config(&label), SecretString::new(USER_PIN)).unwrap();
}

#[test]
fn a_missing_module_names_the_paths_tried() {
    let mut profile = HsmProfile::built_in("yubihsm2").unwrap();
    profile.module.linux = vec![PathBuf::from("/nonexistent/yubihsm_pkcs11.so")];
    profile.module.macos = profile.module.linux.clone();
    let config = Pkcs11Config {
        profile,
        module: None,
        token: TokenSelector::Label("any".into()),
        sessions: None,
    };
    let msg = Pkcs11KeyStore::open(&config, SecretString::new(USER_PIN))
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("/nonexistent/yubihsm_pkcs11.so") && msg.contains("not installed"),
        "{msg}"
    );
    let config = Pkcs11Config {
        module: Some(PathBuf::from("/nonexistent/explicit.so")),
        ..config
    };
    let msg = Pkcs11KeyStore::open(&config, SecretString::new(USER_PIN))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("/nonexistent/explicit.so"), "{msg}");
}

#[test]
fn an_unknown_token_label_lists_the_tokens_present() {
    let present = fresh_token("present");
    let msg = Pkcs11KeyStore::open(
        &softhsm_config("no-such-token"),
        SecretString::new(USER_PIN),
    )
    .unwrap_err()
    .to_string();
    assert!(
        msg.contains("no-such-token") && msg.contains(&present),
        "{msg}"
    );
}

#[test]
fn a_second_store_on_a_logged_in_token_still_needs_the_right_pin() {
    let (label, _first) = open_fresh("second-store");
    // The token is logged in for this process; C_Login would not check a PIN now. The station does.
    let err = Pkcs11KeyStore::open(&softhsm_config(&label), SecretString::new("not-the-pin"))
        .unwrap_err();
    assert!(matches!(err, KeyStoreError::PinIncorrect { .. }), "{err:?}");
    let second =
        Pkcs11KeyStore::open(&softhsm_config(&label), SecretString::new(USER_PIN)).unwrap();
    assert_eq!(second.token().label, label);
}
