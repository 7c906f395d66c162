//! `batch.toml` as an editable document for the batch editor: the file is kept as a `toml_edit`
//! document so that saving a form changes only the values the engineer changed and keeps every
//! comment, blank line and key order. Validation is the CLI's own ([`BatchConfig::from_toml`] on
//! the document's text), and a batch that already ran is checked with the engine's rule
//! ([`engine::ledger_disagreement`]). A file the form cannot show faithfully (unknown keys, a
//! value of another type, nested twin tables) is reported so the screen opens it read-only.

use std::io::Write;
use std::path::{Path, PathBuf};

use toml_edit::{Array, DocumentMut, Item, Table, TableLike, Value};

use super::config::{BatchConfig, ConfigError, Mode, StationConfig};
use super::engine::{self, EngineError};
use crate::identity::registration_id::IdUse;
use crate::identity::template::TemplateValues;
use crate::ledger::{Ledger, LedgerError};

/// The example batch file (every field, commented): what "new from template" starts from.
pub const TEMPLATE: &str = include_str!("../../docs/examples/batch.toml");

/// How a field is edited and written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    /// A string; empty removes an optional key.
    Text,
    /// One of the given words.
    Choice(&'static [&'static str]),
    /// An integer (text that is not one is written as a string, so the CLI names the type error).
    Integer,
    /// `true` / `false`.
    Bool,
    /// A list of strings, edited comma-separated.
    List,
    /// The first or the last serial of `serial_range` (index 0 or 1).
    Serial(usize),
    /// A table of plain values, edited as `key = value` lines.
    Table,
}

/// One field of the form: its dotted key in batch.toml and how it is edited.
#[derive(Debug, Clone, Copy)]
pub struct FieldSpec {
    /// Dotted key (`keys.ca_key`); for the serial range `serial_range` with [`FieldKind::Serial`].
    pub key: &'static str,
    /// How it is edited.
    pub kind: FieldKind,
}

const MODES: &[&str] = &[
    "x509-csr",
    "x509-group",
    "x509-inject",
    "symmetric-group",
    "symmetric-individual",
    "tpm",
];

const fn f(key: &'static str, kind: FieldKind) -> FieldSpec {
    FieldSpec { key, kind }
}

/// Every field of batch.toml, in the form's order (the order of the example file).
pub const FIELDS: &[FieldSpec] = &[
    f("name", FieldKind::Text),
    f("product", FieldKind::Text),
    f("model", FieldKind::Text),
    f("count", FieldKind::Integer),
    f("serial_range", FieldKind::Serial(0)),
    f("serial_range", FieldKind::Serial(1)),
    f("registration_id", FieldKind::Text),
    f("mode", FieldKind::Choice(MODES)),
    f("id_scope", FieldKind::Text),
    f("global_endpoint", FieldKind::Text),
    f("iot_hubs", FieldKind::List),
    f(
        "allocation_policy",
        FieldKind::Choice(&["", "hashed", "geoLatency", "static"]),
    ),
    f("certificate_validity_days", FieldKind::Integer),
    f("dps_target", FieldKind::Text),
    f(
        "enrollment",
        FieldKind::Choice(&["immediately", "batch-end", "offline"]),
    ),
    f("enrollment_group", FieldKind::Text),
    f("reprovision", FieldKind::Text),
    f("plaintext_cable", FieldKind::Bool),
    f("serial_from", FieldKind::Choice(&["", "device", "label"])),
    f("keys.ca_key", FieldKind::Text),
    f("keys.ca_chain", FieldKind::Text),
    f("keys.group_key", FieldKind::Text),
    f("keys.device_key_master", FieldKind::Text),
    f("esp32.partition_table", FieldKind::Text),
    f("esp32.flash_baud", FieldKind::Integer),
    f("esp32.burn_flash_encryption", FieldKind::Bool),
    f("esp32.confirm_burn", FieldKind::Text),
    f("manifest.require", FieldKind::Bool),
    f("initial_twin.tags", FieldKind::Table),
    f("initial_twin.desired", FieldKind::Table),
];

