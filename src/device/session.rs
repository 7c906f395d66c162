//! The `SESSION` key agreement and the encryption of secrets, byte for byte as in
//! `docs/device-protocol.md`: ephemeral P-256 ECDH → HKDF-SHA256 → AES-256-GCM.
//!
//! Both sides live here (the station's half and the device's half) so that the simulator and the
//! client cannot disagree, and the test vectors in the document come from this code.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hkdf::Hkdf;
use p256::PublicKey;
use p256::ecdh::EphemeralSecret;
use p256::elliptic_curve::Generate;
use sha2::Sha256;
use zeroize::Zeroizing;

/// HKDF `info` for the 32-byte AES-256-GCM key.
pub const INFO_KEY: &[u8] = b"dps-station/v1 session key";
/// HKDF `info` for the 16-byte key confirmation the device returns.
pub const INFO_CONFIRM: &[u8] = b"dps-station/v1 session confirm";
/// The first 4 bytes of every nonce: direction station → device, protocol v1.
pub const NONCE_PREFIX: &[u8; 4] = b"STA1";
/// The AAD prefix; the item name follows (`dps-station/v1 PUT private-key`).
pub const AAD_PREFIX: &str = "dps-station/v1 PUT ";

/// An uncompressed SEC1 P-256 point: `04 || X || Y`.
pub type PublicPoint = [u8; 65];

/// The AES-256-GCM key of one session. Zeroized on drop, never printed.
pub struct SessionKey(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKey(<redacted>)")
    }
}

/// Derives the session key and the confirmation value from the ECDH shared secret (the X coordinate).
/// `salt = station_pub || device_pub` (130 bytes) binds the key to this exchange's two points.
pub fn derive(
    shared_x: &[u8],
    station_pub: &PublicPoint,
    device_pub: &PublicPoint,
) -> (SessionKey, [u8; 16]) {
    let mut salt = [0u8; 130];
    salt[..65].copy_from_slice(station_pub);
    salt[65..].copy_from_slice(device_pub);
    let hk = Hkdf::<Sha256>::new(Some(&salt), shared_x);
    let mut key = Zeroizing::new([0u8; 32]);
    let mut confirm = [0u8; 16];
    // 32 and 16 bytes are far below HKDF-SHA256's 8160-byte limit, so expand cannot fail.
    let _ = hk.expand(INFO_KEY, key.as_mut());
    let _ = hk.expand(INFO_CONFIRM, &mut confirm);
    (SessionKey(key), confirm)
}

/// The 12-byte nonce: `"STA1" || request id as 8-byte big-endian`. Request ids increase within a
/// session and the device refuses a secret whose id does not, so a nonce is never reused under a key.
pub fn nonce(request_id: u32) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[..4].copy_from_slice(NONCE_PREFIX);
    n[4..].copy_from_slice(&u64::from(request_id).to_be_bytes());
    n
}

/// The AAD: binds a ciphertext to the item it is for, so a symmetric key cannot be installed as a
/// private key.
pub fn aad(item_wire_name: &str) -> Vec<u8> {
    format!("{AAD_PREFIX}{item_wire_name}").into_bytes()
}

impl SessionKey {
    /// Wraps raw key bytes (for test vectors).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// `ciphertext || 16-byte tag` of a secret for one `PUT` request.
    pub fn seal(&self, request_id: u32, item_wire_name: &str, plaintext: &[u8]) -> Vec<u8> {
        let Ok(cipher) = Aes256Gcm::new_from_slice(self.0.as_ref()) else {
            return Vec::new();
        };
        let n = nonce(request_id);
        let aad = aad(item_wire_name);
        // AES-GCM encryption fails only for plaintexts over 64 GiB; ours are at most 64 bytes.
        cipher
            .encrypt(
                &Nonce::from(n),
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .unwrap_or_default()
    }

    /// The plaintext, or `None` if the ciphertext does not authenticate.
    pub fn open(
        &self,
        request_id: u32,
        item_wire_name: &str,
        sealed: &[u8],
    ) -> Option<Zeroizing<Vec<u8>>> {
        let cipher = Aes256Gcm::new_from_slice(self.0.as_ref()).ok()?;
        let n = nonce(request_id);
        let aad = aad(item_wire_name);
        cipher
            .decrypt(
                &Nonce::from(n),
                Payload {
                    msg: sealed,
                    aad: &aad,
                },
            )
            .ok()
            .map(Zeroizing::new)
    }
}

/// The station's half: an ephemeral key pair for one session.
pub struct StationHandshake {
    secret: EphemeralSecret,
    public: PublicPoint,
}

impl StationHandshake {
    /// A fresh ephemeral key pair from the OS random source.
    pub fn new() -> Self {
        let secret = EphemeralSecret::generate_from_rng(&mut rand::rng());
        let public = point(&secret.public_key());
        Self { secret, public }
    }

    /// The point to send in `SESSION pub=`.
    pub fn public(&self) -> &PublicPoint {
        &self.public
    }

