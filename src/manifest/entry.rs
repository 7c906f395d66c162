//! One signed entry of a Trust&GO manifest: a JWS (flattened or general JSON serialization) whose
//! payload describes one secure element, verified against the manifest signer.
//!
//! What Microchip writes (its `SignedSecureElement`): `protected` (base64url JSON with `typ`,
//! `alg` = ES256, `kid`, `x5t#S256`), an unprotected `header` with the `uniqueId`, `payload`
//! (base64url JSON: `uniqueId`, `partNumber`, `model`, ..., `publicKeySet.keys`: JWKs by slot,
//! `kid` "0" the device key with its `x5c` chain, standard base64 DER, device certificate first)
//! and `signature` (base64url of the raw 64-byte r‖s over `protected.payload`).

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::signature::{ECDSA_P256_SHA256_ASN1, ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};
use serde::Deserialize;
use serde_json::Value;

use super::error::{EntryError, EntryProblem};
use super::signer::ManifestSigner;
use crate::identity::registration_id::{IdUse, RegistrationId};

/// An entry that passed every check: what the station records and enrolls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedEntry {
    /// 0-based position in the manifest.
    pub index: usize,
    /// The secure element's serial (lowercase hex), as the manifest names it.
    pub unique_id: String,
    /// The DPS registration ID: the device certificate's CN, lowercased (DPS compares IDs
    /// case-insensitively; the station writes them lowercase).
    pub registration_id: String,
    /// `partNumber` (e.g. `ATECC608B-TNGTLS`), or `model` when absent.
    pub part_number: String,
    /// The device certificate `x5c[0]`, DER.
    pub certificate_der: Vec<u8>,
    /// The certificate that signed it (`x5c[1]`, Microchip's "signer" CA), DER, shared by the
    /// entries that name the same one.
    pub issuer_der: Option<Arc<Vec<u8>>>,
    /// The device key (uncompressed SEC1 point, 65 bytes): what a device on the line must report.
    pub public_key: Vec<u8>,
}

#[derive(Deserialize)]
struct Payload {
    #[serde(rename = "uniqueId")]
    unique_id: String,
    #[serde(rename = "partNumber", default)]
    part_number: Option<String>,
    #[serde(default)]
    model: Option<String>,
    #[serde(rename = "publicKeySet")]
    public_key_set: KeySet,
}

#[derive(Deserialize)]
struct KeySet {
    keys: Vec<Jwk>,
}

#[derive(Deserialize)]
struct Jwk {
    kid: String,
    #[serde(default)]
    kty: Option<String>,
    #[serde(default)]
    crv: Option<String>,
    #[serde(default)]
    x: Option<String>,
    #[serde(default)]
    y: Option<String>,
    #[serde(default)]
    x5c: Vec<String>,
}

#[derive(Deserialize)]
struct Protected {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(rename = "x5t#S256", default)]
    x5t_s256: Option<String>,
    #[serde(default)]
    crit: Option<Value>,
}

/// One signature of the JWS, in either serialization.
struct Signed<'a> {
    protected: &'a str,
    header: Option<&'a Value>,
    signature: &'a str,
}

/// Base64url without padding, tolerating padding (some tools write it).
fn b64url(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')).ok()
}

fn str_field<'a>(v: &'a Value, name: &str) -> Option<&'a str> {
    v.get(name).and_then(Value::as_str)
}

/// The unique ID an entry names before it is verified (for naming it in errors).
fn claimed_unique_id(entry: &Value) -> Option<String> {
    fn from_header(h: &Value) -> Option<&str> {
        h.get("header").and_then(|h| str_field(h, "uniqueId"))
    }
    from_header(entry)
        .or_else(|| {
            entry
                .get("signatures")
                .and_then(Value::as_array)
                .and_then(|s| s.first())
                .and_then(from_header)
        })
        .map(|s| s.chars().take(64).collect())
}

/// Caches the `x5c[1]` certificate last seen, so 100,000 entries naming one signer CA keep it
/// (and its parsed key) once.
#[derive(Default)]
pub(crate) struct IssuerCache {
    last: Option<Issuer>,
}

/// A signer CA certificate (DER, shared) and its public key point.
type Issuer = (Arc<Vec<u8>>, Arc<Vec<u8>>);

impl IssuerCache {
    /// The certificate (shared) and its public key point.
    fn get(&mut self, der: Vec<u8>) -> Result<Issuer, EntryProblem> {
        if let Some((d, k)) = &self.last
            && **d == der
        {
            return Ok((d.clone(), k.clone()));
        }
        let (_, cert) = x509_parser::parse_x509_certificate(&der)
            .map_err(|e| EntryProblem::DeviceKey(format!("x5c[1] is not a certificate ({e})")))?;
        let point = cert.public_key().subject_public_key.data.to_vec();
        if p256::PublicKey::from_sec1_bytes(&point).is_err() {
            return Err(EntryProblem::DeviceKey("x5c[1] has no P-256 key".into()));
        }
        let entry = (Arc::new(der), Arc::new(point));
        self.last = Some(entry.clone());
        Ok(entry)
    }
}

