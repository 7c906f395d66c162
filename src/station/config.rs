//! `station.toml` (what this station is: name, ledger, fixture, key store, DPS targets) and, in
//! [`batch`], `batch.toml` (what to make now). Both are parsed with unknown keys refused, then
//! validated once into typed configs, so nothing downstream re-checks a path, a URI or a template.
//!
//! Secrets never live in these files: the HSM PIN comes from `DPS_STATION_HSM_PIN`, a DPS
//! connection string from an environment variable or the OS keyring (`secret-tool`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

mod batch;
pub mod central;
pub mod officer;

pub use batch::{BatchConfig, BatchSize, EnrollTiming, KeyRef, Mode, ReprovisionRefused};

use crate::device::FixtureMap;
use crate::secret::SecretString;

/// The environment variable the HSM user PIN is read from.
pub const HSM_PIN_ENV: &str = "DPS_STATION_HSM_PIN";

/// A config file that cannot be used; every variant names the file and what to change.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// TOML syntax, a wrong type, or an unknown key (serde names the key).
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's words, naming the key and line.
        message: String,
    },
    /// A value that parses but cannot be used.
    #[error("{path}: `{key}`: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
        /// What is wrong and what to do.
        message: String,
    },
    /// A secret that is not where the config says it is.
    #[error("{what} is not available: {message}")]
    Secret {
        /// Which secret (never its value).
        what: String,
        /// What to do.
        message: String,
    },
}

fn invalid(path: &Path, key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        path: path.to_path_buf(),
        key: key.to_string(),
        message: message.into(),
    }
}

fn read_toml<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

fn resolve(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

// ---- station.toml ---------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStation {
    name: String,
    #[serde(default)]
    operator: Option<String>,
    ledger: PathBuf,
    #[serde(default)]
    reports: Option<PathBuf>,
    fixture: FixtureMap,
    keystore: RawKeyStore,
    #[serde(default)]
    dps: BTreeMap<String, RawDpsTarget>,
    #[serde(default)]
    gui: super::operator::settings::GuiSection,
    #[serde(default)]
    roles: super::operator::settings::RolesSection,
    #[serde(default)]
    officer: officer::OfficerSection,
    #[serde(default)]
    central: Option<central::CentralSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, tag = "kind", rename_all = "kebab-case")]
