//! The first-run screen: what opens instead of the desk when the station file is missing or is
//! still the package's commented template. It asks what `dps-station setup` asks (station name,
//! ledger, HSM profile and token, fixture slots, DPS target), writes the file with the same
//! library call ([`first_run::write_station`]), and then becomes the desk over the new file in
//! the same window (winit cannot open a second event loop in one process).

use std::path::{Path, PathBuf};

use egui::RichText;

use crate::keystore::profile::HsmProfile;
use crate::station::config::{SecretSource, StationConfig};
use crate::station::operator::{FixtureProvider, StationHandle};
use crate::station::setup::first_run::{self, SetupError};
use crate::station::setup::station_file::{DpsChoice, HsmChoice, StationValues};

use super::app::{DeskApp, DeskOptions};
use super::i18n::{Language, Messages};
use super::{GuiError, has_display, icon, theme};

/// Where the DPS connection string comes from (never the string itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DpsSource {
    /// An environment variable's name.
    Env,
    /// A file readable by its owner only.
    File,
}

/// One HSM profile as the form lists it.
#[derive(Debug, Clone)]
struct ProfileRow {
    name: String,
    display: String,
    installed: bool,
}

/// The form's answers, as typed.
#[derive(Debug, Clone)]
pub struct FirstRunForm {
    /// The station file to write.
    pub path: PathBuf,
    /// Station name.
    pub name: String,
    /// Ledger file.
    pub ledger: String,
    /// HSM profile name.
    pub profile: String,
    /// Token label.
    pub token_label: String,
    /// Fixture slots: name, port.
    pub slots: Vec<(String, String)>,
    /// DPS target name.
    pub dps_name: String,
    /// Where its connection string comes from.
    pub dps_source: DpsSource,
    /// The variable's name or the file's path.
    pub dps_value: String,
}

/// What the last "Write" did.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The answers are incomplete or refused; nothing was written.
    Refused(String),
    /// Written, but the station is not complete yet (no slots): what to do next.
    Partial(String),
    /// The file could not be written here (e.g. /etc without root): the command that can.
    NoPermission {
        /// The error.
        message: String,
        /// The `sudo dps-station setup ...` command with these answers.
        command: String,
    },
}

impl FirstRunForm {
    /// A form for `path`, with the CLI's defaults.
    pub fn new(path: &Path) -> Self {
        Self {
            path: path.to_owned(),
            name: String::new(),
            ledger: "/var/lib/dps-station/ledger.db".into(),
            profile: "softhsm2".into(),
            token_label: "factory-ca".into(),
            slots: Vec::new(),
            dps_name: "production".into(),
            dps_source: DpsSource::Env,
            dps_value: "DPS_PRODUCTION_CONNECTION_STRING".into(),
        }
    }

