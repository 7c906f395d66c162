//! HSM profiles (`hsm-profiles/*.toml`): what each HSM family needs that PKCS#11 does not say by
//! itself — where its module lives on each OS, which mechanisms it really offers, how many sessions
//! it takes, whether it drops idle sessions, and what to tell the operator.
//!
//! The profiles are read from a directory ([`profile_dir`]): `/usr/share/dps-station/hsm-profiles`
//! when installed by the package, the source tree's `hsm-profiles/` when run with cargo. A copy is
//! also built into the binary, used only when neither directory exists (a binary copied alone).

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

/// The environment variable naming a profile directory to use instead of the installed one.
pub const PROFILE_DIR_ENV: &str = "DPS_STATION_HSM_PROFILES";

/// Where the package installs the profiles, relative to the binary's `bin/` directory's parent
/// (`/usr/bin/dps-station` → `/usr/share/dps-station/hsm-profiles`).
const INSTALLED_RELATIVE: &str = "share/dps-station/hsm-profiles";

/// The source tree's profiles, for a binary run with cargo from this checkout.
const SOURCE_TREE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/hsm-profiles");

/// The directory the profiles are read from: [`PROFILE_DIR_ENV`] if set, else the installed
/// directory next to the running binary, else the source tree's; `None` when none exists (the
/// built-in copies are used then).
pub fn profile_dir() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok();
    profile_dir_from(
        std::env::var_os(PROFILE_DIR_ENV).map(PathBuf::from),
        exe.as_deref(),
        Path::new(SOURCE_TREE),
    )
}

/// [`profile_dir`] with its inputs given, so that the order can be tested without touching the
/// process environment.
fn profile_dir_from(env: Option<PathBuf>, exe: Option<&Path>, source: &Path) -> Option<PathBuf> {
    if let Some(dir) = env.filter(|d| !d.as_os_str().is_empty()) {
        // Named explicitly: used even if missing, so that a typo fails loudly instead of
        // falling back to other profiles.
        return Some(dir);
    }
    let installed = exe
        .and_then(Path::parent)
        .and_then(Path::parent)
        .map(|prefix| prefix.join(INSTALLED_RELATIVE));
    installed
        .into_iter()
        .chain(std::iter::once(source.to_path_buf()))
        .find(|d| d.is_dir())
}

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

    /// A shipped profile by name: `<name>.toml` in [`profile_dir`], else the built-in copy.
    pub fn built_in(name: &str) -> Result<HsmProfile, ProfileError> {
        HsmProfile::named_in(profile_dir().as_deref(), name)
    }

    /// Every shipped profile: the built-in names first (in their order), then any other
    /// `*.toml` in [`profile_dir`] (sorted).
    pub fn all_built_in() -> Result<Vec<HsmProfile>, ProfileError> {
        let dir = profile_dir();
        known_names(dir.as_deref())?
            .iter()
            .map(|n| HsmProfile::named_in(dir.as_deref(), n))
            .collect()
    }

    /// The file a shipped profile is read from, or `None` for the built-in copy.
    pub fn shipped_file(name: &str) -> Option<PathBuf> {
        profile_dir()
            .map(|d| d.join(format!("{name}.toml")))
            .filter(|f| f.is_file())
    }

    fn named_in(dir: Option<&Path>, name: &str) -> Result<HsmProfile, ProfileError> {
        if let Some(dir) = dir {
            let file = dir.join(format!("{name}.toml"));
            // A name is a file name, never a path: `--profile ../x` must not read elsewhere.
            let plain = !name.is_empty() && !name.contains(['/', '\\']) && name != "..";
            if plain && file.is_file() {
                return HsmProfile::from_file(&file);
            }
        }
        match BUILT_IN.iter().find(|(n, _)| *n == name) {
            Some((n, text)) => HsmProfile::from_toml(&format!("built-in `{n}`"), text),
            None => Err(ProfileError::Unknown {
                name: name.to_owned(),
                known: known_names(dir)?.join(", "),
            }),
        }
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

/// The built-in names, then any other profile file in `dir`, sorted.
fn known_names(dir: Option<&Path>) -> Result<Vec<String>, ProfileError> {
    let mut names: Vec<String> = BUILT_IN.iter().map(|(n, _)| (*n).to_owned()).collect();
    let Some(dir) = dir else {
        return Ok(names);
    };
    let entries = std::fs::read_dir(dir).map_err(|error| ProfileError::Read {
        path: dir.to_owned(),
        error,
    })?;
    let mut extra: Vec<String> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let path = e.path();
            let stem = path.file_stem()?.to_str()?.to_owned();
            (path.extension()? == "toml").then_some(stem)
        })
        .filter(|n| !names.contains(n))
        .collect();
    extra.sort();
    names.extend(extra);
    Ok(names)
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
    fn the_profile_dir_is_the_env_then_the_installed_one_then_the_source_tree() {
        let root = tempfile::tempdir().unwrap();
        let bin = root.path().join("usr/bin/dps-station");
        let installed = root.path().join("usr/share/dps-station/hsm-profiles");
        let source = root.path().join("src-tree/hsm-profiles");
        std::fs::create_dir_all(&source).unwrap();
        // Not installed: the source tree.
        assert_eq!(
            profile_dir_from(None, Some(&bin), &source),
            Some(source.clone())
        );
        std::fs::create_dir_all(&installed).unwrap();
        assert_eq!(
            profile_dir_from(None, Some(&bin), &source),
            Some(installed.clone())
        );
        let env = root.path().join("elsewhere");
        assert_eq!(
            profile_dir_from(Some(env.clone()), Some(&bin), &source),
            Some(env)
        );
        // Neither: the built-in copies.
        assert_eq!(
            profile_dir_from(
                None,
                Some(Path::new("/nonexistent/bin/x")),
                Path::new("/nonexistent")
            ),
            None
        );
    }

    #[test]
    fn a_profile_in_the_dir_wins_over_the_built_in_copy_and_extra_files_are_listed() {
        let dir = tempfile::tempdir().unwrap();
        let soft = include_str!("../../hsm-profiles/softhsm2.toml")
            .replace("max_sessions = 8", "max_sessions = 9");
        std::fs::write(dir.path().join("softhsm2.toml"), &soft).unwrap();
        let site = include_str!("../../hsm-profiles/generic.toml")
            .replace("name = \"generic\"", "name = \"site-hsm\"");
        std::fs::write(dir.path().join("site-hsm.toml"), site).unwrap();
        let from_dir = HsmProfile::named_in(Some(dir.path()), "softhsm2").unwrap();
        let copy = HsmProfile::named_in(None, "softhsm2").unwrap();
        assert_eq!(
            (from_dir.sessions.max_sessions, copy.sessions.max_sessions),
            (9, 8)
        );
        let names = known_names(Some(dir.path())).unwrap();
        assert_eq!(names.last().map(String::as_str), Some("site-hsm"));
        assert_eq!(
            HsmProfile::named_in(Some(dir.path()), "site-hsm")
                .unwrap()
                .name,
            "site-hsm"
        );
        let err = HsmProfile::named_in(Some(dir.path()), "../softhsm2")
            .unwrap_err()
            .to_string();
        assert!(err.contains("site-hsm"), "{err}");
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