/// Why a batch file cannot be edited or saved.
#[derive(Debug, thiserror::Error)]
pub enum BatchDocError {
    /// Not TOML at all.
    #[error("{path}: not a TOML file the editor can read: {message}; fix it in a text editor")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// A twin table's text is not `key = value` lines.
    #[error("{key}: write one `key = value` per line ({message})")]
    TableText {
        /// The field.
        key: &'static str,
        /// The parser's message.
        message: String,
    },
    /// Reading or writing the file.
    #[error("cannot {what} {path}: {source}; check the folder and its permissions")]
    Io {
        /// read / write / replace.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// A batch file being edited: its document, the values the form shows, and what the form
/// cannot represent (then it must stay read-only).
#[derive(Debug, Clone)]
pub struct BatchDoc {
    path: PathBuf,
    doc: DocumentMut,
    loaded: Vec<String>,
    unrepresentable: Vec<String>,
}

impl BatchDoc {
    /// Reads `path`.
    pub fn open(path: &Path) -> Result<Self, BatchDocError> {
        let text = std::fs::read_to_string(path).map_err(|source| BatchDocError::Io {
            what: "read",
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_text(path, &text)
    }

    /// A document over `text` that will be saved as `path`.
    pub fn from_text(path: &Path, text: &str) -> Result<Self, BatchDocError> {
        let doc: DocumentMut =
            text.parse()
                .map_err(|e: toml_edit::TomlError| BatchDocError::Syntax {
                    path: path.to_path_buf(),
                    message: e.message().to_string(),
                })?;
        let mut unrepresentable = unknown_keys(&doc);
        let loaded = FIELDS
            .iter()
            .map(|spec| match read_field(&doc, spec) {
                Ok(v) => v,
                Err(why) => {
                    unrepresentable.push(why);
                    String::new()
                }
            })
            .collect();
        Ok(Self {
            path: path.to_path_buf(),
            doc,
            loaded,
            unrepresentable,
        })
    }

    /// Where it is saved.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Saves under another name (a new batch from a template).
    pub fn set_path(&mut self, path: PathBuf) {
        self.path = path;
    }

    /// The form's values, one per [`FIELDS`] entry.
    pub fn fields(&self) -> Vec<String> {
        self.loaded.clone()
    }

    /// Why the form cannot show this file faithfully (empty: it can be edited).
    pub fn unrepresentable(&self) -> &[String] {
        &self.unrepresentable
    }

    /// Puts the form's values into the document; only values that changed are touched, so the
    /// comments and layout around them stay.
    pub fn apply(&mut self, values: &[String]) -> Result<(), BatchDocError> {
        for (i, spec) in FIELDS.iter().enumerate() {
            let (Some(new), Some(old)) = (values.get(i), self.loaded.get(i)) else {
                continue;
            };
            if new == old {
                continue;
            }
            write_field(&mut self.doc, spec, new, values)?;
            self.loaded[i] = new.clone();
        }
        // Both serial fields write the one array: keep what was loaded in step.
        for (i, spec) in FIELDS.iter().enumerate() {
            if matches!(spec.kind, FieldKind::Serial(_)) {
                self.loaded[i] = read_field(&self.doc, spec).unwrap_or_default();
            }
        }
        Ok(())
    }

    /// The document as it would be saved.
    pub fn text(&self) -> String {
        self.doc.to_string()
    }

    /// The CLI's validation of the document as it stands (`run` loads the same text the same way).
    pub fn validate(&self, station: &StationConfig) -> Result<BatchConfig, ConfigError> {
        BatchConfig::from_toml(&self.path, &self.text(), station)
    }

    /// Writes the document to its path atomically (a temporary file in the same folder renamed
    /// over it), so a crash never leaves half a batch file.
    pub fn save(&self) -> Result<(), BatchDocError> {
        let io = |what, source| BatchDocError::Io {
            what,
            path: self.path.clone(),
            source,
        };
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "batch.toml".into());
        let tmp = dir.join(format!(".{name}.saving"));
        let write = || -> std::io::Result<()> {
            let mut file = std::fs::File::create(&tmp)?;
            file.write_all(self.text().as_bytes())?;
            file.sync_all()
        };
        if let Err(e) = write() {
            let _ = std::fs::remove_file(&tmp);
            return Err(io("write", e));
        }
        std::fs::rename(&tmp, &self.path).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            io("replace", e)
        })
    }
}

/// The engine's rule for a batch that already ran, answered from the ledger: `Some(message)`
/// (the engine's own error text) when `batch` changes what the ledger recorded for its name.
pub fn ledger_conflict(
    batch: &BatchConfig,
    ledger: &Ledger,
) -> Result<Option<String>, LedgerError> {
    Ok(ledger.find_batch(&batch.name)?.and_then(|existing| {
        engine::ledger_disagreement(&existing, batch).map(|what| {
            EngineError::BatchMismatch {
                name: batch.name.clone(),
                what,
            }
            .to_string()
        })
    }))
}

/// Registration IDs the batch's template makes for `serials` (the preview), or why not, as `run`
/// would make them (X.509 modes need an ID that is a valid certificate common name).
pub fn sample_ids(batch: &BatchConfig, serials: &[&str]) -> Vec<Result<String, String>> {
    serials
        .iter()
        .map(|serial| {
            batch
                .template
                .render(
                    &TemplateValues {
                        product: Some(&batch.product),
                        serial: Some(serial),
                        model: batch.model.as_deref().or(Some("model")),
                        hardware_id: Some("0011223344556677"),
                        device_suggestion: Some("device"),
                    },
                    if batch.mode.is_x509() {
                        IdUse::X509CommonName
                    } else {
                        IdUse::Any
                    },
                )
                .map(|id| id.to_string())
                .map_err(|e| e.to_string())
        })
        .collect()
}

/// Whether `mode` keeps secrets in the enrollment files an export writes.
pub fn mode_has_secrets(mode: Mode) -> bool {
    matches!(mode, Mode::SymmetricIndividual | Mode::SymmetricGroup)
}

fn split(key: &str) -> (Option<&str>, &str) {
    match key.split_once('.') {
        Some((t, k)) => (Some(t), k),
        None => (None, key),
    }
}

fn get<'a>(doc: &'a DocumentMut, key: &str) -> Option<&'a Item> {
    match split(key) {
        (Some(t), k) => doc.get(t)?.as_table_like()?.get(k),
        (None, k) => doc.get(k),
    }
}

