//! The emulator's registry of CA certificates, for X.509 enrollment groups whose attestation
//! names a CA by `caReferences` (issue 16). DPS keeps such certificates per instance and uses a
//! group's referenced CA only once it is **verified**: uploaded, then proven by a certificate
//! whose subject CN is a verification code DPS generated, signed by the CA's key
//! (proof of possession), or uploaded already verified (`isVerified: true`, when the owner
//! vouches for a CA whose key it does not hold, such as Microchip's Trust&GO signer).
//!
//! DPS offers these operations on its management (ARM) API, not on the service API of
//! REFERENCE.md; the emulator serves a minimal model of them next to the service API, with the
//! same SAS authorization (docs/dps-emulator.md, "CA certificates"):
//! `PUT /certificates/{name}` `{certificate, isVerified?}`, `GET` / `DELETE /certificates/{name}`,
//! `GET /certificates`, `POST /certificates/{name}/generateVerificationCode`,
//! `POST /certificates/{name}/verify` `{certificate}`. Each answer is the ARM shape
//! `{name, etag, properties: {subject, thumbprint, isVerified, certificate, verificationCode?,
//! created, updated}}`.

use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use rustls::pki_types::{CertificateDer, UnixTime};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::api_error::{ApiError, code};
use super::app::App;
use super::certinfo;
use super::clock;
use super::enrollment;
use super::ids;
use super::routes::{Call, json};
use super::store::State;

/// One uploaded CA certificate.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CaCertificate {
    /// Its name in the instance (what `caReferences` names).
    pub name: String,
    /// The certificate as uploaded (PEM or base64 DER).
    pub certificate: String,
    /// Whether possession of its key was proven (or it was uploaded verified).
    pub verified: bool,
    /// The code the next proof-of-possession certificate must carry as its CN.
    pub verification_code: Option<String>,
    /// Changes with every change.
    pub etag: String,
    /// When it was uploaded.
    pub created: String,
    /// When it last changed.
    pub updated: String,
}

impl CaCertificate {
    fn der(&self) -> Option<Vec<u8>> {
        certinfo::decode(&self.certificate).ok()
    }

    fn render(&self) -> Value {
        let der = self.der().unwrap_or_default();
        let cert = certinfo::parse(&der).ok();
        let mut properties = json!({
            "subject": cert.as_ref().map(|c| crate::dn::rfc4514(c.subject())).unwrap_or_default(),
            "thumbprint": certinfo::sha256_thumbprint(&der),
            "isVerified": self.verified,
            "certificate": self.certificate,
            "created": self.created,
            "updated": self.updated,
        });
        if let Some(code) = &self.verification_code {
            properties["verificationCode"] = json!(code);
        }
        json!({ "name": self.name, "etag": self.etag, "properties": properties })
    }
}

fn not_found(name: &str) -> ApiError {
    ApiError::new(
        code::NOT_FOUND,
        format!(
            "no CA certificate named '{name}' is uploaded; upload it with PUT /certificates/{name}"
        ),
    )
}

fn body_certificate(call: &Call<'_>) -> Result<(String, Value), ApiError> {
    let body: Value = serde_json::from_slice(&call.body)
        .map_err(|e| ApiError::bad_request(format!("the body is not valid JSON: {e}")))?;
    let certificate = body
        .get("certificate")
        .and_then(Value::as_str)
        .filter(|c| !c.trim().is_empty())
        .ok_or_else(|| {
            ApiError::bad_request("the body has no \"certificate\" (PEM or base64 DER)")
        })?
        .to_string();
    Ok((certificate, body))
}

fn check_if_match(call: &Call<'_>, current: &CaCertificate) -> Result<(), ApiError> {
    match call.header("if-match") {
        None => Ok(()),
        Some(m) if m == "*" || m.trim_matches('"') == current.etag => Ok(()),
        Some(m) => Err(ApiError::new(
            code::PRECONDITION_FAILED,
            format!(
                "CA certificate '{}' has etag {}, not {m}; read it again",
                current.name, current.etag
            ),
        )),
    }
}

