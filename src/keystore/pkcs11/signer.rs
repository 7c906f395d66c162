//! A PKCS#11 P-256 key as the identity module's [`CaSigner`]: rcgen signs certificates through it,
//! and the private key never leaves the token.

use std::sync::{Arc, Mutex};

use cryptoki::object::ObjectHandle;

use super::Pkcs11KeyStore;
use crate::identity::signer::{CaSigner, SignerError};
use crate::keystore::{KeyStoreError, Pkcs11Uri};

/// A CA key on a token, ready to sign from any thread (sessions come from the store's pool).
pub struct Pkcs11Signer {
    store: Arc<Pkcs11KeyStore>,
    uri: Pkcs11Uri,
    /// The URI as text, made once: signing is the hot path.
    name: String,
    /// Cached so that a signature is one PKCS#11 call; found again if the token invalidates it.
    handle: Mutex<ObjectHandle>,
    public: Vec<u8>,
}

impl std::fmt::Debug for Pkcs11Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkcs11Signer")
            .field("uri", &self.uri.to_string())
            .finish_non_exhaustive()
    }
}

impl Pkcs11Signer {
    pub(super) fn new(
        store: Arc<Pkcs11KeyStore>,
        uri: Pkcs11Uri,
        handle: ObjectHandle,
        public: Vec<u8>,
    ) -> Self {
        Pkcs11Signer {
            store,
            name: uri.to_string(),
            uri,
            handle: Mutex::new(handle),
            public,
        }
    }

    /// The key's URI.
    pub fn uri(&self) -> &Pkcs11Uri {
        &self.uri
    }

    /// A raw `CKM_ECDSA` signature (`r‖s`) of a digest: what the token itself delivers, without
    /// hashing or DER, for the benchmark's reference rate.
    pub fn sign_digest_raw(&self, digest: &[u8; 32]) -> Result<Vec<u8>, KeyStoreError> {
        let handle = *self.handle.lock().unwrap_or_else(|e| e.into_inner());
        self.store
            .sign_digest_with_handle(&self.uri.to_string(), handle, digest)
    }

    /// Signs, finding the key again once if the token forgot its handle (after a re-plug).
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyStoreError> {
        let name = &self.name;
        let handle = *self.handle.lock().unwrap_or_else(|e| e.into_inner());
        match self.store.sign_with_handle(name, handle, message) {
            Err(KeyStoreError::Pkcs11 { rv, .. })
                if rv == "ObjectHandleInvalid" || rv == "KeyHandleInvalid" =>
            {
                let fresh = self.store.find_handle(&self.uri, None, "signing")?;
                *self.handle.lock().unwrap_or_else(|e| e.into_inner()) = fresh;
                self.store.sign_with_handle(name, fresh, message)
            }
            other => other,
        }
    }
}

impl CaSigner for Pkcs11Signer {
    fn public_key_sec1(&self) -> &[u8] {
        &self.public
    }

    fn sign_p256_sha256(&self, message: &[u8]) -> Result<Vec<u8>, SignerError> {
        self.sign(message).map_err(|e| SignerError {
            key: self.name.clone(),
            source: Box::new(e),
        })
    }

    fn key_name(&self) -> String {
        self.name.clone()
    }
}