enum RawKeyStore {
    Pkcs11 {
        profile: String,
        token_label: String,
        #[serde(default)]
        module: Option<PathBuf>,
        #[serde(default)]
        sessions: Option<usize>,
        #[serde(default)]
        pin_file: Option<PathBuf>,
    },
    Software {
        dir: PathBuf,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDpsTarget {
    #[serde(default)]
    connection_string_env: Option<String>,
    #[serde(default)]
    connection_string_file: Option<PathBuf>,
    #[serde(default)]
    keyring_service: Option<String>,
    #[serde(default)]
    keyring_account: Option<String>,
    #[serde(default)]
    endpoint: Option<String>,
    #[serde(default)]
    ca_file: Option<PathBuf>,
    #[serde(default)]
    operations_per_minute: Option<u32>,
}

/// Where the CA and group keys are.
#[derive(Debug, Clone)]
pub enum KeyStoreConfig {
    /// A PKCS#11 token; the PIN comes from `DPS_STATION_HSM_PIN_FILE`, [`HSM_PIN_ENV`],
    /// `pin_file` or a prompt on the terminal (see `keystore::pin::obtain_configured_pin`).
    Pkcs11 {
        /// The HSM profile name (built in) or a profile file.
        profile: String,
        /// The token's label.
        token_label: String,
        /// A module path overriding the profile's.
        module: Option<PathBuf>,
        /// Sessions to pool.
        sessions: Option<usize>,
        /// A file holding the user PIN (owner-only permissions, checked when it is read).
        pin_file: Option<PathBuf>,
    },
    /// Keys in files in a directory: for development and the demo only, never for production.
    Software {
        /// The directory.
        dir: PathBuf,
    },
}

/// Where a DPS connection string comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// An environment variable.
    Env(String),
    /// The OS keyring (libsecret, through `secret-tool lookup service S account A`).
    Keyring {
        /// Keyring service attribute.
        service: String,
        /// Keyring account attribute.
        account: String,
    },
    /// A file readable by its owner only (`connection_string_file`).
    File(PathBuf),
}

impl SecretSource {
    /// Fetches the secret now (at batch start, so it is never kept longer than the batch).
    pub fn fetch(&self, what: &str) -> Result<SecretString, ConfigError> {
        match self {
            SecretSource::Env(var) => match std::env::var(var) {
                Ok(v) if !v.trim().is_empty() => Ok(SecretString::new(v)),
                _ => Err(ConfigError::Secret {
                    what: what.to_string(),
                    message: format!("set the environment variable {var} to the connection string"),
                }),
            },
            SecretSource::File(path) => {
                super::secret_file::read_owner_only(path).map_err(|e| ConfigError::Secret {
                    what: what.to_string(),
                    message: e.to_string(),
                })
            }
            SecretSource::Keyring { service, account } => {
                let out = std::process::Command::new("secret-tool")
                    .args(["lookup", "service", service, "account", account])
                    .output()
                    .map_err(|e| ConfigError::Secret {
                        what: what.to_string(),
                        message: format!("cannot run secret-tool ({e}); install libsecret-tools or use an environment variable"),
                    })?;
                // secret-tool prints the secret bare; wipe its copy of it too.
                let stdout = zeroize::Zeroizing::new(out.stdout);
                let value = String::from_utf8_lossy(&stdout).trim().to_string();
                if !out.status.success() || value.is_empty() {
                    return Err(ConfigError::Secret {
                        what: what.to_string(),
                        message: format!(
                            "the keyring has no entry service={service} account={account}; store it with `secret-tool store --label dps service {service} account {account}`"
                        ),
                    });
                }
                Ok(SecretString::new(value))
            }
        }
    }
}

/// One DPS instance the station enrolls into.
#[derive(Debug, Clone)]
pub struct DpsTarget {
    /// Its name in `station.toml` (and in the ledger's enrollment queue).
    pub name: String,
    /// Where its connection string is.
    pub connection_string: SecretSource,
    /// Base URL override (an emulator).
    pub endpoint: Option<String>,
    /// A CA file to trust instead of the platform roots (an emulator).
    pub ca_file: Option<PathBuf>,
    /// The instance's operation quota.
    pub operations_per_minute: Option<u32>,
}

/// A validated `station.toml`.
#[derive(Debug, Clone)]
pub struct StationConfig {
    /// The file it came from.
    pub path: PathBuf,
    /// The station's name (ledger rows, audit log).
    pub name: String,
    /// Who operates it (default: `$USER`).
    pub operator: String,
    /// The ledger file.
    pub ledger: PathBuf,
    /// Where batch reports go.
    pub reports: PathBuf,
    /// Slots → ports.
    pub fixture: FixtureMap,
    /// The key store.
    pub keystore: KeyStoreConfig,
    /// DPS targets by name.
    pub dps: BTreeMap<String, DpsTarget>,
    /// The operator's desk: `[gui]` and `[roles]` (see `station::operator::settings`).
    pub desk: super::operator::settings::DeskSettings,
    /// The security officer's sessions: `[officer]` (see [`officer`]).
    pub officer: officer::OfficerSettings,
    /// The central ledger this station joined: `[central]` (see [`central`]); `None` alone.
    pub central: Option<central::CentralSettings>,
}

impl StationConfig {
    /// Reads and validates `station.toml`; relative paths are taken from the file's directory.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let raw: RawStation = read_toml(path)?;
        let base = path.parent().unwrap_or(Path::new("."));
        if raw.name.trim().is_empty() {
            return Err(invalid(
                path,
                "name",
                "give the station a name (it is written on every ledger row)",
            ));
        }
        raw.fixture
            .validate()
            .map_err(|e| invalid(path, "fixture", e.to_string()))?;
        if raw.fixture.slots.is_empty() {
            return Err(invalid(
                path,
                "fixture.slots",
                "name at least one slot: A1 = \"/dev/serial/by-id/...\"",
            ));
        }
        let mut fixture = raw.fixture;
        for p in fixture.slots.values_mut() {
            *p = resolve(base, p);
        }
        let keystore = match raw.keystore {
            RawKeyStore::Pkcs11 {
                profile,
                token_label,
                module,
                sessions,
                pin_file,
            } => {
                if token_label.trim().is_empty() {
                    return Err(invalid(
                        path,
                        "keystore.token_label",
                        "name the token that holds the batch keys",
                    ));
                }
                KeyStoreConfig::Pkcs11 {
                    profile,
                    token_label,
                    module: module.map(|m| resolve(base, &m)),
                    sessions,
                    pin_file: pin_file.map(|f| resolve(base, &f)),
                }
            }
            RawKeyStore::Software { dir } => KeyStoreConfig::Software {
                dir: resolve(base, &dir),
            },
        };
        let mut dps = BTreeMap::new();
        for (name, t) in raw.dps {
            let key = format!("dps.{name}");
            let connection_string = match (
                t.connection_string_env,
                t.connection_string_file,
                t.keyring_service,
                t.keyring_account,
            ) {
                (Some(env), None, None, None) => SecretSource::Env(env),
                (None, Some(file), None, None) => SecretSource::File(resolve(base, &file)),
                (None, None, Some(service), Some(account)) => {
                    SecretSource::Keyring { service, account }
                }
                _ => {
                    return Err(invalid(
                        path,
                        &key,
                        "give one of connection_string_env = \"VAR\", connection_string_file = \"FILE\" (owner-only) or keyring_service + keyring_account (the connection string itself never goes in station.toml)",
                    ));
                }
            };
            dps.insert(
                name.clone(),
                DpsTarget {
                    name,
                    connection_string,
                    endpoint: t.endpoint,
                    ca_file: t.ca_file.map(|c| resolve(base, &c)),
                    operations_per_minute: t.operations_per_minute,
                },
            );
        }
        let central = match &raw.central {
            Some(c) => Some(
                central::CentralSettings::resolve(c, &raw.name, base)
                    .map_err(|(key, message)| invalid(path, key, message))?,
            ),
            None => None,
        };
        let operator = raw
            .operator
            .filter(|o| !o.trim().is_empty())
            .or_else(|| std::env::var("USER").ok())
            .unwrap_or_else(|| "operator".into());
        Ok(Self {
            path: path.to_path_buf(),
            name: raw.name,
            operator,
            ledger: resolve(base, &raw.ledger),
            reports: resolve(
                base,
                &raw.reports.unwrap_or_else(|| PathBuf::from("reports")),
            ),
            fixture,
            keystore,
            dps,
            desk: super::operator::settings::DeskSettings::resolve(path, &raw.gui, &raw.roles),
            officer: officer::OfficerSettings::resolve(&raw.officer),
            central,
        })
    }
}