    /// The answers as the library takes them, or the message key of the first empty field.
    pub fn values(&self) -> Result<StationValues, &'static str> {
        let need = |s: &str, key: &'static str| {
            if s.trim().is_empty() {
                Err(key)
            } else {
                Ok(s.trim().to_owned())
            }
        };
        let name = need(&self.name, "first_run.need_name")?;
        let ledger = need(&self.ledger, "first_run.need_ledger")?;
        let token_label = need(&self.token_label, "first_run.need_token")?;
        let dps_name = need(&self.dps_name, "first_run.need_dps")?;
        let dps_value = need(&self.dps_value, "first_run.need_dps")?;
        let mut fixture = std::collections::BTreeMap::new();
        for (slot, port) in &self.slots {
            let (slot, port) = (slot.trim(), port.trim());
            if slot.is_empty() && port.is_empty() {
                continue;
            }
            if slot.is_empty() || port.is_empty() {
                return Err("first_run.need_slot");
            }
            fixture.insert(slot.to_owned(), PathBuf::from(port));
        }
        Ok(StationValues {
            name: Some(name),
            ledger: Some(PathBuf::from(ledger)),
            reports: None,
            fixture,
            hsm: Some(HsmChoice {
                profile: self.profile.clone(),
                token_label,
            }),
            dps: Some(DpsChoice {
                name: dps_name,
                connection_string: match self.dps_source {
                    DpsSource::Env => SecretSource::Env(dps_value),
                    DpsSource::File => SecretSource::File(PathBuf::from(dps_value)),
                },
            }),
        })
    }

    /// The `dps-station setup` command that writes these answers where this user cannot.
    pub fn sudo_command(&self, values: &StationValues) -> String {
        let q = |s: &str| {
            if !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:".contains(c))
            {
                s.to_owned()
            } else {
                format!("'{}'", s.replace('\'', r"'\''"))
            }
        };
        let mut cmd = format!(
            "sudo dps-station setup --config {}",
            q(&self.path.to_string_lossy())
        );
        if let Some(n) = &values.name {
            cmd += &format!(" --name {}", q(n));
        }
        if let Some(l) = &values.ledger {
            cmd += &format!(" --ledger {}", q(&l.to_string_lossy()));
        }
        if let Some(h) = &values.hsm {
            cmd += &format!(
                " --hsm-profile {} --token-label {}",
                q(&h.profile),
                q(&h.token_label)
            );
        }
        for (slot, port) in &values.fixture {
            cmd += &format!(" --slot {}", q(&format!("{slot}={}", port.display())));
        }
        if let Some(d) = &values.dps {
            cmd += &format!(" --dps-target {}", q(&d.name));
            // `setup` takes only a variable's name; a file source is set with the file's key after.
            if let SecretSource::Env(var) = &d.connection_string {
                cmd += &format!(" --dps-connection-env {}", q(var));
            }
        }
        cmd
    }
}

/// The first-run window's content: the form until a complete station is written, then the desk.
pub struct FirstRunApp {
    form: FirstRunForm,
    profiles: Vec<ProfileRow>,
    outcome: Option<Outcome>,
    tr: Messages,
    options: DeskOptions,
    desk: Option<DeskApp>,
    styled: bool,
}

