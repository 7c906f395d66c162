//! `[officer]` in station.toml: how the security officer's key-injection sessions behave on this
//! station. Kept in its own section so that a line station without officers never sees it.
//!
//! ```toml
//! [officer]
//! idle_close_seconds = 600    # an open HSM session closes (and logs out) after this much quiet
//! dual_control = true         # creating or importing a CA key needs a second officer
//! [officer.passwords]         # optional: each officer's own argon2 hash for dual control
//! alice = "$argon2id$v=19$..."
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use argon2::{Argon2, PasswordHash, PasswordVerifier};
use serde::Deserialize;

use crate::secret::SecretString;
use crate::station::operator::settings::RolesSection;

/// The idle time when station.toml says nothing (ten minutes): long enough for a ceremony's
/// pauses, short enough that a token is not left logged in over a break.
pub const DEFAULT_IDLE_CLOSE_SECONDS: u64 = 600;

/// `[officer]` as written in station.toml.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OfficerSection {
    /// Seconds without an officer's action after which an open HSM session closes.
    #[serde(default)]
    pub idle_close_seconds: Option<u64>,
    /// Whether creating or importing a CA key needs a second officer's password first.
    #[serde(default)]
    pub dual_control: bool,
    /// Officer name → argon2id PHC string of that officer's own password (dual control checks
    /// the second officer against it; without one, against `[roles] officer_password`).
    #[serde(default)]
    pub passwords: BTreeMap<String, String>,
}

/// The officer settings the station runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfficerSettings {
    /// An open session closes after this long without an action.
    pub idle_close: Duration,
    /// Creating or importing a CA key needs a second officer.
    pub dual_control: bool,
    /// Per-officer password hashes for the second officer of dual control.
    pub passwords: BTreeMap<String, String>,
}

impl Default for OfficerSettings {
    fn default() -> Self {
        Self::resolve(&OfficerSection::default())
    }
}

impl OfficerSettings {
    /// The settings `section` asks for; an idle time of 0 is taken as one second (a session
    /// that closes at once could never be used), and at most a day.
    pub fn resolve(section: &OfficerSection) -> Self {
        let seconds = section
            .idle_close_seconds
            .unwrap_or(DEFAULT_IDLE_CLOSE_SECONDS)
            .clamp(1, 24 * 60 * 60);
        Self {
            idle_close: Duration::from_secs(seconds),
            dual_control: section.dual_control,
            passwords: section.passwords.clone(),
        }
    }
}

/// Why a second officer was not accepted for dual control.
#[derive(Debug, thiserror::Error)]
pub enum DualControlError {
    /// The same person cannot be both officers.
    #[error(
        "dual control needs a second officer: {name} already runs this session; another officer listed in station.toml [roles] officers must enter their own name and password"
    )]
    SameOfficer {
        /// The officer running the session.
        name: String,
    },
    /// The name is not an officer in station.toml.
    #[error(
        "{name} is not listed among the officers in station.toml [roles]; dual control needs a second security officer"
    )]
    NotOfficer {
        /// Who was named.
        name: String,
    },
    /// No hash to check the password against.
    #[error(
        "no password is set for officer {name}: set [officer.passwords] {name} or [roles] officer_password (`dps-station gui set-password officer`)"
    )]
    NoPassword {
        /// Who was named.
        name: String,
    },
    /// The stored hash is not an argon2 PHC string.
    #[error(
        "the password hash for officer {name} in station.toml is not an argon2 hash; set it again"
    )]
    BadHash {
        /// Who was named.
        name: String,
    },
    /// The password did not match.
    #[error("wrong password for officer {name}; nothing was created or imported")]
    WrongPassword {
        /// Who was named.
        name: String,
    },
}

impl OfficerSettings {
    /// Checks that `second` is another officer than `first` and that `password` is theirs (their
    /// own hash in `[officer.passwords]`, else the officer role's hash in `[roles]`). Slow on
    /// purpose (argon2): call it on a worker.
    pub fn check_second_officer(
        &self,
        roles: &RolesSection,
        first: &str,
        second: &str,
        password: &SecretString,
    ) -> Result<(), DualControlError> {
        let name = second.trim().to_owned();
        if name == first.trim() {
            return Err(DualControlError::SameOfficer { name });
        }
        if !roles.officers.contains(&name) {
            return Err(DualControlError::NotOfficer { name });
        }
        let Some(hash) = self
            .passwords
            .get(&name)
            .or(roles.officer_password.as_ref())
        else {
            return Err(DualControlError::NoPassword { name });
        };
        let parsed = PasswordHash::new(hash)
            .map_err(|_| DualControlError::BadHash { name: name.clone() })?;
        Argon2::default()
            .verify_password(password.expose().as_bytes(), &parsed)
            .map_err(|_| DualControlError::WrongPassword { name })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_ten_minutes_and_no_dual_control() {
        let s = OfficerSettings::default();
        assert_eq!(s.idle_close, Duration::from_secs(600));
        assert!(!s.dual_control);
    }

    #[test]
    fn the_section_is_read_and_unknown_keys_refused() {
        let section: OfficerSection =
            toml::from_str("idle_close_seconds = 180\ndual_control = true\n").unwrap();
        let s = OfficerSettings::resolve(&section);
        assert_eq!(s.idle_close, Duration::from_secs(180));
        assert!(s.dual_control);
        assert!(toml::from_str::<OfficerSection>("idle_close = 3\n").is_err());
        let zero: OfficerSection = toml::from_str("idle_close_seconds = 0\n").unwrap();
        assert_eq!(
            OfficerSettings::resolve(&zero).idle_close,
            Duration::from_secs(1)
        );
    }
}
