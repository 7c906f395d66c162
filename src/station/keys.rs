//! The keys a batch uses, whichever store holds them: the station needs a CA signer (X.509 modes)
//! and HMAC-SHA256 under a secret (symmetric modes). A PKCS#11 token does both inside the token;
//! the software store (development and the demo without SoftHSM2) reads files and says so loudly.
//!
//! This is an adapter over `keystore::KeyStore` and `keystore::software::SoftwareCaKey`: the
//! software store offers no HMAC, so group and master secrets for it are base64 files.

use std::path::PathBuf;
use std::sync::Arc;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::config::{HSM_PIN_ENV, KeyRef, KeyStoreConfig};
use crate::identity::signer::CaSigner;
use crate::keystore::pkcs11::{Pkcs11Config, Pkcs11KeyStore, TokenSelector};
use crate::keystore::profile::HsmProfile;
use crate::keystore::software::{NOT_IN_HSM_NOTICE, SoftwareCaKey};
use crate::keystore::{KeyStore, KeyStoreError};
use crate::secret::{SecretBytes, SecretString};

/// Why a key could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    /// The token refused or failed.
    #[error(transparent)]
    Store(#[from] KeyStoreError),
    /// The PIN is not in the environment.
    #[error(
        "the HSM PIN for token '{token}' is not set: export {HSM_PIN_ENV} (it is never read from a file)"
    )]
    NoPin {
        /// The token label.
        token: String,
    },
    /// The HSM profile is unknown.
    #[error("HSM profile '{profile}': {message}")]
    Profile {
        /// The profile.
        profile: String,
        /// What is wrong.
        message: String,
    },
    /// A software key file.
    #[error("software key {path}: {message}")]
    Software {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A key reference of the other store's kind.
    #[error("key {key} cannot be used with the {store} key store; name a {expected} in the batch")]
    WrongKind {
        /// The reference.
        key: String,
        /// The store.
        store: &'static str,
        /// What it takes.
        expected: &'static str,
    },
}

/// The batch's keys: a PKCS#11 token or the software store.
#[derive(Clone)]
pub enum StationKeys {
    /// A logged-in token (its own session pool is shared by all slots).
    Hsm(Arc<dyn KeyStore>),
    /// Files in a directory: NOT an HSM.
    Software(PathBuf),
}

impl std::fmt::Debug for StationKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl StationKeys {
    /// Opens the key store `station.toml` names (PIN from the environment, tried once).
    pub fn open(config: &KeyStoreConfig) -> Result<Self, KeysError> {
        match config {
            KeyStoreConfig::Pkcs11 {
                profile,
                token_label,
                module,
                sessions,
            } => {
                let hsm_profile = if profile.ends_with(".toml") {
                    HsmProfile::from_file(std::path::Path::new(profile))
                } else {
                    HsmProfile::built_in(profile)
                }
                .map_err(|e| KeysError::Profile {
                    profile: profile.clone(),
                    message: e.to_string(),
                })?;
                let pin = std::env::var(HSM_PIN_ENV)
                    .ok()
                    .filter(|p| !p.is_empty())
                    .map(SecretString::new)
                    .ok_or_else(|| KeysError::NoPin {
                        token: token_label.clone(),
                    })?;
                let store = Pkcs11KeyStore::open(
                    &Pkcs11Config {
                        profile: hsm_profile,
                        module: module.clone(),
                        token: TokenSelector::Label(token_label.clone()),
                        sessions: *sessions,
                    },
                    pin,
                )?;
                Ok(StationKeys::Hsm(store))
            }
            KeyStoreConfig::Software { dir } => {
                tracing::warn!("{NOT_IN_HSM_NOTICE}");
                Ok(StationKeys::Software(dir.clone()))
            }
        }
    }

    /// For messages and reports: which token, or that keys are in files.
    pub fn describe(&self) -> String {
        match self {
            StationKeys::Hsm(s) => {
                let t = s.token();
                format!(
                    "PKCS#11 token '{}' (serial {}, {})",
                    t.label, t.serial, t.model
                )
            }
            StationKeys::Software(dir) => {
                format!("SOFTWARE key store {} ({NOT_IN_HSM_NOTICE})", dir.display())
            }
        }
    }

    /// Whether the keys are in files (every output must say so).
    pub fn is_software(&self) -> bool {
        matches!(self, StationKeys::Software(_))
    }

    /// A signer for the CA key `key`.
    pub fn signer(&self, key: &KeyRef) -> Result<Arc<dyn CaSigner>, KeysError> {
        match (self, key) {
            (StationKeys::Hsm(s), KeyRef::Pkcs11(uri)) => Ok(s.signer(uri)?),
            (StationKeys::Software(dir), KeyRef::File(name)) => {
                let path = dir.join(name);
                SoftwareCaKey::load(&path)
                    .map(|k| Arc::new(k) as Arc<dyn CaSigner>)
                    .map_err(|e| KeysError::Software {
                        path,
                        message: e.to_string(),
                    })
            }
            _ => Err(self.wrong_kind(key)),
        }
    }

    /// HMAC-SHA256 of `message` under the secret `key` (a derived device key: secret).
    pub fn hmac(&self, key: &KeyRef, message: &[u8]) -> Result<SecretBytes, KeysError> {
        match (self, key) {
            (StationKeys::Hsm(s), KeyRef::Pkcs11(uri)) => Ok(s.hmac_sha256(uri, message)?),
            (StationKeys::Software(dir), KeyRef::File(name)) => {
                let path = dir.join(name);
                let text =
                    zeroize::Zeroizing::new(std::fs::read_to_string(&path).map_err(|e| {
                        KeysError::Software {
                            path: path.clone(),
                            message: e.to_string(),
                        }
                    })?);
                let secret = crate::identity::symmetric::decode_key(
                    &SecretString::new(text.trim()),
                    "software secret",
                )
                .map_err(|e| KeysError::Software {
                    path: path.clone(),
                    message: e.to_string(),
                })?;
                let mut mac =
                    <Hmac<Sha256> as KeyInit>::new_from_slice(secret.expose()).map_err(|_| {
                        KeysError::Software {
                            path,
                            message: "empty key".into(),
                        }
                    })?;
                mac.update(message);
                Ok(SecretBytes::new(mac.finalize().into_bytes().to_vec()))
            }
            _ => Err(self.wrong_kind(key)),
        }
    }

    fn wrong_kind(&self, key: &KeyRef) -> KeysError {
        match self {
            StationKeys::Hsm(_) => KeysError::WrongKind {
                key: key.to_string(),
                store: "PKCS#11",
                expected: "pkcs11: URI",
            },
            StationKeys::Software(_) => KeysError::WrongKind {
                key: key.to_string(),
                store: "software",
                expected: "file:NAME",
            },
        }
    }
}
