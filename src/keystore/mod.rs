//! Key stores: where CA keys and symmetric group keys live (PKCS#11 HSMs, or software for development).
//!
//! The rest of the station uses the [`KeyStore`] trait and names keys by PKCS#11 URI, so that a
//! batch, the audit log and `pkcs11-tool` all agree on which key is meant.

pub mod ecdsa;
pub mod error;
pub mod import;
pub mod pin;
pub mod pkcs11;
pub mod profile;
pub mod software;
pub mod software_store;
pub mod uri;

use std::sync::Arc;

use crate::identity::signer::CaSigner;
use crate::secret::SecretBytes;

pub use error::KeyStoreError;
pub use uri::{ObjectType, Pkcs11Uri};

/// What kind of object a key-store entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyKind {
    /// An EC private key (the station only makes P-256 ones).
    EcPrivate,
    /// An EC public key.
    EcPublic,
    /// A generic secret (an enrollment-group key used for HMAC-SHA256).
    GenericSecret,
    /// An X.509 certificate.
    Certificate,
    /// Anything else the token holds, named by its class and key type.
    Other(String),
}

/// One object as `hsm list` shows it; never carries key material.
#[derive(Debug, Clone)]
pub struct KeyInfo {
    /// The URI that names exactly this object.
    pub uri: Pkcs11Uri,
    /// `CKA_LABEL`.
    pub label: String,
    /// `CKA_ID`.
    pub id: Vec<u8>,
    /// What it is.
    pub kind: KeyKind,
    /// `CKA_SENSITIVE` where the object has it.
    pub sensitive: Option<bool>,
    /// `CKA_EXTRACTABLE` where the object has it.
    pub extractable: Option<bool>,
    /// `CKA_NEVER_EXTRACTABLE` where the object has it: true only for keys made in the token
    /// (an imported key was outside it once, however well it is protected now).
    pub never_extractable: Option<bool>,
}

/// The token (or software store) behind a key store, for messages, the ledger and the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenDescription {
    /// Token label, trimmed of its space padding.
    pub label: String,
    /// Token serial number.
    pub serial: String,
    /// Token model.
    pub model: String,
    /// Token manufacturer.
    pub manufacturer: String,
    /// False for software stores and software tokens (SoftHSM2): output must say keys are not in an HSM.
    pub hardware: bool,
}

/// A certificate stored next to its key.
#[derive(Debug, Clone)]
pub struct StoredCertificate {
    /// The URI naming the certificate object.
    pub uri: Pkcs11Uri,
    /// `CKA_LABEL`.
    pub label: String,
    /// `CKA_ID` (the same as its key's).
    pub id: Vec<u8>,
    /// The certificate, DER.
    pub der: Vec<u8>,
}

/// The one interface the station uses for CA and group keys, whichever store holds them.
///
/// Every key operation happens inside the store; only public keys, signatures and HMAC outputs come out.
pub trait KeyStore: Send + Sync {
    /// The token this store is bound to.
    fn token(&self) -> &TokenDescription;

    /// Generates a P-256 key pair inside the store; returns the private key's URI.
    fn generate_ec_p256(&self, label: &str, id: &[u8]) -> Result<Pkcs11Uri, KeyStoreError>;

    /// Generates a non-extractable generic-secret key of `len` bytes for HMAC-SHA256; returns its URI.
    fn generate_secret(
        &self,
        label: &str,
        id: &[u8],
        len: usize,
    ) -> Result<Pkcs11Uri, KeyStoreError>;

    /// Imports an existing P-256 private key (its 32-byte scalar); it ends non-extractable.
    fn import_ec_p256(
        &self,
        label: &str,
        id: &[u8],
        scalar: &SecretBytes,
    ) -> Result<Pkcs11Uri, KeyStoreError>;

    /// Imports a group key made elsewhere (DPS, another site); it ends non-extractable.
    fn import_secret(
        &self,
        label: &str,
        id: &[u8],
        value: &SecretBytes,
    ) -> Result<Pkcs11Uri, KeyStoreError>;

    /// The one object `uri` names: an error if it names none or more than one.
    fn find(&self, uri: &Pkcs11Uri) -> Result<KeyInfo, KeyStoreError>;

    /// Every key and certificate in the store.
    fn list(&self) -> Result<Vec<KeyInfo>, KeyStoreError>;

    /// The public key of the P-256 key `uri` names, as an uncompressed SEC1 point.
    fn public_key_sec1(&self, uri: &Pkcs11Uri) -> Result<Vec<u8>, KeyStoreError>;

    /// ECDSA P-256 over SHA-256 of `message`, DER-encoded.
    fn sign_p256_sha256(&self, uri: &Pkcs11Uri, message: &[u8]) -> Result<Vec<u8>, KeyStoreError>;

    /// HMAC-SHA256 of `message` under the secret key `uri` names. The output is key material
    /// (a derived device key), hence secret.
    fn hmac_sha256(&self, uri: &Pkcs11Uri, message: &[u8]) -> Result<SecretBytes, KeyStoreError>;

    /// A [`CaSigner`] for the P-256 key `uri` names, for the identity module to issue with.
    fn signer(&self, uri: &Pkcs11Uri) -> Result<Arc<dyn CaSigner>, KeyStoreError>;

    /// Stores a certificate next to its key (same label and id); returns its URI.
    fn store_certificate(
        &self,
        label: &str,
        id: &[u8],
        der: &[u8],
    ) -> Result<Pkcs11Uri, KeyStoreError>;

    /// Every certificate in the store.
    fn certificates(&self) -> Result<Vec<StoredCertificate>, KeyStoreError>;

    /// Ends the login (a key-injection session closing); later use needs a new store.
    fn logout(&self) -> Result<(), KeyStoreError>;
}
