//! The `[gui]` and `[roles]` sections of station.toml: how the desk looks and who may do what.
//! Kept apart from the engine's config so that a station without a screen ignores them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// `[gui]`: layout, language, theme, sounds, where batch files are.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuiSection {
    /// Tiles per row, as the fixture is built (default: a square-ish grid).
    #[serde(default)]
    pub columns: Option<usize>,
    /// `en` or `ko`; default from the OS locale (`LANG`).
    #[serde(default)]
    pub language: Option<String>,
    /// `dark` or `light` (default dark: a line is often lit brightly and dark glares less).
    #[serde(default)]
    pub theme: Option<String>,
    /// Pass/fail sounds (default on).
    #[serde(default)]
    pub sounds: Option<bool>,
    /// The folder batch files are picked from (default `batches` beside station.toml).
    #[serde(default)]
    pub batches: Option<PathBuf>,
}

/// `[roles]`: who holds which role, badge numbers, and the role passwords' argon2 hashes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolesSection {
    /// Production engineers by name.
    #[serde(default)]
    pub engineers: Vec<String>,
    /// Security officers by name.
    #[serde(default)]
    pub officers: Vec<String>,
    /// Badge number → name, for sign-in by badge scan.
    #[serde(default)]
    pub badges: BTreeMap<String, String>,
    /// PHC string of the engineer password (set with `dps-station gui set-password engineer`).
    #[serde(default)]
    pub engineer_password: Option<String>,
    /// PHC string of the security officer password.
    #[serde(default)]
    pub officer_password: Option<String>,
}

/// The desk's settings, resolved against the station file's folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeskSettings {
    /// Tiles per row.
    pub columns: Option<usize>,
    /// Language code, if the file names one.
    pub language: Option<String>,
    /// Light theme instead of dark.
    pub light: bool,
    /// Sounds on.
    pub sounds: bool,
    /// Batch files folder.
    pub batches: PathBuf,
    /// Roles.
    pub roles: RolesSection,
}

impl DeskSettings {
    /// Resolves the sections read from `station_file`.
    pub fn resolve(station_file: &Path, gui: &GuiSection, roles: &RolesSection) -> Self {
        let base = station_file.parent().unwrap_or(Path::new("."));
        let batches = gui
            .batches
            .clone()
            .unwrap_or_else(|| PathBuf::from("batches"));
        Self {
            columns: gui.columns.filter(|c| (1..=32).contains(c)),
            language: gui.language.clone(),
            light: gui.theme.as_deref() == Some("light"),
            sounds: gui.sounds.unwrap_or(true),
            batches: if batches.is_absolute() {
                batches
            } else {
                base.join(batches)
            },
            roles: roles.clone(),
        }
    }

    /// Columns for `slots` tiles: the configured number, else the smallest square that holds them.
    pub fn columns_for(&self, slots: usize) -> usize {
        self.columns.unwrap_or_else(|| {
            let mut c = 1;
            while c * c < slots {
                c += 1;
            }
            c
        })
    }
}
