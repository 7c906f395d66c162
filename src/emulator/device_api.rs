//! The device registration API: `PUT /{idScope}/registrations/{id}/register` and
//! `GET /{idScope}/registrations/{id}/operations/{operationId}`. A device proves itself with
//! its TLS client certificate (checked against the enrolled leaf, or chained to a group's
//! signing certificate) or with a SAS token signed by its enrollment's key or its
//! group-derived key, or (TPM) with a SAS token signed by the key the TPM challenge sent it
//! wrapped to its endorsement key (see `tpm_credential`); then it is assigned a hub, as DPS does.

use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::Response;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rustls::pki_types::{CertificateDer, UnixTime};
use serde_json::{Value, json};

use super::api_error::{ApiError, code};
use super::app::{self, App};
use super::certinfo;
use super::clock;
use super::enrollment::{self, Kind};
use super::hub;
use super::ids;
use super::routes::{Call, DEVICE_API_VERSIONS, check_api_version, json};
use super::sas;
use super::store::{OperationRecord, State, TpmChallenge};
use super::tpm_credential;
use crate::identity::symmetric::derive_device_key;
use crate::identity::tpm_ek::{self, EkPublic};
use crate::secret::SecretString;

/// Which enrollment a device proved it belongs to.
#[derive(Debug, Clone)]
struct Match {
    /// `Some(id)` for a group, `None` for the individual enrollment.
    group: Option<String>,
    /// The enrollment document.
    doc: Value,
    /// `x509`, `symmetricKey` or `tpm`.
    attestation: &'static str,
}

/// How a device proved who it is, whatever the transport: the `Authorization` header (HTTPS) or
/// the CONNECT password (MQTT) holding a SAS token, and the TLS client certificate chain.
#[derive(Clone, Copy, Default)]
pub struct Credentials<'a> {
    /// A SAS token (`SharedAccessSignature sr=...`).
    pub sas: Option<&'a str>,
    /// The client's certificate chain, leaf first.
    pub peer_certificates: Option<&'a [Vec<u8>]>,
}

/// A device-API answer before it is put on a transport: HTTPS sends it as a response, MQTT as a
/// PUBLISH to `$dps/registrations/res/{status}/?$rid=...`.
#[derive(Debug, Clone)]
pub struct Answer {
    /// HTTP status (202 assigning, 200 assigned, 401 TPM challenge).
    pub status: StatusCode,
    /// JSON body.
    pub body: Value,
    /// Seconds before the device should poll.
    pub retry_after: Option<u64>,
}

/// Handles a device-API call over HTTPS.
pub fn handle(app: &App, call: &Call<'_>) -> Result<Response, ApiError> {
    check_api_version(call.api_version.as_deref(), DEVICE_API_VERSIONS)?;
    let seg = &call.segments;
    let scope = &seg[0];
    let registration_id = seg.get(2).cloned().unwrap_or_default();
    let credentials = Credentials {
        sas: call.header("authorization"),
        peer_certificates: call
            .connection
            .peer_certificates
            .as_deref()
            .map(Vec::as_slice),
    };
    let rest: Vec<String> = seg
        .get(3..)
        .unwrap_or(&[])
        .iter()
        .map(|s| s.to_ascii_lowercase())
        .collect();
    let answer = match (
        call.method,
        rest.iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .as_slice(),
    ) {
        (&Method::PUT, ["register"]) => {
            register(app, scope, &registration_id, &call.body, credentials)?
        }
        (&Method::GET, ["operations", _]) => {
            let op_id = seg.get(4).map(String::as_str).unwrap_or("");
            operation_status(app, scope, &registration_id, op_id, credentials)?
        }
        _ => {
            check_target(app, scope, &registration_id)?;
            return Err(ApiError::new(
                code::NOT_FOUND,
                format!(
                    "no such device API resource: {} {}",
                    call.method, call.raw_path
                ),
            ));
        }
    };
    let mut r = json(answer.status, &answer.body);
    if let Some(s) = answer.retry_after {
        r.headers_mut().insert("retry-after", HeaderValue::from(s));
    }
    Ok(r)
}