    /// The session key and the confirmation the device must return, from the device's point.
    /// `None` if the device's point is not a valid P-256 point.
    pub fn finish(self, device_pub: &[u8]) -> Option<(SessionKey, [u8; 16])> {
        let device = PublicKey::from_sec1_bytes(device_pub).ok()?;
        let device_point = point(&device);
        let shared = self.secret.diffie_hellman(&device);
        Some(derive(
            shared.raw_secret_bytes().as_ref(),
            &self.public,
            &device_point,
        ))
    }
}

impl Default for StationHandshake {
    fn default() -> Self {
        Self::new()
    }
}

/// The device's half: answers a station point with its own point, the key and the confirmation.
pub fn device_accept(station_pub: &[u8]) -> Option<(PublicPoint, SessionKey, [u8; 16])> {
    let station = PublicKey::from_sec1_bytes(station_pub).ok()?;
    let station_point = point(&station);
    let secret = EphemeralSecret::generate_from_rng(&mut rand::rng());
    let device_point = point(&secret.public_key());
    let shared = secret.diffie_hellman(&station);
    let (key, confirm) = derive(
        shared.raw_secret_bytes().as_ref(),
        &station_point,
        &device_point,
    );
    Some((device_point, key, confirm))
}

/// The uncompressed SEC1 encoding of a public key.
pub fn point(key: &PublicKey) -> PublicPoint {
    let bytes = key.to_sec1_bytes();
    let mut out = [0u8; 65];
    if bytes.len() == 65 {
        out.copy_from_slice(&bytes);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The SESSION test vector of `docs/device-protocol.md` (cross-checked there with Python's
    /// `cryptography`): fixed ephemeral scalars instead of random ones.
    #[test]
    fn documented_test_vector() {
        let station_secret = p256::SecretKey::from_slice(&(1..=32).collect::<Vec<u8>>()).unwrap();
        let device_secret = p256::SecretKey::from_slice(&(33..=64).collect::<Vec<u8>>()).unwrap();
        let station_pub = point(&station_secret.public_key());
        let device_pub = point(&device_secret.public_key());
        let shared = p256::ecdh::diffie_hellman(
            station_secret.to_nonzero_scalar(),
            device_secret.public_key().as_affine(),
        );
        let shared_x = shared.raw_secret_bytes().to_vec();
        let (key, confirm) = derive(&shared_x, &station_pub, &device_pub);
        let symmetric: Vec<u8> = (0xA0..0xC0).collect();
        let sealed = key.seal(1000, "symmetric-key", &symmetric);
        assert_eq!(
            hex::encode(station_pub),
            "04515c3d6eb9e396b904d3feca7f54fdcd0cc1e997bf375dca515ad0a6c3b4035f4536be3a50f318fbf9a5475902a221502bef0d57e08c53b2cc0a56f17d9f9354"
        );
        assert_eq!(
            hex::encode(device_pub),
            "041f140146bfb1b251f84f4ddbe0d4cdcfd77afd984a9520e35794021f8312bb9eec995a08b1fa7704df3dcc0b50a9665263fb7711f95f9f8a449c5096e47c892b"
        );
        assert_eq!(
            hex::encode(&shared_x),
            "4fe243908f378aa1c2a69538822e6ed908c3225d8692575507c649901245150a"
        );
        assert_eq!(
            hex::encode(key.0.as_ref()),
            "fb94aee29ee3b8477b3bf927365210e7754e2468c95ff11367968a59e6294a8e"
        );
        assert_eq!(hex::encode(confirm), "41f5358a4d230fb4fe4dd618e814d683");
        assert_eq!(hex::encode(nonce(1000)), "5354413100000000000003e8");
        assert_eq!(
            hex::encode(&sealed),
            "21a5e132a5ae42dd1a40ff0125ff0cd01bbbadb668283e816af91bd0484996ab5d01e1b4153892149d5dd962624780a6"
        );
        let put = crate::device::frame::Frame::new(1000, "PUT")
            .with("item", "symmetric-key")
            .with("enc", "aes256gcm")
            .with("off", "0")
            .with("total", "48")
            .with("data", crate::device::protocol::b64_encode(&sealed));
        assert!(
            String::from_utf8(put.encode().unwrap())
                .unwrap()
                .ends_with(" *E167\n")
        );
        assert_eq!(
            key.open(1000, "symmetric-key", &sealed).unwrap().as_slice(),
            symmetric.as_slice()
        );
    }

    #[test]
    fn both_halves_agree_and_tampering_is_detected() {
        let station = StationHandshake::new();
        let (device_pub, device_key, device_confirm) = device_accept(station.public()).unwrap();
        let (station_key, expected_confirm) = station.finish(&device_pub).unwrap();
        assert_eq!(device_confirm, expected_confirm);
        let sealed = station_key.seal(5, "private-key", &[7u8; 32]);
        assert_eq!(sealed.len(), 48);
        assert_eq!(
            device_key
                .open(5, "private-key", &sealed)
                .unwrap()
                .as_slice(),
            &[7u8; 32]
        );
        assert!(
            device_key.open(6, "private-key", &sealed).is_none(),
            "other nonce"
        );
        assert!(
            device_key.open(5, "symmetric-key", &sealed).is_none(),
            "other item"
        );
    }
}
