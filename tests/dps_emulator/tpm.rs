//! TPM attestation on the device API, shaped like DPS's HTTP flow: the device sends its EK with no
//! credential and gets 401 + `authenticationKey` (a key wrapped to its EK); it recovers the key
//! with its TPM and retries with a SAS token signed by it.

use std::time::Duration;

use base64::Engine as _;
use base64::prelude::BASE64_STANDARD;
use dps_station::emulator::device_client::{
    DeviceClientError, DeviceCredential, DeviceRegistration, register,
};
use dps_station::emulator::{sas, tpm_credential};
use dps_station::identity::tpm_ek::{self, EkKey};
use dps_station::secret::{SecretBytes, SecretString};
use p256::pkcs8::EncodePublicKey as _;
use serde_json::{Value, json};

use crate::common::{Dps, V, loopback, now};

const DEVICE_V: &str = "api-version=2021-06-01";

/// A simulated TPM's EK: the private scalar and DPS's `endorsementKey` (base64 TPM2B_PUBLIC).
fn ek(seed: u8) -> (SecretBytes, String) {
    let secret = p256::SecretKey::from_slice(&[seed; 32]).unwrap();
    let spki = secret.public_key().to_public_key_der().unwrap();
    let public = tpm_ek::spki_to_tpm2b_public(spki.as_bytes()).unwrap();
    (
        SecretBytes::new(secret.to_bytes().to_vec()),
        BASE64_STANDARD.encode(public),
    )
}

fn enroll(dps: &Dps, id: &str, endorsement_key: &str) {
    let answer = dps.put(
        &format!("/enrollments/{id}"),
        &json!({
            "registrationId": id,
            "attestation": { "type": "tpm", "tpm": { "endorsementKey": endorsement_key } }
        }),
    );
    assert_eq!(answer.status, 200, "{}", answer.body);
}

/// A raw device-API call: (status, JSON body).
fn device_call(
    dps: &Dps,
    method: &str,
    id: &str,
    tail: &str,
    body: Option<&Value>,
    auth: Option<&str>,
) -> (u16, Value) {
    let url = format!(
        "{}/{}/registrations/{id}/{tail}?{DEVICE_V}",
        dps.emu.device_url(),
        dps.emu.id_scope()
    );
    let headers: Vec<(&str, &str)> = auth.map(|a| ("authorization", a)).into_iter().collect();
    let answer = dps.request(method, &url, body, &headers);
    (answer.status, answer.body)
}

fn sas_token(dps: &Dps, id: &str, key: &SecretString, expiry: i64) -> String {
    sas::make_token(
        &format!("{}/registrations/{id}", dps.emu.id_scope()),
        key,
        Some("registration"),
        expiry,
    )
    .unwrap()
}

fn registration(dps: &Dps, id: &str, ek_scalar: SecretBytes) -> DeviceRegistration {
    DeviceRegistration {
        endpoint: dps.emu.device_url(),
        id_scope: dps.emu.id_scope().to_owned(),
        registration_id: id.to_owned(),
        credential: DeviceCredential::Tpm { ek_scalar },
        trust_pem: dps.emu.ca_certificate_pem().map(str::to_owned),
        payload: None,
    }
}

const WAIT: Duration = Duration::from_secs(10);

