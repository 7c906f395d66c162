//! The batch editor: the batches folder on the left; on the right a form over every field of
//! batch.toml, checked as you type with the CLI's own validation (inline ▲ marks on the field it
//! names), registration IDs previewed for sample serials, a DPS connection test, and Save, which
//! changes only the edited values of the file (comments stay) and writes atomically. A file the
//! form cannot show faithfully opens read-only with the reason; a batch that already ran keeps
//! what the ledger recorded (the engine's rule).

use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, Sender};

use egui::{RichText, TextEdit};

use crate::gui::i18n::Messages;
use crate::gui::screen::{Desk, Screen, ScreenId};
use crate::station::batch_doc::{BatchDoc, FIELDS, FieldKind, TEMPLATE};
use crate::station::operator::{Role, StationHandle};

use super::batch_editor_worker::{self as work, Answer, Checked, DpsReport};

/// The batch editor's id.
pub const BATCH_EDITOR: ScreenId = "batch_editor";

struct Editing {
    doc: BatchDoc,
    values: Vec<String>,
    is_new: bool,
    generation: u64,
    checked_generation: u64,
    checking: bool,
    checked: Option<Checked>,
    apply_error: Option<(&'static str, String)>,
    /// Edited since opened or saved.
    unsaved: bool,
}

/// The screen's state.
pub struct BatchEditorScreen {
    tx: Sender<Answer>,
    rx: Receiver<Answer>,
    files: Option<Result<Vec<PathBuf>, String>>,
    listing: bool,
    editing: Option<Editing>,
    new_name: String,
    samples: String,
    saving: bool,
    dps: Option<Result<DpsReport, String>>,
    dps_testing: bool,
    status: Option<(bool, String)>,
    /// A file asked for while the open one has unsaved edits: opened once the engineer confirms.
    discard_for: Option<PathBuf>,
}

impl Default for BatchEditorScreen {
    fn default() -> Self {
        let (tx, rx) = mpsc::channel();
        Self {
            tx,
            rx,
            files: None,
            listing: false,
            editing: None,
            new_name: String::new(),
            samples: "SN000001, SN000123".into(),
            saving: false,
            dps: None,
            dps_testing: false,
            status: None,
            discard_for: None,
        }
    }
}

impl BatchEditorScreen {
    fn take(&mut self, ctx: &egui::Context, station: &StationHandle) {
        while let Ok(answer) = self.rx.try_recv() {
            match answer {
                Answer::Listed(files) => {
                    self.listing = false;
                    self.files = Some(files);
                }
                Answer::Opened(path, Ok(doc)) => {
                    self.edit(doc, false);
                    self.status = None;
                    tracing::info!(file = %path.display(), "batch file opened in the editor");
                }
                Answer::Opened(_, Err(e)) => self.status = Some((true, e)),
                Answer::Checked(generation, checked) => {
                    if let Some(ed) = &mut self.editing {
                        ed.checking = false;
                        if generation == ed.generation {
                            ed.checked_generation = generation;
                            ed.checked = Some(checked);
                        }
                    }
                }
                Answer::Saved(result) => {
                    self.saving = false;
                    match result {
                        Ok(path) => {
                            tracing::info!(file = %path.display(), "batch file saved");
                            if let Some(ed) = &mut self.editing {
                                ed.is_new = false;
                                ed.unsaved = false;
                            }
                            self.status = Some((false, path.display().to_string()));
                            self.files = None;
                        }
                        Err(e) => self.status = Some((true, e)),
                    }
                }
                Answer::Dps(report) => {
                    self.dps_testing = false;
                    self.dps = Some(report);
                }
            }
        }
        // Check the form once the last check is in (typing fast does not pile up threads).
        if let Some(ed) = &mut self.editing
            && !ed.checking
            && ed.checked_generation != ed.generation
            && ed.doc.unrepresentable().is_empty()
        {
            match ed.doc.apply(&ed.values) {
                Ok(()) => {
                    ed.apply_error = None;
                    ed.checking = true;
                    let samples = self.samples.split(',').map(str::to_string).collect();
                    work::check(
                        ctx,
                        &self.tx,
                        ed.generation,
                        ed.doc.clone(),
                        station.config().clone(),
                        samples,
                    );
                }
                Err(e) => {
                    let key = match &e {
                        crate::station::batch_doc::BatchDocError::TableText { key, .. } => *key,
                        _ => "",
                    };
                    ed.apply_error = Some((key, e.to_string()));
                    ed.checked_generation = ed.generation;
                    ed.checked = None;
                }
            }
        }
    }

