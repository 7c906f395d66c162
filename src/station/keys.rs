//! The keys a batch uses, whichever store holds them: the station needs a CA signer (X.509 modes)
//! and HMAC-SHA256 under a secret (symmetric modes). A PKCS#11 token does both inside the token;
//! the software store (development and the demo without SoftHSM2) reads files and says so loudly.
//!
//! Both go through the one `keystore::KeyStore` trait: a PKCS#11 token, or
//! `keystore::software_store::SoftwareKeyStore` (a directory of files). A batch names a software
//! key `file:NAME`, NAME a file of that store's layout: `<label>.key.pem` (a CA key) or
//! `<label>.secret` (a group or master secret, base64).

use std::path::PathBuf;
use std::sync::Arc;

use super::config::{KeyRef, KeyStoreConfig};
use crate::identity::signer::CaSigner;
use crate::keystore::pin::{PinError, obtain_configured_pin};
use crate::keystore::pkcs11::{Pkcs11Config, Pkcs11KeyStore, TokenSelector};
use crate::keystore::profile::HsmProfile;
use crate::keystore::software::NOT_IN_HSM_NOTICE;
use crate::keystore::software_store::{SOFTWARE_TOKEN_LABEL, SoftwareKeyStore};
use crate::keystore::{KeyStore, KeyStoreError, ObjectType, Pkcs11Uri};
use crate::secret::{SecretBytes, SecretString};

/// A software CA key file's suffix in the software store (`<label>.key.pem`).
pub const SOFTWARE_CA_KEY_SUFFIX: &str = ".key.pem";
/// A software secret file's suffix in the software store (`<label>.secret`).
pub const SOFTWARE_SECRET_SUFFIX: &str = ".secret";

/// Why a key could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    /// The token refused or failed.
    #[error(transparent)]
    Store(#[from] KeyStoreError),
    /// No PIN could be had from any source.
    #[error("the HSM PIN for token '{token}': {source}")]
    Pin {
        /// The token label.
        token: String,
        /// Why (names every source).
        source: PinError,
    },
    /// The HSM profile is unknown.
    #[error("HSM profile '{profile}': {message}")]
    Profile {
        /// The profile.
        profile: String,
        /// What is wrong.
        message: String,
    },
    /// A software key file or directory.
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
    Software(Arc<SoftwareKeyStore>),
}

impl std::fmt::Debug for StationKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl StationKeys {
    /// Opens the key store `station.toml` names. A token's PIN comes from the same sources as
    /// the `hsm` commands' ([`obtain_configured_pin`]: `DPS_STATION_HSM_PIN_FILE`,
    /// `DPS_STATION_HSM_PIN`, `[keystore] pin_file`, a prompt on the terminal); tried once.
    pub fn open(config: &KeyStoreConfig) -> Result<Self, KeysError> {
        let pin = match config {
            KeyStoreConfig::Pkcs11 {
                token_label,
                pin_file,
                ..
            } => Some(
                obtain_configured_pin(
                    pin_file.as_deref(),
                    &format!("user PIN of HSM token '{token_label}': "),
                )
                .map_err(|source| KeysError::Pin {
                    token: token_label.clone(),
                    source,
                })?,
            ),
            KeyStoreConfig::Software { .. } => None,
        };
        Self::open_with_pin(config, pin)
    }

    /// [`StationKeys::open`] for a program with no terminal to ask on (the GUI's workers): the PIN
    /// comes from the environment or `[keystore] pin_file` only, never from a prompt that would
    /// block a worker thread on a terminal nobody watches.
    pub fn open_unattended(config: &KeyStoreConfig) -> Result<Self, KeysError> {
        let pin = match config {
            KeyStoreConfig::Pkcs11 {
                token_label,
                pin_file,
                ..
            } => Some(
                crate::keystore::pin::unattended_pin(pin_file.as_deref())
                    .unwrap_or(Err(crate::keystore::pin::PinError::NoTerminal))
                    .map_err(|source| KeysError::Pin {
                        token: token_label.clone(),
                        source,
                    })?,
            ),
            KeyStoreConfig::Software { .. } => None,
        };
        Self::open_with_pin(config, pin)
    }