#[test]
fn the_ek_gets_a_401_challenge_and_the_sas_signed_with_the_activated_key_registers() {
    let dps = loopback();
    let (scalar, endorsement_key) = ek(11);
    enroll(&dps, "tpm-1", &endorsement_key);
    let body = json!({ "registrationId": "tpm-1", "tpm": { "endorsementKey": endorsement_key } });

    let (status, challenge) = device_call(&dps, "PUT", "tpm-1", "register", Some(&body), None);
    assert_eq!(status, 401, "{challenge}");
    assert_eq!(challenge["keyName"], "registration");
    let blob = BASE64_STANDARD
        .decode(challenge["authenticationKey"].as_str().unwrap())
        .unwrap();
    let key = tpm_credential::activate(&scalar, &blob).unwrap();
    let key = SecretString::new(BASE64_STANDARD.encode(key.expose()));

    // A forged token (another key) and a stale one (signed right, expired) are refused.
    let forged = SecretString::new(BASE64_STANDARD.encode([7u8; 32]));
    let (status, refusal) = device_call(
        &dps,
        "PUT",
        "tpm-1",
        "register",
        Some(&body),
        Some(&sas_token(&dps, "tpm-1", &forged, now() + 3600)),
    );
    assert_eq!(
        (status, refusal["errorCode"].as_u64()),
        (401, Some(401_002))
    );
    let (status, refusal) = device_call(
        &dps,
        "PUT",
        "tpm-1",
        "register",
        Some(&body),
        Some(&sas_token(&dps, "tpm-1", &key, now() - 3600)),
    );
    assert_eq!(
        (status, refusal["errorCode"].as_u64()),
        (401, Some(401_002))
    );
    assert!(
        refusal["message"].as_str().unwrap().contains("expired"),
        "{refusal}"
    );

    let token = sas_token(&dps, "tpm-1", &key, now() + 3600);
    let (status, accepted) =
        device_call(&dps, "PUT", "tpm-1", "register", Some(&body), Some(&token));
    assert_eq!(status, 202, "{accepted}");
    let op = accepted["operationId"].as_str().unwrap().to_owned();
    let (status, done) = device_call(
        &dps,
        "GET",
        "tpm-1",
        &format!("operations/{op}"),
        None,
        Some(&token),
    );
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["status"], "assigned");
    assert_eq!(
        done["registrationState"]["tpm"]["authenticationKey"],
        challenge["authenticationKey"]
    );

    // The device-side client does the same two steps.
    let a = register(&registration(&dps, "tpm-1", scalar), WAIT).unwrap();
    assert_eq!(a.status, "assigned");
    assert_eq!(a.device_id.as_deref(), Some("tpm-1"));
}

#[test]
fn a_wrong_ek_an_unknown_id_and_an_rsa_ek_are_refused() {
    let dps = loopback();
    let (_, enrolled) = ek(21);
    enroll(&dps, "tpm-2", &enrolled);
    let (other, _) = ek(22);
    match register(&registration(&dps, "tpm-2", other), WAIT).unwrap_err() {
        DeviceClientError::Refused { status, body, .. } => {
            assert_eq!(status, 401);
            assert!(body.contains("not the enrolled one"), "{body}");
            assert!(!body.contains("authenticationKey"), "{body}");
        }
        e => panic!("expected a refusal, got {e}"),
    }

    let (scalar, _) = ek(23);
    match register(&registration(&dps, "tpm-unknown", scalar), WAIT).unwrap_err() {
        DeviceClientError::Refused { status, body, .. } => {
            assert_eq!(status, 404);
            assert!(body.contains("404201"), "{body}");
        }
        e => panic!("expected a refusal, got {e}"),
    }

    // No authentication key was issued: a SAS token alone gets nowhere.
    let key = SecretString::new(BASE64_STANDARD.encode([1u8; 32]));
    let (status, refusal) = device_call(
        &dps,
        "PUT",
        "tpm-2",
        "register",
        Some(&json!({ "registrationId": "tpm-2" })),
        Some(&sas_token(&dps, "tpm-2", &key, now() + 3600)),
    );
    assert_eq!(status, 401, "{refusal}");

    let rsa = BASE64_STANDARD.encode(tpm_ek::tpm2b_public(&EkKey::Rsa2048 {
        modulus: Box::new([0xC3; 256]),
    }));
    enroll(&dps, "tpm-rsa", &rsa);
    let (status, refusal) = device_call(
        &dps,
        "PUT",
        "tpm-rsa",
        "register",
        Some(&json!({ "registrationId": "tpm-rsa", "tpm": { "endorsementKey": rsa } })),
        None,
    );
    assert_eq!(status, 401, "{refusal}");
    assert!(
        refusal["message"]
            .as_str()
            .unwrap()
            .contains("ECC P-256 EKs only"),
        "{refusal}"
    );
}

