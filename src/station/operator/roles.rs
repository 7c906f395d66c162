//! The three roles of the desk and how one is unlocked. The engine decides, not the screen: a
//! screen asks [`super::StationHandle::unlock`] and shows what it answers. Role passwords are
//! argon2id PHC strings in station.toml's `[roles]`, written by `dps-station gui set-password`
//! with `toml_edit` so that the engineer's comments in the file survive.

use std::path::{Path, PathBuf};

use argon2::Argon2;
use argon2::{PasswordHash, PasswordHasher, PasswordVerifier};

use super::settings::RolesSection;

/// Who may do what at the desk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// The line screen only (everyone signed in).
    Operator,
    /// Batches, ledger, reports, exports; leaves kiosk mode.
    Engineer,
    /// Key sessions and the audit log.
    Officer,
}

impl Role {
    /// The name in station.toml, the CLI and the audit log.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Operator => "operator",
            Role::Engineer => "engineer",
            Role::Officer => "officer",
        }
    }

    /// Parses a role name as the CLI takes it.
    pub fn parse(name: &str) -> Option<Role> {
        match name {
            "operator" => Some(Role::Operator),
            "engineer" => Some(Role::Engineer),
            "officer" | "security-officer" => Some(Role::Officer),
            _ => None,
        }
    }

    /// Whether this role may use what needs `least`. The engineer's and the officer's work are
    /// apart (an officer does not get the engineer's screens, nor the other way round); both
    /// get the operator's.
    pub fn allows(self, least: Role) -> bool {
        least == Role::Operator || self == least
    }

    fn password_key(self) -> Option<&'static str> {
        match self {
            Role::Operator => None,
            Role::Engineer => Some("engineer_password"),
            Role::Officer => Some("officer_password"),
        }
    }
}

/// Why a role was not granted, or a password not set.
#[derive(Debug, thiserror::Error)]
pub enum RoleError {
    /// Nobody is signed in.
    #[error("nobody is signed in: sign in by name or scan your badge first")]
    NotSignedIn,
    /// The person does not hold the role in station.toml.
    #[error(
        "{name} is not listed as {role} in station.toml [roles]; ask the production engineer to add you"
    )]
    NotHolder {
        /// Who asked.
        name: String,
        /// The role.
        role: &'static str,
    },
    /// The person is signed in but has not taken the role.
    #[error("this needs the {role} role: choose Role… and enter the {role} password")]
    NotUnlocked {
        /// The role needed.
        role: &'static str,
    },
    /// No password hash is set for the role.
    #[error("no {role} password is set; set one with `dps-station gui set-password {role}`")]
    NoPassword {
        /// The role.
        role: &'static str,
    },
    /// The password did not match.
    #[error(
        "wrong {role} password; try again, or ask the holder of the role (refusals are logged)"
    )]
    WrongPassword {
        /// The role.
        role: &'static str,
    },
    /// The stored hash is not a PHC string.
    #[error(
        "station.toml [roles] {key} is not an argon2 hash; set it again with `dps-station gui set-password`"
    )]
    BadHash {
        /// The key.
        key: &'static str,
    },
    /// Hashing failed.
    #[error("cannot hash the password: {0}")]
    Hash(String),
    /// station.toml could not be read or written.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
}

/// Checks whether `name` may take `role` with `password`.
pub fn check_unlock(
    roles: &RolesSection,
    name: &str,
    role: Role,
    password: &str,
) -> Result<(), RoleError> {
    let (holders, hash) = match role {
        Role::Operator => return Ok(()),
        Role::Engineer => (&roles.engineers, &roles.engineer_password),
        Role::Officer => (&roles.officers, &roles.officer_password),
    };
    if !holders.iter().any(|h| h == name) {
        return Err(RoleError::NotHolder {
            name: name.to_string(),
            role: role.as_str(),
        });
    }
    let key = role.password_key().unwrap_or("password");
    let hash = hash.as_deref().ok_or(RoleError::NoPassword {
        role: role.as_str(),
    })?;
    let parsed = PasswordHash::new(hash).map_err(|_| RoleError::BadHash { key })?;
    Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .map_err(|_| RoleError::WrongPassword {
            role: role.as_str(),
        })
}

/// An argon2id PHC string of `password` with a fresh salt.
pub fn hash_password(password: &str) -> Result<String, RoleError> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| RoleError::Hash(e.to_string()))
}

/// Writes the hash of `password` for `role` into `station_file`'s `[roles]`, keeping the rest of
/// the file (comments, order) as it was.
pub fn set_password(station_file: &Path, role: Role, password: &str) -> Result<(), RoleError> {
    let file_err = |message: String| RoleError::File {
        path: station_file.to_path_buf(),
        message,
    };
    let key = role.password_key().ok_or_else(|| {
        file_err("the operator role has no password; name engineer or officer".into())
    })?;
    let text = std::fs::read_to_string(station_file).map_err(|e| file_err(e.to_string()))?;
    let mut doc: toml_edit::DocumentMut = text
        .parse()
        .map_err(|e: toml_edit::TomlError| file_err(e.to_string()))?;
    let hash = hash_password(password)?;
    let roles = doc
        .entry("roles")
        .or_insert_with(|| toml_edit::Item::Table(toml_edit::Table::new()));
    let Some(table) = roles.as_table_like_mut() else {
        return Err(file_err("`roles` is not a table".into()));
    };
    table.insert(key, toml_edit::value(hash));
    std::fs::write(station_file, doc.to_string()).map_err(|e| file_err(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_set_in_the_file_unlocks_and_a_wrong_one_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("station.toml");
        std::fs::write(
            &p,
            "# line 3, hall B\nname = \"s\"\n[roles]\nengineers = [\"kim\"] # day shift\n",
        )
        .unwrap();
        set_password(&p, Role::Engineer, "correct horse").unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(
            text.contains("# line 3, hall B") && text.contains("# day shift"),
            "{text}"
        );
        assert!(!text.contains("correct horse"));
        let roles: RolesSection = toml::from_str::<toml::Table>(&text).unwrap()["roles"]
            .clone()
            .try_into()
            .unwrap();
        check_unlock(&roles, "kim", Role::Engineer, "correct horse").unwrap();
        let wrong = check_unlock(&roles, "kim", Role::Engineer, "wrong").unwrap_err();
        assert!(matches!(wrong, RoleError::WrongPassword { .. }), "{wrong}");
        let other = check_unlock(&roles, "ann", Role::Engineer, "correct horse").unwrap_err();
        assert!(matches!(other, RoleError::NotHolder { .. }), "{other}");
        let none = check_unlock(&roles, "kim", Role::Officer, "x").unwrap_err();
        assert!(matches!(none, RoleError::NotHolder { .. }), "{none}");
        assert!(Role::Engineer.allows(Role::Operator) && Role::Officer.allows(Role::Operator));
        assert!(!Role::Operator.allows(Role::Engineer) && !Role::Officer.allows(Role::Engineer));
        assert!(!Role::Engineer.allows(Role::Officer));
    }
}
