//! Registration IDs: the device's name in DPS, checked by the service's own rules before anything is
//! issued, written or enrolled, so that a bad ID fails at the station and not at the cloud.
//!
//! DPS rules (REFERENCE.md §7, `concepts-service.md`): at most 128 characters; ASCII letters, digits
//! and `-` `.` `_` `:`; the last character a letter, a digit or `-`. DPS compares IDs
//! case-insensitively. For X.509 attestation the ID is the certificate's subject CN, which is at most
//! 64 characters. The station itself always writes lowercase IDs ([`RegistrationId`] lowercases), so
//! one device never appears twice under two spellings.

use std::fmt;
use std::str::FromStr;

/// The longest registration ID DPS accepts.
pub const MAX_LEN: usize = 128;

/// The longest registration ID usable as an X.509 subject CN (`ub-common-name` is 64).
pub const MAX_X509_CN_LEN: usize = 64;

/// What the ID will be used for: it decides the length limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdUse {
    /// Symmetric-key or TPM attestation: at most 128 characters.
    Any,
    /// X.509 attestation, where the ID is the certificate's CN: at most 64 characters.
    X509CommonName,
}

impl IdUse {
    /// The length limit DPS applies for this use.
    pub fn max_len(self) -> usize {
        match self {
            IdUse::Any => MAX_LEN,
            IdUse::X509CommonName => MAX_X509_CN_LEN,
        }
    }
}

/// Why a string is not a registration ID. Positions are 1-based character positions.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistrationIdError {
    /// Nothing was given.
    #[error("the registration ID is empty; give at least one letter or digit")]
    Empty,
    /// Longer than DPS allows for this use.
    #[error(
        "registration ID \"{id}\" is {len} characters long; DPS allows at most {max}{why}: shorten the ID or its template"
    )]
    TooLong {
        /// The ID as given.
        id: String,
        /// Its length in characters.
        len: usize,
        /// The limit that applies.
        max: usize,
        /// Why this limit applies (empty, or " when it is an X.509 certificate CN").
        why: &'static str,
    },
    /// A character DPS does not accept.
    #[error(
        "registration ID \"{id}\" has the character {ch:?} at position {position}; allowed are letters a-z, digits 0-9, '-', '.', '_' and ':'"
    )]
    InvalidCharacter {
        /// The ID as given.
        id: String,
        /// The offending character.
        ch: char,
        /// Its 1-based position.
        position: usize,
    },
    /// The last character is allowed inside an ID but not at its end.
    #[error(
        "registration ID \"{id}\" ends with {ch:?} at position {position}; DPS requires the last character to be a letter, a digit or '-'"
    )]
    InvalidLastCharacter {
        /// The ID as given.
        id: String,
        /// The offending last character.
        ch: char,
        /// Its 1-based position (the ID's length).
        position: usize,
    },
}

/// Whether `ch` may appear in a registration ID at all (DPS accepts either case).
pub fn is_allowed_char(ch: char) -> bool {
    ch.is_ascii_alphanumeric() || matches!(ch, '-' | '.' | '_' | ':')
}

/// Checks `id` against the DPS rules as given, without changing its case (DPS is case-insensitive).
///
/// Used where an ID comes from outside and must be judged as DPS would judge it (the emulator, a
/// `key derive` that must hash exactly what the device will send). The station's own IDs go through
/// [`RegistrationId::parse`], which also lowercases.
pub fn validate(id: &str, usage: IdUse) -> Result<(), RegistrationIdError> {
    if id.is_empty() {
        return Err(RegistrationIdError::Empty);
    }
    let mut last = None;
    let mut len = 0;
    for (index, ch) in id.chars().enumerate() {
        if !is_allowed_char(ch) {
            return Err(RegistrationIdError::InvalidCharacter {
                id: id.to_owned(),
                ch,
                position: index + 1,
            });
        }
        last = Some(ch);
        len = index + 1;
    }
    if let Some(ch) = last
        && !(ch.is_ascii_alphanumeric() || ch == '-')
    {
        return Err(RegistrationIdError::InvalidLastCharacter {
            id: id.to_owned(),
            ch,
            position: len,
        });
    }
    if len > usage.max_len() {
        return Err(RegistrationIdError::TooLong {
            id: id.to_owned(),
            len,
            max: usage.max_len(),
            why: match usage {
                IdUse::Any => "",
                IdUse::X509CommonName => " when it is an X.509 certificate CN",
            },
        });
    }
    Ok(())
}

/// A registration ID the station may write: valid by the DPS rules and lowercase.
///
/// Holding one proves the check was made; the ledger, the device writer and the DPS client take
/// this type rather than a `String`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RegistrationId(String);

impl RegistrationId {
    /// Lowercases `id` (ASCII only, so positions in errors stay those of the input) and checks it
    /// against the DPS rules with the general 128-character limit.
    pub fn parse(id: &str) -> Result<Self, RegistrationIdError> {
        Self::parse_for(id, IdUse::Any)
    }

    /// Like [`RegistrationId::parse`], with the limit of the given use (64 for an X.509 CN).
    pub fn parse_for(id: &str, usage: IdUse) -> Result<Self, RegistrationIdError> {
        validate(id, usage)?;
        Ok(Self(id.to_ascii_lowercase()))
    }

    /// The ID as text, always lowercase.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this ID can be an X.509 certificate CN (at most 64 characters).
    pub fn fits_x509_common_name(&self) -> bool {
        self.0.len() <= MAX_X509_CN_LEN
    }
}

impl fmt::Display for RegistrationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for RegistrationId {
    type Err = RegistrationIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl AsRef<str> for RegistrationId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl serde::Serialize for RegistrationId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for RegistrationId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_dps_examples_and_lowercases() {
        let id = RegistrationId::parse("SN-007-888-abc-mac-a1-b2-c3-d4-e5-f6").unwrap();
        assert_eq!(id.as_str(), "sn-007-888-abc-mac-a1-b2-c3-d4-e5-f6");
        RegistrationId::parse("prefix_1.2:3-").unwrap();
        RegistrationId::parse("a").unwrap();
    }

    #[test]
    fn names_character_and_position() {
        let err = RegistrationId::parse("abc def").unwrap_err();
        assert_eq!(
            err,
            RegistrationIdError::InvalidCharacter {
                id: "abc def".into(),
                ch: ' ',
                position: 4
            }
        );
        assert!(err.to_string().contains("position 4"), "{err}");
        let err = RegistrationId::parse("dev.").unwrap_err();
        assert!(matches!(
            err,
            RegistrationIdError::InvalidLastCharacter {
                ch: '.',
                position: 4,
                ..
            }
        ));
        // Non-ASCII characters count as one position each.
        let err = RegistrationId::parse("ééx!").unwrap_err();
        assert!(matches!(
            err,
            RegistrationIdError::InvalidCharacter {
                ch: 'é',
                position: 1,
                ..
            }
        ));
    }

    #[test]
    fn length_limits_depend_on_use() {
        let id64 = "a".repeat(64);
        let id65 = "a".repeat(65);
        RegistrationId::parse_for(&id64, IdUse::X509CommonName).unwrap();
        let err = RegistrationId::parse_for(&id65, IdUse::X509CommonName).unwrap_err();
        assert!(err.to_string().contains("X.509"), "{err}");
        RegistrationId::parse(&"a".repeat(128)).unwrap();
        assert!(matches!(
            RegistrationId::parse(&"a".repeat(129)),
            Err(RegistrationIdError::TooLong {
                len: 129,
                max: 128,
                ..
            })
        ));
        assert_eq!(RegistrationId::parse(""), Err(RegistrationIdError::Empty));
    }
}
