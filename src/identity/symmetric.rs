//! Symmetric-key attestation: random device keys, keys derived from an enrollment group's key, and a
//! fingerprint that lets the ledger recognise a key without ever holding it.
//!
//! The derivation is the one DPS documents (`concepts-symmetric-key-attestation.md`) and
//! `az iot dps compute-device-key` computes: `base64(HMAC-SHA256(base64decode(groupKey), registrationId))`,
//! over the registration ID's UTF-8 bytes exactly as given (DPS hashes what the device sends).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use rand::Rng as _;
use sha2::{Digest, Sha256};
use zeroize::Zeroize;

use crate::secret::{SecretBytes, SecretString};

/// The key lengths DPS uses: 32 bytes (what the portal shows) or 64 bytes (what DPS generates
/// when an enrollment is created without keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyLength {
    /// 32 random bytes (44 base64 characters).
    Bytes32,
    /// 64 random bytes (88 base64 characters).
    Bytes64,
}

impl KeyLength {
    /// The number of random bytes.
    pub fn bytes(self) -> usize {
        match self {
            KeyLength::Bytes32 => 32,
            KeyLength::Bytes64 => 64,
        }
    }

    /// 32 or 64; anything else is an error naming what was asked.
    pub fn from_bytes(bytes: usize) -> Result<Self, SymmetricKeyError> {
        match bytes {
            32 => Ok(KeyLength::Bytes32),
            64 => Ok(KeyLength::Bytes64),
            other => Err(SymmetricKeyError::UnsupportedLength(other)),
        }
    }
}

/// Why a symmetric key operation failed. Never carries key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SymmetricKeyError {
    /// The key is not base64 (the key itself is not shown).
    #[error(
        "the {what} is not valid base64 ({reason}); copy it again from the DPS enrollment group or the HSM export"
    )]
    NotBase64 {
        /// Which key ("group key", "device key").
        what: &'static str,
        /// What the decoder reported (a position, never the key).
        reason: String,
    },
    /// The key decoded to nothing.
    #[error("the {what} is empty")]
    EmptyKey {
        /// Which key.
        what: &'static str,
    },
    /// A length DPS does not use.
    #[error("a symmetric key of {0} bytes is not supported; use 32 or 64")]
    UnsupportedLength(usize),
}

/// A fresh random key, base64-encoded as DPS and the devices expect it.
pub fn generate_key(length: KeyLength) -> SecretString {
    let mut raw = vec![0u8; length.bytes()];
    rand::rng().fill_bytes(&mut raw);
    let encoded = STANDARD.encode(&raw);
    raw.zeroize();
    SecretString::new(encoded)
}

/// Decodes a base64 key into its bytes; `what` names the key in the error.
pub fn decode_key(
    key: &SecretString,
    what: &'static str,
) -> Result<SecretBytes, SymmetricKeyError> {
    let bytes =
        STANDARD
            .decode(key.expose().trim())
            .map_err(|err| SymmetricKeyError::NotBase64 {
                what,
                // DecodeError's text names an offset and at most one byte value, never the whole key.
                reason: match err {
                    base64::DecodeError::InvalidByte(offset, _) => {
                        format!("invalid character at offset {offset}")
                    }
                    base64::DecodeError::InvalidLength(len) => format!("invalid length {len}"),
                    base64::DecodeError::InvalidLastSymbol { offset, .. } => {
                        format!("invalid last character at offset {offset}")
                    }
                    base64::DecodeError::InvalidPadding => "invalid padding".to_owned(),
                },
            })?;
    if bytes.is_empty() {
        return Err(SymmetricKeyError::EmptyKey { what });
    }
    Ok(SecretBytes::new(bytes))
}

/// The device key DPS expects for `registration_id` in the enrollment group whose key is `group_key`.
///
/// The registration ID is hashed exactly as given: check it with
/// [`super::registration_id::validate`] first, and give the ID the device will present.
pub fn derive_device_key(
    group_key: &SecretString,
    registration_id: &str,
) -> Result<SecretString, SymmetricKeyError> {
    let key = decode_key(group_key, "group key")?;
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key.expose())
        .map_err(|_| SymmetricKeyError::EmptyKey { what: "group key" })?;
    mac.update(registration_id.as_bytes());
    let tag = mac.finalize().into_bytes();
    Ok(SecretString::new(STANDARD.encode(tag)))
}

/// A label for a symmetric key that is safe to store and show: `sha256:` and the lowercase hex
/// SHA-256 of the key's decoded bytes. SHA-256 is one-way, and the keys are 32 or 64 random (or
/// HMAC-derived) bytes, so the fingerprint cannot be turned back into the key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct KeyFingerprint(String);

impl KeyFingerprint {
    /// The fingerprint of a base64 key (as DPS and the devices hold it).
    pub fn of_base64_key(key: &SecretString) -> Result<Self, SymmetricKeyError> {
        let bytes = decode_key(key, "key")?;
        Ok(Self::of_key_bytes(&bytes))
    }

    /// The fingerprint of raw key bytes.
    pub fn of_key_bytes(key: &SecretBytes) -> Self {
        Self(format!(
            "sha256:{}",
            hex::encode(Sha256::digest(key.expose()))
        ))
    }

    /// The stored form, e.g. `sha256:9f86…`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for KeyFingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_vector() {
        // REFERENCE.md §7, from concepts-symmetric-key-attestation.md.
        let group = SecretString::new(
            "8isrFI1sGsIlvvFSSFRiMfCNzv21fjbE/+ah/lSh3lF8e2YG1Te7w1KpZhJFFXJrqYKi9yegxkqIChbqOS9Egw==",
        );
        let key = derive_device_key(&group, "sn-007-888-abc-mac-a1-b2-c3-d4-e5-f6").unwrap();
        assert_eq!(key.expose(), "Jsm0lyGpjaVYVP2g3FnmnmG9dI/9qU24wNoykUmermc=");
    }

    #[test]
    fn random_keys_have_the_asked_length_and_differ() {
        for length in [KeyLength::Bytes32, KeyLength::Bytes64] {
            let a = generate_key(length);
            let b = generate_key(length);
            assert_ne!(a, b);
            assert_eq!(
                decode_key(&a, "key").unwrap().expose().len(),
                length.bytes()
            );
        }
        assert!(KeyLength::from_bytes(16).is_err());
    }

    #[test]
    fn bad_group_key_is_named_without_echoing_it() {
        let err = derive_device_key(&SecretString::new("not*base64secret"), "dev-1").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("group key"), "{text}");
        assert!(!text.contains("secret"), "{text}");
    }

    #[test]
    fn fingerprint_is_labelled_and_stable() {
        let key = SecretString::new("AAAA");
        let fp = KeyFingerprint::of_base64_key(&key).unwrap();
        // SHA-256 of three zero bytes.
        assert_eq!(
            fp.as_str(),
            "sha256:709e80c88487a2411e1ee4dfb9f22a861492d20c4765150c0c794abd70f8147c"
        );
    }
}