    fn edit(&mut self, doc: BatchDoc, is_new: bool) {
        self.dps = None;
        self.editing = Some(Editing {
            values: doc.fields(),
            doc,
            is_new,
            generation: 1,
            checked_generation: 0,
            checking: false,
            checked: None,
            apply_error: None,
            unsaved: is_new,
        });
    }

    fn list_ui(&mut self, ui: &mut egui::Ui, desk: &Desk<'_>) {
        let tr = desk.tr;
        let dir = desk.station.config().desk.batches.clone();
        if self.files.is_none() && !self.listing {
            self.listing = true;
            work::list(ui.ctx(), &self.tx, dir.clone());
        }
        ui.label(RichText::new(tr.t("batchui.files")).strong());
        ui.label(RichText::new(dir.display().to_string()).color(desk.palette.weak));
        match &self.files {
            None => {
                ui.label(tr.t("batchui.working"));
            }
            Some(Err(e)) => {
                ui.colored_label(desk.palette.alarm, format!("▲ {e}"));
            }
            Some(Ok(files)) => {
                let mut chosen = None;
                for f in files {
                    let name = f
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    let current = self
                        .editing
                        .as_ref()
                        .is_some_and(|e| e.doc.path() == f.as_path());
                    if ui.selectable_label(current, name).clicked() {
                        chosen = Some(f.clone());
                    }
                }
                if let Some(f) = chosen {
                    if self.editing.as_ref().is_some_and(|e| e.unsaved) {
                        self.discard_for = Some(f);
                    } else {
                        work::open(ui.ctx(), &self.tx, f);
                    }
                }
                if let Some(f) = self.discard_for.clone() {
                    ui.colored_label(desk.palette.warn, format!("▲ {}", tr.t("batchui.unsaved")));
                    ui.horizontal(|ui| {
                        if ui.button(tr.t("batchui.discard")).clicked() {
                            self.discard_for = None;
                            work::open(ui.ctx(), &self.tx, f);
                        }
                        if ui.button(tr.t("batchui.keep_editing")).clicked() {
                            self.discard_for = None;
                        }
                    });
                }
            }
        }
        ui.separator();
        ui.label(tr.t("batchui.new_name"));
        let name_label = ui.label(tr.t("batchui.new_file")).id;
        ui.add(TextEdit::singleline(&mut self.new_name).hint_text("sensor-2026-12-03-a"))
            .labelled_by(name_label);
        if ui.button(tr.t("batchui.new")).clicked() {
            match work::new_path(&dir, &self.new_name) {
                Some(path) => match BatchDoc::from_text(&path, TEMPLATE) {
                    Ok(doc) => {
                        let mut doc = doc;
                        let mut values = doc.fields();
                        if let Some(i) = FIELDS.iter().position(|f| f.key == "name") {
                            values[i] = self.new_name.trim().to_string();
                        }
                        doc.set_path(path);
                        self.edit(doc, true);
                        if let Some(ed) = &mut self.editing {
                            ed.values = values;
                            ed.generation += 1;
                        }
                        self.status = None;
                    }
                    Err(e) => self.status = Some((true, e.to_string())),
                },
                None => self.status = Some((true, tr.t("batchui.need_name").to_string())),
            }
        }
    }

