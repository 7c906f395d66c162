//! The engineer's view of the station itself: which ports the slots use, the key store, the DPS
//! targets, the ledger and report folders, the desk settings, and the way out of kiosk mode.
//! Read from station.toml once when the desk opens (an engineer edits the file, not the screen).

use egui::RichText;

use crate::station::config::{KeyStoreConfig, StationConfig};
use crate::station::operator::Role;

use super::screen::{Desk, Screen, ScreenId, UiCommand};

/// The station screen's id.
pub const STATION: ScreenId = "station";

/// What it shows, as text rows made once.
pub struct StationScreen {
    rows: Vec<(&'static str, String)>,
    slots: Vec<(String, String)>,
}

impl StationScreen {
    /// The screen for `config`.
    pub fn new(config: &StationConfig) -> Self {
        let keystore = match &config.keystore {
            KeyStoreConfig::Pkcs11 {
                profile,
                token_label,
                ..
            } => format!("PKCS#11 {profile}: {token_label}"),
            KeyStoreConfig::Software { dir } => format!("software {}", dir.display()),
        };
        let dps = config
            .dps
            .values()
            .map(|t| {
                format!(
                    "{} ({})",
                    t.name,
                    t.endpoint.as_deref().unwrap_or("connection string")
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        let rows = vec![
            ("station.name", config.name.clone()),
            ("station.file", config.path.display().to_string()),
            ("station.ledger", config.ledger.display().to_string()),
            ("station.reports", config.reports.display().to_string()),
            ("station.batches", config.desk.batches.display().to_string()),
            ("station.keystore", keystore),
            ("station.dps", if dps.is_empty() { "–".into() } else { dps }),
            ("station.engineers", config.desk.roles.engineers.join(", ")),
            ("station.officers", config.desk.roles.officers.join(", ")),
        ];
        let slots = config
            .fixture
            .slots
            .iter()
            .map(|(s, p)| (s.clone(), p.display().to_string()))
            .collect();
        Self { rows, slots }
    }
}

impl Screen for StationScreen {
    fn id(&self) -> ScreenId {
        STATION
    }

    fn title_key(&self) -> &'static str {
        "nav.station"
    }

    fn min_role(&self) -> Role {
        Role::Engineer
    }

    fn ui(&mut self, ui: &mut egui::Ui, desk: &Desk<'_>) {
        let tr = desk.tr;
        ui.heading(tr.t("nav.station"));
        egui::Grid::new("station-rows")
            .num_columns(2)
            .spacing([20.0, 8.0])
            .show(ui, |ui| {
                for (k, v) in &self.rows {
                    ui.label(RichText::new(tr.t(k)).color(desk.palette.weak));
                    ui.label(v);
                    ui.end_row();
                }
            });
        ui.separator();
        ui.label(RichText::new(tr.t("station.slots")).strong());
        egui::Grid::new("station-slots")
            .num_columns(2)
            .spacing([20.0, 4.0])
            .show(ui, |ui| {
                for (s, p) in &self.slots {
                    ui.label(s);
                    ui.monospace(p);
                    ui.end_row();
                }
            });
        ui.separator();
        if ui.button(tr.t("station.quit")).clicked() {
            desk.send(UiCommand::Quit);
        }
    }
}