/// Routes `/certificates[/{name}[/action]]` (the service API's SAS already checked).
pub fn handle(app: &App, call: &Call<'_>, rest: &[&str]) -> Result<Response, ApiError> {
    let m = call.method;
    match rest {
        [] if m == Method::GET => {
            let list: Vec<Value> = app
                .lock()
                .ca_certificates
                .values()
                .map(CaCertificate::render)
                .collect();
            Ok(json(StatusCode::OK, &json!({ "value": list })))
        }
        [name] if m == Method::GET => app
            .lock()
            .ca_certificates
            .get(&ids::key(name))
            .map(|c| json(StatusCode::OK, &c.render()))
            .ok_or_else(|| not_found(name)),
        [name] if m == Method::PUT => upload(app, call, name),
        [name] if m == Method::DELETE => {
            let mut state = app.change();
            let current = state
                .ca_certificates
                .get(&ids::key(name))
                .ok_or_else(|| not_found(name))?;
            check_if_match(call, current)?;
            state.ca_certificates.remove(&ids::key(name));
            Ok(StatusCode::OK.into_response())
        }
        [name, action]
            if action.eq_ignore_ascii_case("generateVerificationCode") && m == Method::POST =>
        {
            let mut state = app.change();
            let cert = state
                .ca_certificates
                .get_mut(&ids::key(name))
                .ok_or_else(|| not_found(name))?;
            check_if_match(call, cert)?;
            cert.verification_code = Some(hex::encode_upper(rand::random::<[u8; 24]>()));
            cert.etag = enrollment::new_etag();
            cert.updated = clock::now_rfc3339();
            Ok(json(StatusCode::OK, &cert.render()))
        }
        [name, action] if action.eq_ignore_ascii_case("verify") && m == Method::POST => {
            verify(app, call, name)
        }
        _ => Err(ApiError::new(
            code::NOT_FOUND,
            format!("no such resource: {} {}", call.method, call.raw_path),
        )),
    }
}

fn upload(app: &App, call: &Call<'_>, name: &str) -> Result<Response, ApiError> {
    if name.is_empty()
        || name.len() > 256
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c))
    {
        return Err(ApiError::bad_request(format!(
            "'{name}' is not a CA certificate name: use letters, digits, '-', '.', '_'"
        )));
    }
    let (certificate, body) = body_certificate(call)?;
    let der = certinfo::decode(&certificate)
        .map_err(|e| ApiError::bad_request(format!("CA certificate '{name}': {e}")))?;
    let parsed = certinfo::parse(&der)
        .map_err(|e| ApiError::bad_request(format!("CA certificate '{name}': {e}")))?;
    if !parsed.is_ca() {
        return Err(ApiError::bad_request(format!(
            "CA certificate '{name}': the certificate is not a CA (basicConstraints CA:TRUE); upload the CA that issued the device certificates"
        )));
    }
    let verified = body
        .get("isVerified")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let now = clock::now_rfc3339();
    let mut state = app.change();
    let created = match state.ca_certificates.get(&ids::key(name)) {
        Some(current) => {
            check_if_match(call, current)?;
            current.created.clone()
        }
        None => now.clone(),
    };
    // A replaced certificate is a new one: it must be proven again unless uploaded verified.
    let cert = CaCertificate {
        name: name.to_string(),
        certificate,
        verified,
        verification_code: None,
        etag: enrollment::new_etag(),
        created,
        updated: now,
    };
    let answer = cert.render();
    state.ca_certificates.insert(ids::key(name), cert);
    Ok(json(StatusCode::OK, &answer))
}