    fn form_ui(&mut self, ui: &mut egui::Ui, desk: &Desk<'_>) {
        let tr = desk.tr;
        let palette = desk.palette;
        let Some(ed) = &mut self.editing else {
            ui.label(tr.t("batchui.choose"));
            return;
        };
        let read_only = !ed.doc.unrepresentable().is_empty();
        if read_only {
            ui.colored_label(palette.warn, format!("▲ {}", tr.t("batchui.read_only")));
            for why in ed.doc.unrepresentable() {
                ui.label(format!("■ {why}"));
            }
            egui::ScrollArea::vertical()
                .id_salt("batch-text")
                .show(ui, |ui| {
                    ui.monospace(ed.doc.text());
                });
            return;
        }
        let checked = ed
            .checked
            .clone()
            .filter(|_| ed.checked_generation == ed.generation);
        let error_key = checked
            .as_ref()
            .and_then(|c| c.error.as_ref())
            .and_then(|(k, _)| k.clone());
        let mut changed = false;
        egui::Grid::new("batch-form")
            .num_columns(2)
            .spacing([16.0, 6.0])
            .show(ui, |ui| {
                for (i, spec) in FIELDS.iter().enumerate() {
                    let label_key = match spec.kind {
                        FieldKind::Serial(0) => "batchui.f.serial_first".to_string(),
                        FieldKind::Serial(_) => "batchui.f.serial_last".to_string(),
                        _ => format!("batchui.f.{}", spec.key),
                    };
                    let label = ui.label(tr.t(&label_key)).id;
                    ui.vertical(|ui| {
                        let value = &mut ed.values[i];
                        let response = match spec.kind {
                            FieldKind::Choice(choices) => {
                                let before = value.clone();
                                egui::ComboBox::from_id_salt(("batch-field", i))
                                    .selected_text(value.as_str())
                                    .show_ui(ui, |ui| {
                                        for c in choices {
                                            ui.selectable_value(value, c.to_string(), *c);
                                        }
                                    });
                                *value != before
                            }
                            FieldKind::Bool => {
                                let mut on = value == "true";
                                let r = ui.checkbox(&mut on, "").labelled_by(label);
                                if r.changed() {
                                    *value = on.to_string();
                                }
                                r.changed()
                            }
                            FieldKind::Table => ui
                                .add(
                                    TextEdit::multiline(value)
                                        .desired_rows(2)
                                        .desired_width(420.0)
                                        .code_editor(),
                                )
                                .labelled_by(label)
                                .changed(),
                            _ => ui
                                .add(TextEdit::singleline(value).desired_width(420.0))
                                .labelled_by(label)
                                .changed(),
                        };
                        changed |= response;
                        let top = spec.key.split('.').next().unwrap_or(spec.key);
                        let named = error_key.as_deref().is_some_and(|k| {
                            k == spec.key
                                || (k == "keys" && top == "keys")
                                || (k == "serial_range" && spec.kind == FieldKind::Serial(0))
                        });
                        if named
                            && let Some((_, message)) =
                                checked.as_ref().and_then(|c| c.error.as_ref())
                        {
                            ui.colored_label(palette.alarm, format!("▲ {message}"));
                        }
                        if let Some((key, message)) = &ed.apply_error
                            && *key == spec.key
                        {
                            ui.colored_label(palette.alarm, format!("▲ {message}"));
                        }
                    });
                    ui.end_row();
                }
            });
        if changed {
            ed.generation += 1;
            ed.unsaved = true;
        }
    }

    fn check_ui(&mut self, ui: &mut egui::Ui, desk: &Desk<'_>) {
        let tr = desk.tr;
        let palette = desk.palette;
        let Some(ed) = &self.editing else {
            return;
        };
        if !ed.doc.unrepresentable().is_empty() {
            return;
        }
        let current = ed.checked_generation == ed.generation && ed.apply_error.is_none();
        let checked = ed.checked.as_ref().filter(|_| current);
        let mut can_save = false;
        match checked {
            None if ed.apply_error.is_some() => {
                ui.colored_label(palette.alarm, format!("▲ {}", tr.t("batchui.invalid")));
            }
            None => {
                ui.label(tr.t("batchui.checking"));
            }
            Some(c) => {
                if let Some((key, message)) = &c.error {
                    ui.colored_label(palette.alarm, format!("▲ {}", tr.t("batchui.invalid")));
                    if key.is_none() {
                        ui.colored_label(palette.alarm, format!("▲ {message}"));
                    }
                } else {
                    ui.label(format!("■ {}", tr.t("batchui.valid")));
                    can_save = true;
                }
                if c.ran {
                    ui.label(tr.t("batchui.ran"));
                }
                if let Some(conflict) = &c.ledger_conflict {
                    ui.colored_label(palette.alarm, format!("▲ {conflict}"));
                    can_save = false;
                }
                if let Some(problem) = &c.ledger_problem {
                    ui.colored_label(palette.alarm, format!("▲ {problem}"));
                    can_save = false;
                }
                if !c.samples.is_empty() {
                    ui.label(RichText::new(tr.t("batchui.preview")).strong());
                    for (serial, id) in &c.samples {
                        match id {
                            Ok(id) => ui.monospace(format!("{serial}  →  {id}")),
                            Err(e) => ui.colored_label(palette.alarm, format!("▲ {serial}: {e}")),
                        };
                    }
                }
            }
        }
        ui.horizontal(|ui| {
            let samples_label = ui.label(tr.t("batchui.samples")).id;
            if ui
                .add(TextEdit::singleline(&mut self.samples).desired_width(260.0))
                .labelled_by(samples_label)
                .changed()
                && let Some(ed) = &mut self.editing
            {
                ed.generation += 1;
            }
        });
        ui.horizontal(|ui| {
            let save = ui.add_enabled(
                can_save && !self.saving,
                egui::Button::new(tr.t("batchui.save")),
            );
            if save.clicked() {
                match desk.station.require(Role::Engineer) {
                    Ok(()) => {
                        if let Some(ed) = &self.editing {
                            self.saving = true;
                            work::save(ui.ctx(), &self.tx, ed.doc.clone(), ed.is_new);
                        }
                    }
                    Err(e) => self.status = Some((true, e.to_string())),
                }
            }
            let test = ui.add_enabled(
                !self.dps_testing,
                egui::Button::new(tr.t("batchui.test_dps")),
            );
            if test.clicked()
                && let Some(ed) = &self.editing
                && let Some(i) = FIELDS.iter().position(|f| f.key == "dps_target")
            {
                self.dps_testing = true;
                self.dps = None;
                work::test_dps(
                    ui.ctx(),
                    &self.tx,
                    desk.station.config().clone(),
                    ed.values[i].trim().to_string(),
                );
            }
        });
        self.dps_ui(ui, tr, desk);
    }

