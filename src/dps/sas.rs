//! Shared access signature tokens for the DPS service API.
//!
//! The service verifies `HMAC-SHA256(base64decode(key), sr + "\n" + se)` over `sr` exactly as it
//! appears in the token, so we sign and send the same string. Like the Node SDK we use the raw
//! (lower-cased) host name as `sr`, and renew the token for every request.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::prelude::BASE64_STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::secret::SecretString;

/// Why a token could not be made.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SasError {
    /// The policy key is not base64 (checked when parsing the connection string too).
    #[error("the DPS shared access key is not valid base64: copy it again from the Azure portal")]
    KeyNotBase64,
    /// The clock is before 1970, or the lifetime overflowed.
    #[error("the system clock is not usable for a SAS expiry: check the station's date and time")]
    Clock,
}

/// The base64 HMAC-SHA256 signature of `sr\nse` under the base64-decoded key.
///
/// The result is itself a secret-derived value: it authorises requests until `se`, so it is
/// never logged.
pub fn signature(key: &SecretString, resource_uri: &str, expiry: u64) -> Result<String, SasError> {
    let raw_key = zeroize::Zeroizing::new(
        BASE64_STANDARD
            .decode(key.expose().trim())
            .map_err(|_| SasError::KeyNotBase64)?,
    );
    // HMAC accepts keys of any length, so this cannot fail; map it anyway rather than panic.
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(&raw_key).map_err(|_| SasError::KeyNotBase64)?;
    mac.update(resource_uri.as_bytes());
    mac.update(b"\n");
    mac.update(expiry.to_string().as_bytes());
    Ok(BASE64_STANDARD.encode(mac.finalize().into_bytes()))
}

/// The full `Authorization` header value, fields in the C#/Java order `sr, sig, se, skn`.
pub fn authorization_header(
    key_name: &str,
    key: &SecretString,
    resource_uri: &str,
    expiry: u64,
) -> Result<SecretString, SasError> {
    let sig = signature(key, resource_uri, expiry)?;
    Ok(SecretString::new(format!(
        "SharedAccessSignature sr={}&sig={}&se={}&skn={}",
        resource_uri,
        percent_encode(&sig),
        expiry,
        percent_encode(key_name)
    )))
}

/// Unix seconds `lifetime` from now (shifted by `clock_correction_secs`, see the client config).
pub fn expiry_from_now(lifetime: Duration, clock_correction_secs: i64) -> Result<u64, SasError> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|_| SasError::Clock)?
        .as_secs();
    let shifted =
        i128::from(now) + i128::from(clock_correction_secs) + i128::from(lifetime.as_secs());
    u64::try_from(shifted).map_err(|_| SasError::Clock)
}

/// Percent-encodes everything but RFC 3986 unreserved characters (for path segments and SAS fields).
pub fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // Vectors from REFERENCE.md §6.2 (Node unit tests and captures of the official clients).
    #[test]
    fn node_unit_test_vector() {
        let key = SecretString::new("cGFzc3dvcmQ=");
        assert_eq!(
            signature(&key, "uri", 12345).unwrap(),
            "kcWxXAK2OAaAoq2oCkaGzX2NMqDB8nCyNuq2fPYCDhk="
        );
    }

    #[test]
    fn node_capture_header() {
        let key = SecretString::new("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=");
        let sig = signature(&key, "mydps.azure-devices-provisioning.net", 1795534511).unwrap();
        assert_eq!(sig, "uNeYU6QDUhB9S8PkriOoJ1nhDhbmMHG6L+pLwXbUQ8A=");
        let header = authorization_header(
            "provisioningserviceowner",
            &key,
            "mydps.azure-devices-provisioning.net",
            1795534511,
        )
        .unwrap();
        assert!(
            header
                .expose()
                .contains("sig=uNeYU6QDUhB9S8PkriOoJ1nhDhbmMHG6L%2BpLwXbUQ8A%3D")
        );
        assert!(
            header
                .expose()
                .starts_with("SharedAccessSignature sr=mydps.azure-devices-provisioning.net&")
        );
        assert!(
            header
                .expose()
                .ends_with("&se=1795534511&skn=provisioningserviceowner")
        );
    }

    #[test]
    fn python_capture_vector_signs_sr_as_sent() {
        let key = SecretString::new("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=");
        assert_eq!(
            signature(&key, "http%3A%2F%2F127.0.0.1%3A38287", 1795534529).unwrap(),
            "DK8aCe/Hw55CzuZon3xlrkwzUNsI62DvFOLT1V41qDk="
        );
    }

    #[test]
    fn bad_key_is_an_error_not_a_panic() {
        let key = SecretString::new("not base64!!");
        assert_eq!(signature(&key, "x", 1), Err(SasError::KeyNotBase64));
    }

    #[test]
    fn percent_encoding_keeps_unreserved_only() {
        assert_eq!(percent_encode("dev 1/x"), "dev%201%2Fx");
        assert_eq!(percent_encode("a+b="), "a%2Bb%3D");
        assert_eq!(percent_encode("reg-1.a_b~"), "reg-1.a_b~");
    }
}
