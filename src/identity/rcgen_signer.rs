//! Lets rcgen sign with any [`CaSigner`], so that an HSM key issues certificates exactly like an
//! in-memory one and `identity` never learns where the key lives.
//!
//! rcgen's `SigningKey::sign` can only return its own error type, which carries no message; the
//! adapter keeps the key store's [`SignerError`] aside so that the caller can report the real
//! cause (a PKCS#11 return code, a locked token) instead of "remote key error".

use std::sync::Mutex;

use rcgen::{PKCS_ECDSA_P256_SHA256, PublicKeyData, SignatureAlgorithm, SigningKey};

use super::signer::{CaSigner, SignerError};

/// A [`CaSigner`] seen as an rcgen P-256 signing key.
pub struct RcgenSigner<'a> {
    signer: &'a dyn CaSigner,
    public_key: Vec<u8>,
    last_error: Mutex<Option<SignerError>>,
}

impl<'a> RcgenSigner<'a> {
    /// Wraps `signer`; its public key is read once.
    pub fn new(signer: &'a dyn CaSigner) -> Self {
        Self {
            signer,
            public_key: signer.public_key_sec1().to_vec(),
            last_error: Mutex::new(None),
        }
    }

    /// The key store's error from the last failed signature, if any (taken, so reported once).
    pub fn take_error(&self) -> Option<SignerError> {
        match self.last_error.lock() {
            Ok(mut slot) => slot.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        }
    }

    /// The wrapped signer, for its name in messages.
    pub fn signer(&self) -> &'a dyn CaSigner {
        self.signer
    }
}

impl PublicKeyData for RcgenSigner<'_> {
    /// rcgen wants the raw EC point here (it wraps it into the SubjectPublicKeyInfo itself).
    fn der_bytes(&self) -> &[u8] {
        &self.public_key
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        &PKCS_ECDSA_P256_SHA256
    }
}

impl SigningKey for RcgenSigner<'_> {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        self.signer.sign_p256_sha256(msg).map_err(|err| {
            match self.last_error.lock() {
                Ok(mut slot) => *slot = Some(err),
                Err(poisoned) => *poisoned.into_inner() = Some(err),
            }
            rcgen::Error::RemoteKeyError
        })
    }
}