/// The ID scope must be this instance's and the registration ID well formed.
fn check_target(app: &App, scope: &str, registration_id: &str) -> Result<(), ApiError> {
    if !scope.eq_ignore_ascii_case(&app.id_scope) {
        return Err(ApiError::unauthorized(format!(
            "ID scope '{scope}' is not served here (this instance's is {})",
            app.id_scope
        )));
    }
    ids::validate("registration ID", registration_id).map_err(ApiError::bad_request)
}

/// Parses a device's SAS token and checks its form: key name `registration` (when given) and a
/// resource that is this device's registration. The signature and expiry are the caller's.
fn device_token(app: &App, registration_id: &str, text: &str) -> Result<sas::SasToken, ApiError> {
    let token = sas::parse(Some(text)).map_err(|e| ApiError::unauthorized(e.to_string()))?;
    if let Some(skn) = &token.skn
        && !skn.eq_ignore_ascii_case("registration")
    {
        return Err(ApiError::unauthorized(format!(
            "a device SAS token has skn=registration, not '{skn}'"
        )));
    }
    let resource = format!("{}/registrations/{}", app.id_scope, registration_id);
    if !token.covers(&resource) {
        return Err(ApiError::unauthorized(format!(
            "the SAS token's sr '{}' is not '{resource}'",
            token.sr_decoded
        )));
    }
    Ok(token)
}

/// What DPS's MQTT gateway checks at CONNECT, before any enrollment is looked at: the ID scope,
/// the registration ID, and a SAS token's form, resource, key name and expiry. Whether the
/// signature or the certificate fits an enrollment is decided by the registration itself, which
/// then answers 401 on the response topic: the real service accepted a CONNECT whose token it then
/// refused at `iotdps-register` with `res/401` (MicrosoftDocs/azure-docs#43157), while devices
/// with an expired token (a clock at 1970) meet "Connection Refused: not authorised"
/// (Azure/azure-iot-sdk-python#709).
pub fn check_connect(
    app: &App,
    scope: &str,
    registration_id: &str,
    credentials: Credentials<'_>,
) -> Result<(), ApiError> {
    check_target(app, scope, registration_id)?;
    match credentials.sas {
        Some(text) => {
            let token = device_token(app, registration_id, text)?;
            if token.expired(clock::unix_now()) {
                return Err(ApiError::unauthorized(
                    sas::SasError::Expired(token.se).to_string(),
                ));
            }
            Ok(())
        }
        None if credentials.peer_certificates.is_some_and(|c| !c.is_empty()) => Ok(()),
        None => Err(ApiError::unauthorized(
            "the device presented neither a client certificate nor a SAS password",
        )),
    }
}

/// `GET .../operations/{operationId}`: the state of the device's latest registration.
pub fn operation_status(
    app: &App,
    scope: &str,
    registration_id: &str,
    op_id: &str,
    credentials: Credentials<'_>,
) -> Result<Answer, ApiError> {
    check_target(app, scope, registration_id)?;
    let state = app.lock();
    authenticate(app, &state, credentials, registration_id, false)?;
    let op = state
        .operations
        .get(&ids::key(registration_id))
        .filter(|o| o.operation_id == op_id)
        .ok_or_else(|| {
            ApiError::new(
                code::OPERATION_NOT_FOUND,
                format!("operation '{op_id}' of registration ID '{registration_id}' not found"),
            )
        })?;
    Ok(Answer {
        status: StatusCode::OK,
        body: op.result.clone(),
        retry_after: None,
    })
}

