//! The vocabulary of the station line protocol v1: versions, capabilities, items, error codes and the
//! canonical forms both sides hash. Shared by the client and the simulator so that they cannot drift.

use std::collections::BTreeMap;

use base64::Engine;
use sha2::{Digest, Sha256};

/// The protocol versions this station speaks, offered in `HELLO v=`.
pub const PROTOCOL_VERSIONS: &[u32] = &[1];

/// The largest payload carried by one `PUT` chunk, before base64: keeps every frame under
/// [`super::frame::MAX_FRAME`] with room for the other fields.
pub const MAX_CHUNK: usize = 512;

/// The largest item a device must accept (a certificate chain of a few certificates).
pub const MAX_ITEM: usize = 16 * 1024;

/// The largest number of free key/values in `CONFIG`.
pub const MAX_CONFIG_EXTRAS: usize = 8;

/// Base64 as used on the wire: RFC 4648 standard alphabet (`A-Z a-z 0-9 + /`) with `=` padding.
pub fn b64_encode(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Decodes wire base64; `None` for anything that is not canonical standard base64.
pub fn b64_decode(text: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD.decode(text).ok()
}

/// Lowercase hex SHA-256, the digest format of `READBACK` and `stored=` responses.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// What a device can do, as announced in `HELLO caps=`.
pub mod caps {
    /// The device generates its own P-256 key (`KEYGEN`).
    pub const P256_KEYGEN: &str = "p256-keygen";
    /// The device signs a PKCS#10 request for a given subject (`CSR`).
    pub const CSR: &str = "csr";
    /// The device has a TPM and reports its endorsement key (`TPM-EK`).
    pub const TPM_EK: &str = "tpm-ek";
    /// The device accepts secrets inside a `SESSION` (`PUT item=private-key|symmetric-key`).
    pub const ENCRYPTED_INJECTION: &str = "encrypted-injection";
    /// The device stores a symmetric attestation key.
    pub const SYMMETRIC_KEY: &str = "symmetric-key";
    /// The device supports `LOCK`.
    pub const LOCK: &str = "lock";
    /// The device carries a secure element provisioned by its vendor (a Microchip Trust&GO
    /// ATECC608) and reports its serial and public key (`SE-INFO`), to be matched against the
    /// vendor's manifest.
    pub const SECURE_ELEMENT: &str = "secure-element";
}

/// What `PUT` can store. Secret items travel only inside a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Item {
    /// The device certificate chain, PEM or DER as the station sends it, leaf first.
    Chain,
    /// A P-256 private key made by the station: the 32-byte big-endian scalar. Secret.
    PrivateKey,
    /// A symmetric attestation key (1-64 raw bytes). Secret.
    SymmetricKey,
}

impl Item {
    /// The name on the wire (`item=`).
    pub fn wire_name(self) -> &'static str {
        match self {
            Item::Chain => "chain",
            Item::PrivateKey => "private-key",
            Item::SymmetricKey => "symmetric-key",
        }
    }

    /// Parses `item=`.
    pub fn from_wire(name: &str) -> Option<Item> {
        match name {
            "chain" => Some(Item::Chain),
            "private-key" => Some(Item::PrivateKey),
            "symmetric-key" => Some(Item::SymmetricKey),
            _ => None,
        }
    }

    /// Secret items must arrive encrypted; a device refuses them otherwise.
    pub fn is_secret(self) -> bool {
        !matches!(self, Item::Chain)
    }
}

/// The error codes of `ERR code=`. Unknown codes from newer firmware are kept as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorCode {
    /// The line's CRC did not match (sent with id 0): the station resends at once.
    BadCrc,
    /// The line was longer than the maximum frame (id 0).
    TooLong,
    /// The CRC matched but the grammar did not.
    BadFrame,
    /// The verb is not known to this firmware.
    UnknownCommand,
    /// None of the offered protocol versions is supported.
    Version,
    /// A field is missing or has a bad value.
    BadArg,
    /// The device is locked: writes are refused.
    Locked,
    /// `CSR` or `READBACK key=` without a key on the device.
    NoKey,
    /// A secret item without an open session.
    NoSession,
    /// A secret item sent without encryption.
    PlaintextRefused,
    /// The ciphertext did not authenticate (wrong key, nonce, AAD or corrupted).
    Decrypt,
    /// A `PUT` chunk out of order, or an encrypted request id that does not increase.
    Sequence,
    /// The item or value is larger than the device accepts.
    TooLarge,
    /// The device lacks the capability (no TPM, say).
    Unsupported,
    /// A factory reset refused by the device's guard.
    Guarded,
    /// Writing flash failed.
    Storage,
    /// Anything else inside the firmware.
    Internal,
    /// A code this station does not know.
    Other(String),
}

