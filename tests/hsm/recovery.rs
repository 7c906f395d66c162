//! Sessions the token drops (an idle timeout, a re-plugged token) are re-opened and logged in
//! again, and the keep-alive round prunes them, without the caller seeing a failure.

use dps_station::keystore::KeyStore;
use p256::ecdsa::signature::Verifier;

use crate::common::*;

/// Closes every session of this process on the token, as a token does when it drops idle
/// sessions or is unplugged and plugged back: all handles become invalid and the login ends.
fn token_drops_all_sessions(label: &str) {
    let slot = slot_of(label);
    // cryptoki has no C_CloseAllSessions; call it on the same (already initialised) library.
    // SAFETY: the library is SoftHSM2, loaded and initialised by this process; the slot id is valid.
    let lib = unsafe { cryptoki_sys::Pkcs11::new(MODULE) }.unwrap();
    let rv = unsafe { lib.C_CloseAllSessions(slot.id() as cryptoki_sys::CK_SLOT_ID) };
    assert_eq!(rv, cryptoki_sys::CKR_OK as cryptoki_sys::CK_RV);
}

#[test]
fn sessions_the_token_dropped_are_reopened_and_logged_in_again() {
    let (label, store) = open_fresh("reopen");
    let uri = store.generate_ec_p256("ca", &[0x01]).unwrap();
    let signer = store.signer(&uri).unwrap();
    let verifying = p256::ecdsa::VerifyingKey::from_sec1_bytes(signer.public_key_sec1()).unwrap();
    // Several sessions in the pool, all of which the token will drop.
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| signer.sign_p256_sha256(b"warm up").unwrap());
        }
    });

    token_drops_all_sessions(&label);
    let der = signer.sign_p256_sha256(b"after the drop").unwrap();
    verifying
        .verify(
            b"after the drop",
            &p256::ecdsa::Signature::from_der(&der).unwrap(),
        )
        .unwrap();

    // The keep-alive round finds dead idle sessions and drops them before anyone needs one.
    token_drops_all_sessions(&label);
    store.keep_alive();
    let der = signer.sign_p256_sha256(b"after keep-alive").unwrap();
    verifying
        .verify(
            b"after keep-alive",
            &p256::ecdsa::Signature::from_der(&der).unwrap(),
        )
        .unwrap();
    // Key lookups (not just cached-handle signing) work too.
    assert_eq!(
        store.public_key_sec1(&uri).unwrap(),
        signer.public_key_sec1()
    );
}

#[test]
fn the_keep_alive_thread_prunes_sessions_the_token_dropped() {
    let label = fresh_token("keepalive");
    // A profile that says the token drops idle sessions (as YubiHSM 2's does), with a short interval.
    let mut config = softhsm_config(&label);
    config.profile.sessions.keep_alive_secs = 1;
    let store = dps_station::keystore::pkcs11::Pkcs11KeyStore::open(
        &config,
        dps_station::secret::SecretString::new(USER_PIN),
    )
    .unwrap();
    let uri = store.generate_ec_p256("ca", &[0x01]).unwrap();
    let signer = store.signer(&uri).unwrap();
    std::thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| signer.sign_p256_sha256(b"warm up").unwrap());
        }
    });
    assert!(store.open_sessions() >= 1);
    token_drops_all_sessions(&label);
    // Without any call from us, the background round finds the dead sessions and closes them.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while store.open_sessions() > 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(
        store.open_sessions(),
        0,
        "the keep-alive thread did not prune dropped sessions"
    );
    signer.sign_p256_sha256(b"after").unwrap();
}
