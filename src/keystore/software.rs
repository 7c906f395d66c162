//! A CA key in a file, for development and tests only: the same [`CaSigner`] an HSM key offers, so
//! everything above it runs unchanged, but the private key sits on disk. Every command that uses
//! one says the keys are NOT in an HSM.
//!
//! The file is an unencrypted PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`, what `openssl genpkey`
//! writes), created with mode 0600. A SEC1 `EC PRIVATE KEY` (from `openssl ecparam -genkey`) is
//! read too. Encrypted PKCS#8 is not supported (the decryption crates are not in the build); the
//! error says how to decrypt the file with openssl.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use p256::ecdsa::signature::Signer;
use p256::ecdsa::{DerSignature, SigningKey};
use p256::elliptic_curve::Generate;
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};

use crate::identity::signer::{CaSigner, SignerError};

/// What every output that uses a software key tells the user.
pub const NOT_IN_HSM_NOTICE: &str = "software CA key for development: the private key is in a file, NOT in an HSM; do not use it for production devices";

/// Why a software key could not be created or read. Never carries key material.
#[derive(Debug, thiserror::Error)]
pub enum SoftwareKeyError {
    /// Reading or writing the file failed.
    #[error("software CA key {path}: {source}")]
    Io {
        /// The key file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Refusing to overwrite an existing key.
    #[error("software CA key {0} already exists; choose another path or remove it first")]
    Exists(PathBuf),
    /// An encrypted PKCS#8 file.
    #[error(
        "software CA key {0} is an encrypted PKCS#8 key, which the station cannot read; decrypt it into a 0600 file with `openssl pkcs8 -in <file> -out <plain.pem>` (or keep the key in an HSM)"
    )]
    Encrypted(PathBuf),
    /// Not a P-256 private key.
    #[error(
        "software CA key {path} is not an ECDSA P-256 private key ({reason}); create one with `dps-station ca create` or `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256`"
    )]
    Malformed {
        /// The key file.
        path: PathBuf,
        /// What was wrong (never the key).
        reason: String,
    },
}

/// A P-256 CA key read from (or just written to) a file.
pub struct SoftwareCaKey {
    path: PathBuf,
    key: SigningKey,
    public_key: Vec<u8>,
}

impl std::fmt::Debug for SoftwareCaKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SoftwareCaKey")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SoftwareCaKey {
    /// Generates a new P-256 key and writes it to `path` (PKCS#8 PEM, mode 0600); refuses to
    /// overwrite an existing file.
    pub fn generate(path: &Path) -> Result<Self, SoftwareKeyError> {
        let key = SigningKey::generate_from_rng(&mut rand::rng());
        let pem = key
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|err| SoftwareKeyError::Malformed {
                path: path.to_owned(),
                reason: err.to_string(),
            })?;
        let io = |source| SoftwareKeyError::Io {
            path: path.to_owned(),
            source,
        };
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|err| {
                if err.kind() == std::io::ErrorKind::AlreadyExists {
                    SoftwareKeyError::Exists(path.to_owned())
                } else {
                    io(err)
                }
            })?;
        file.write_all(pem.as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)?;
        Ok(Self::from_key(path, key))
    }

    /// Reads a key file (PKCS#8 or SEC1, PEM or DER).
    pub fn load(path: &Path) -> Result<Self, SoftwareKeyError> {
        let io = |source| SoftwareKeyError::Io {
            path: path.to_owned(),
            source,
        };
        let metadata = std::fs::metadata(path).map_err(io)?;
        if metadata.permissions().mode() & 0o077 != 0 {
            tracing::warn!(
                path = %path.display(),
                "software CA key file is readable by group or others; chmod 600 it"
            );
        }
        let bytes = zeroize::Zeroizing::new(std::fs::read(path).map_err(io)?);
        let malformed = |reason: String| SoftwareKeyError::Malformed {
            path: path.to_owned(),
            reason,
        };
        let key = if bytes.windows(11).any(|w| w == b"-----BEGIN ") {
            let text = zeroize::Zeroizing::new(String::from_utf8_lossy(&bytes).into_owned());
            if pem_block(&text, "ENCRYPTED PRIVATE KEY").is_some() {
                return Err(SoftwareKeyError::Encrypted(path.to_owned()));
            }
            if let Some(block) = pem_block(&text, "PRIVATE KEY") {
                SigningKey::from_pkcs8_pem(block)
                    .map_err(|err| malformed(format!("PKCS#8: {err}")))?
            } else if let Some(block) = pem_block(&text, "EC PRIVATE KEY") {
                p256::SecretKey::from_sec1_pem(block)
                    .map(|secret| SigningKey::from(&secret))
                    .map_err(|err| malformed(format!("SEC1: {err}")))?
            } else {
                return Err(malformed(
                    "no PRIVATE KEY or EC PRIVATE KEY block in the file".into(),
                ));
            }
        } else {
            // DER: PKCS#8, or SEC1 as `openssl pkey -outform DER` writes EC keys.
            match SigningKey::from_pkcs8_der(&bytes) {
                Ok(key) => key,
                Err(pkcs8_err) => p256::SecretKey::from_sec1_der(&bytes)
                    .map(|secret| SigningKey::from(&secret))
                    .map_err(|_| malformed(format!("DER: {pkcs8_err}")))?,
            }
        };
        Ok(Self::from_key(path, key))
    }

    fn from_key(path: &Path, key: SigningKey) -> Self {
        let public_key = key.verifying_key().to_sec1_point(false).as_bytes().to_vec();
        Self {
            path: path.to_owned(),
            key,
            public_key,
        }
    }

    /// The key file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl CaSigner for SoftwareCaKey {
    fn public_key_sec1(&self) -> &[u8] {
        &self.public_key
    }

    fn sign_p256_sha256(&self, message: &[u8]) -> Result<Vec<u8>, SignerError> {
        // RFC 6979 deterministic ECDSA over SHA-256; cannot fail for a valid key.
        let signature: DerSignature = self.key.sign(message);
        Ok(signature.as_bytes().to_vec())
    }

    fn key_name(&self) -> String {
        format!("software:{}", self.path.display())
    }
}

/// The text of the first `label` PEM block, BEGIN and END lines included, so that other blocks
/// (openssl's `EC PARAMETERS`, comments) do not upset the strict RFC 7468 decoder.
fn pem_block<'t>(text: &'t str, label: &str) -> Option<&'t str> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text.find(&begin)?;
    let stop = start + text[start..].find(&end)? + end.len();
    Some(&text[start..stop])
}