const KNOWN_TOP: &[&str] = &[
    "name",
    "product",
    "model",
    "count",
    "serial_range",
    "registration_id",
    "mode",
    "id_scope",
    "global_endpoint",
    "iot_hubs",
    "allocation_policy",
    "certificate_validity_days",
    "dps_target",
    "enrollment_group",
    "enrollment",
    "reprovision",
    "plaintext_cable",
    "serial_from",
    "keys",
    "esp32",
    "manifest",
    "initial_twin",
];

fn unknown_keys(doc: &DocumentMut) -> Vec<String> {
    let mut out: Vec<String> = doc
        .iter()
        .filter(|(k, _)| !KNOWN_TOP.contains(k))
        .map(|(k, _)| format!("unknown key '{k}'"))
        .collect();
    for (table, known) in [
        (
            "keys",
            &["ca_key", "ca_chain", "group_key", "device_key_master"][..],
        ),
        (
            "esp32",
            &[
                "partition_table",
                "flash_baud",
                "burn_flash_encryption",
                "confirm_burn",
            ][..],
        ),
        ("manifest", &["require"][..]),
        ("initial_twin", &["tags", "desired"][..]),
    ] {
        match doc.get(table).map(|i| i.as_table_like()) {
            Some(Some(t)) => out.extend(
                t.iter()
                    .filter(|(k, _)| !known.contains(k))
                    .map(|(k, _)| format!("unknown key '{table}.{k}'")),
            ),
            Some(None) => out.push(format!("'{table}' is not a table")),
            None => {}
        }
    }
    out
}

fn read_field(doc: &DocumentMut, spec: &FieldSpec) -> Result<String, String> {
    let Some(item) = get(doc, spec.key) else {
        return Ok(String::new());
    };
    let wrong = |what: &str| format!("'{}' is not {what}", spec.key);
    match spec.kind {
        FieldKind::Text | FieldKind::Choice(_) => item
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| wrong("a text")),
        FieldKind::Integer => item
            .as_integer()
            .map(|n| n.to_string())
            .ok_or_else(|| wrong("a whole number")),
        FieldKind::Bool => item
            .as_bool()
            .map(|b| b.to_string())
            .ok_or_else(|| wrong("true or false")),
        FieldKind::List => {
            let a = item.as_array().ok_or_else(|| wrong("a list of texts"))?;
            a.iter()
                .map(|v| v.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .map(|v| v.join(", "))
                .ok_or_else(|| wrong("a list of texts"))
        }
        FieldKind::Serial(n) => item
            .as_array()
            .filter(|a| a.len() == 2)
            .and_then(|a| a.get(n))
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| wrong("two serials [\"first\", \"last\"]")),
        FieldKind::Table => {
            let t = item.as_table_like().ok_or_else(|| wrong("a table"))?;
            let mut lines = Vec::new();
            for (k, v) in t.iter() {
                let v = v
                    .as_value()
                    .ok_or_else(|| format!("'{}.{k}' is a nested table", spec.key))?;
                lines.push(format!("{k} = {}", v.to_string().trim()));
            }
            Ok(lines.join("\n"))
        }
    }
}

