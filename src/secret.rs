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

/// The permission bits of `path` when its group or others have any permission on it, `None` when
/// only its owner may: a file holding a secret (a PIN, a connection string) is refused when
/// anyone else can read it. Always `None` off Unix, which has no such bits.
pub fn open_to_others(path: &std::path::Path) -> std::io::Result<Option<u32>> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)?.permissions().mode() & 0o777;
        Ok((mode & 0o077 != 0).then_some(mode))
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        Ok(None)
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
