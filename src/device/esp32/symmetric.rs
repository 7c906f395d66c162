//! The `esp_secure_cert` image of a symmetric-key identity (`symmetric-group`,
//! `symmetric-individual`): the DPS ID scope, endpoint and registration ID in user-data types
//! 51-53 as for X.509, and the derived device key in `ESP_SECURE_CERT_USER_DATA_4` (type 54).
//!
//! Why type 54: Espressif's TLV format has types for certificates, an ECDSA/RSA private key and
//! the DS peripheral's data, but none for a shared symmetric key; the types from 51 on are left to
//! the product (`esp_secure_cert_tlv_config.h`: "Custom data types that can be defined by the
//! user"). 51-53 already hold the registration data; some releases of the header give
//! `ESP_SECURE_CERT_USER_DATA_5` the value 54 as well, so 55 cannot be named in every release,
//! while 54 can. Firmware reads the key with `esp_secure_cert_get_tlv_info()` (type
//! `ESP_SECURE_CERT_USER_DATA_4`, subtype 0): `length` bytes of standard base64 (the form the
//! Azure IoT SDKs take for a DPS symmetric key, no terminator), the same key the DPS enrollment
//! group derives as HMAC-SHA256(group key, registration ID).

use base64::Engine as _;
use base64::prelude::BASE64_STANDARD;
use zeroize::Zeroizing;

use super::secure_cert::{
    SecureCertError, SecureCertImage, TYPE_ENDPOINT, TYPE_ID_SCOPE, TYPE_REGISTRATION_ID, TlvEntry,
};
use crate::device::driver::DeviceConfig;
use crate::device::protocol::sha256_hex;

/// TLV type `ESP_SECURE_CERT_USER_DATA_4`: the DPS symmetric device key, base64, no terminator.
pub const TYPE_SYMMETRIC_KEY: u8 = 54;

fn text(what: &'static str, value: &str) -> Result<Vec<u8>, SecureCertError> {
    if value.is_empty() || value.chars().any(char::is_control) {
        return Err(SecureCertError::BadInput {
            what,
            reason: "is empty or holds control characters".into(),
        });
    }
    Ok(value.as_bytes().to_vec())
}

/// The entries of a symmetric-key identity: ID scope, endpoint, registration ID, the key (the
/// integrity entry is added by [`SecureCertImage::to_bytes`]). The caller zeroizes the image's
/// entries once the bytes are made ([`wipe`]): one of them is the key.
pub fn symmetric_image(
    key: &[u8],
    config: &DeviceConfig,
) -> Result<SecureCertImage, SecureCertError> {
    if key.is_empty() {
        return Err(SecureCertError::BadInput {
            what: "symmetric key",
            reason: "is empty".into(),
        });
    }
    let data = [
        (TYPE_ID_SCOPE, text("ID scope", &config.id_scope)?),
        (TYPE_ENDPOINT, text("endpoint", &config.global_endpoint)?),
        (
            TYPE_REGISTRATION_ID,
            text("registration ID", &config.registration_id)?,
        ),
        (TYPE_SYMMETRIC_KEY, BASE64_STANDARD.encode(key).into_bytes()),
    ];
    Ok(SecureCertImage {
        entries: data
            .into_iter()
            .map(|(tlv_type, data)| TlvEntry {
                offset: 0,
                flags: 0,
                tlv_type,
                subtype: 0,
                data,
            })
            .collect(),
    })
}

/// Zeroizes every entry's data (a key, in plain) once the image is no longer needed.
pub fn wipe(image: &mut SecureCertImage) {
    use zeroize::Zeroize;
    for e in &mut image.entries {
        e.data.zeroize();
    }
}

/// The symmetric key an image holds (decoded from its base64), if any.
pub fn symmetric_key(image: &SecureCertImage) -> Option<Zeroizing<Vec<u8>>> {
    let entry = image.entry(TYPE_SYMMETRIC_KEY)?;
    BASE64_STANDARD
        .decode(&entry.data)
        .ok()
        .filter(|k| !k.is_empty())
        .map(Zeroizing::new)
}

/// The digest the station compares a written symmetric key by (SHA-256 of the key bytes; the key
/// itself is never kept).
pub fn key_digest(key: &[u8]) -> String {
    sha256_hex(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> DeviceConfig {
        DeviceConfig {
            registration_id: "sym-1".into(),
            id_scope: "0ne00000001".into(),
            global_endpoint: "global.azure-devices-provisioning.net".into(),
            extra: Default::default(),
        }
    }

    #[test]
    fn the_key_goes_in_user_data_4_as_base64_and_reads_back() {
        let key = [0x5Au8; 32];
        let mut image = symmetric_image(&key, &config()).unwrap();
        let bytes = image.to_bytes(0x2000).unwrap();
        wipe(&mut image);
        assert!(image.entries.iter().all(|e| e.data.iter().all(|&b| b == 0)));
        let parsed = SecureCertImage::parse(&bytes).unwrap();
        let types: Vec<u8> = parsed.entries.iter().map(|e| e.tlv_type).collect();
        assert_eq!(types, vec![51, 52, 53, 54, 9]);
        assert_eq!(
            parsed.text(TYPE_SYMMETRIC_KEY).unwrap(),
            BASE64_STANDARD.encode(key)
        );
        assert_eq!(symmetric_key(&parsed).unwrap().as_slice(), &key);
        assert_eq!(parsed.text(TYPE_REGISTRATION_ID).unwrap(), "sym-1");
        assert_eq!(parsed.key_summary(), "absent", "no private key entry");
    }

    #[test]
    fn an_empty_key_or_a_bad_registration_id_is_refused() {
        assert!(symmetric_image(&[], &config()).is_err());
        let mut bad = config();
        bad.registration_id = "a\nb".into();
        let err = symmetric_image(&[1; 32], &bad).unwrap_err().to_string();
        assert!(err.contains("registration ID"), "{err}");
    }
}
