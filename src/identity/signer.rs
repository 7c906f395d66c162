//! The one signing interface every CA key offers, whether it lives in an HSM or in a file.

use std::error::Error as StdError;

/// A failure to sign inside the key store, naming the key (never its material).
#[derive(Debug, thiserror::Error)]
#[error("signing with CA key {key} failed: {source}")]
pub struct SignerError {
    /// The key's name as the user knows it (a PKCS#11 URI, or a software key file).
    pub key: String,
    /// What the key store reported (a PKCS#11 return code, an I/O error).
    #[source]
    pub source: Box<dyn StdError + Send + Sync>,
}

/// An ECDSA P-256 key that signs certificates: implemented by `keystore` over PKCS#11 and in software.
///
/// `Send + Sync` so that several slots can issue at once; an implementation over PKCS#11 sessions
/// (which are `Send` but not `Sync`) pools its sessions behind this trait.
pub trait CaSigner: Send + Sync {
    /// The public key as an uncompressed SEC1 point (`04 || X || Y`, 65 bytes).
    fn public_key_sec1(&self) -> &[u8];

    /// Signs `message` with ECDSA P-256 over SHA-256 and returns the signature DER-encoded
    /// (`SEQUENCE { r INTEGER, s INTEGER }`), as X.509 carries it.
    fn sign_p256_sha256(&self, message: &[u8]) -> Result<Vec<u8>, SignerError>;

    /// The key's name for messages and the audit log (a PKCS#11 URI, or `software:<path>`).
    fn key_name(&self) -> String;
}