/// `PUT .../register`: authenticates the device, assigns it a hub (creating its identity there
/// when the hub is the emulator's own) and answers 202 with the operation to poll.
pub fn register(
    app: &App,
    scope: &str,
    registration_id: &str,
    body: &[u8],
    credentials: Credentials<'_>,
) -> Result<Answer, ApiError> {
    check_target(app, scope, registration_id)?;
    if let Err(seconds) = app::take(&app.registrations) {
        return Err(ApiError::throttled(seconds));
    }
    let mut tpm = None;
    let payload = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Null
    } else {
        let body: Value = serde_json::from_slice(body).map_err(|e| {
            ApiError::bad_request(format!("the registration body is not JSON: {e}"))
        })?;
        if let Some(id) = body.get("registrationId").and_then(Value::as_str)
            && ids::key(id) != ids::key(registration_id)
        {
            return Err(ApiError::bad_request(format!(
                "the body's registrationId '{id}' does not match '{registration_id}' in the path"
            )));
        }
        tpm = body.get("tpm").filter(|t| !t.is_null()).cloned();
        body.get("payload").cloned().unwrap_or(Value::Null)
    };
    if let Some(tpm) = &tpm
        && credentials.sas.is_none()
    {
        return tpm_challenge(app, registration_id, tpm);
    }
    let mut state = app.change();
    let found = authenticate(app, &state, credentials, registration_id, true)?;
    let now = clock::now_rfc3339();
    let enabled = found.doc.get("provisioningStatus").and_then(Value::as_str) != Some("disabled");
    let key = ids::key(registration_id);
    let previous = state.registrations.get(&key).map(|r| r.state.clone());
    let mut reg = json!({
        "registrationId": registration_id,
        "createdDateTimeUtc": previous.as_ref().and_then(|p| p.get("createdDateTimeUtc")).cloned().unwrap_or_else(|| json!(now)),
        "lastUpdatedDateTimeUtc": now,
        "etag": enrollment::new_etag(),
    });
    if enabled {
        let device_id = found
            .doc
            .get("deviceId")
            .and_then(Value::as_str)
            .unwrap_or(registration_id);
        reg["assignedHub"] = json!(choose_hub(
            app,
            &found.doc,
            registration_id,
            previous.as_ref()
        ));
        reg["deviceId"] = json!(device_id);
        reg["status"] = json!("assigned");
        reg["substatus"] = json!("initialAssignment");
        if reg["assignedHub"]
            .as_str()
            .is_some_and(|h| h.eq_ignore_ascii_case(&app.hub_host_name))
        {
            hub::assign(
                &mut state,
                &hub::Assignment {
                    device_id,
                    registration_id,
                    enrollment_group_id: found.group.as_deref(),
                    attestation: found.attestation,
                    leaf_certificate: credentials
                        .peer_certificates
                        .and_then(<[Vec<u8>]>::first)
                        .map(Vec::as_slice),
                    initial_twin: found.doc.get("initialTwin"),
                },
            );
        }
    } else {
        reg["status"] = json!("disabled");
        reg["errorCode"] = json!(401_003);
        reg["errorMessage"] = json!("the enrollment is disabled");
    }
    if !payload.is_null() {
        reg["payload"] = payload;
    }
    state.record_registration(
        registration_id,
        reg.clone(),
        found.group.as_deref(),
        &app.limits,
    )?;

    let mut device_state = reg;
    let mut detail = json!({});
    if let Some(g) = &found.group {
        detail["enrollmentGroupId"] = json!(g);
    }
    if found.attestation == "x509"
        && let Some(info) = credentials
            .peer_certificates
            .and_then(<[Vec<u8>]>::first)
            .and_then(|c| certinfo::info(c).ok())
    {
        detail["certificateInfo"] = info;
    }
    if found.attestation == "tpm"
        && let Some(challenge) = state.tpm_challenges.get_mut(&ids::key(registration_id))
    {
        // DPS returns the (wrapped) key here too; the device activates it for the hub.
        detail["authenticationKey"] = json!(challenge.blob_b64);
        // Used up: it may still sign the polling of this operation, not another registration.
        challenge.registered = true;
    }
    device_state[found.attestation] = detail;
    let operation_id = format!(
        "4.{}.{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let status = device_state["status"].clone();
    state.operations.insert(
        key,
        OperationRecord {
            operation_id: operation_id.clone(),
            result: json!({ "operationId": operation_id, "status": status, "registrationState": device_state }),
        },
    );
    drop(state);
    Ok(Answer {
        status: StatusCode::ACCEPTED,
        body: json!({ "operationId": operation_id, "status": "assigning" }),
        retry_after: Some(1),
    })
}

