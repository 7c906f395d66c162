//! Writing `station.toml` for the first run and for `fixture detect`. A file the administrator has
//! already filled in is edited in place with `toml_edit`, so their comments and order stay; the
//! package's unconfigured template (every line a comment) is replaced by the same annotated text
//! with the chosen values filled in ([`annotated`]), so the explanations stay next to the values.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use toml_edit::{DocumentMut, Item, Table, TableLike, Value};

use crate::station::config::SecretSource;

/// The values a first run (or `fixture detect`) sets; `None`/empty ones are left as they are (in
/// the template: left as commented examples).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StationValues {
    /// The station's name (on every ledger row).
    pub name: Option<String>,
    /// The ledger file.
    pub ledger: Option<PathBuf>,
    /// Where batch reports go.
    pub reports: Option<PathBuf>,
    /// Slot → port; when non-empty it replaces `[fixture.slots]` as a whole.
    pub fixture: BTreeMap<String, PathBuf>,
    /// The HSM: profile name and token label.
    pub hsm: Option<HsmChoice>,
    /// The DPS target.
    pub dps: Option<DpsChoice>,
}

/// The key store of a station: a PKCS#11 token of an HSM profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HsmChoice {
    /// The HSM profile (`dps-station hsm profiles`).
    pub profile: String,
    /// The label of the token holding the CA and group keys.
    pub token_label: String,
}

/// A DPS instance and where its connection string comes from (never the string itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DpsChoice {
    /// The target's name in `station.toml` (`[dps.<name>]`).
    pub name: String,
    /// Environment variable or keyring entry.
    pub connection_string: SecretSource,
}

/// A `station.toml` text that cannot be edited.
#[derive(Debug, thiserror::Error)]
pub enum StationFileError {
    /// Not TOML at all.
    #[error("{path} is not valid TOML ({message}); fix it or move it away and run setup again")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's words.
        message: String,
    },
    /// A key of the wrong shape (e.g. `fixture = "x"`).
    #[error("{path}: `{key}` must be a table to hold {what}; fix it by hand or move the file away")]
    Shape {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
        /// What should go in it.
        what: String,
    },
    /// A DPS target name that cannot be a bare TOML key here.
    #[error(
        "DPS target name '{0}' must be letters, digits, '-' or '_' (it becomes [dps.{0}] in station.toml)"
    )]
    DpsName(String),
}

fn quoted(s: &str) -> String {
    Value::from(s).to_string().trim().to_owned()
}

fn path_text(p: &Path) -> String {
    quoted(&p.to_string_lossy())
}

/// Whether `text` sets no key at all (the package's template, or an empty file).
pub fn is_unconfigured(text: &str) -> bool {
    match text.parse::<DocumentMut>() {
        Ok(doc) => doc.as_table().is_empty(),
        Err(_) => false,
    }
}