impl FirstRunApp {
    /// The first run for the station file at `path`; the desk opens with `options` once written.
    pub fn new(path: &Path, options: DeskOptions) -> Self {
        // The built-in profiles are compiled in; "installed" is one stat per module candidate.
        let profiles = HsmProfile::all_built_in()
            .map(|all| {
                all.into_iter()
                    .map(|p| ProfileRow {
                        installed: p.installed_module().is_some(),
                        name: p.name.clone(),
                        display: p.display_name.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let language = options.language.unwrap_or_else(|| Language::choose(None));
        Self {
            form: FirstRunForm::new(path),
            profiles,
            outcome: None,
            tr: Messages::new(language),
            options,
            desk: None,
            styled: false,
        }
    }

    /// The answers as typed (tests read them).
    pub fn form(&self) -> &FirstRunForm {
        &self.form
    }

    /// What the last "Write" said, while the form is shown.
    pub fn outcome(&self) -> Option<&Outcome> {
        self.outcome.as_ref()
    }

    /// The desk, once the station file is written and loads.
    pub fn desk(&self) -> Option<&DeskApp> {
        self.desk.as_ref()
    }

    /// The messages in the form's language.
    pub fn messages(&self) -> &Messages {
        &self.tr
    }

    /// Writes the answers (the one small file; on this thread) and opens the desk if it loads.
    fn write(&mut self, ctx: &egui::Context) {
        let values = match self.form.values() {
            Ok(v) => v,
            Err(key) => {
                self.outcome = Some(Outcome::Refused(self.tr.t(key).to_owned()));
                return;
            }
        };
        // Without slots the file cannot load yet: write what there is, and say how to add them.
        let complete = !values.fixture.is_empty();
        match first_run::write_station(&self.form.path, &values, complete) {
            Ok(Some(config)) => self.open_desk(ctx, config),
            Ok(None) => {
                let path = self.form.path.display().to_string();
                self.outcome = Some(Outcome::Partial(
                    self.tr.f("first_run.partial", &[("path", &path)]),
                ));
            }
            Err(SetupError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::PermissionDenied =>
            {
                self.outcome = Some(Outcome::NoPermission {
                    message: self.tr.f(
                        "first_run.no_permission",
                        &[("path", &self.form.path.display().to_string())],
                    ),
                    command: self.form.sudo_command(&values),
                });
            }
            Err(e) => self.outcome = Some(Outcome::Refused(e.to_string())),
        }
    }

    fn open_desk(&mut self, ctx: &egui::Context, config: StationConfig) {
        tracing::info!(file = %config.path.display(), "first run: station file written");
        ctx.send_viewport_cmd(egui::ViewportCommand::Title(format!(
            "dps-station — {}",
            config.name
        )));
        let mut options = self.options.clone();
        options.language = Some(self.tr.language());
        let handle = StationHandle::open(config, Box::new(FixtureProvider::default()));
        self.desk = Some(DeskApp::new(handle, options));
    }

    /// Styles once; runs the desk's logic once it is open.
    pub fn logic(&mut self, ctx: &egui::Context) {
        if let Some(desk) = &mut self.desk {
            desk.logic(ctx);
            return;
        }
        if !self.styled {
            theme::apply(ctx, false);
            theme::add_cjk_font(ctx);
            self.styled = true;
        }
    }

    /// Draws the form (or the desk).
    pub fn draw(&mut self, ui: &mut egui::Ui) {
        if let Some(desk) = &mut self.desk {
            desk.draw(ui);
            return;
        }
        let mut write = false;
        egui::Frame::central_panel(ui.style()).show(ui, |ui| {
            ui.set_min_size(ui.available_size());
            egui::ScrollArea::vertical().show(ui, |ui| {
                write = self.form_ui(ui);
            });
        });
        if write {
            let ctx = ui.ctx().clone();
            self.write(&ctx);
        }
    }

    fn form_ui(&mut self, ui: &mut egui::Ui) -> bool {
        let tr = &self.tr;
        let form = &mut self.form;
        let big = |s: &str| RichText::new(s).size(20.0);
        ui.heading(RichText::new(tr.t("first_run.title")).size(30.0).strong());
        ui.label(big(&tr.f(
            "first_run.intro",
            &[("path", &form.path.display().to_string())],
        )));
        ui.add_space(12.0);
        let field = |ui: &mut egui::Ui, label: &str, value: &mut String| {
            ui.horizontal(|ui| {
                let l = ui
                    .allocate_ui_with_layout(
                        egui::vec2(260.0, 44.0),
                        egui::Layout::left_to_right(egui::Align::Center),
                        |ui| {
                            ui.set_min_width(260.0);
                            ui.label(big(label))
                        },
                    )
                    .inner;
                ui.add(
                    egui::TextEdit::singleline(value)
                        .font(egui::TextStyle::Heading)
                        .desired_width(640.0),
                )
                .labelled_by(l.id);
            });
        };
        field(ui, tr.t("first_run.name"), &mut form.name);
        field(ui, tr.t("first_run.ledger"), &mut form.ledger);

        ui.add_space(8.0);
        ui.label(big(tr.t("first_run.profile")).strong());
        for p in &self.profiles {
            let mark = if p.installed {
                tr.t("first_run.installed")
            } else {
                tr.t("first_run.not_installed")
            };
            ui.radio_value(
                &mut form.profile,
                p.name.clone(),
                big(&format!("{} — {} ({mark})", p.name, p.display)),
            );
        }
        field(ui, tr.t("first_run.token"), &mut form.token_label);

        ui.add_space(8.0);
        ui.label(big(tr.t("first_run.slots")).strong());
        ui.label(tr.t("first_run.slots_hint"));
        let mut remove = None;
        for (i, (slot, port)) in form.slots.iter_mut().enumerate() {
            ui.horizontal(|ui| {
                ui.add(
                    egui::TextEdit::singleline(slot)
                        .font(egui::TextStyle::Heading)
                        .hint_text(tr.t("first_run.slot_name"))
                        .desired_width(120.0),
                );
                ui.label(big("="));
                ui.add(
                    egui::TextEdit::singleline(port)
                        .font(egui::TextStyle::Heading)
                        .hint_text("/dev/dps-fixture/A1")
                        .desired_width(420.0),
                );
                if ui
                    .button(big(
                        &tr.f("first_run.remove_slot", &[("n", &(i + 1).to_string())])
                    ))
                    .clicked()
                {
                    remove = Some(i);
                }
            });
        }
        if let Some(i) = remove {
            form.slots.remove(i);
        }
        if ui.button(big(tr.t("first_run.add_slot"))).clicked() {
            let n = form.slots.len() + 1;
            form.slots
                .push((format!("A{n}"), format!("/dev/dps-fixture/A{n}")));
        }

        ui.add_space(8.0);
        ui.label(big(tr.t("first_run.dps")).strong());
        field(ui, tr.t("first_run.dps_name"), &mut form.dps_name);
        ui.horizontal(|ui| {
            ui.radio_value(
                &mut form.dps_source,
                DpsSource::Env,
                big(tr.t("first_run.dps_env")),
            );
            ui.radio_value(
                &mut form.dps_source,
                DpsSource::File,
                big(tr.t("first_run.dps_file")),
            );
        });
        let value_label = match form.dps_source {
            DpsSource::Env => tr.t("first_run.dps_env_name"),
            DpsSource::File => tr.t("first_run.dps_file_path"),
        };
        field(ui, value_label, &mut form.dps_value);

        ui.add_space(16.0);
        let write = ui
            .add_sized(
                [360.0, 56.0],
                egui::Button::new(big(tr.t("first_run.write")).strong()),
            )
            .clicked();
        match &self.outcome {
            None => {}
            Some(Outcome::Refused(m)) => {
                ui.label(big(&format!("▲ {m}")));
            }
            Some(Outcome::Partial(m)) => {
                ui.label(big(m));
            }
            Some(Outcome::NoPermission { message, command }) => {
                ui.label(big(&format!("▲ {message}")));
                let mut c = command.as_str();
                ui.add(
                    egui::TextEdit::multiline(&mut c)
                        .font(egui::TextStyle::Monospace)
                        .desired_width(f32::INFINITY),
                );
            }
        }
        write
    }
}

impl eframe::App for FirstRunApp {
    fn logic(&mut self, ctx: &egui::Context, _frame: &mut eframe::Frame) {
        FirstRunApp::logic(self, ctx);
    }

    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        self.draw(ui);
    }
}

/// Opens the first-run window for the station file at `path`; once a complete station is
/// written the same window becomes the desk. Returns when it closes.
pub fn run(path: &Path, options: DeskOptions) -> Result<(), GuiError> {
    if !has_display() {
        return Err(GuiError::NoDisplay);
    }
    let app = FirstRunApp::new(path, options);
    let native = eframe::NativeOptions {
        viewport: icon::with_icon(egui::ViewportBuilder::default())
            .with_title("dps-station — first run")
            .with_inner_size([1280.0, 800.0])
            .with_min_inner_size([800.0, 600.0]),
        renderer: eframe::Renderer::Glow,
        ..eframe::NativeOptions::default()
    };
    eframe::run_native(
        "dps-station",
        native,
        Box::new(move |_cc| Ok(Box::new(app))),
    )
    .map_err(|e| GuiError::Window(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sudo_command_carries_every_answer_quoted() {
        let mut form = FirstRunForm::new(Path::new("/etc/dps-station/station.toml"));
        form.name = "line 3".into();
        form.slots = vec![("A1".into(), "/dev/ttyUSB0".into())];
        let cmd = form.sudo_command(&form.values().unwrap());
        assert_eq!(
            cmd,
            "sudo dps-station setup --config /etc/dps-station/station.toml --name 'line 3' \
             --ledger /var/lib/dps-station/ledger.db --hsm-profile softhsm2 --token-label factory-ca \
             --slot A1=/dev/ttyUSB0 --dps-target production --dps-connection-env DPS_PRODUCTION_CONNECTION_STRING"
        );
    }

    #[test]
    fn empty_fields_are_named_and_half_slots_refused() {
        let mut form = FirstRunForm::new(Path::new("s.toml"));
        assert_eq!(form.values().unwrap_err(), "first_run.need_name");
        form.name = "s".into();
        form.slots = vec![("A1".into(), String::new())];
        assert_eq!(form.values().unwrap_err(), "first_run.need_slot");
        form.slots = vec![(String::new(), String::new())];
        assert!(form.values().unwrap().fixture.is_empty());
    }
}
