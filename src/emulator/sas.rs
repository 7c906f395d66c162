//! Shared access signatures, checked the way the service checks them (REFERENCE.md §6.2):
//! the signature covers `sr` exactly as sent, fields come in any order, `se` gets five
//! minutes of clock skew, and the primary key is tried before the secondary.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::secret::SecretString;

/// Allowed difference between our clock and the signer's (the service SDK's `MaxClockSkew`).
pub const MAX_CLOCK_SKEW_SECS: i64 = 300;

/// A token's fields: `sr` raw (the signature covers it as sent), the others percent-decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct SasToken {
    /// Resource URI exactly as it appeared in the token.
    pub sr_raw: String,
    /// The same, percent-decoded, for matching against the request target.
    pub sr_decoded: String,
    /// The base64 signature.
    pub sig: String,
    /// Expiry, Unix seconds, as sent (it is part of the signed string).
    pub se_raw: String,
    /// Expiry, parsed.
    pub se: i64,
    /// Key (policy) name.
    pub skn: Option<String>,
}

/// Why a token is refused; the message goes into the 401 answer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SasError {
    /// No `Authorization` header.
    #[error("no Authorization header; send 'SharedAccessSignature sr=...&sig=...&se=...&skn=...'")]
    Missing,
    /// Not a SAS token (e.g. a Bearer token, which the emulator does not accept).
    #[error(
        "the Authorization header is not a SharedAccessSignature token (Azure AD bearer tokens are not emulated)"
    )]
    NotSas,
    /// A field is missing or malformed.
    #[error("malformed SAS token: {0}")]
    Malformed(String),
    /// `se` is in the past by more than the allowed skew.
    #[error("the SAS token expired at {0} (Unix seconds); make a new one")]
    Expired(i64),
    /// The resource URI does not cover the request.
    #[error("the SAS token's sr '{0}' does not cover this resource")]
    WrongResource(String),
    /// Wrong key name.
    #[error("the SAS token's skn '{0}' is not a policy of this instance")]
    WrongKeyName(String),
    /// Signature matches neither key.
    #[error("the SAS token's signature matches neither key of policy '{0}'")]
    BadSignature(String),
}

