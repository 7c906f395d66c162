//! HSM profiles (`hsm-profiles/*.toml`, built into the binary): what each HSM family needs that
//! PKCS#11 does not say by itself — where its module lives on each OS, which mechanisms it really
//! offers, how many sessions it takes, whether it drops idle sessions, and what to tell the operator.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The profiles shipped with the station, embedded so that the binary needs no data directory.
const BUILT_IN: &[(&str, &str)] = &[
    ("softhsm2", include_str!("../../hsm-profiles/softhsm2.toml")),
    ("yubihsm2", include_str!("../../hsm-profiles/yubihsm2.toml")),
    (
        "nitrokey-hsm2",
        include_str!("../../hsm-profiles/nitrokey-hsm2.toml"),
    ),
    (
        "thales-luna",
        include_str!("../../hsm-profiles/thales-luna.toml"),
    ),
    (
        "aws-cloudhsm",
        include_str!("../../hsm-profiles/aws-cloudhsm.toml"),
    ),
    ("utimaco", include_str!("../../hsm-profiles/utimaco.toml")),
    ("generic", include_str!("../../hsm-profiles/generic.toml")),
];

/// Why a profile could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// No profile by that name.
    #[error(
        "no HSM profile named `{name}` (known: {known}); `dps-station hsm profiles` lists them"
    )]
    Unknown {
        /// The name asked for.
        name: String,
        /// The names that exist.
        known: String,
    },
    /// A profile file that does not parse (only possible for a file given by the user).
    #[error("HSM profile {origin} is not valid: {error}")]
    Invalid {
        /// The file or built-in name.
        origin: String,
        /// The TOML error.
        error: Box<toml::de::Error>,
    },
    /// A profile file that cannot be read.
    #[error("cannot read HSM profile file {path}: {error}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
    /// None of the module paths exists on this machine.
    #[error(
        "the PKCS#11 module for HSM profile `{profile}` is not installed ({tried}); install the vendor's client software or pass --module <path>"
    )]
    ModuleMissing {
        /// The profile name.
        profile: String,
        /// The paths tried, comma-separated.
        tried: String,
    },
}

/// Module locations per operating system.
#[derive(Debug, Clone, Deserialize, Default)]
pub struct ModulePaths {
    /// Candidate paths on Linux, most likely first.
    #[serde(default)]
    pub linux: Vec<PathBuf>,
    /// Candidate paths on macOS.
    #[serde(default)]
    pub macos: Vec<PathBuf>,
    /// Candidate paths on Windows.
    #[serde(default)]
    pub windows: Vec<PathBuf>,
}

/// Which mechanisms the family really offers (tokens advertise more, or less, than they do).
#[derive(Debug, Clone, Deserialize)]
pub struct Mechanisms {
    /// `CKM_ECDSA_SHA256` works; when false the station hashes in software and signs with `CKM_ECDSA`.
    pub ecdsa_sha256: bool,
    /// `CKM_EC_KEY_PAIR_GEN` on P-256.
    pub ec_key_pair_gen: bool,
    /// `CKM_SHA256_HMAC` with a `CKK_GENERIC_SECRET` key (symmetric enrollment groups).
    pub sha256_hmac: bool,
    /// `CKM_GENERIC_SECRET_KEY_GEN`.
    pub generic_secret_key_gen: bool,
    /// `C_CreateObject` of a plain private or secret key value (importing an existing CA or group key).
    pub import_private_keys: bool,
}

/// Session limits and liveness.
#[derive(Debug, Clone, Deserialize)]
pub struct Sessions {
    /// The most sessions the station opens on the token at once.
    pub max_sessions: usize,
    /// Touch idle sessions this often (seconds) because the token drops idle ones; 0 = never.
    pub keep_alive_secs: u64,
}

/// Login rules.
#[derive(Debug, Clone, Deserialize)]
pub struct Login {
    /// What the PIN looks like on this family, for the prompt and the error messages.
    pub pin_hint: String,
}

/// Notes for the operator.
#[derive(Debug, Clone, Deserialize, Default)]
pub struct Operator {
    /// Setup steps and caveats shown by `hsm profiles`.
    #[serde(default)]
    pub notes: String,
}

/// One HSM family's profile.
#[derive(Debug, Clone, Deserialize)]
pub struct HsmProfile {
    /// Short name used on the command line (`--profile softhsm2`).
    pub name: String,
    /// Name for people.
    pub display_name: String,
    /// False for software tokens, which the station flags as "keys not in a hardware HSM".
    pub hardware: bool,
    /// Module locations.
    #[serde(default)]
    pub module: ModulePaths,
    /// Mechanisms and quirks.
    pub mechanisms: Mechanisms,
    /// Session limits.
    pub sessions: Sessions,
    /// Login rules.
    pub login: Login,
    /// Operator notes.
    #[serde(default)]
    pub operator: Operator,
}