/// Verifies entry `index` of a manifest against `signer`.
pub(crate) fn verify_entry(
    index: usize,
    entry: &Value,
    signer: &ManifestSigner,
    issuers: &mut IssuerCache,
) -> Result<VerifiedEntry, EntryError> {
    let claimed = claimed_unique_id(entry);
    let fail = |problem: EntryProblem, id: Option<String>| EntryError {
        index,
        unique_id: id,
        problem,
    };
    let (payload_b64, signatures) = envelope(entry).map_err(|p| fail(p, claimed.clone()))?;
    // General serialization may carry several signatures: the one by our signer counts.
    let mut last_problem = EntryProblem::Malformed("no signature".into());
    let mut verified = None;
    for s in &signatures {
        match check_signature(payload_b64, s, signer) {
            Ok(()) => {
                verified = Some(s);
                break;
            }
            Err(p) => last_problem = p,
        }
    }
    let Some(signed) = verified else {
        return Err(fail(last_problem, claimed));
    };
    let payload_bytes = b64url(payload_b64).ok_or_else(|| {
        fail(
            EntryProblem::Malformed("payload is not base64url".into()),
            claimed.clone(),
        )
    })?;
    let payload: Payload = serde_json::from_slice(&payload_bytes).map_err(|e| {
        fail(
            EntryProblem::Malformed(format!("payload: {e}")),
            claimed.clone(),
        )
    })?;
    let unique_id = payload.unique_id.clone();
    let named = Some(unique_id.chars().take(64).collect::<String>());
    let header_id = signed
        .header
        .and_then(|h| str_field(h, "uniqueId"))
        .ok_or_else(|| {
            fail(
                EntryProblem::Malformed("no header.uniqueId".into()),
                named.clone(),
            )
        })?;
    if header_id != unique_id {
        return Err(fail(
            EntryProblem::UniqueIdMismatch {
                header: header_id.chars().take(64).collect(),
                payload: unique_id.chars().take(64).collect(),
            },
            named,
        ));
    }
    if unique_id.len() != 18 || !unique_id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(fail(
            EntryProblem::BadUniqueId(unique_id.chars().take(64).collect()),
            named,
        ));
    }
    device_identity(index, payload, issuers).map_err(|p| fail(p, named))
}

/// The payload and the signatures of an entry, in flattened or general JSON serialization.
fn envelope(entry: &Value) -> Result<(&str, Vec<Signed<'_>>), EntryProblem> {
    let obj = entry
        .as_object()
        .ok_or_else(|| EntryProblem::Malformed("not a JSON object".into()))?;
    let payload = obj
        .get("payload")
        .and_then(Value::as_str)
        .ok_or_else(|| EntryProblem::Malformed("no payload".into()))?;
    fn one(v: &Value) -> Option<Signed<'_>> {
        Some(Signed {
            protected: str_field(v, "protected")?,
            header: v.get("header"),
            signature: str_field(v, "signature")?,
        })
    }
    let signatures: Vec<Signed<'_>> = match obj.get("signatures") {
        Some(list) => list
            .as_array()
            .ok_or_else(|| EntryProblem::Malformed("signatures is not a list".into()))?
            .iter()
            .map(|s| {
                one(s).ok_or_else(|| {
                    EntryProblem::Malformed("a signature lacks protected or signature".into())
                })
            })
            .collect::<Result<_, _>>()?,
        None => vec![one(entry).ok_or_else(|| {
            EntryProblem::Malformed("no protected header or no signature".into())
        })?],
    };
    if signatures.is_empty() {
        return Err(EntryProblem::Malformed("signatures is empty".into()));
    }
    Ok((payload, signatures))
}

