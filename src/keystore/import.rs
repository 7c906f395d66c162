//! Reading an existing CA private key for import into the HSM: PKCS#8 (plain or encrypted, PEM or
//! DER) and SEC1 `EC PRIVATE KEY` PEM. Only P-256 keys are accepted. Encrypted PKCS#8 covers PBES2
//! with PBKDF2 or scrypt and AES-CBC (what `openssl pkcs8 -topk8 -v2 aes-256-cbc` and OpenSSL 3's
//! default produce); legacy PEM encryption (`Proc-Type: 4,ENCRYPTED`, DES) is not supported —
//! convert it with `openssl pkcs8 -topk8`.

use p256::pkcs8::DecodePrivateKey;
use zeroize::Zeroizing;

use crate::secret::{SecretBytes, SecretString};

/// Why a key file could not be read as a P-256 private key; never quotes the key.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// Encrypted, and no passphrase was given.
    #[error(
        "{origin} is an encrypted PKCS#8 key: give its passphrase (DPS_STATION_KEY_PASSPHRASE or the prompt)"
    )]
    NeedsPassphrase {
        /// The file.
        origin: String,
    },
    /// Decryption failed (wrong passphrase, or an unsupported cipher).
    #[error(
        "cannot decrypt {origin}: wrong passphrase, or a cipher other than PBES2 (PBKDF2/scrypt + AES-CBC)"
    )]
    Decrypt {
        /// The file.
        origin: String,
    },
    /// Legacy OpenSSL PEM encryption.
    #[error(
        "{origin} uses legacy PEM encryption (Proc-Type: 4,ENCRYPTED), which is not supported; convert it: openssl pkcs8 -topk8 -v2 aes-256-cbc -in KEY -out KEY.p8"
    )]
    LegacyPem {
        /// The file.
        origin: String,
    },
    /// Not a P-256 private key in any accepted format.
    #[error(
        "{origin} is not a P-256 private key in PKCS#8 (PEM/DER) or SEC1 PEM format (other curves and RSA are not supported for CA keys)"
    )]
    NotP256 {
        /// The file.
        origin: String,
    },
}

/// Parses `bytes` (a file's content) into the 32-byte P-256 scalar, for import into a key store.
pub fn parse_p256_private_key(
    origin: &str,
    bytes: &[u8],
    passphrase: Option<&SecretString>,
) -> Result<SecretBytes, ImportError> {
    let key = match std::str::from_utf8(bytes) {
        Ok(text) if text.contains("-----BEGIN") => parse_pem(origin, text, passphrase)?,
        _ => parse_der(origin, bytes, passphrase)?,
    };
    Ok(SecretBytes::new(key.to_bytes().to_vec()))
}

fn parse_pem(
    origin: &str,
    text: &str,
    passphrase: Option<&SecretString>,
) -> Result<p256::SecretKey, ImportError> {
    let text = Zeroizing::new(text.trim().to_owned());
    if text.contains("Proc-Type: 4,ENCRYPTED") {
        return Err(ImportError::LegacyPem {
            origin: origin.to_owned(),
        });
    }
    if text.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") {
        let pass = passphrase.ok_or_else(|| ImportError::NeedsPassphrase {
            origin: origin.to_owned(),
        })?;
        return p256::SecretKey::from_pkcs8_encrypted_pem(&text, pass.expose().as_bytes()).map_err(
            |_| ImportError::Decrypt {
                origin: origin.to_owned(),
            },
        );
    }
    if text.contains("-----BEGIN EC PRIVATE KEY-----") {
        return p256::SecretKey::from_sec1_pem(&text).map_err(|_| ImportError::NotP256 {
            origin: origin.to_owned(),
        });
    }
    p256::SecretKey::from_pkcs8_pem(&text).map_err(|_| ImportError::NotP256 {
        origin: origin.to_owned(),
    })
}

fn parse_der(
    origin: &str,
    der: &[u8],
    passphrase: Option<&SecretString>,
) -> Result<p256::SecretKey, ImportError> {
    if let Ok(key) = p256::SecretKey::from_pkcs8_der(der) {
        return Ok(key);
    }
    if let Ok(key) = p256::SecretKey::from_sec1_der(der) {
        return Ok(key);
    }
    // Not plain: an encrypted PKCS#8 DER needs the passphrase.
    match passphrase {
        Some(pass) => p256::SecretKey::from_pkcs8_encrypted_der(der, pass.expose().as_bytes())
            .map_err(|_| ImportError::Decrypt {
                origin: origin.to_owned(),
            }),
        None => Err(ImportError::NotP256 {
            origin: origin.to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::pkcs8::{EncodePrivateKey, LineEnding};

    fn key() -> p256::SecretKey {
        p256::SecretKey::from_slice(&[0x42; 32]).unwrap()
    }

    #[test]
    fn plain_pkcs8_der_and_pem_and_sec1_pem_give_the_same_scalar() {
        let k = key();
        let der = k.to_pkcs8_der().unwrap();
        let pem = k.to_pkcs8_pem(LineEnding::LF).unwrap();
        let sec1 = k.to_sec1_pem(LineEnding::LF).unwrap();
        for (name, bytes) in [
            ("der", der.as_bytes()),
            ("pem", pem.as_bytes()),
            ("sec1", sec1.as_bytes()),
        ] {
            let scalar = parse_p256_private_key(name, bytes, None).unwrap();
            assert_eq!(scalar.expose(), &[0x42; 32], "{name}");
        }
    }

    #[test]
    fn unsupported_inputs_are_named_and_never_quoted() {
        let legacy = "-----BEGIN EC PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00\n\nAAAA\n-----END EC PRIVATE KEY-----\n";
        let err = parse_p256_private_key("old.pem", legacy.as_bytes(), None).unwrap_err();
        assert!(
            matches!(err, ImportError::LegacyPem { .. })
                && err.to_string().contains("openssl pkcs8 -topk8"),
            "{err}"
        );
        let err = parse_p256_private_key("junk.bin", b"\x30\x03\x02\x01\x00 not a key", None)
            .unwrap_err();
        assert!(
            matches!(err, ImportError::NotP256 { .. }) && err.to_string().contains("junk.bin"),
            "{err}"
        );
        let err = parse_p256_private_key("empty", b"", None).unwrap_err();
        assert!(matches!(err, ImportError::NotP256 { .. }));
    }
}