/// The table that holds `key` (created, as a `[table]`, when absent).
fn parent<'a>(doc: &'a mut DocumentMut, key: &str) -> Option<&'a mut dyn TableLike> {
    match split(key) {
        (Some(t), _) => {
            let item = doc.entry(t).or_insert_with(|| {
                let mut table = Table::new();
                table.set_implicit(t == "initial_twin");
                Item::Table(table)
            });
            item.as_table_like_mut()
        }
        (None, _) => Some(doc.as_table_mut() as &mut dyn TableLike),
    }
}

/// Replaces a value keeping the comment and spacing around the old one.
fn set_value(table: &mut dyn TableLike, key: &str, mut value: Value) {
    match table.get_mut(key) {
        Some(Item::Value(old)) => {
            *value.decor_mut() = old.decor().clone();
            *old = value;
        }
        _ => {
            table.insert(key, Item::Value(value));
        }
    }
}

fn write_field(
    doc: &mut DocumentMut,
    spec: &FieldSpec,
    new: &str,
    all: &[String],
) -> Result<(), BatchDocError> {
    let (_, leaf) = split(spec.key);
    let trimmed = new.trim();
    if let FieldKind::Table = spec.kind {
        return write_table(doc, spec, new);
    }
    if let FieldKind::Serial(_) = spec.kind {
        let pair: Vec<&str> = FIELDS
            .iter()
            .zip(all)
            .filter(|(s, _)| matches!(s.kind, FieldKind::Serial(_)))
            .map(|(_, v)| v.trim())
            .collect();
        let table = doc.as_table_mut();
        if pair.iter().all(|v| v.is_empty()) {
            table.remove(leaf);
        } else {
            set_value(table, leaf, Value::Array(pair.into_iter().collect()));
        }
        return Ok(());
    }
    // An empty field of a table the file does not have (`[esp32]` in a batch of another
    // family) leaves the file without that table rather than adding an empty one.
    if let (Some(t), true) = (split(spec.key).0, trimmed.is_empty())
        && !doc.contains_key(t)
    {
        return Ok(());
    }
    let Some(table) = parent(doc, spec.key) else {
        return Ok(());
    };
    if trimmed.is_empty() {
        table.remove(leaf);
        return Ok(());
    }
    let value = match spec.kind {
        FieldKind::Integer => trimmed
            .parse::<i64>()
            .map(Value::from)
            .unwrap_or_else(|_| Value::from(trimmed)),
        FieldKind::Bool => match trimmed {
            "true" => Value::from(true),
            "false" => Value::from(false),
            other => Value::from(other),
        },
        FieldKind::List => Value::Array(
            trimmed
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect::<Array>(),
        ),
        _ => Value::from(new),
    };
    set_value(table, leaf, value);
    Ok(())
}

fn write_table(doc: &mut DocumentMut, spec: &FieldSpec, text: &str) -> Result<(), BatchDocError> {
    let parsed: DocumentMut =
        text.parse()
            .map_err(|e: toml_edit::TomlError| BatchDocError::TableText {
                key: spec.key,
                message: e.message().trim().to_string(),
            })?;
    let (_, leaf) = split(spec.key);
    let Some(parent_table) = parent(doc, spec.key) else {
        return Ok(());
    };
    if parsed.is_empty() {
        parent_table.remove(leaf);
        return Ok(());
    }
    let target = parent_table
        .entry(leaf)
        .or_insert_with(|| Item::Table(Table::new()));
    let Some(target) = target.as_table_like_mut() else {
        return Ok(());
    };
    let stale: Vec<String> = target
        .iter()
        .filter(|(k, _)| !parsed.contains_key(k))
        .map(|(k, _)| k.to_string())
        .collect();
    for k in stale {
        target.remove(&k);
    }
    for (k, item) in parsed.iter() {
        let Some(v) = item.as_value() else {
            return Err(BatchDocError::TableText {
                key: spec.key,
                message: format!("'{k}' is a table; write it inline: {k} = {{ a = 1 }}"),
            });
        };
        let unchanged = target
            .get(k)
            .and_then(Item::as_value)
            .is_some_and(|old| old.to_string().trim() == v.to_string().trim());
        if !unchanged {
            let mut v = v.clone();
            v.decor_mut().clear();
            set_value(target, k, v);
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "batch_doc_tests.rs"]
mod tests;