impl ErrorCode {
    /// The code on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            ErrorCode::BadCrc => "BAD_CRC",
            ErrorCode::TooLong => "TOO_LONG",
            ErrorCode::BadFrame => "BAD_FRAME",
            ErrorCode::UnknownCommand => "UNKNOWN_COMMAND",
            ErrorCode::Version => "VERSION",
            ErrorCode::BadArg => "BAD_ARG",
            ErrorCode::Locked => "LOCKED",
            ErrorCode::NoKey => "NO_KEY",
            ErrorCode::NoSession => "NO_SESSION",
            ErrorCode::PlaintextRefused => "PLAINTEXT_REFUSED",
            ErrorCode::Decrypt => "DECRYPT",
            ErrorCode::Sequence => "SEQUENCE",
            ErrorCode::TooLarge => "TOO_LARGE",
            ErrorCode::Unsupported => "UNSUPPORTED",
            ErrorCode::Guarded => "GUARDED",
            ErrorCode::Storage => "STORAGE",
            ErrorCode::Internal => "INTERNAL",
            ErrorCode::Other(s) => s,
        }
    }

    /// Parses `code=`.
    pub fn parse(code: &str) -> ErrorCode {
        match code {
            "BAD_CRC" => ErrorCode::BadCrc,
            "TOO_LONG" => ErrorCode::TooLong,
            "BAD_FRAME" => ErrorCode::BadFrame,
            "UNKNOWN_COMMAND" => ErrorCode::UnknownCommand,
            "VERSION" => ErrorCode::Version,
            "BAD_ARG" => ErrorCode::BadArg,
            "LOCKED" => ErrorCode::Locked,
            "NO_KEY" => ErrorCode::NoKey,
            "NO_SESSION" => ErrorCode::NoSession,
            "PLAINTEXT_REFUSED" => ErrorCode::PlaintextRefused,
            "DECRYPT" => ErrorCode::Decrypt,
            "SEQUENCE" => ErrorCode::Sequence,
            "TOO_LARGE" => ErrorCode::TooLarge,
            "UNSUPPORTED" => ErrorCode::Unsupported,
            "GUARDED" => ErrorCode::Guarded,
            "STORAGE" => ErrorCode::Storage,
            "INTERNAL" => ErrorCode::Internal,
            other => ErrorCode::Other(other.to_string()),
        }
    }

    /// What an operator should do about it.
    pub fn advice(&self) -> &'static str {
        match self {
            ErrorCode::Locked => {
                "the device is already locked; it needs a guarded factory reset before it can be written again"
            }
            ErrorCode::Version | ErrorCode::UnknownCommand | ErrorCode::Unsupported => {
                "the firmware does not support this station; flash the production firmware"
            }
            ErrorCode::Storage => {
                "the device could not write its flash; set the device aside as faulty"
            }
            ErrorCode::NoKey => "the device has no key yet; run key generation or injection first",
            ErrorCode::NoSession | ErrorCode::Decrypt | ErrorCode::Sequence => {
                "the exchange went out of step; restart the device and run the step again"
            }
            ErrorCode::PlaintextRefused => {
                "the station tried to send a secret unencrypted; report this as a station bug"
            }
            ErrorCode::Guarded => {
                "the factory reset is guarded; enable the device's reset input and try again"
            }
            _ => {
                "restart the device and run the step again; if it repeats, report it to the firmware team"
            }
        }
    }
}

/// The registration data a device needs to reach DPS, plus product-specific key/values.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeviceConfig {
    /// The DPS registration ID.
    pub registration_id: String,
    /// The DPS ID scope (`0ne...`).
    pub id_scope: String,
    /// The DPS global endpoint host name.
    pub global_endpoint: String,
    /// Free key/values a product needs; keys `a-z 0-9 - . _`, values any bytes (sent base64).
    pub extra: BTreeMap<String, Vec<u8>>,
}

impl DeviceConfig {
    /// The `CONFIG` fields in canonical order, as on the wire.
    pub fn wire_fields(&self) -> Vec<(String, String)> {
        let mut fields = vec![
            ("regid".to_string(), self.registration_id.clone()),
            ("scope".to_string(), self.id_scope.clone()),
            ("endpoint".to_string(), self.global_endpoint.clone()),
        ];
        for (k, v) in &self.extra {
            fields.push((format!("x.{k}"), b64_encode(v)));
        }
        fields
    }

    /// The digest `READBACK config=` reports: SHA-256 over `key=value\n` for each canonical field.
    pub fn digest_hex(&self) -> String {
        config_digest_hex(&self.wire_fields())
    }
}

/// SHA-256 over `key=value\n` lines in the given (canonical) order.
pub fn config_digest_hex(fields: &[(String, String)]) -> String {
    let mut text = String::new();
    for (k, v) in fields {
        text.push_str(k);
        text.push('=');
        text.push_str(v);
        text.push('\n');
    }
    sha256_hex(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_digest_matches_the_documented_example() {
        let mut extra = BTreeMap::new();
        extra.insert("product.color".to_string(), b"blue".to_vec());
        let config = DeviceConfig {
            registration_id: "widget-0042".into(),
            id_scope: "0ne00ABCDEF".into(),
            global_endpoint: "global.azure-devices-provisioning.net".into(),
            extra,
        };
        assert_eq!(
            config.digest_hex(),
            "20a071985cdc4db1a9ad8d524fb5bb68034e281861b3add50400c451cf76479a"
        );
    }
}
