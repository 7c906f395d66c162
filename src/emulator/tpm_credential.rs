//! The TPM challenge of the emulator's device API: how the registration key reaches only the
//! TPM that holds the enrolled endorsement key.
//!
//! Real DPS wraps the key for an RSA EK with `TPM2_MakeCredential` (the seed RSA-OAEP-encrypted
//! to the EK, the key in a credential blob bound to the EK's name) plus a duplication blob that
//! the device imports and activates with `TPM2_ActivateCredential`. The emulator keeps the idea
//! and the guarantee (only the EK's private key recovers the key) with a scheme of the same
//! spirit for ECC P-256 EKs, the EK the simulated devices have:
//!
//! ```text
//! e           = fresh P-256 key pair (per challenge)
//! z           = ECDH(e, EK).x                                  (32 bytes)
//! k           = HKDF-SHA256(ikm = z, salt = E || EK, info = INFO) (32 bytes; E, EK uncompressed)
//! blob        = 0x01 || E (65) || nonce (12) || AES-256-GCM_k(nonce, key, aad = "dps-station tpm-credential v1")
//! ```
//!
//! `make` (the service's half) and `activate` (the simulated TPM's ActivateCredential, given the
//! EK private scalar) live together here so that they cannot disagree. An RSA EK is refused.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hkdf::Hkdf;
use p256::PublicKey;
use p256::ecdh::EphemeralSecret;
use p256::elliptic_curve::Generate;
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::identity::tpm_ek::EkKey;
use crate::secret::SecretBytes;

/// The blob's version byte.
pub const VERSION: u8 = 0x01;
/// HKDF `info`, binding the key to this use.
pub const INFO: &[u8] = b"dps-station emulator tpm-credential v1 key";
/// AES-GCM additional data.
pub const AAD: &[u8] = b"dps-station tpm-credential v1";
/// Size of the registration key the blob carries.
pub const KEY_BYTES: usize = 32;
const HEADER: usize = 1 + 65 + 12;

/// Why a credential cannot be made or activated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TpmCredentialError {
    /// RSA EKs need MakeCredential + a duplication blob, which the emulator does not implement.
    #[error(
        "the emulator handles ECC P-256 EKs only; this endorsement key is {0} (real DPS answers it with TPM2 MakeCredential)"
    )]
    UnsupportedEk(&'static str),
    /// The EK point is not on P-256.
    #[error("the endorsement key's point is not on the P-256 curve")]
    BadPoint,
    /// The blob is not one of ours.
    #[error("the authentication key blob is malformed ({0})")]
    Malformed(&'static str),
    /// The EK private key is not a P-256 scalar.
    #[error("the TPM's endorsement key private part is not a P-256 scalar")]
    BadScalar,
    /// The blob was not made for this EK (or was altered).
    #[error(
        "the authentication key blob does not open with this TPM's endorsement key: it was made for another EK"
    )]
    WrongEk,
}

fn derive(shared_x: &[u8], ephemeral: &[u8; 65], ek: &[u8; 65]) -> Zeroizing<[u8; 32]> {
    let mut salt = [0u8; 130];
    salt[..65].copy_from_slice(ephemeral);
    salt[65..].copy_from_slice(ek);
    let hk = Hkdf::<Sha256>::new(Some(&salt), shared_x);
    let mut k = Zeroizing::new([0u8; 32]);
    // 32 bytes is far below HKDF-SHA256's output limit: expand cannot fail.
    let _ = hk.expand(INFO, k.as_mut());
    k
}

fn uncompressed(key: &PublicKey) -> Option<[u8; 65]> {
    <[u8; 65]>::try_from(key.to_sec1_bytes().as_ref()).ok()
}

