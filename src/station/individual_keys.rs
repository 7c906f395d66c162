//! The key source of `symmetric-individual` identities enrolled away from the run that made them
//! (`dps-station enroll` / `export` with `--config` and `--batch`): the ledger holds only each
//! key's nonce and fingerprint, so the key is recomputed in the batch's key store and checked
//! against the fingerprint before anything is sent or written. A mismatch means the key store or
//! the master secret is not the one that made the identity (another batch's, another token): that
//! identity is refused, never enrolled with a key its device does not hold.

use base64::Engine as _;
use base64::prelude::BASE64_STANDARD;

use super::config::BatchConfig;
use super::keys::StationKeys;
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
    pub fn key_for(&self, p: &PendingEnrollment) -> Result<SecretString, String> {
        let id = &p.enrollment.registration_id;
        if p.enrollment.kind != EnrollmentKind::Individual
            || p.attestation != AttestationKind::SymmetricKey
        {
            return Err(format!(
                "'{id}' is not an individual symmetric-key enrollment"
            ));
        }
        let Some(expected) = &p.key_fingerprint else {
            return Err(format!(
                "'{id}' has no key fingerprint in the ledger: its key cannot be verified, so it \
                 is not sent"
            ));
        };
        let key = individual_device_key(&self.keys, &self.batch, id, p.key_nonce.as_ref())
            .map_err(|e| {
                format!(
                    "'{id}': recomputing its key in {}: {e}",
                    self.keys.describe()
                )
            })?;
        if KeyFingerprint::of_key(key.expose()) != *expected {
            return Err(format!(
                "'{id}': the key recomputed from batch '{}' ({}) does not match the ledger's \
                 fingerprint: wrong master key (another batch's or another token's); give the \
                 --batch that made this identity and the station whose key store holds its \
                 device_key_master",
                self.batch.name,
                self.keys.describe()
            ));
        }
        // `key` (SecretBytes) is zeroized when dropped here; the base64 copy is a SecretString.
        Ok(SecretString::new(BASE64_STANDARD.encode(key.expose())))
    }
}