/// The key the TPM challenge issues to `id` (EK `endorsement_key`), activated with the EK.
fn challenge_key(dps: &Dps, id: &str, scalar: &SecretBytes, endorsement_key: &str) -> SecretString {
    let body = json!({ "registrationId": id, "tpm": { "endorsementKey": endorsement_key } });
    let (status, challenge) = device_call(dps, "PUT", id, "register", Some(&body), None);
    assert_eq!(status, 401, "{challenge}");
    let blob = BASE64_STANDARD
        .decode(challenge["authenticationKey"].as_str().unwrap())
        .unwrap();
    let key = tpm_credential::activate(scalar, &blob).unwrap();
    SecretString::new(BASE64_STANDARD.encode(key.expose()))
}

#[test]
fn a_challenge_key_dies_with_its_enrollment_and_after_its_registration() {
    let dps = loopback();
    let (scalar, old_ek) = ek(31);
    enroll(&dps, "tpm-3", &old_ek);
    let key = challenge_key(&dps, "tpm-3", &scalar, &old_ek);
    let body = json!({ "registrationId": "tpm-3" });

    // The enrollment is replaced with another EK: the key wrapped to the old one is refused.
    let (_, new_ek) = ek(32);
    let replaced = dps.call(
        "PUT",
        &format!("/enrollments/tpm-3?{V}"),
        Some(&json!({
            "registrationId": "tpm-3",
            "attestation": { "type": "tpm", "tpm": { "endorsementKey": new_ek } }
        })),
        &[("if-match", "*")],
    );
    assert_eq!(replaced.status, 200, "{}", replaced.body);
    let token = sas_token(&dps, "tpm-3", &key, now() + 3600);
    let (status, refusal) =
        device_call(&dps, "PUT", "tpm-3", "register", Some(&body), Some(&token));
    assert_eq!(
        (status, refusal["errorCode"].as_u64()),
        (401, Some(401_002)),
        "{refusal}"
    );
    assert!(dps.emu.registrations_snapshot().is_empty());

    // A key used for a registration signs the polling of it, not a second registration.
    let (scalar, ek_4) = ek(33);
    enroll(&dps, "tpm-4", &ek_4);
    let key = challenge_key(&dps, "tpm-4", &scalar, &ek_4);
    let token = sas_token(&dps, "tpm-4", &key, now() + 3600);
    let body = json!({ "registrationId": "tpm-4" });
    let (status, accepted) =
        device_call(&dps, "PUT", "tpm-4", "register", Some(&body), Some(&token));
    assert_eq!(status, 202, "{accepted}");
    let op = accepted["operationId"].as_str().unwrap().to_owned();
    let (status, done) = device_call(
        &dps,
        "GET",
        "tpm-4",
        &format!("operations/{op}"),
        None,
        Some(&token),
    );
    assert_eq!((status, done["status"].as_str()), (200, Some("assigned")));
    let (status, refusal) =
        device_call(&dps, "PUT", "tpm-4", "register", Some(&body), Some(&token));
    assert_eq!(status, 401, "{refusal}");
    assert!(
        refusal["message"]
            .as_str()
            .unwrap()
            .contains("already used"),
        "{refusal}"
    );

    // Deleting the enrollment drops its key too: enrolled again, the old key gets nowhere.
    let (scalar, ek_5) = ek(34);
    enroll(&dps, "tpm-5", &ek_5);
    let key = challenge_key(&dps, "tpm-5", &scalar, &ek_5);
    let deleted = dps.call("DELETE", &format!("/enrollments/tpm-5?{V}"), None, &[]);
    assert_eq!(deleted.status, 204, "{}", deleted.body);
    enroll(&dps, "tpm-5", &ek_5);
    let token = sas_token(&dps, "tpm-5", &key, now() + 3600);
    let (status, refusal) = device_call(
        &dps,
        "PUT",
        "tpm-5",
        "register",
        Some(&json!({ "registrationId": "tpm-5" })),
        Some(&token),
    );
    assert_eq!(status, 401, "{refusal}");
    assert!(
        refusal["message"]
            .as_str()
            .unwrap()
            .contains("no authentication key"),
        "{refusal}"
    );
}
