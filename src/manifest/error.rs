//! Why a manifest, or one entry of it, is refused. A file-level error refuses the whole file
//! (nothing of it is imported); an entry error refuses that entry only and names it.

use std::fmt;
use std::path::PathBuf;

/// The manifest file, or the signer certificate, cannot be used at all.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The file could not be read.
    #[error("cannot read the manifest {path}: {cause}; check the path and its permissions")]
    Read {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        cause: std::io::Error,
    },
    /// Not JSON, or not a JSON list (Microchip ships a list of signed entries).
    #[error(
        "the manifest {path} is not a JSON list of signed entries ({reason}); give the .json manifest file Microchip delivered for the reel, unchanged"
    )]
    NotJson {
        /// The file.
        path: PathBuf,
        /// Where and what the parser found.
        reason: String,
    },
    /// The file holds no entry.
    #[error("the manifest {path} holds no entry; ask Microchip for the reel's manifest again")]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// The `--signer` certificate cannot be used to verify entries.
    #[error(
        "the manifest signer certificate {path} cannot be used: {reason}; give the PEM or DER certificate Microchip publishes for manifest signing"
    )]
    Signer {
        /// The certificate file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

/// One entry of the manifest, refused: which one and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct EntryError {
    /// 0-based position of the entry in the manifest's list.
    pub index: usize,
    /// The entry's unique ID (the secure element's serial), when it could be read.
    pub unique_id: Option<String>,
    /// What is wrong.
    pub problem: EntryProblem,
}

impl fmt::Display for EntryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.unique_id {
            Some(id) => write!(
                f,
                "manifest entry #{} (uniqueId {id}): {}",
                self.index, self.problem
            ),
            None => write!(f, "manifest entry #{}: {}", self.index, self.problem),
        }
    }
}

/// What is wrong with one entry, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryProblem {
    /// Not a JWS in flattened or general JSON serialization.
    #[error(
        "not a signed entry ({0}); each entry must be a JWS in JSON serialization (payload, protected, signature): ask Microchip for the manifest again"
    )]
    Malformed(String),
    /// The protected header names another algorithm than ES256.
    #[error(
        "signed with {0:?}, not ES256; Trust&GO manifests are signed with ES256: this entry was not made by Microchip's signer"
    )]
    Algorithm(String),
    /// The header's `kid` / `x5t#S256` do not name the `--signer` certificate.
    #[error(
        "signed by another certificate ({0}); give the signer certificate this manifest names with --signer, or ask Microchip which one signed it"
    )]
    WrongSigner(String),
    /// The ES256 signature does not verify against the signer's key.
    #[error(
        "its signature does not verify with the signer's key: the entry was changed after it was signed; do not use it, ask Microchip for the manifest again"
    )]
    BadSignature,
    /// The unprotected header's `uniqueId` is not the signed payload's.
    #[error(
        "its header names uniqueId {header:?} but the signed payload says {payload:?}: the entry was changed after it was signed; ask Microchip for the manifest again"
    )]
    UniqueIdMismatch {
        /// What the unprotected header says.
        header: String,
        /// What the signed payload says.
        payload: String,
    },
    /// The payload's `uniqueId` is not a secure element serial.
    #[error(
        "its uniqueId {0:?} is not a secure element serial (18 hex digits); ask Microchip for the manifest again"
    )]
    BadUniqueId(String),
    /// The device key (`kid` "0") or its certificate is missing or unreadable.
    #[error("its device key: {0}; ask Microchip for the manifest again")]
    DeviceKey(String),
    /// The device certificate's key is not the key the manifest lists.
    #[error(
        "the device certificate's public key is not the manifest's device key (kid \"0\"): the certificate belongs to another secure element; do not enroll it, ask Microchip"
    )]
    KeyMismatch,
    /// The device certificate is not signed by the next certificate of its `x5c` chain.
    #[error(
        "the device certificate is not signed by the signer certificate that follows it in x5c: the chain is broken; ask Microchip"
    )]
    BrokenChain,
    /// The certificate's CN cannot be a DPS registration ID.
    #[error("its device certificate's CN cannot be the registration ID: {0}")]
    RegistrationId(String),
    /// The same secure element appears earlier in the manifest.
    #[error("it repeats entry #{first} (the same secure element); it is imported once")]
    Duplicate {
        /// The first entry with this uniqueId.
        first: usize,
    },
    /// A group enrollment covers one signer CA; this entry's certificate has another issuer.
    #[error(
        "its device certificate is issued by another CA than the group's ({group}); import it without --group, or in the group of its own CA"
    )]
    OtherIssuer {
        /// The enrollment group.
        group: String,
    },
    /// The secure element is already in the ledger.
    #[error("already in the ledger as {registration_id} ({state}); it is not imported twice")]
    AlreadyRecorded {
        /// The registration ID the ledger holds.
        registration_id: String,
        /// Its state there.
        state: String,
    },
}
