//! Registration and enrollment-group IDs checked by the DPS rules before anything is sent, so a
//! refused ID costs no operation of the quota and gets a message that says which rule it broke.
//!
//! The rules themselves live in `crate::identity::registration_id` (the station issues IDs by
//! them); this module applies them to what the client sends, and to group IDs, which follow the
//! same rules.

use crate::identity::registration_id::{self as rules, IdUse};

/// Which rule an ID broke.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistrationIdError {
    /// A registration ID DPS would refuse.
    #[error(transparent)]
    Registration(#[from] rules::RegistrationIdError),
    /// An enrollment group ID DPS would refuse (same rules as registration IDs).
    #[error("enrollment group ID '{id}' would be refused by DPS: {reason}")]
    Group {
        /// The group ID.
        id: String,
        /// The rule it broke.
        reason: String,
    },
}

/// The DPS limit for registration IDs.
pub const MAX_LEN: usize = rules::MAX_LEN;
/// The limit when the ID is the CN of an X.509 certificate (CN is at most 64 characters).
pub const MAX_LEN_X509: usize = rules::MAX_X509_CN_LEN;

/// Checks a registration ID (`max` = [`MAX_LEN`], or [`MAX_LEN_X509`] for X.509 enrollments).
pub fn validate_registration_id(id: &str, max: usize) -> Result<(), RegistrationIdError> {
    let usage = if max <= MAX_LEN_X509 {
        IdUse::X509CommonName
    } else {
        IdUse::Any
    };
    Ok(rules::validate(id, usage)?)
}

/// Checks an enrollment group ID.
pub fn validate_group_id(id: &str) -> Result<(), RegistrationIdError> {
    rules::validate(id, IdUse::Any).map_err(|e| RegistrationIdError::Group {
        id: id.to_string(),
        reason: e.to_string(),
    })
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
        for (id, max) in [
            ("", MAX_LEN),
            (&*"x".repeat(129), MAX_LEN),
            (&*"x".repeat(65), MAX_LEN_X509),
            ("dev 1", MAX_LEN),
            ("dev.", MAX_LEN),
        ] {
            assert!(validate_registration_id(id, max).is_err(), "{id:?}");
        }
        let msg = validate_group_id("grp/1").unwrap_err().to_string();
        assert!(
            msg.contains("grp/1") && msg.contains("enrollment group ID"),
            "{msg}"
        );
    }
}
