//! What an nRF91 modem signs: the COSE_Sign1 (RFC 8152) after a `%KEYGEN` CSR, and the device
//! identity in `%ATTESTTOKEN`, both CBOR, as Nordic documents them (and nRF Cloud's parser reads
//! them):
//!
//! - `%KEYGEN` answers `base64url(CSR DER) "." base64url(COSE_Sign1)`; the COSE payload is the
//!   array `[payload id (9 = CSR message v1), device UUID (16 bytes), sec_tag (a CBOR integer in
//!   a byte string), SHA-256 of the CSR DER (32 bytes), nonce (16 bytes)]`.
//! - `%ATTESTTOKEN` answers `base64url(body) "." base64url(COSE_Sign1)`; the body is the array
//!   `[message type (1 = device identity), device UUID, device type, firmware UUID]`.
//!
//! The station checks that the attestation names the CSR it came with (its digest); the
//! signature is by the modem's identity key, which only Nordic's identity service can check, so
//! it is kept in the ledger for that, not verified here.

use base64::Engine;
use minicbor::Decoder;
use sha2::{Digest, Sha256};

/// COSE_Sign1's CBOR tag.
pub const COSE_SIGN1_TAG: u64 = 18;

/// The payload id of a `%KEYGEN` CSR attestation.
pub const CSR_MESSAGE_V1: u32 = 9;

/// What a `%KEYGEN` attestation says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeygenAttestation {
    /// The modem's device UUID.
    pub device_uuid: [u8; 16],
    /// The sec_tag the key was made in.
    pub sec_tag: u32,
    /// SHA-256 of the CSR DER.
    pub csr_digest: [u8; 32],
}

/// Why an attestation cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CoseError {
    /// Not the CBOR structure Nordic documents.
    #[error("the attestation is not a COSE_Sign1 as the modem makes it: {0}")]
    Malformed(String),
    /// The attestation names another CSR.
    #[error(
        "the attestation's CSR digest {attested} is not the digest {actual} of the CSR that came with it"
    )]
    DigestMismatch {
        /// Hex digest in the attestation.
        attested: String,
        /// Hex digest of the CSR.
        actual: String,
    },
}

fn malformed<E: std::fmt::Display>(what: &'static str) -> impl FnOnce(E) -> CoseError {
    move |e| CoseError::Malformed(format!("{what}: {e}"))
}

/// Decodes base64url with or without padding (the modem sends it without).
pub fn b64url_decode(text: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text.trim_end_matches('='))
        .ok()
}

/// Encodes base64url without padding, as the modem does.
pub fn b64url_encode(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The payload of a COSE_Sign1 (tag 18 optional): `[protected, unprotected, payload, signature]`.
fn sign1_payload(cose: &[u8]) -> Result<&[u8], CoseError> {
    let mut d = Decoder::new(cose);
    if d.datatype().map_err(malformed("start"))? == minicbor::data::Type::Tag {
        let tag = d.tag().map_err(malformed("tag"))?;
        if tag.as_u64() != COSE_SIGN1_TAG {
            return Err(CoseError::Malformed(format!(
                "tag {} instead of COSE_Sign1's 18",
                tag.as_u64()
            )));
        }
    }
    if d.array().map_err(malformed("COSE array"))? != Some(4) {
        return Err(CoseError::Malformed("not a 4-element array".into()));
    }
    d.bytes().map_err(malformed("protected header"))?;
    d.skip().map_err(malformed("unprotected header"))?;
    let payload = d.bytes().map_err(malformed("payload"))?;
    let signature = d.bytes().map_err(malformed("signature"))?;
    if signature.is_empty() {
        return Err(CoseError::Malformed("an empty signature".into()));
    }
    Ok(payload)
}

fn fixed<const N: usize>(d: &mut Decoder<'_>, what: &'static str) -> Result<[u8; N], CoseError> {
    let bytes = d.bytes().map_err(malformed(what))?;
    bytes
        .try_into()
        .map_err(|_| CoseError::Malformed(format!("{what} is {} bytes, not {N}", bytes.len())))
}

/// Parses a `%KEYGEN` attestation and checks that it names `csr_der`.
pub fn check_keygen_attestation(
    cose: &[u8],
    csr_der: &[u8],
) -> Result<KeygenAttestation, CoseError> {
    let payload = sign1_payload(cose)?;
    let mut d = Decoder::new(payload);
    if d.array().map_err(malformed("payload array"))? != Some(5) {
        return Err(CoseError::Malformed(
            "the payload is not a 5-element array".into(),
        ));
    }
    let id = d.u32().map_err(malformed("payload id"))?;
    if id != CSR_MESSAGE_V1 {
        return Err(CoseError::Malformed(format!(
            "payload id {id}, not a CSR message (9)"
        )));
    }
    let device_uuid = fixed::<16>(&mut d, "device UUID")?;
    let tag_cbor = d.bytes().map_err(malformed("sec_tag"))?;
    let sec_tag = Decoder::new(tag_cbor).u32().map_err(malformed("sec_tag"))?;
    let csr_digest = fixed::<32>(&mut d, "CSR digest")?;
    d.bytes().map_err(malformed("nonce"))?;
    let actual: [u8; 32] = Sha256::digest(csr_der).into();
    if actual != csr_digest {
        return Err(CoseError::DigestMismatch {
            attested: hex::encode(csr_digest),
            actual: hex::encode(actual),
        });
    }
    Ok(KeygenAttestation {
        device_uuid,
        sec_tag,
        csr_digest,
    })
}

/// The device UUID in an `%ATTESTTOKEN` body (the part before the `.`).
pub fn token_device_uuid(body: &[u8]) -> Result<[u8; 16], CoseError> {
    let mut d = Decoder::new(body);
    if d.array().map_err(malformed("token array"))?.unwrap_or(0) < 2 {
        return Err(CoseError::Malformed(
            "a token array of under 2 items".into(),
        ));
    }
    let kind = d.u32().map_err(malformed("message type"))?;
    if kind != 1 {
        return Err(CoseError::Malformed(format!(
            "message type {kind}, not a device identity (1)"
        )));
    }
    fixed::<16>(&mut d, "device UUID")
}

/// A UUID as text (`8-4-4-4-12` lowercase hex).
pub fn uuid_text(uuid: &[u8; 16]) -> String {
    let h = hex::encode(uuid);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}
