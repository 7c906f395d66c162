//! The first run: is a station configured, what are the steps when it is not, and writing
//! `station.toml` from the operator's answers. The CLI (`dps-station setup`) and the GUI's
//! first-run screen both call these; neither decides on its own what "configured" means.

use std::path::{Path, PathBuf};

use super::access::{self, Membership};
use super::station_file::{self, StationFileError, StationValues};
use crate::keystore::profile::HsmProfile;
use crate::station::config::{ConfigError, KeyStoreConfig, SecretSource, StationConfig};

/// The environment variable naming the station file instead of [`DEFAULT_STATION_FILE`].
pub const STATION_FILE_ENV: &str = "DPS_STATION_CONFIG";

/// Where the package puts the station file.
pub const DEFAULT_STATION_FILE: &str = "/etc/dps-station/station.toml";

/// The station file to use: [`STATION_FILE_ENV`] if set, else [`DEFAULT_STATION_FILE`].
pub fn default_station_file() -> PathBuf {
    std::env::var_os(STATION_FILE_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_STATION_FILE))
}

/// How far a station file is from usable.
#[derive(Debug)]
pub enum StationState {
    /// No file.
    Missing,
    /// The package's template (every line a comment) or an empty file.
    Unconfigured,
    /// A file that does not load (a value missing or wrong, or a key an older version used): the
    /// error names the key and what to change.
    Invalid(ConfigError),
    /// Ready for `run`.
    Ready(Box<StationConfig>),
}

/// Reads `path` and says how far it is from usable.
pub fn station_state(path: &Path) -> StationState {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return StationState::Missing,
        Err(source) => {
            return StationState::Invalid(ConfigError::Read {
                path: path.to_owned(),
                source,
            });
        }
    };
    if station_file::is_unconfigured(&text) {
        return StationState::Unconfigured;
    }
    match StationConfig::load(path) {
        Ok(config) => StationState::Ready(Box::new(config)),
        Err(e) => StationState::Invalid(e),
    }
}

/// One step of the first run: what to decide and the command that does it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// What the step sets.
    pub what: &'static str,
    /// How, for an administrator at a terminal.
    pub how: String,
}

/// The first-run steps for the station file at `path`, in order.
pub fn first_run_steps(path: &Path) -> Vec<Step> {
    let file = path.display();
    vec![
        Step {
            what: "station name and ledger location",
            how: format!("`sudo dps-station setup` asks for them and writes {file}"),
        },
        Step {
            what: "HSM profile and token",
            how: "`dps-station hsm profiles` shows which HSM modules are installed; `dps-station hsm list --profile <name>` the tokens".to_owned(),
        },
        Step {
            what: "fixture slots",
            how: "`sudo dps-station fixture detect --count <slots>`: plug each slot's adapter when asked; it names the slots /dev/dps-fixture/<slot> by USB port".to_owned(),
        },
        Step {
            what: "DPS target",
            how: "the name of the environment variable (or keyring entry, or owner-only file) that holds the DPS connection string; never the string itself".to_owned(),
        },
        Step {
            what: "operators",
            how: format!(
                "add each operator to the `{}` group: `sudo usermod -aG {} <user>`",
                super::udev::STATION_GROUP,
                super::udev::STATION_GROUP
            ),
        },
    ]
}

/// Why a station file could not be written.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The current file is not editable.
    #[error(transparent)]
    File(#[from] StationFileError),
    /// The answers do not make a usable station (nothing was written); the loader's message.
    #[error("not written: {0}")]
    Invalid(String),
    /// Reading, writing or renaming failed.
    #[error("cannot write {path}: {source}{hint}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
        /// What to do about a permission problem.
        hint: String,
    },
}

fn io_error(path: &Path, source: std::io::Error) -> SetupError {
    let hint = if source.kind() == std::io::ErrorKind::PermissionDenied {
        "; run it as root (`sudo dps-station ...`)".to_owned()
    } else {
        String::new()
    };
    SetupError::Io {
        path: path.to_owned(),
        source,
        hint,
    }
}