/// Proof of possession: the posted certificate's CN is the generated code and the CA's key
/// signed it.
fn verify(app: &App, call: &Call<'_>, name: &str) -> Result<Response, ApiError> {
    let (posted, _) = body_certificate(call)?;
    let posted_der = certinfo::decode(&posted)
        .map_err(|e| ApiError::bad_request(format!("verification certificate: {e}")))?;
    let mut state = app.change();
    let cert = state
        .ca_certificates
        .get_mut(&ids::key(name))
        .ok_or_else(|| not_found(name))?;
    check_if_match(call, cert)?;
    let Some(code) = cert.verification_code.clone() else {
        return Err(ApiError::bad_request(format!(
            "CA certificate '{name}' has no verification code: POST generateVerificationCode first"
        )));
    };
    if certinfo::common_name(&posted_der).as_deref() != Some(code.as_str()) {
        return Err(ApiError::bad_request(format!(
            "the verification certificate's CN is not CA certificate '{name}''s verification code {code}"
        )));
    }
    let ca_der = cert.der().unwrap_or_default();
    if let Err(e) = signed_by(&posted_der, &ca_der) {
        return Err(ApiError::bad_request(format!(
            "the verification certificate was not signed by CA certificate '{name}''s key ({e}); sign it with that CA's private key"
        )));
    }
    cert.verified = true;
    cert.verification_code = None;
    cert.etag = enrollment::new_etag();
    cert.updated = clock::now_rfc3339();
    tracing::info!(ca = %name, "CA certificate verified by proof of possession");
    Ok(json(StatusCode::OK, &cert.render()))
}

/// Whether `chain` (leaf first) verifies up to `anchor_der` as a client certificate.
pub fn chain_verifies(chain: &[Vec<u8>], anchor_der: &[u8]) -> Result<(), String> {
    let leaf = chain.first().ok_or("no client certificate")?;
    let leaf_der = CertificateDer::from(leaf.as_slice());
    let ee = webpki::EndEntityCert::try_from(&leaf_der)
        .map_err(|e| format!("the client certificate cannot be parsed: {e:?}"))?;
    let intermediates: Vec<CertificateDer<'_>> = chain[1..]
        .iter()
        .map(|c| CertificateDer::from(c.as_slice()))
        .collect();
    let anchor_cert = CertificateDer::from(anchor_der);
    let anchor = webpki::anchor_from_trusted_cert(&anchor_cert).map_err(|e| format!("{e:?}"))?;
    let algs = rustls::crypto::ring::default_provider()
        .signature_verification_algorithms
        .all;
    ee.verify_for_usage(
        algs,
        &[anchor],
        &intermediates,
        UnixTime::now(),
        webpki::KeyUsage::client_auth(),
        None,
        None,
    )
    .map(|_| ())
    .map_err(|e| format!("{e:?}"))
}

fn signed_by(der: &[u8], ca_der: &[u8]) -> Result<(), String> {
    chain_verifies(&[der.to_vec()], ca_der)
}

/// What a group's `caReferences` give a device chain: `Ok(Some(name))` when the chain verifies
/// up to a referenced, verified CA; `Err` naming the CA when it verifies up to one that is not
/// verified (DPS refuses it) or when a referenced CA is not uploaded; `Ok(None)` when the chain
/// ends at none of them.
pub fn referenced_ca(
    state: &State,
    group: &Value,
    chain: &[Vec<u8>],
) -> Result<Option<String>, String> {
    let refs = group
        .get("attestation")
        .and_then(|a| a.get("x509"))
        .and_then(|x| x.get("caReferences"));
    let mut missing = None;
    for slot in ["primary", "secondary"] {
        let Some(name) = refs.and_then(|r| r.get(slot)).and_then(Value::as_str) else {
            continue;
        };
        let Some(ca) = state.ca_certificates.get(&ids::key(name)) else {
            missing = Some(format!(
                "its CA reference '{name}' names no uploaded CA certificate"
            ));
            continue;
        };
        let Some(der) = ca.der() else { continue };
        if chain_verifies(chain, &der).is_ok() {
            if !ca.verified {
                return Err(format!(
                    "the chain ends at CA certificate '{name}', which is not verified: prove possession of its key (generateVerificationCode, verify) or upload it verified"
                ));
            }
            return Ok(Some(name.to_string()));
        }
    }
    match missing {
        Some(m) => Err(m),
        None => Ok(None),
    }
}