/// Picks the hub: the one already assigned if still allowed, else by the allocation policy.
fn choose_hub(app: &App, doc: &Value, registration_id: &str, previous: Option<&Value>) -> String {
    let mut hubs: Vec<String> = doc
        .get("iotHubs")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    if hubs.is_empty()
        && let Some(h) = doc.get("iotHubHostName").and_then(Value::as_str)
    {
        hubs.push(h.to_owned());
    }
    if hubs.is_empty() {
        // The linked hubs (`--iot-hub`, the local hub last), as DPS picks among its linked hubs.
        hubs = app.linked_hubs.clone();
    }
    if hubs.is_empty() {
        // None linked but the local hub, which always is: an enrollment naming no hub goes there.
        hubs.push(app.hub_host_name.clone());
    }
    if let Some(prev) = previous
        .and_then(|p| p.get("assignedHub"))
        .and_then(Value::as_str)
        && hubs.iter().any(|h| h.eq_ignore_ascii_case(prev))
    {
        return prev.to_owned();
    }
    let hashed = doc.get("allocationPolicy").and_then(Value::as_str) == Some("hashed");
    if hashed {
        let sum = ids::key(registration_id).bytes().fold(0usize, |acc, b| {
            acc.wrapping_mul(31).wrapping_add(usize::from(b))
        });
        hubs[sum % hubs.len()].clone()
    } else {
        hubs[0].clone()
    }
}

