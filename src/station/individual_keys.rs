//! The key source of `symmetric-individual` identities enrolled away from the run that made them
//! (`dps-station enroll` / `export` with `--config` and `--batch`): the ledger holds only each
//! key's nonce and fingerprint, so the key is recomputed in the batch's key store and checked
//! against the fingerprint before anything is sent or written. A mismatch means the key store or
//! the master secret is not the one that made the identity (another batch's, another token): that
//! identity is refused, never enrolled with a key its device does not hold.

use base64::Engine as _;
use base64::prelude::BASE64_STANDARD;

use super::config::BatchConfig;
use super::keys::{KeysError, StationKeys};
use super::pipeline::individual_device_key;
use crate::ledger::{AttestationKind, EnrollmentKind, KeyFingerprint, PendingEnrollment};
use crate::secret::SecretString;

/// The option a user adds to give the key source (named in every "cannot send" message).
pub const KEY_SOURCE_OPTIONS: &str = "--config <station.toml> --batch <batch.toml>";

/// A batch's device key master in its opened key store.
#[derive(Clone)]
pub struct IndividualKeys {
    keys: StationKeys,
    batch: BatchConfig,
}

impl std::fmt::Debug for IndividualKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "IndividualKeys(batch '{}', {})",
            self.batch.name,
            self.keys.describe()
        )
    }
}

/// Why the key source cannot be used at all.
#[derive(Debug, thiserror::Error)]
#[error(
    "batch '{batch}' ({path}) has no [keys] device_key_master: give the batch.toml of the \
     symmetric-individual batch that made the identities"
)]
pub struct NoMasterKey {
    /// The batch name.
    pub batch: String,
    /// Its file.
    pub path: String,
}

impl IndividualKeys {
    /// The batch's master key in `keys`; refused when the batch names no device key master.
    pub fn new(keys: StationKeys, batch: BatchConfig) -> Result<Self, NoMasterKey> {
        if batch.device_key_master.is_none() {
            return Err(NoMasterKey {
                batch: batch.name.clone(),
                path: batch.path.display().to_string(),
            });
        }
        Ok(Self { keys, batch })
    }

    /// The batch's name, for messages.
    pub fn batch_name(&self) -> &str {
        &self.batch.name
    }

    /// The device key of a pending individual symmetric-key enrollment, base64 (as DPS takes
    /// it), recomputed in the key store and verified against the ledger's fingerprint. The error
    /// names the registration ID and says what to do.
    pub fn key_for(&self, p: &PendingEnrollment) -> Result<SecretString, IndividualKeyError> {
        checked_key(&self.keys, &self.batch, p)
    }
}

/// Why the key of one individual symmetric-key identity cannot be sent (it stays queued).
#[derive(Debug, thiserror::Error)]
pub enum IndividualKeyError {
    /// Asked for the key of an identity that has none to recompute.
    #[error(
        "'{registration_id}' is not an individual symmetric-key enrollment: it is sent with its \
         own attestation, no key is recomputed for it"
    )]
    NotSymmetricIndividual {
        /// The identity.
        registration_id: String,
    },
    /// The ledger cannot tell whether a recomputed key is right.
    #[error(
        "'{registration_id}' has no key fingerprint in the ledger: its key cannot be verified, so \
         it is not sent; re-provision the device to give it a verifiable key"
    )]
    NoFingerprint {
        /// The identity.
        registration_id: String,
    },
    /// The key store could not compute the key.
    #[error(
        "'{registration_id}': recomputing its key in {key_store}: {source}; check that the key \
         store is reachable (token present, PIN right) and try again"
    )]
    Recompute {
        /// The identity.
        registration_id: String,
        /// The key store, described.
        key_store: String,
        /// What the key store said (boxed: it is large, the error travels by value).
        source: Box<KeysError>,
    },
    /// The recomputed key is not the one the device holds.
    #[error(
        "'{registration_id}': the key recomputed from batch '{batch}' ({key_store}) does not match \
         the ledger's fingerprint: wrong master key (another batch's or another token's); give \
         the --batch that made this identity and the station whose key store holds its \
         device_key_master"
    )]
    FingerprintMismatch {
        /// The identity.
        registration_id: String,
        /// The batch the key was recomputed from.
        batch: String,
        /// The key store, described.
        key_store: String,
    },
}

/// The one way a symmetric-individual device key leaves the key store for DPS (the engine's
/// enroll worker and `enroll`/`export` alike): recomputed from `batch`'s master secret and checked
/// against the ledger's fingerprint, so a wrong master key never reaches DPS.
pub fn checked_key(
    keys: &StationKeys,
    batch: &BatchConfig,
    p: &PendingEnrollment,
) -> Result<SecretString, IndividualKeyError> {
    let id = &p.enrollment.registration_id;
    if p.enrollment.kind != EnrollmentKind::Individual
        || p.attestation != AttestationKind::SymmetricKey
    {
        return Err(IndividualKeyError::NotSymmetricIndividual {
            registration_id: id.clone(),
        });
    }
    let Some(expected) = &p.key_fingerprint else {
        return Err(IndividualKeyError::NoFingerprint {
            registration_id: id.clone(),
        });
    };
    let key = individual_device_key(keys, batch, id, p.key_nonce.as_ref()).map_err(|source| {
        IndividualKeyError::Recompute {
            registration_id: id.clone(),
            key_store: keys.describe(),
            source: Box::new(source),
        }
    })?;
    if KeyFingerprint::of_key(key.expose()) != *expected {
        return Err(IndividualKeyError::FingerprintMismatch {
            registration_id: id.clone(),
            batch: batch.name.clone(),
            key_store: keys.describe(),
        });
    }
    // `key` (SecretBytes) is zeroized when dropped here; the base64 copy is a SecretString.
    Ok(SecretString::new(BASE64_STANDARD.encode(key.expose())))
}