// ---- batch.toml -----------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    fn station(dir: &Path) -> StationConfig {
        let p = dir.join("station.toml");
        std::fs::write(
            &p,
            "name = \"s1\"\nledger = \"ledger.db\"\n[fixture.slots]\nA1 = \"/dev/serial/by-id/x\"\n[keystore]\nkind = \"software\"\ndir = \"keys\"\n[dps.main]\nconnection_string_env = \"DPS_CS\"\n",
        )
        .unwrap();
        StationConfig::load(&p).unwrap()
    }

    #[test]
    fn unknown_keys_are_named_with_their_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("station.toml");
        std::fs::write(&p, "name = \"s\"\nledgr = \"x\"\n").unwrap();
        let err = StationConfig::load(&p).unwrap_err().to_string();
        assert!(
            err.contains("ledgr") && err.contains("station.toml"),
            "{err}"
        );
        let s = station(dir.path());
        assert_eq!(s.ledger, dir.path().join("ledger.db"));
        let b = dir.path().join("batch.toml");
        let text = "name = \"b\"\nproduct = \"p\"\ncount = 2\nregistration_id = \"{product}-{serial}\"\nmode = \"x509-csr\"\nid_scope = \"0ne1\"\ndps_target = \"main\"\ncolour = 1\n[keys]\n";
        std::fs::write(&b, text).unwrap();
        let err = BatchConfig::load(&b, &s).unwrap_err().to_string();
        assert!(
            err.contains("colour") && err.contains("batch.toml"),
            "{err}"
        );
    }

    #[test]
    fn the_documented_examples_parse_and_serial_ranges_hold() {
        let dir = tempfile::tempdir().unwrap();
        let station_path = dir.path().join("station.toml");
        std::fs::write(
            &station_path,
            include_str!("../../docs/examples/station.toml"),
        )
        .unwrap();
        let station = StationConfig::load(&station_path).unwrap();
        assert_eq!(station.fixture.slots.len(), 2);
        assert_eq!(
            station.dps["production"].connection_string,
            SecretSource::Env("DPS_PRODUCTION_CONNECTION_STRING".into())
        );
        std::fs::write(
            dir.path().join("intermediate-and-root.pem"),
            "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let batch_text = include_str!("../../docs/examples/batch.toml");
        let batch =
            BatchConfig::from_toml(&dir.path().join("batch.toml"), batch_text, &station).unwrap();
        assert_eq!(
            (batch.mode, batch.target(), batch.timing),
            (Mode::X509Csr, Some(500), EnrollTiming::Immediately)
        );
        assert_eq!(
            batch.twin_desired.as_ref().unwrap()["telemetryInterval"],
            60
        );
        // The key label `hsm init-ca` gives the intermediate (its --intermediate-label default).
        assert!(
            batch
                .ca_key
                .as_ref()
                .is_some_and(|k| k.to_string().contains("object=intermediate-ca;")),
            "{:?}",
            batch.ca_key
        );
        let ranged =
            batch_text.replace("count = 500", "serial_range = [\"SN000100\", \"SN000599\"]");
        let ranged =
            BatchConfig::from_toml(&dir.path().join("batch.toml"), &ranged, &station).unwrap();
        assert!(ranged.accepts_serial("SN000100") && ranged.accepts_serial("SN000599"));
        assert!(!ranged.accepts_serial("SN000600") && !ranged.accepts_serial("SN00010"));
    }

    #[test]
    fn missing_keys_and_a_misplaced_regid_are_refused_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let s = station(dir.path());
        let base = "name = \"b\"\nproduct = \"p\"\ncount = 2\nregistration_id = \"{product}-{serial}\"\nid_scope = \"0ne1\"\ndps_target = \"main\"\n";
        let tpm = format!("{base}mode = \"tpm\"\n[keys]\n");
        let b = BatchConfig::from_toml(Path::new("b.toml"), &tpm, &s).unwrap();
        assert_eq!(b.mode, Mode::Tpm, "tpm needs no keys");
        let suggested = tpm.replace("{product}-{serial}", "{product}-{regid}");
        let b = BatchConfig::from_toml(Path::new("b.toml"), &suggested, &s).unwrap();
        assert_eq!(b.template.as_str(), "{product}-{regid}");
        let err = BatchConfig::from_toml(
            Path::new("b.toml"),
            &suggested.replace("\"tpm\"", "\"symmetric-individual\""),
            &s,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("{regid}") && err.contains("TPM"), "{err}");
        let csr = format!("{base}mode = \"x509-csr\"\n[keys]\n");
        let err = BatchConfig::from_toml(Path::new("b.toml"), &csr, &s)
            .unwrap_err()
            .to_string();
        assert!(err.contains("ca_key"), "{err}");
        let sym = format!(
            "{base}mode = \"symmetric-group\"\nenrollment_group = \"g\"\n[keys]\ngroup_key = \"file:g.key\"\n"
        );
        let b = BatchConfig::from_toml(Path::new("b.toml"), &sym, &s).unwrap();
        assert_eq!(b.group_key, Some(KeyRef::File("g.key".into())));
        let wrong_target = sym.replace("\"main\"", "\"other\"");
        let err = BatchConfig::from_toml(Path::new("b.toml"), &wrong_target, &s)
            .unwrap_err()
            .to_string();
        assert!(err.contains("other") && err.contains("main"), "{err}");
    }

    #[test]
    fn reprovisioning_is_chosen_with_a_reason_in_the_batch_file() {
        let dir = tempfile::tempdir().unwrap();
        let s = station(dir.path());
        let base = "name = \"b\"\nproduct = \"p\"\ncount = 2\nregistration_id = \"{product}-{serial}\"\nid_scope = \"0ne1\"\ndps_target = \"main\"\nmode = \"symmetric-individual\"\n";
        let keys = "[keys]\ndevice_key_master = \"file:m.secret\"\n";
        let plain =
            BatchConfig::from_toml(Path::new("b.toml"), &format!("{base}{keys}"), &s).unwrap();
        assert_eq!(plain.reprovision, None, "not chosen unless said");
        let chosen = format!("{base}reprovision = \" RMA 123 \"\n{keys}");
        let b = BatchConfig::from_toml(Path::new("b.toml"), &chosen, &s).unwrap();
        assert_eq!(b.reprovision.as_deref(), Some("RMA 123"));
        let empty = format!("{base}reprovision = \"\"\n{keys}");
        let err = BatchConfig::from_toml(Path::new("b.toml"), &empty, &s)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("reprovision") && err.contains("reason"),
            "{err}"
        );
    }

    #[test]
    fn group_modes_refuse_reprovisioning_saying_why() {
        let dir = tempfile::tempdir().unwrap();
        let s = station(dir.path());
        let base = "name = \"b\"\nproduct = \"p\"\ncount = 2\nregistration_id = \"{product}-{serial}\"\nid_scope = \"0ne1\"\ndps_target = \"main\"\nenrollment_group = \"g\"\nreprovision = \"RMA 1\"\n";
        let text =
            format!("{base}mode = \"symmetric-group\"\n[keys]\ngroup_key = \"file:g.key\"\n");
        let err = BatchConfig::from_toml(Path::new("b.toml"), &text, &s)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("reprovision")
                && err.contains("symmetric-group")
                && err.contains("revoked at DPS")
                && err.contains("individual-enrollment mode"),
            "{err}"
        );
        for mode in [Mode::SymmetricGroup, Mode::X509Group] {
            assert!(matches!(
                BatchConfig::reprovision_reason(mode, "RMA 1"),
                Err(ReprovisionRefused::GroupMode(m)) if m == mode
            ));
        }
        assert_eq!(
            BatchConfig::reprovision_reason(Mode::X509Csr, " RMA 1 ").unwrap(),
            "RMA 1"
        );
    }
}