/// Finds the enrollment the device's credentials prove it belongs to.
fn authenticate(
    app: &App,
    state: &State,
    credentials: Credentials<'_>,
    registration_id: &str,
    registering: bool,
) -> Result<Match, ApiError> {
    let key = ids::key(registration_id);
    let individual = state.enrollments.get(&key);
    if let Some(header) = credentials.sas {
        let token = device_token(app, registration_id, header)?;
        let now = clock::unix_now();
        if let Some(doc) = individual
            && enrollment::attestation_type(doc) == "tpm"
        {
            let challenge = state.tpm_challenges.get(&key).ok_or_else(|| {
                ApiError::new(
                    code::DEVICE_UNAUTHORIZED,
                    format!(
                        "registration ID '{registration_id}' is enrolled with TPM attestation and no authentication key was issued to it; send the registration with its endorsement key and without Authorization first"
                    ),
                )
            })?;
            if challenge.expires < now {
                return Err(ApiError::new(
                    code::DEVICE_UNAUTHORIZED,
                    format!(
                        "the authentication key issued to registration ID '{registration_id}' expired at {} (Unix seconds); register again without Authorization for a new one",
                        challenge.expires
                    ),
                ));
            }
            if enrolled_ek_bytes(doc).as_deref() != Some(challenge.ek.as_slice()) {
                return Err(ApiError::new(
                    code::DEVICE_UNAUTHORIZED,
                    format!(
                        "the authentication key issued to registration ID '{registration_id}' was wrapped to an endorsement key that is no longer the enrolled one; register again without Authorization for a new one"
                    ),
                ));
            }
            if registering && challenge.registered {
                return Err(ApiError::new(
                    code::DEVICE_UNAUTHORIZED,
                    format!(
                        "the authentication key issued to registration ID '{registration_id}' was already used for a registration; register again without Authorization for a new one"
                    ),
                ));
            }
            token
                .verify(&[&challenge.key], now, registration_id)
                .map_err(|e| ApiError::new(code::DEVICE_UNAUTHORIZED, e.to_string()))?;
            return Ok(Match {
                group: None,
                doc: doc.clone(),
                attestation: "tpm",
            });
        }
        if let Some(doc) = individual {
            if enrollment::attestation_type(doc) != "symmetricKey" {
                return Err(ApiError::new(
                    code::DEVICE_UNAUTHORIZED,
                    format!(
                        "registration ID '{registration_id}' is enrolled with {} attestation, not a symmetric key",
                        enrollment::attestation_type(doc)
                    ),
                ));
            }
            let keys: Vec<SecretString> = enrollment::symmetric_keys(doc)
                .into_iter()
                .map(SecretString::new)
                .collect();
            let refs: Vec<&SecretString> = keys.iter().collect();
            token
                .verify(&refs, now, registration_id)
                .map_err(|e| ApiError::new(code::DEVICE_UNAUTHORIZED, e.to_string()))?;
            return Ok(Match {
                group: None,
                doc: doc.clone(),
                attestation: "symmetricKey",
            });
        }
        let mut any_group = false;
        for group in state
            .groups
            .values()
            .filter(|g| enrollment::attestation_type(g) == "symmetricKey")
        {
            any_group = true;
            let derived: Vec<SecretString> = enrollment::symmetric_keys(group)
                .into_iter()
                .filter_map(|k| derive_device_key(&SecretString::new(k), registration_id).ok())
                .collect();
            let refs: Vec<&SecretString> = derived.iter().collect();
            match token.verify(&refs, now, registration_id) {
                Ok(()) => {
                    return Ok(Match {
                        group: Some(enrollment::body_id(Kind::Group, group)),
                        doc: group.clone(),
                        attestation: "symmetricKey",
                    });
                }
                Err(e @ sas::SasError::Expired(_)) => {
                    return Err(ApiError::new(code::DEVICE_UNAUTHORIZED, e.to_string()));
                }
                Err(_) => {}
            }
        }
        if any_group {
            return Err(ApiError::new(
                code::DEVICE_UNAUTHORIZED,
                format!(
                    "registration ID '{registration_id}': the SAS signature matches no symmetric-key enrollment"
                ),
            ));
        }
        return Err(ApiError::new(
            code::ENROLLMENT_NOT_FOUND,
            format!("registration ID '{registration_id}' has no enrollment"),
        ));
    }

    let Some(chain) = credentials.peer_certificates.filter(|c| !c.is_empty()) else {
        return Err(ApiError::unauthorized(
            "the device presented neither a client certificate (HTTPS) nor a SAS token",
        ));
    };
    let leaf = &chain[0];
    let cn = certinfo::common_name(leaf).unwrap_or_default();
    if ids::key(&cn) != key {
        return Err(ApiError::new(
            code::DEVICE_UNAUTHORIZED,
            format!(
                "the client certificate's CN '{cn}' is not the registration ID '{registration_id}'"
            ),
        ));
    }
    if let Some(doc) = individual {
        if enrollment::attestation_type(doc) != "x509" {
            return Err(ApiError::new(
                code::DEVICE_UNAUTHORIZED,
                format!(
                    "registration ID '{registration_id}' is enrolled with {} attestation, not X.509",
                    enrollment::attestation_type(doc)
                ),
            ));
        }
        let thumb = certinfo::sha256_thumbprint(leaf);
        let enrolled = enrollment::certificates_der(doc, "clientCertificates");
        if !enrolled
            .iter()
            .any(|c| certinfo::sha256_thumbprint(c) == thumb)
        {
            return Err(ApiError::new(
                code::DEVICE_UNAUTHORIZED,
                format!(
                    "registration ID '{registration_id}': the client certificate is not the enrolled one"
                ),
            ));
        }
        check_validity(leaf, registration_id)?;
        return Ok(Match {
            group: None,
            doc: doc.clone(),
            attestation: "x509",
        });
    }
    match chain_to_x509_group(state, chain) {
        Ok(found) => Ok(found),
        Err(Some(e)) => Err(ApiError::new(
            code::DEVICE_UNAUTHORIZED,
            format!(
                "registration ID '{registration_id}': the certificate chain does not verify against any X.509 enrollment group ({e})"
            ),
        )),
        Err(None) => Err(ApiError::new(
            code::ENROLLMENT_NOT_FOUND,
            format!("registration ID '{registration_id}' has no enrollment"),
        )),
    }
}

