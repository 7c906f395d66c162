//! Secrets (PINs, DPS shared access keys, symmetric device keys) in one wrapper type, so that no
//! `Debug`, `Display` or `tracing` field can print one by accident and memory is wiped on drop.

use std::fmt;
use zeroize::Zeroize;

/// A secret string: zeroized on drop, redacted in `Debug` and `Display`.
///
/// Reading it needs the explicit [`SecretString::expose`], which makes every use easy to audit.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretString(String);

impl Drop for SecretString {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl SecretString {
    /// Wraps a secret taken from the user, the environment or a file.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself; call it only at the point of use (a PKCS#11 login, an HMAC key).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretString(<redacted>)")
    }
}

impl fmt::Display for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl From<String> for SecretString {
    fn from(value: String) -> Self {
        Self(value)
    }
}

/// A secret byte string (a raw symmetric key, a private key's scalar): zeroized on drop, redacted in `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretBytes(Vec<u8>);

impl Drop for SecretBytes {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl SecretBytes {
    /// Wraps key material; the caller's copy should be zeroized or moved in.
    pub fn new(value: Vec<u8>) -> Self {
        Self(value)
    }

    /// The bytes themselves, for the one call that needs them.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretBytes(<{} bytes redacted>)", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_secret() {
        let s = SecretString::new("123456-user-pin");
        assert!(!format!("{s:?}").contains("123456"));
        assert!(!format!("{s}").contains("123456"));
        assert_eq!(s.expose(), "123456-user-pin");
        let b = SecretBytes::new(vec![0xAB; 32]);
        assert!(!format!("{b:?}").to_lowercase().contains("ab"));
    }
}
