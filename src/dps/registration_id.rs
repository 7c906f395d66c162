//! Registration and enrollment-group IDs checked by the DPS rules before anything is sent, so a
//! refused ID costs no operation of the quota and gets a message that says which rule it broke.
//!
//! Rules (REFERENCE.md §7, design.md): at most 128 characters (64 when it is an X.509 CN),
//! lowercase alphanumerics and `-` `.` `_` `:`, the last one alphanumeric or `-`. DPS compares IDs
//! case-insensitively, so upper case is refused rather than silently folded.

/// Which rule an ID broke.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistrationIdError {
    /// Empty.
    #[error("the {what} is empty")]
    Empty {
        /// `registration ID` or `enrollment group ID`.
        what: &'static str,
    },
    /// Too long.
    #[error("the {what} '{id}' has {len} characters; DPS allows at most {max}")]
    TooLong {
        /// Kind of ID.
        what: &'static str,
        /// The ID.
        id: String,
        /// Its length.
        len: usize,
        /// The limit that applies.
        max: usize,
    },
    /// A character outside the DPS set.
    #[error(
        "the {what} '{id}' contains {ch:?}, which DPS refuses: use lowercase letters, digits and \
         - . _ : only"
    )]
    BadCharacter {
        /// Kind of ID.
        what: &'static str,
        /// The ID.
        id: String,
        /// The first offending character.
        ch: char,
    },
    /// Ends with `.`, `_` or `:`.
    #[error("the {what} '{id}' ends with {ch:?}; DPS requires a letter, digit or '-' at the end")]
    BadEnd {
        /// Kind of ID.
        what: &'static str,
        /// The ID.
        id: String,
        /// The last character.
        ch: char,
    },
}

/// The DPS limit for registration IDs.
pub const MAX_LEN: usize = 128;
/// The limit when the ID is the CN of an X.509 certificate (CN is at most 64 characters).
pub const MAX_LEN_X509: usize = 64;

/// Checks a registration ID (`max` = [`MAX_LEN`], or [`MAX_LEN_X509`] for X.509 enrollments).
pub fn validate_registration_id(id: &str, max: usize) -> Result<(), RegistrationIdError> {
    validate(id, "registration ID", max)
}

/// Checks an enrollment group ID (same character rules as registration IDs).
pub fn validate_group_id(id: &str) -> Result<(), RegistrationIdError> {
    validate(id, "enrollment group ID", MAX_LEN)
}

fn validate(id: &str, what: &'static str, max: usize) -> Result<(), RegistrationIdError> {
    let Some(last) = id.chars().last() else {
        return Err(RegistrationIdError::Empty { what });
    };
    let len = id.chars().count();
    if len > max {
        return Err(RegistrationIdError::TooLong {
            what,
            id: id.to_string(),
            len,
            max,
        });
    }
    if let Some(ch) = id.chars().find(|c| {
        !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.' | '_' | ':'))
    }) {
        return Err(RegistrationIdError::BadCharacter {
            what,
            id: id.to_string(),
            ch,
        });
    }
    if !(last.is_ascii_alphanumeric() || last == '-') {
        return Err(RegistrationIdError::BadEnd {
            what,
            id: id.to_string(),
            ch: last,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_dps_ids() {
        for id in ["a", "sensor-0001", "p.q_r:s-", "x".repeat(128).as_str()] {
            validate_registration_id(id, MAX_LEN).unwrap();
        }
    }

    #[test]
    fn refuses_what_dps_refuses() {
        assert!(matches!(
            validate_registration_id("", MAX_LEN),
            Err(RegistrationIdError::Empty { .. })
        ));
        assert!(matches!(
            validate_registration_id(&"x".repeat(129), MAX_LEN),
            Err(RegistrationIdError::TooLong { .. })
        ));
        assert!(matches!(
            validate_registration_id(&"x".repeat(65), MAX_LEN_X509),
            Err(RegistrationIdError::TooLong { max: 64, .. })
        ));
        assert!(matches!(
            validate_registration_id("dev 1", MAX_LEN),
            Err(RegistrationIdError::BadCharacter { ch: ' ', .. })
        ));
        assert!(matches!(
            validate_registration_id("Dev1", MAX_LEN),
            Err(RegistrationIdError::BadCharacter { ch: 'D', .. })
        ));
        assert!(matches!(
            validate_registration_id("dev.", MAX_LEN),
            Err(RegistrationIdError::BadEnd { ch: '.', .. })
        ));
        let msg = validate_group_id("grp/1").unwrap_err().to_string();
        assert!(
            msg.contains("grp/1") && msg.contains("enrollment group ID"),
            "{msg}"
        );
    }
}