/// The X.509 enrollment group a client certificate chain (leaf first) verifies against, as
/// DPS checks a group device and IoT Hub a CA-signed one; `Err(None)` when no group is enrolled.
fn chain_to_x509_group(state: &State, chain: &[Vec<u8>]) -> Result<Match, Option<String>> {
    let Some(leaf) = chain.first() else {
        return Err(Some("no client certificate".into()));
    };
    let leaf_der = CertificateDer::from(leaf.as_slice());
    let intermediates: Vec<CertificateDer<'_>> = chain[1..]
        .iter()
        .map(|c| CertificateDer::from(c.as_slice()))
        .collect();
    let algs = rustls::crypto::ring::default_provider()
        .signature_verification_algorithms
        .all;
    let ee = webpki::EndEntityCert::try_from(&leaf_der).ok();
    let mut last_error = None;
    for group in state
        .groups
        .values()
        .filter(|g| enrollment::attestation_type(g) == "x509")
    {
        // A CA named by reference counts only once verified in the registry.
        match super::ca_registry::referenced_ca(state, group, chain) {
            Ok(Some(_)) => {
                return Ok(Match {
                    group: Some(enrollment::body_id(Kind::Group, group)),
                    doc: group.clone(),
                    attestation: "x509",
                });
            }
            Ok(None) => {}
            Err(e) => {
                last_error = Some(format!(
                    "enrollment group '{}': {e}",
                    enrollment::body_id(Kind::Group, group)
                ))
            }
        }
        for signing in enrollment::certificates_der(group, "signingCertificates") {
            let signing_der = CertificateDer::from(signing.as_slice());
            let Ok(anchor) = webpki::anchor_from_trusted_cert(&signing_der) else {
                continue;
            };
            let Some(ee) = &ee else {
                return Err(Some("the client certificate cannot be parsed".into()));
            };
            match ee.verify_for_usage(
                algs,
                &[anchor],
                &intermediates,
                UnixTime::now(),
                webpki::KeyUsage::client_auth(),
                None,
                None,
            ) {
                Ok(_) => {
                    return Ok(Match {
                        group: Some(enrollment::body_id(Kind::Group, group)),
                        doc: group.clone(),
                        attestation: "x509",
                    });
                }
                Err(e) => last_error = Some(format!("{e:?}")),
            }
        }
    }
    Err(last_error)
}

/// The ID of the X.509 enrollment group a certificate chain verifies against, if any: what the
/// local hub checks a CA-signed device's chain with.
pub fn x509_group_of(state: &State, chain: &[Vec<u8>]) -> Option<String> {
    chain_to_x509_group(state, chain).ok().and_then(|m| m.group)
}

/// How long the key a TPM challenge issued stays usable.
pub const TPM_CHALLENGE_TTL_SECS: i64 = 900;