/// The protected header names `signer` and the ES256 signature verifies with its key.
fn check_signature(
    payload: &str,
    s: &Signed<'_>,
    signer: &ManifestSigner,
) -> Result<(), EntryProblem> {
    let header: Protected = b64url(s.protected)
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| {
            EntryProblem::Malformed("the protected header is not base64url JSON with alg".into())
        })?;
    if header.alg != "ES256" {
        return Err(EntryProblem::Algorithm(
            header.alg.chars().take(16).collect(),
        ));
    }
    if header.crit.is_some() {
        return Err(EntryProblem::Malformed(
            "the protected header has crit parameters this station does not know".into(),
        ));
    }
    match header.x5t_s256.as_deref() {
        Some(t) if t.trim_end_matches('=') == signer.x5t_s256() => {}
        Some(t) => {
            return Err(EntryProblem::WrongSigner(format!(
                "x5t#S256 {} is not the --signer certificate's {}",
                t.chars().take(64).collect::<String>(),
                signer.x5t_s256()
            )));
        }
        None => {
            return Err(EntryProblem::WrongSigner(
                "the header has no x5t#S256".into(),
            ));
        }
    }
    match (header.kid.as_deref(), signer.kid()) {
        (Some(k), Some(ours)) if k.trim_end_matches('=') == ours => {}
        (Some(k), Some(ours)) => {
            return Err(EntryProblem::WrongSigner(format!(
                "kid {} is not the --signer certificate's key identifier {ours}",
                k.chars().take(64).collect::<String>()
            )));
        }
        (None, _) => return Err(EntryProblem::WrongSigner("the header has no kid".into())),
        (Some(_), None) => {
            return Err(EntryProblem::WrongSigner(
                "the --signer certificate has no Subject Key Identifier to match the header's kid"
                    .into(),
            ));
        }
    }
    let raw = b64url(s.signature).ok_or(EntryProblem::BadSignature)?;
    let mut signing_input = Vec::with_capacity(s.protected.len() + 1 + payload.len());
    signing_input.extend_from_slice(s.protected.as_bytes());
    signing_input.push(b'.');
    signing_input.extend_from_slice(payload.as_bytes());
    // JWS ES256 is the raw 64-byte r‖s (RFC 7518 §3.4); ring verifies it (several times faster
    // than the pure-Rust p256 arithmetic, which matters at 100,000 entries).
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, signer.point())
        .verify(&signing_input, &raw)
        .map_err(|_| EntryProblem::BadSignature)
}

/// The device key (kid "0"), its certificate, the match between them and the registration ID.
fn device_identity(
    index: usize,
    payload: Payload,
    issuers: &mut IssuerCache,
) -> Result<VerifiedEntry, EntryProblem> {
    let key = |m: &str| EntryProblem::DeviceKey(m.to_string());
    let jwk = payload
        .public_key_set
        .keys
        .into_iter()
        .find(|k| k.kid == "0")
        .ok_or_else(|| key("publicKeySet has no key with kid \"0\""))?;
    if jwk.kty.as_deref() != Some("EC") || jwk.crv.as_deref() != Some("P-256") {
        return Err(key("kid \"0\" is not an EC P-256 key"));
    }
    let coordinate = |c: &Option<String>| c.as_deref().and_then(b64url).filter(|b| b.len() == 32);
    let (Some(x), Some(y)) = (coordinate(&jwk.x), coordinate(&jwk.y)) else {
        return Err(key("kid \"0\" lacks 32-byte x and y"));
    };
    let mut public_key = Vec::with_capacity(65);
    public_key.push(0x04);
    public_key.extend_from_slice(&x);
    public_key.extend_from_slice(&y);
    let mut chain = jwk.x5c.into_iter();
    let cert_b64 = chain
        .next()
        .ok_or_else(|| key("kid \"0\" has no x5c certificate"))?;
    let certificate_der = STANDARD
        .decode(cert_b64.as_bytes())
        .map_err(|_| key("x5c[0] is not base64"))?;
    let (_, cert) = x509_parser::parse_x509_certificate(&certificate_der).map_err(|e| {
        EntryProblem::DeviceKey(format!("x5c[0] is not an X.509 certificate ({e})"))
    })?;
    if cert.public_key().subject_public_key.data.as_ref() != public_key.as_slice() {
        return Err(EntryProblem::KeyMismatch);
    }
    let issuer_der = match chain.next() {
        Some(b64) => {
            let der = STANDARD
                .decode(b64.as_bytes())
                .map_err(|_| key("x5c[1] is not base64"))?;
            let (der, issuer_point) = issuers.get(der)?;
            UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, issuer_point.as_slice())
                .verify(
                    cert.tbs_certificate.as_ref(),
                    cert.signature_value.data.as_ref(),
                )
                .map_err(|_| EntryProblem::BrokenChain)?;
            Some(der)
        }
        None => None,
    };
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .ok_or_else(|| EntryProblem::RegistrationId("the certificate has no UTF-8 CN".into()))?;
    let registration_id = RegistrationId::parse_for(cn, IdUse::X509CommonName)
        .map_err(|e| EntryProblem::RegistrationId(e.to_string()))?
        .as_str()
        .to_string();
    Ok(VerifiedEntry {
        index,
        unique_id: payload.unique_id.to_ascii_lowercase(),
        registration_id,
        part_number: payload
            .part_number
            .or(payload.model)
            .unwrap_or_else(|| "ATECC608-TNGTLS".into()),
        certificate_der,
        issuer_der,
        public_key,
    })
}