    fn dps_ui(&self, ui: &mut egui::Ui, tr: &Messages, desk: &Desk<'_>) {
        if self.dps_testing {
            ui.label(tr.t("batchui.dps_testing"));
        }
        match &self.dps {
            None => {}
            Some(Err(e)) => {
                ui.colored_label(
                    desk.palette.alarm,
                    format!("▲ {}: {e}", tr.t("batchui.dps_unreachable")),
                );
            }
            Some(Ok(r)) => {
                ui.label(tr.f("batchui.dps_ok", &[("target", &r.target)]));
                ui.label(RichText::new(tr.t("batchui.dps_what")).color(desk.palette.weak));
                for (id, status, hubs) in &r.groups {
                    ui.monospace(format!("{id}  ({status})  {}", hubs.join(", ")));
                }
                if r.groups.is_empty() {
                    ui.label(tr.t("batchui.dps_no_groups"));
                }
                ui.label(tr.f("batchui.dps_hubs", &[("hubs", &r.hubs.join(", "))]));
            }
        }
    }
}

impl Screen for BatchEditorScreen {
    fn id(&self) -> ScreenId {
        BATCH_EDITOR
    }

    fn title_key(&self) -> &'static str {
        "batchui.title"
    }

    fn min_role(&self) -> Role {
        Role::Engineer
    }

    fn logic(&mut self, ctx: &egui::Context, station: &StationHandle, _tr: &Messages) {
        self.take(ctx, station);
    }

    fn ui(&mut self, ui: &mut egui::Ui, desk: &Desk<'_>) {
        let tr = desk.tr;
        ui.heading(tr.t("batchui.title"));
        if let Some((error, text)) = &self.status {
            if *error {
                ui.colored_label(desk.palette.alarm, format!("▲ {text}"));
            } else {
                ui.label(tr.f("batchui.saved", &[("path", text)]));
            }
        }
        ui.horizontal_top(|ui| {
            ui.allocate_ui(egui::vec2(240.0, ui.available_height()), |ui| {
                ui.vertical(|ui| {
                    egui::ScrollArea::vertical()
                        .id_salt("batch-files")
                        .show(ui, |ui| self.list_ui(ui, desk));
                });
            });
            ui.separator();
            egui::ScrollArea::vertical()
                .id_salt("batch-form-scroll")
                .show(ui, |ui| {
                    ui.vertical(|ui| {
                        // The verdict, the preview and Save first: seen without scrolling.
                        if let Some(ed) = &self.editing {
                            ui.heading(ed.doc.path().display().to_string());
                        }
                        self.check_ui(ui, desk);
                        ui.separator();
                        self.form_ui(ui, desk);
                    });
                });
        });
    }
}