/// The first half of TPM attestation: the device sent its endorsement key and no credential.
/// If the key is the enrolled one, a fresh registration key wrapped to it goes back in a 401,
/// as DPS does; the device recovers it with its TPM and signs its SAS token with it.
fn tpm_challenge(app: &App, registration_id: &str, tpm: &Value) -> Result<Answer, ApiError> {
    let sent = tpm
        .get("endorsementKey")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "registration ID '{registration_id}': tpm.endorsementKey (base64 TPM2B_PUBLIC) is required"
            ))
        })?;
    let sent = decode_ek(sent).map_err(|e| {
        ApiError::bad_request(format!(
            "registration ID '{registration_id}': tpm.endorsementKey: {e}"
        ))
    })?;
    let key = ids::key(registration_id);
    let mut state = app.lock();
    let doc = state.enrollments.get(&key).ok_or_else(|| {
        ApiError::new(
            code::ENROLLMENT_NOT_FOUND,
            format!("registration ID '{registration_id}' has no enrollment"),
        )
    })?;
    if enrollment::attestation_type(doc) != "tpm" {
        return Err(ApiError::new(
            code::DEVICE_UNAUTHORIZED,
            format!(
                "registration ID '{registration_id}' is enrolled with {} attestation, not TPM",
                enrollment::attestation_type(doc)
            ),
        ));
    }
    let enrolled = doc
        .pointer("/attestation/tpm/endorsementKey")
        .and_then(Value::as_str)
        .map(decode_ek)
        .transpose()
        .map_err(|e| {
            ApiError::new(
                code::DEVICE_UNAUTHORIZED,
                format!(
                    "the enrolled endorsement key of registration ID '{registration_id}' is unusable: {e}"
                ),
            )
        })?
        .ok_or_else(|| {
            ApiError::new(
                code::DEVICE_UNAUTHORIZED,
                format!("the enrollment of '{registration_id}' has no endorsement key"),
            )
        })?;
    if enrolled.key != sent.key {
        return Err(ApiError::new(
            code::DEVICE_UNAUTHORIZED,
            format!(
                "registration ID '{registration_id}': the endorsement key the device sent is not the enrolled one"
            ),
        ));
    }
    // Decoded above already, so present.
    let enrolled_bytes = enrolled_ek_bytes(doc).unwrap_or_default();
    let mut secret = zeroize::Zeroizing::new([0u8; tpm_credential::KEY_BYTES]);
    rand::fill(secret.as_mut());
    let blob = tpm_credential::make(&enrolled.key, &secret).map_err(|e| {
        ApiError::new(
            code::DEVICE_UNAUTHORIZED,
            format!("registration ID '{registration_id}': {e}"),
        )
    })?;
    let blob_b64 = STANDARD.encode(&blob);
    let now = clock::unix_now();
    state.tpm_challenges.retain(|_, c| c.expires >= now);
    state.tpm_challenges.insert(
        key,
        TpmChallenge {
            key: SecretString::new(STANDARD.encode(secret.as_ref())),
            blob_b64: blob_b64.clone(),
            expires: now + TPM_CHALLENGE_TTL_SECS,
            ek: enrolled_bytes,
            registered: false,
        },
    );
    drop(state);
    Ok(Answer {
        status: StatusCode::UNAUTHORIZED,
        body: json!({
            "message": "TPM attestation: activate authenticationKey with the endorsement key and sign the SAS token with it",
            "authenticationKey": blob_b64,
            "keyName": "registration",
        }),
        retry_after: None,
    })
}

/// The enrolled endorsement key's bytes (TPM2B_PUBLIC), what a TPM challenge is bound to.
fn enrolled_ek_bytes(doc: &Value) -> Option<Vec<u8>> {
    let b64 = doc
        .pointer("/attestation/tpm/endorsementKey")
        .and_then(Value::as_str)?;
    STANDARD.decode(b64.trim()).ok()
}

fn decode_ek(b64: &str) -> Result<EkPublic, String> {
    let bytes = STANDARD
        .decode(b64.trim())
        .map_err(|e| format!("not base64 ({e})"))?;
    tpm_ek::parse_tpm2b_public(&bytes).map_err(|e| e.to_string())
}

fn check_validity(der: &[u8], registration_id: &str) -> Result<(), ApiError> {
    let cert = certinfo::parse(der).map_err(|e| ApiError::new(code::DEVICE_UNAUTHORIZED, e))?;
    if !cert.validity().is_valid() {
        return Err(ApiError::new(
            code::DEVICE_UNAUTHORIZED,
            format!(
                "registration ID '{registration_id}': the client certificate is outside its validity period"
            ),
        ));
    }
    Ok(())
}