fn bare_key(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// The annotated station.toml with `values` filled in and the rest as commented examples. With
/// default values it is the package's unconfigured template (`installer/debian/station.toml`).
pub fn annotated(values: &StationValues) -> Result<String, StationFileError> {
    let mut t = String::new();
    t.push_str("# /etc/dps-station/station.toml: what this station is.");
    t.push_str(if *values == StationValues::default() {
        " Not configured yet: every line is a comment.\n"
    } else {
        "\n"
    });
    t.push_str(
        "#\n\
         # Configure it interactively with `sudo dps-station setup` (it writes this file and keeps a copy of\n\
         # the old one), or uncomment and edit the lines below. `dps-station setup --check` says whether\n\
         # the file is complete. Secrets never go in this file: the HSM user PIN comes from\n\
         # DPS_STATION_HSM_PIN, an owner-only PIN file or a prompt; a DPS connection string from an\n\
         # environment variable, the OS keyring or an owner-only file (chmod 600).\n\
         #\n\
         # This is a configuration file of the Debian package (a conffile): upgrades never overwrite your\n\
         # changes; dpkg asks when a new version of the package ships a different template.\n\n",
    );
    let line = |t: &mut String, set: Option<String>, key: &str, example: &str, note: &str| {
        let body = match set {
            Some(v) => format!("{key} = {v}"),
            None => format!("# {key} = {example}"),
        };
        t.push_str(&format!("{body:<44} # {note}\n"));
    };
    line(
        &mut t,
        values.name.as_deref().map(quoted),
        "name",
        "\"line-3-station-a\"",
        "written on every ledger row",
    );
    t.push_str(&format!(
        "{:<44} # optional; default: the signed-in user\n",
        "# operator = \"night-shift\""
    ));
    line(
        &mut t,
        values.ledger.as_deref().map(path_text),
        "ledger",
        "\"/var/lib/dps-station/ledger.db\"",
        "group dps-station may write here",
    );
    line(
        &mut t,
        values.reports.as_deref().map(path_text),
        "reports",
        "\"/var/lib/dps-station/reports\"",
        "batch reports (Markdown + CSV)",
    );
    t.push('\n');
    if values.fixture.is_empty() {
        t.push_str(&format!(
            "{:<44} # slot -> port; `dps-station fixture detect` writes these\n",
            "# [fixture.slots]"
        ));
        t.push_str(&format!(
            "{:<44} # named by USB port (see `dps-station fixture udev-rules`)\n",
            "# A1 = \"/dev/dps-fixture/A1\""
        ));
        t.push_str("# A2 = \"/dev/dps-fixture/A2\"\n");
    } else {
        t.push_str(&format!(
            "{:<44} # slot -> port; `dps-station fixture detect` writes these\n",
            "[fixture.slots]"
        ));
        for (slot, port) in &values.fixture {
            t.push_str(&format!("{} = {}\n", quoted_key(slot), path_text(port)));
        }
    }
    t.push('\n');
    match &values.hsm {
        Some(h) => {
            t.push_str("[keystore]\n");
            t.push_str(&format!(
                "{:<44} # a PKCS#11 HSM (`dps-station hsm profiles` lists them)\n",
                "kind = \"pkcs11\""
            ));
            t.push_str(&format!("profile = {}\n", quoted(&h.profile)));
            t.push_str(&format!("token_label = {}\n", quoted(&h.token_label)));
            t.push_str(&optional_keystore_lines());
        }
        None => {
            t.push_str("# [keystore]\n");
            t.push_str(&format!(
                "{:<44} # a PKCS#11 HSM (`dps-station hsm profiles` lists them)\n",
                "# kind = \"pkcs11\""
            ));
            t.push_str("# profile = \"softhsm2\"\n# token_label = \"factory-ca\"\n");
            t.push_str(&optional_keystore_lines());
        }
    }
    t.push('\n');
    match &values.dps {
        Some(d) => {
            if !bare_key(&d.name) {
                return Err(StationFileError::DpsName(d.name.clone()));
            }
            t.push_str(&format!("[dps.{}]\n", d.name));
            t.push_str(&dps_lines(&d.connection_string));
        }
        None => {
            t.push_str("# [dps.production]\n");
            t.push_str("# connection_string_env = \"DPS_PRODUCTION_CONNECTION_STRING\"\n");
            t.push_str("# or: keyring_service = \"dps-station\", keyring_account = \"production\"   (secret-tool lookup)\n");
            t.push_str("# or: connection_string_file = \"/etc/dps-station/dps-production\"   (owner-only: chmod 600)\n");
        }
    }
    Ok(t)
}

/// The `[keystore]` keys a station may leave out, as commented examples.
fn optional_keystore_lines() -> String {
    format!(
        "{:<44} # optional; the profile's module list otherwise\n\
         {:<44} # optional; owner-only file holding the user PIN\n",
        "# module = \"/usr/lib/softhsm/libsofthsm2.so\"",
        "# pin_file = \"/etc/dps-station/hsm-pin\""
    )
}

fn quoted_key(key: &str) -> String {
    if bare_key(key) {
        key.to_owned()
    } else {
        quoted(key)
    }
}

fn dps_lines(source: &SecretSource) -> String {
    match source {
        SecretSource::Env(var) => format!(
            "connection_string_env = {}   # the variable holding the DPS connection string\n",
            quoted(var)
        ),
        SecretSource::Keyring { service, account } => format!(
            "keyring_service = {}   # secret-tool lookup service S account A\nkeyring_account = {}\n",
            quoted(service),
            quoted(account)
        ),
        SecretSource::File(file) => format!(
            "connection_string_file = {}   # owner-only (chmod 600) file holding the DPS connection string\n",
            quoted(&file.to_string_lossy())
        ),
    }
}

/// Sets `key` in `table`, keeping the comments around the old value and the key.
fn set(table: &mut dyn TableLike, key: &str, new: Value) {
    let mut new = new;
    if let Some(old) = table.get(key).and_then(Item::as_value) {
        *new.decor_mut() = old.decor().clone();
    }
    match table.get_mut(key) {
        Some(item) => *item = Item::Value(new),
        None => {
            table.insert(key, Item::Value(new));
        }
    }
}

fn subtable<'a>(
    parent: &'a mut dyn TableLike,
    key: &str,
    path: &Path,
    full_key: &str,
    what: &str,
) -> Result<&'a mut dyn TableLike, StationFileError> {
    if parent.get(key).is_none() {
        let mut t = Table::new();
        t.set_implicit(true);
        parent.insert(key, Item::Table(t));
    }
    parent
        .get_mut(key)
        .and_then(Item::as_table_like_mut)
        .ok_or_else(|| StationFileError::Shape {
            path: path.to_owned(),
            key: full_key.to_owned(),
            what: what.to_owned(),
        })
}