/// Percent-decodes; `+` is left alone because inside a signature it is a base64 digit.
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && bytes[i + 1].is_ascii_hexdigit()
            && bytes[i + 2].is_ascii_hexdigit()
        {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
            if let Ok(b) = u8::from_str_radix(hex, 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Percent-encodes everything but unreserved characters, as `encodeURIComponent` does.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Parses `SharedAccessSignature sr=..&sig=..&se=..&skn=..` with its fields in any order.
pub fn parse(header: Option<&str>) -> Result<SasToken, SasError> {
    let header = header.ok_or(SasError::Missing)?.trim();
    let rest = header
        .strip_prefix("SharedAccessSignature ")
        .or_else(|| header.strip_prefix("sharedaccesssignature "))
        .ok_or(SasError::NotSas)?;
    let (mut sr, mut sig, mut se, mut skn) = (None, None, None, None);
    for field in rest.trim().split('&') {
        let Some((name, value)) = field.split_once('=') else {
            return Err(SasError::Malformed(format!(
                "a field of {} characters has no '=' (not shown: it may be a secret)",
                field.len()
            )));
        };
        match name.trim().to_ascii_lowercase().as_str() {
            "sr" => sr = Some(value.to_owned()),
            "sig" => sig = Some(percent_decode(value).replace(' ', "+")),
            "se" => se = Some(percent_decode(value)),
            "skn" => skn = Some(percent_decode(value)),
            _ => {}
        }
    }
    let sr_raw = sr.ok_or_else(|| SasError::Malformed("no sr field".into()))?;
    let sig = sig.ok_or_else(|| SasError::Malformed("no sig field".into()))?;
    let se_raw = se.ok_or_else(|| SasError::Malformed("no se field".into()))?;
    let se = se_raw
        .trim()
        .parse::<i64>()
        .map_err(|_| SasError::Malformed(format!("se '{se_raw}' is not Unix seconds")))?;
    Ok(SasToken {
        sr_decoded: percent_decode(&sr_raw),
        sr_raw,
        sig,
        se_raw,
        se,
        skn,
    })
}

/// base64(HMAC-SHA256(base64decode(key), message)); `None` if the key is not base64.
pub fn sign(key_b64: &str, message: &str) -> Option<String> {
    let key = STANDARD.decode(key_b64.trim()).ok()?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).ok()?;
    mac.update(message.as_bytes());
    Some(STANDARD.encode(mac.finalize().into_bytes()))
}

/// Makes a token the way the official SDKs do: `sr` URL-encoded, signature over that.
pub fn make_token(
    resource: &str,
    key: &SecretString,
    key_name: Option<&str>,
    expiry: i64,
) -> Option<String> {
    let sr = percent_encode(resource);
    let sig = sign(key.expose(), &format!("{sr}\n{expiry}"))?;
    let mut token = format!(
        "SharedAccessSignature sr={sr}&sig={}&se={expiry}",
        percent_encode(&sig)
    );
    if let Some(name) = key_name {
        token.push_str(&format!("&skn={}", percent_encode(name)));
    }
    Some(token)
}

/// Constant-time comparison of two signatures.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

impl SasToken {
    /// Whether `se` is past by more than the allowed skew.
    pub fn expired(&self, now: i64) -> bool {
        self.se + MAX_CLOCK_SKEW_SECS < now
    }

    /// Checks expiry (with skew) and the signature against each key in turn.
    pub fn verify(&self, keys: &[&SecretString], now: i64, who: &str) -> Result<(), SasError> {
        if self.expired(now) {
            return Err(SasError::Expired(self.se));
        }
        let message = format!("{}\n{}", self.sr_raw, self.se_raw);
        for key in keys {
            if let Some(expected) = sign(key.expose(), &message)
                && same(&expected, &self.sig)
            {
                return Ok(());
            }
        }
        Err(SasError::BadSignature(who.to_owned()))
    }

    /// Whether `sr` covers `target` (`host/path`): prefix match, case-insensitive, scheme and
    /// trailing `/` ignored, as the service SDK's `Authorize` does.
    pub fn covers(&self, target: &str) -> bool {
        let sr = self.sr_decoded.to_ascii_lowercase();
        let sr = sr
            .strip_prefix("https://")
            .or_else(|| sr.strip_prefix("http://"))
            .unwrap_or(&sr);
        let sr = sr.trim_end_matches('/');
        !sr.is_empty() && target.to_ascii_lowercase().starts_with(sr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_vector() {
        assert_eq!(
            sign("cGFzc3dvcmQ=", "uri\n12345").unwrap(),
            "kcWxXAK2OAaAoq2oCkaGzX2NMqDB8nCyNuq2fPYCDhk="
        );
    }

    #[test]
    fn captured_node_header_verifies_in_any_field_order() {
        let key = SecretString::new("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=");
        let h = "SharedAccessSignature sr=mydps.azure-devices-provisioning.net&sig=uNeYU6QDUhB9S8PkriOoJ1nhDhbmMHG6L%2BpLwXbUQ8A%3D&skn=provisioningserviceowner&se=1795534511";
        let t = parse(Some(h)).unwrap();
        t.verify(&[&key], 1_795_534_511, "p").unwrap();
        assert!(t.covers("mydps.azure-devices-provisioning.net/enrollments/x"));
        let reordered = "SharedAccessSignature se=1795534511&skn=provisioningserviceowner&sig=uNeYU6QDUhB9S8PkriOoJ1nhDhbmMHG6L%2BpLwXbUQ8A%3D&sr=mydps.azure-devices-provisioning.net";
        assert_eq!(parse(Some(reordered)).unwrap(), t);
        assert_eq!(
            t.verify(&[&key], 1_795_534_511 + 301, "p"),
            Err(SasError::Expired(1_795_534_511))
        );
        t.verify(&[&key], 1_795_534_511 + 299, "p").unwrap();
        let wrong = SecretString::new("cGFzc3dvcmQ=");
        t.verify(&[&wrong, &key], 1_795_534_511, "p").unwrap();
        assert!(t.verify(&[&wrong], 1_795_534_511, "p").is_err());
    }

    #[test]
    fn python_encoded_sr_is_signed_as_sent() {
        let key = SecretString::new("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=");
        assert_eq!(
            sign(key.expose(), "http%3A%2F%2F127.0.0.1%3A38287\n1795534529").unwrap(),
            "DK8aCe/Hw55CzuZon3xlrkwzUNsI62DvFOLT1V41qDk="
        );
        let t = parse(Some("SharedAccessSignature sr=http%3A%2F%2F127.0.0.1%3A38287&sig=DK8aCe%2FHw55CzuZon3xlrkwzUNsI62DvFOLT1V41qDk%3D&se=1795534529&skn=provisioningserviceowner")).unwrap();
        t.verify(&[&key], 1_795_534_529, "p").unwrap();
        assert!(t.covers("127.0.0.1:38287/enrollments/query"));
    }

    #[test]
    fn garbage_is_refused_not_panicked_on() {
        for h in [
            "",
            "Bearer x",
            "SharedAccessSignature ",
            "SharedAccessSignature sr=a&sig=b&se=x",
            "SharedAccessSignature %&=%zz",
        ] {
            assert!(parse(Some(h)).is_err(), "{h}");
        }
        assert_eq!(percent_decode("%"), "%");
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(percent_decode("%41%zz"), "A%zz");
    }
}