/// Writes `values` into the station file at `path` (creating it, filling the package's template,
/// or editing the administrator's file in place), keeping the previous file as `<file>.bak`.
/// With `complete`, the result must load as a [`StationConfig`] or nothing is written; without it
/// (`fixture detect` on a fresh station) only what is given is written.
pub fn write_station(
    path: &Path,
    values: &StationValues,
    complete: bool,
) -> Result<Option<StationConfig>, SetupError> {
    let old = match std::fs::read_to_string(path) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(io_error(path, e)),
    };
    let new = station_file::apply(old.as_deref().unwrap_or(""), path, values)?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir).map_err(|e| io_error(&dir, e))?;
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "station.toml".to_owned());
    let temp = dir.join(format!(".{file_name}.new"));
    std::fs::write(&temp, &new).map_err(|e| io_error(&temp, e))?;
    let config = if complete {
        match StationConfig::load(&temp) {
            Ok(mut c) => {
                c.path = path.to_owned();
                Some(c)
            }
            Err(e) => {
                let _ = std::fs::remove_file(&temp);
                // Name the real file, not the temporary one.
                let msg = e
                    .to_string()
                    .replace(&temp.display().to_string(), &path.display().to_string());
                return Err(SetupError::Invalid(msg));
            }
        }
    } else {
        None
    };
    if let Some(old) = old.filter(|o| *o != new) {
        let backup = dir.join(format!("{file_name}.bak"));
        std::fs::write(&backup, old).map_err(|e| io_error(&backup, e))?;
    }
    std::fs::rename(&temp, path).map_err(|e| io_error(path, e))?;
    Ok(config)
}

/// One line of `setup --check`: something the station needs and whether it is there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// What was checked.
    pub what: String,
    /// Whether it is fine.
    pub ok: bool,
    /// What was found, or what to do.
    pub detail: String,
}

/// Everything a station needs on this machine, each with what to do when it is missing: the
/// station file, the HSM module of its profile (SoftHSM2 when none is chosen yet), `udevadm` for
/// the fixture's names, `secret-tool` when the keyring is used, and the user's group.
pub fn checks(path: &Path) -> Vec<Check> {
    let mut out = Vec::new();
    let state = station_state(path);
    let (file_ok, file_detail) = match &state {
        StationState::Missing => (
            false,
            format!(
                "{} does not exist: run `sudo dps-station setup`",
                path.display()
            ),
        ),
        StationState::Unconfigured => (
            false,
            format!(
                "{} is not configured yet: run `sudo dps-station setup`",
                path.display()
            ),
        ),
        StationState::Invalid(e) => (false, format!("{e}")),
        StationState::Ready(c) => (true, format!("{} (station {})", path.display(), c.name)),
    };
    out.push(Check {
        what: "station file".into(),
        ok: file_ok,
        detail: file_detail,
    });

    let (profile_name, module, token_label, keyring) = match &state {
        StationState::Ready(c) => {
            let keyring = c
                .dps
                .values()
                .any(|t| matches!(t.connection_string, SecretSource::Keyring { .. }));
            match &c.keystore {
                KeyStoreConfig::Pkcs11 {
                    profile,
                    module,
                    token_label,
                    ..
                } => (
                    Some(profile.clone()),
                    module.clone(),
                    Some(token_label.clone()),
                    keyring,
                ),
                KeyStoreConfig::Software { .. } => (None, None, None, keyring),
            }
        }
        _ => (Some("softhsm2".to_owned()), None, None, false),
    };
    if let Some(name) = profile_name {
        let loaded = if name.ends_with(".toml") {
            HsmProfile::from_file(Path::new(&name))
        } else {
            HsmProfile::built_in(&name)
        };
        let (ok, detail) = match loaded.as_ref().map_err(|e| e.to_string()).and_then(|p| {
            p.resolve_module(module.as_deref())
                .map_err(|e| e.to_string())
        }) {
            Ok(m) => (true, m.display().to_string()),
            Err(e) if name == "softhsm2" => {
                (false, format!("{e} (Debian: `sudo apt install softhsm2`)"))
            }
            Err(e) => (false, e),
        };
        out.push(Check {
            what: format!("HSM module ({name})"),
            ok,
            detail,
        });
        if let (true, Some(label), Ok(profile)) = (ok, token_label, &loaded) {
            out.push(token_check(profile, module.as_deref(), &label));
        }
    }
    let udevadm = which("udevadm");
    out.push(Check {
        what: "udevadm (fixture slot names)".into(),
        ok: udevadm.is_some(),
        detail: udevadm
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "not found: `sudo apt install udev`".into()),
    });
    if keyring {
        let tool = which("secret-tool");
        out.push(Check {
            what: "secret-tool (DPS connection string in the keyring)".into(),
            ok: tool.is_some(),
            detail: tool
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "not found: `sudo apt install libsecret-tools`".into()),
        });
    }
    let m = access::membership();
    let (ok, detail) = match &m {
        Membership::Root => (true, "root".to_owned()),
        Membership::Member => (
            true,
            format!("in the `{}` group", super::udev::STATION_GROUP),
        ),
        Membership::NoGroup => (
            false,
            format!(
                "no `{}` group on this machine: install the dps-station package",
                super::udev::STATION_GROUP
            ),
        ),
        other => (false, access::group_hint(other).unwrap_or_default()),
    };
    out.push(Check {
        what: "operator access".into(),
        ok,
        detail,
    });
    out
}