    /// [`StationKeys::open`] with the PIN given (a GUI asks for it in its own dialog); `None`
    /// for a token is refused as a missing PIN.
    pub fn open_with_pin(
        config: &KeyStoreConfig,
        pin: Option<SecretString>,
    ) -> Result<Self, KeysError> {
        match config {
            KeyStoreConfig::Pkcs11 {
                profile,
                token_label,
                module,
                sessions,
                ..
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
                let pin = pin
                    .filter(|p| !p.expose().is_empty())
                    .ok_or_else(|| KeysError::Pin {
                        token: token_label.clone(),
                        source: PinError::Empty {
                            origin: "the caller".into(),
                        },
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
                // The store would create a missing directory; a station must not invent an
                // empty key store from a typo in station.toml.
                if !dir.is_dir() {
                    return Err(KeysError::Software {
                        path: dir.clone(),
                        message: "is not a directory: fix [keystore] dir in station.toml".into(),
                    });
                }
                tracing::warn!("{NOT_IN_HSM_NOTICE}");
                Ok(StationKeys::Software(SoftwareKeyStore::open(dir)?))
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
            StationKeys::Software(s) => {
                format!(
                    "SOFTWARE key store {} ({NOT_IN_HSM_NOTICE})",
                    s.dir().display()
                )
            }
        }
    }

    /// Whether the keys are in files (every output must say so).
    pub fn is_software(&self) -> bool {
        matches!(self, StationKeys::Software(_))
    }

    /// A signer for the CA key `key`.
    pub fn signer(&self, key: &KeyRef) -> Result<Arc<dyn CaSigner>, KeysError> {
        let (store, uri) = self.resolve(key)?;
        Ok(store.signer(&uri)?)
    }

    /// HMAC-SHA256 of `message` under the secret `key` (a derived device key: secret).
    pub fn hmac(&self, key: &KeyRef, message: &[u8]) -> Result<SecretBytes, KeysError> {
        let (store, uri) = self.resolve(key)?;
        Ok(store.hmac_sha256(&uri, message)?)
    }

    /// The store and the URI `key` names in it.
    fn resolve(&self, key: &KeyRef) -> Result<(&dyn KeyStore, Pkcs11Uri), KeysError> {
        match (self, key) {
            (StationKeys::Hsm(s), KeyRef::Pkcs11(uri)) => Ok((s.as_ref(), uri.clone())),
            (StationKeys::Software(s), KeyRef::File(name)) => {
                Ok((s.as_ref(), software_uri(s, name)?))
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

/// The software store's URI for the file `name`: its label, typed by the file's suffix.
fn software_uri(store: &SoftwareKeyStore, name: &str) -> Result<Pkcs11Uri, KeysError> {
    let typed = [
        (SOFTWARE_CA_KEY_SUFFIX, ObjectType::Private),
        (SOFTWARE_SECRET_SUFFIX, ObjectType::SecretKey),
    ];
    let (label, object_type) = typed
        .iter()
        .find_map(|(suffix, t)| name.strip_suffix(suffix).map(|label| (label, *t)))
        .filter(|(label, _)| !label.is_empty())
        .ok_or_else(|| KeysError::Software {
            path: store.dir().join(name),
            message: format!(
                "name a file of the software store: file:LABEL{SOFTWARE_CA_KEY_SUFFIX} (a CA key) or file:LABEL{SOFTWARE_SECRET_SUFFIX} (a base64 secret)"
            ),
        })?;
    Ok(Pkcs11Uri {
        token: Some(SOFTWARE_TOKEN_LABEL.to_owned()),
        object: Some(label.to_owned()),
        object_type: Some(object_type),
        ..Pkcs11Uri::default()
    })
}

#[cfg(test)]
mod tests {
    use hmac::{Hmac, KeyInit, Mac};
    use sha2::Sha256;

    use super::*;

    fn software_keys(dir: &std::path::Path) -> (StationKeys, Arc<SoftwareKeyStore>) {
        let store = SoftwareKeyStore::open(dir).unwrap();
        let keys = StationKeys::open(&KeyStoreConfig::Software {
            dir: dir.to_owned(),
        })
        .unwrap();
        (keys, store)
    }

    #[test]
    fn file_names_map_onto_the_software_store_layout() {
        let dir = tempfile::tempdir().unwrap();
        let (keys, store) = software_keys(dir.path());
        assert!(keys.is_software());
        assert!(keys.describe().contains("NOT in an HSM"));

        let ca = store.generate_ec_p256("intermediate", &[1]).unwrap();
        let signer = keys
            .signer(&KeyRef::File("intermediate.key.pem".into()))
            .unwrap();
        assert_eq!(
            signer.public_key_sec1(),
            store.public_key_sec1(&ca).unwrap().as_slice()
        );

        let secret = [7u8; 32];
        store
            .import_secret("group", &[2], &SecretBytes::new(secret.to_vec()))
            .unwrap();
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&secret).unwrap();
        mac.update(b"device-1");
        let got = keys
            .hmac(&KeyRef::File("group.secret".into()), b"device-1")
            .unwrap();
        assert_eq!(got.expose(), mac.finalize().into_bytes().as_slice());
    }

    #[test]
    fn wrong_names_and_kinds_are_refused_naming_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let (keys, store) = software_keys(dir.path());
        store.generate_ec_p256("ca", &[1]).unwrap();

        let e = keys
            .signer(&KeyRef::File("ca.pem".into()))
            .err()
            .expect("refused");
        assert!(e.to_string().contains("ca.pem") && e.to_string().contains(".key.pem"));
        let e = keys
            .hmac(&KeyRef::File("ca.key.pem".into()), b"x")
            .unwrap_err();
        assert!(e.to_string().contains("object=ca"), "{e}");
        let e = keys
            .signer(&KeyRef::File("absent.key.pem".into()))
            .err()
            .expect("refused");
        assert!(e.to_string().contains("object=absent"), "{e}");
        let uri: Pkcs11Uri = "pkcs11:token=software;object=ca;type=private"
            .parse()
            .unwrap();
        let e = keys.signer(&KeyRef::Pkcs11(uri)).err().expect("refused");
        assert!(e.to_string().contains("file:NAME"), "{e}");
    }

    #[test]
    fn a_missing_software_directory_is_refused_not_created() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("typo");
        let e = StationKeys::open(&KeyStoreConfig::Software {
            dir: missing.clone(),
        })
        .unwrap_err();
        assert!(e.to_string().contains("typo"), "{e}");
        assert!(!missing.exists());
    }
}