impl HsmProfile {
    /// Parses a profile from TOML text; `origin` names it in errors.
    pub fn from_toml(origin: &str, text: &str) -> Result<HsmProfile, ProfileError> {
        toml::from_str(text).map_err(|error| ProfileError::Invalid {
            origin: origin.to_owned(),
            error: Box::new(error),
        })
    }

    /// Loads a user-supplied profile file (a site's own HSM family).
    pub fn from_file(path: &Path) -> Result<HsmProfile, ProfileError> {
        let text = std::fs::read_to_string(path).map_err(|error| ProfileError::Read {
            path: path.to_owned(),
            error,
        })?;
        HsmProfile::from_toml(&path.display().to_string(), &text)
    }

    /// A built-in profile by name.
    pub fn built_in(name: &str) -> Result<HsmProfile, ProfileError> {
        match BUILT_IN.iter().find(|(n, _)| *n == name) {
            Some((n, text)) => HsmProfile::from_toml(&format!("built-in `{n}`"), text),
            None => Err(ProfileError::Unknown {
                name: name.to_owned(),
                known: BUILT_IN
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }

    /// Every built-in profile, in a stable order.
    pub fn all_built_in() -> Result<Vec<HsmProfile>, ProfileError> {
        BUILT_IN
            .iter()
            .map(|(n, _)| HsmProfile::built_in(n))
            .collect()
    }

    /// The candidate module paths for the OS this binary runs on.
    pub fn module_candidates(&self) -> &[PathBuf] {
        if cfg!(target_os = "windows") {
            &self.module.windows
        } else if cfg!(target_os = "macos") {
            &self.module.macos
        } else {
            &self.module.linux
        }
    }

    /// The first candidate module that exists here, if any.
    pub fn installed_module(&self) -> Option<&Path> {
        self.module_candidates()
            .iter()
            .map(PathBuf::as_path)
            .find(|p| p.is_file())
    }

    /// The module to load: `explicit` if given (it must exist), else the first installed candidate;
    /// otherwise an error naming every path tried.
    pub fn resolve_module(&self, explicit: Option<&Path>) -> Result<PathBuf, ProfileError> {
        if let Some(path) = explicit {
            if path.is_file() {
                return Ok(path.to_owned());
            }
            return Err(ProfileError::ModuleMissing {
                profile: self.name.clone(),
                tried: format!("tried {}", path.display()),
            });
        }
        match self.installed_module() {
            Some(p) => Ok(p.to_owned()),
            None => {
                let tried = self.module_candidates();
                Err(ProfileError::ModuleMissing {
                    profile: self.name.clone(),
                    tried: if tried.is_empty() {
                        "the profile knows no path for this OS".to_owned()
                    } else {
                        format!(
                            "tried {}",
                            tried
                                .iter()
                                .map(|p| p.display().to_string())
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    },
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_built_in_profile_parses_and_is_named_after_its_file() {
        let all = HsmProfile::all_built_in().unwrap();
        assert_eq!(all.len(), 7);
        for (p, (file, _)) in all.iter().zip(BUILT_IN) {
            assert_eq!(&p.name, file);
            assert!(p.sessions.max_sessions >= 1, "{}", p.name);
        }
        let soft = HsmProfile::built_in("softhsm2").unwrap();
        assert!(!soft.mechanisms.ecdsa_sha256);
        assert!(!soft.hardware);
        assert_eq!(
            HsmProfile::built_in("yubihsm2")
                .unwrap()
                .sessions
                .keep_alive_secs,
            15
        );
    }

    #[test]
    fn a_missing_module_names_every_path_tried() {
        let mut p = HsmProfile::built_in("softhsm2").unwrap();
        p.module.linux = vec!["/nonexistent/a.so".into(), "/nonexistent/b.so".into()];
        p.module.macos = p.module.linux.clone();
        p.module.windows = p.module.linux.clone();
        let msg = p.resolve_module(None).unwrap_err().to_string();
        assert!(
            msg.contains("/nonexistent/a.so") && msg.contains("/nonexistent/b.so"),
            "{msg}"
        );
        let msg = p
            .resolve_module(Some(Path::new("/nonexistent/c.so")))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("/nonexistent/c.so"), "{msg}");
    }
}