/// Whether the module shows an initialised token with the station's label (no PIN needed).
fn token_check(profile: &HsmProfile, module: Option<&Path>, label: &str) -> Check {
    let what = format!("HSM token `{label}`");
    match crate::keystore::pkcs11::list_tokens(profile, module) {
        Ok(tokens) if tokens.iter().any(|t| t.label == label) => Check {
            what,
            ok: true,
            detail: format!("on {}", profile.display_name),
        },
        Ok(tokens) => Check {
            what,
            ok: false,
            detail: format!(
                "not on {} (tokens there: {}); plug the HSM in, or initialise the token and its CA (docs/hsm.md, `dps-station hsm init-ca`)",
                profile.display_name,
                if tokens.is_empty() {
                    "none".to_owned()
                } else {
                    tokens
                        .iter()
                        .map(|t| t.label.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            ),
        },
        Err(e) => Check {
            what,
            ok: false,
            detail: e.to_string(),
        },
    }
}

fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::station::setup::station_file::HsmChoice;

    fn values() -> StationValues {
        StationValues {
            name: Some("line-3".into()),
            ledger: Some("ledger.db".into()),
            reports: None,
            fixture: [("A1".to_owned(), PathBuf::from("/dev/dps-fixture/A1"))].into(),
            hsm: Some(HsmChoice {
                profile: "softhsm2".into(),
                token_label: "ca".into(),
            }),
            dps: None,
        }
    }

    #[test]
    fn the_state_goes_from_missing_to_unconfigured_to_ready() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("station.toml");
        assert!(matches!(station_state(&path), StationState::Missing));
        std::fs::write(
            &path,
            include_str!("../../../installer/debian/station.toml"),
        )
        .unwrap();
        assert!(matches!(station_state(&path), StationState::Unconfigured));
        let config = write_station(&path, &values(), true).unwrap().unwrap();
        assert_eq!(config.name, "line-3");
        assert_eq!(config.ledger, dir.path().join("ledger.db"));
        assert!(matches!(station_state(&path), StationState::Ready(_)));
        // The template was kept.
        let backup = std::fs::read_to_string(dir.path().join("station.toml.bak")).unwrap();
        assert!(backup.contains("Not configured yet"));
    }

    #[test]
    fn incomplete_answers_write_nothing_and_name_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("station.toml");
        let mut v = values();
        v.fixture.clear();
        let e = write_station(&path, &v, true).unwrap_err().to_string();
        assert!(
            e.contains("`fixture`")
                && e.contains(&path.display().to_string())
                && !e.contains(".new"),
            "{e}"
        );
        assert!(!path.exists());
        assert!(
            std::fs::read_dir(dir.path()).unwrap().next().is_none(),
            "a temp file was left"
        );
        // Without `complete` (fixture detect on a new station) the part given is written.
        let only_slots = StationValues {
            fixture: values().fixture,
            ..Default::default()
        };
        assert!(write_station(&path, &only_slots, false).unwrap().is_none());
        assert!(matches!(station_state(&path), StationState::Invalid(_)));
    }

    #[test]
    fn a_file_from_an_older_version_gets_a_message_naming_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("station.toml");
        std::fs::write(&path, "name = \"s\"\nledger = \"l.db\"\nserial_baud = 115200\n[fixture.slots]\nA1 = \"/dev/dps-fixture/A1\"\n[keystore]\nkind = \"software\"\ndir = \"k\"\n").unwrap();
        let StationState::Invalid(e) = station_state(&path) else {
            panic!("not invalid")
        };
        assert!(e.to_string().contains("serial_baud"), "{e}");
        let c = checks(&path);
        assert!(!c[0].ok && c[0].detail.contains("serial_baud"), "{c:?}");
    }

    #[test]
    fn the_steps_cover_every_first_run_decision() {
        let steps = first_run_steps(Path::new("/etc/dps-station/station.toml"));
        let whats: Vec<&str> = steps.iter().map(|s| s.what).collect();
        for need in ["station name", "HSM profile", "fixture slots", "DPS target"] {
            assert!(whats.iter().any(|w| w.contains(need)), "{need}: {whats:?}");
        }
    }
}