/// The service's half: wraps `key` so that only the holder of the EK's private key recovers it.
pub fn make(ek: &EkKey, key: &[u8; KEY_BYTES]) -> Result<Vec<u8>, TpmCredentialError> {
    let point = ek
        .ecc_point()
        .ok_or(TpmCredentialError::UnsupportedEk(ek.kind()))?;
    let ek_public = PublicKey::from_sec1_bytes(&point).map_err(|_| TpmCredentialError::BadPoint)?;
    let secret = EphemeralSecret::generate_from_rng(&mut rand::rng());
    let ephemeral = uncompressed(&secret.public_key()).ok_or(TpmCredentialError::BadPoint)?;
    let shared = secret.diffie_hellman(&ek_public);
    let k = derive(shared.raw_secret_bytes().as_ref(), &ephemeral, &point);
    let cipher = Aes256Gcm::new_from_slice(k.as_ref()).map_err(|_| TpmCredentialError::BadPoint)?;
    let mut nonce = [0u8; 12];
    rand::fill(&mut nonce);
    let sealed = cipher
        .encrypt(&Nonce::from(nonce), Payload { msg: key, aad: AAD })
        .map_err(|_| TpmCredentialError::Malformed("encryption failed"))?;
    let mut blob = Vec::with_capacity(HEADER + sealed.len());
    blob.push(VERSION);
    blob.extend_from_slice(&ephemeral);
    blob.extend_from_slice(&nonce);
    blob.extend_from_slice(&sealed);
    Ok(blob)
}

/// The TPM's half (ActivateCredential): recovers the key with the EK's private scalar.
pub fn activate(ek_scalar: &SecretBytes, blob: &[u8]) -> Result<SecretBytes, TpmCredentialError> {
    if blob.len() != HEADER + KEY_BYTES + 16 {
        return Err(TpmCredentialError::Malformed("wrong length"));
    }
    if blob[0] != VERSION {
        return Err(TpmCredentialError::Malformed("unknown version"));
    }
    let ek = p256::SecretKey::from_slice(ek_scalar.expose())
        .map_err(|_| TpmCredentialError::BadScalar)?;
    let ek_point = uncompressed(&ek.public_key()).ok_or(TpmCredentialError::BadScalar)?;
    let ephemeral_bytes = &blob[1..66];
    let ephemeral =
        PublicKey::from_sec1_bytes(ephemeral_bytes).map_err(|_| TpmCredentialError::BadPoint)?;
    let ephemeral_point = uncompressed(&ephemeral).ok_or(TpmCredentialError::BadPoint)?;
    let shared = p256::ecdh::diffie_hellman(ek.to_nonzero_scalar(), ephemeral.as_affine());
    let k = derive(
        shared.raw_secret_bytes().as_ref(),
        &ephemeral_point,
        &ek_point,
    );
    let cipher =
        Aes256Gcm::new_from_slice(k.as_ref()).map_err(|_| TpmCredentialError::BadScalar)?;
    let mut nonce = [0u8; 12];
    nonce.copy_from_slice(&blob[66..HEADER]);
    let key = cipher
        .decrypt(
            &Nonce::from(nonce),
            Payload {
                msg: &blob[HEADER..],
                aad: AAD,
            },
        )
        .map_err(|_| TpmCredentialError::WrongEk)?;
    Ok(SecretBytes::new(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ek(seed: u8) -> (SecretBytes, EkKey) {
        let secret = p256::SecretKey::from_slice(&[seed; 32]).unwrap();
        let p = uncompressed(&secret.public_key()).unwrap();
        let mut x = [0u8; 32];
        let mut y = [0u8; 32];
        x.copy_from_slice(&p[1..33]);
        y.copy_from_slice(&p[33..]);
        (
            SecretBytes::new(secret.to_bytes().to_vec()),
            EkKey::EccP256 { x, y },
        )
    }

    #[test]
    fn only_the_ek_holder_recovers_the_key() {
        let (scalar, public) = ek(5);
        let (other, _) = ek(6);
        let key = [0x42u8; 32];
        let blob = make(&public, &key).unwrap();
        assert_eq!(activate(&scalar, &blob).unwrap().expose(), &key);
        assert_eq!(activate(&other, &blob), Err(TpmCredentialError::WrongEk));
        let mut altered = blob.clone();
        let last = altered.len() - 1;
        altered[last] ^= 1;
        assert_eq!(
            activate(&scalar, &altered),
            Err(TpmCredentialError::WrongEk)
        );
        assert!(activate(&scalar, &blob[..blob.len() - 1]).is_err());
        assert_ne!(
            make(&public, &key).unwrap(),
            blob,
            "fresh ephemeral key and nonce"
        );
    }

    #[test]
    fn an_rsa_ek_is_refused_with_the_reason() {
        let err = make(
            &EkKey::Rsa2048 {
                modulus: Box::new([1; 256]),
            },
            &[0; 32],
        )
        .unwrap_err();
        assert!(err.to_string().contains("ECC P-256 EKs only"), "{err}");
    }
}