/// `text` (the current `station.toml`, at `path` for messages) with `values` set: the annotated
/// template when the file sets nothing yet, else the same file edited in place.
pub fn apply(text: &str, path: &Path, values: &StationValues) -> Result<String, StationFileError> {
    if is_unconfigured(text) {
        return annotated(values);
    }
    let mut doc = text
        .parse::<DocumentMut>()
        .map_err(|e| StationFileError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
    let root = doc.as_table_mut();
    if let Some(name) = &values.name {
        set(root, "name", Value::from(name.as_str()));
    }
    if let Some(ledger) = &values.ledger {
        set(
            root,
            "ledger",
            Value::from(ledger.to_string_lossy().as_ref()),
        );
    }
    if let Some(reports) = &values.reports {
        set(
            root,
            "reports",
            Value::from(reports.to_string_lossy().as_ref()),
        );
    }
    if !values.fixture.is_empty() {
        let fixture = subtable(root, "fixture", path, "fixture", "the slots")?;
        let slots = subtable(fixture, "slots", path, "fixture.slots", "slot = port lines")?;
        let old: Vec<String> = slots.iter().map(|(k, _)| k.to_owned()).collect();
        for k in old.iter().filter(|k| !values.fixture.contains_key(*k)) {
            slots.remove(k);
        }
        for (slot, port) in &values.fixture {
            set(slots, slot, Value::from(port.to_string_lossy().as_ref()));
        }
    }
    if let Some(h) = &values.hsm {
        let ks = subtable(root, "keystore", path, "keystore", "the HSM")?;
        // A software key store's directory means nothing to a PKCS#11 one.
        ks.remove("dir");
        set(ks, "kind", Value::from("pkcs11"));
        set(ks, "profile", Value::from(h.profile.as_str()));
        set(ks, "token_label", Value::from(h.token_label.as_str()));
    }
    if let Some(d) = &values.dps {
        if !bare_key(&d.name) {
            return Err(StationFileError::DpsName(d.name.clone()));
        }
        let dps = subtable(root, "dps", path, "dps", "DPS targets")?;
        let target = subtable(
            dps,
            &d.name,
            path,
            &format!("dps.{}", d.name),
            "a DPS target",
        )?;
        match &d.connection_string {
            SecretSource::Env(var) => {
                target.remove("keyring_service");
                target.remove("keyring_account");
                target.remove("connection_string_file");
                set(target, "connection_string_env", Value::from(var.as_str()));
            }
            SecretSource::Keyring { service, account } => {
                target.remove("connection_string_env");
                target.remove("connection_string_file");
                set(target, "keyring_service", Value::from(service.as_str()));
                set(target, "keyring_account", Value::from(account.as_str()));
            }
            SecretSource::File(file) => {
                target.remove("connection_string_env");
                target.remove("keyring_service");
                target.remove("keyring_account");
                set(
                    target,
                    "connection_string_file",
                    Value::from(file.to_string_lossy().as_ref()),
                );
            }
        }
    }
    Ok(doc.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full() -> StationValues {
        StationValues {
            name: Some("line 3 \"A\"".into()),
            ledger: Some("/var/lib/dps-station/ledger.db".into()),
            reports: None,
            fixture: [("A1".to_owned(), PathBuf::from("/dev/dps-fixture/A1"))].into(),
            hsm: Some(HsmChoice {
                profile: "softhsm2".into(),
                token_label: "factory-ca".into(),
            }),
            dps: Some(DpsChoice {
                name: "production".into(),
                connection_string: SecretSource::Env("DPS_CS".into()),
            }),
        }
    }

    #[test]
    fn the_package_template_is_the_unconfigured_rendering() {
        let shipped = include_str!("../../../installer/debian/station.toml");
        assert_eq!(annotated(&StationValues::default()).unwrap(), shipped);
        assert!(is_unconfigured(shipped));
        assert!(!is_unconfigured("name = \"x\"\n"));
    }

    #[test]
    fn a_first_run_fills_the_template_and_keeps_its_explanations() {
        let shipped = include_str!("../../../installer/debian/station.toml");
        let text = apply(shipped, Path::new("/etc/station.toml"), &full()).unwrap();
        let doc: toml::Table = toml::from_str(&text).unwrap();
        assert_eq!(doc["name"].as_str(), Some("line 3 \"A\""));
        assert_eq!(
            doc["fixture"]["slots"]["A1"].as_str(),
            Some("/dev/dps-fixture/A1")
        );
        assert_eq!(
            doc["dps"]["production"]["connection_string_env"].as_str(),
            Some("DPS_CS")
        );
        assert!(!doc.contains_key("reports"));
        assert!(
            text.contains("# reports = \"/var/lib/dps-station/reports\""),
            "{text}"
        );
        assert!(text.contains("written on every ledger row"), "{text}");
        assert!(!text.contains("Not configured yet"), "{text}");
    }

    #[test]
    fn an_edited_file_keeps_its_comments_and_other_keys() {
        let mine = "# our line 3 station\nname = \"old\"   # keep me\noperator = \"night\"\nledger = \"l.db\"\n\n[fixture.slots]\n# the left rail\nA1 = \"/dev/serial/by-id/x\"\nZ9 = \"/dev/serial/by-id/z\"\n\n[keystore]\nkind = \"software\"\ndir = \"keys\"\n";
        let mut v = full();
        v.dps = Some(DpsChoice {
            name: "staging".into(),
            connection_string: SecretSource::Keyring {
                service: "dps-station".into(),
                account: "staging".into(),
            },
        });
        let text = apply(mine, Path::new("s.toml"), &v).unwrap();
        assert!(text.starts_with("# our line 3 station\n"), "{text}");
        assert!(text.contains("   # keep me\noperator"), "{text}");
        assert!(text.contains("operator = \"night\""), "{text}");
        assert!(
            text.contains("# the left rail\nA1 = \"/dev/dps-fixture/A1\""),
            "{text}"
        );
        assert!(!text.contains("Z9"), "{text}");
        let doc: toml::Table = toml::from_str(&text).unwrap();
        assert_eq!(doc["name"].as_str(), Some("line 3 \"A\""));
        assert_eq!(doc["keystore"]["kind"].as_str(), Some("pkcs11"));
        assert!(doc["keystore"].get("dir").is_none());
        assert_eq!(
            doc["dps"]["staging"]["keyring_account"].as_str(),
            Some("staging")
        );
    }

    #[test]
    fn only_the_slots_change_when_detect_writes_them() {
        let mine = "name = \"s\"\nfixture = { slots = { A1 = \"/dev/serial/by-id/x\" } }\n";
        let v = StationValues {
            fixture: [
                ("1".to_owned(), PathBuf::from("/dev/dps-fixture/1")),
                ("2".to_owned(), PathBuf::from("/dev/dps-fixture/2")),
            ]
            .into(),
            ..Default::default()
        };
        let text = apply(mine, Path::new("s.toml"), &v).unwrap();
        let doc: toml::Table = toml::from_str(&text).unwrap();
        assert_eq!(doc["name"].as_str(), Some("s"));
        assert_eq!(
            doc["fixture"]["slots"]["2"].as_str(),
            Some("/dev/dps-fixture/2")
        );
        assert!(doc["fixture"]["slots"].get("A1").is_none());
        // A file whose `fixture` is not a table is named, not clobbered.
        let e = apply("fixture = 3\n", Path::new("s.toml"), &v).unwrap_err();
        assert!(e.to_string().contains("`fixture`"), "{e}");
        let e = apply("name = \n", Path::new("s.toml"), &v).unwrap_err();
        assert!(e.to_string().contains("s.toml"), "{e}");
    }
}
