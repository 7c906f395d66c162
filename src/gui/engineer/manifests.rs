//! Manifests (engineer): a Trust&GO reel's signed manifest imported from the desk. The engineer
//! picks the manifest and the signer certificate, the DPS target and the enrollment (one per
//! device, or a group through a verified CA); the import runs on a worker with progress
//! (`station::manifest_now`, the `manifest import` path); a table then lists every entry as
//! imported or refused with the reason, and "Enroll now" sends what was queued through the desk's
//! enrollment path.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::Duration;

use egui::RichText;
use egui_extras::{Column, TableBuilder};

use crate::gui::i18n::Messages;
use crate::gui::screen::{Desk, Screen, ScreenId};
use crate::gui::widgets::file_pick::{FilePick, PickKind};
use crate::station::manifest_import::ManifestEnrollment;
use crate::station::manifest_now::{DeskImport, enroll_imported_now, import_now};
use crate::station::operator::{Role, StationHandle};

/// The manifests screen's id.
pub const MANIFESTS: ScreenId = "manifests";

const ROW_HEIGHT: f32 = 28.0;

/// The manifests screen.
pub struct ManifestsScreen {
    manifest: FilePick,
    signer: FilePick,
    target: String,
    group: bool,
    group_id: String,
    ca_name: String,
    /// Entries reached by the running import (its progress), while one runs.
    reading: Option<Arc<AtomicUsize>>,
    import_tx: Sender<Result<DeskImport, String>>,
    import_rx: Receiver<Result<DeskImport, String>>,
    /// The last import and the enrollment it queued, or why it did nothing.
    imported: Option<Result<(DeskImport, ManifestEnrollment), String>>,
    /// The enrollment chosen for the import that runs now.
    importing_with: Option<ManifestEnrollment>,
    enroll_tx: Sender<Result<String, String>>,
    enroll_rx: Receiver<Result<String, String>>,
    enrolling: bool,
    enrolled: Option<Result<String, String>>,
    /// A form problem found at the click.
    problem: Option<String>,
}

impl Default for ManifestsScreen {
    fn default() -> Self {
        Self::new()
    }
}

impl ManifestsScreen {
    /// An empty form.
    pub fn new() -> Self {
        let (import_tx, import_rx) = mpsc::channel();
        let (enroll_tx, enroll_rx) = mpsc::channel();
        Self {
            manifest: FilePick::new("manifest-file", PickKind::File(&["json"]))
                .labelled("manifests.file"),
            signer: FilePick::new(
                "manifest-signer",
                PickKind::File(&["crt", "pem", "cer", "der"]),
            )
            .labelled("manifests.signer"),
            target: String::new(),
            group: false,
            group_id: String::new(),
            ca_name: String::new(),
            reading: None,
            import_tx,
            import_rx,
            imported: None,
            importing_with: None,
            enroll_tx,
            enroll_rx,
            enrolling: false,
            enrolled: None,
            problem: None,
        }
    }

    /// The enrollment the form describes, or the message saying what is missing.
    fn enrollment(&self, tr: &Messages) -> Result<ManifestEnrollment, String> {
        if !self.group {
            return Ok(ManifestEnrollment::Individual);
        }
        let (group_id, ca_name) = (self.group_id.trim(), self.ca_name.trim());
        if group_id.is_empty() || ca_name.is_empty() {
            return Err(tr.t("manifests.no_group").to_string());
        }
        Ok(ManifestEnrollment::Group {
            group_id: group_id.to_string(),
            ca_name: Some(ca_name.to_string()),
        })
    }

    /// Starts the import on a worker.
    fn import(&mut self, ctx: &egui::Context, desk: &Desk<'_>) {
        self.problem = None;
        // It changes the ledger: the role is checked again at the click.
        if let Err(e) = desk.station.require(Role::Engineer) {
            self.problem = Some(e.to_string());
            return;
        }
        let (Some(manifest), Some(signer)) = (self.manifest.path(), self.signer.path()) else {
            self.problem = Some(desk.tr.t("manifests.no_files").to_string());
            return;
        };
        if self.target.is_empty() {
            self.problem = Some(desk.tr.t("manifests.no_target").to_string());
            return;
        }
        let enrollment = match self.enrollment(desk.tr) {
            Ok(e) => e,
            Err(message) => {
                self.problem = Some(message);
                return;
            }
        };
        let operator = desk
            .station
            .operator()
            .0
            .unwrap_or_else(|| "engineer".into());
        let station = desk.station.config().clone();
        let target = self.target.clone();
        let read = Arc::new(AtomicUsize::new(0));
        let (tx, ctx2, counter, chosen) = (
            self.import_tx.clone(),
            ctx.clone(),
            read.clone(),
            enrollment.clone(),
        );
        let spawned = std::thread::Builder::new()
            .name("manifest-import".into())
            .spawn(move || {
                let answer = import_now(
                    &station, &operator, &manifest, &signer, &target, chosen, &counter,
                )
                .map_err(|e| e.to_string());
                let _ = tx.send(answer);
                ctx2.request_repaint();
            });
        match spawned {
            Ok(_) => {
                self.reading = Some(read);
                self.importing_with = Some(enrollment);
                self.imported = None;
                self.enrolled = None;
            }
            Err(e) => self.problem = Some(format!("the import worker could not start: {e}")),
        }
    }

    /// "Enroll now" on a worker: the group made ready if one was chosen, then the queue sent.
    fn enroll(&mut self, ctx: &egui::Context, desk: &Desk<'_>) {
        if let Err(e) = desk.station.require(Role::Engineer) {
            self.enrolled = Some(Err(e.to_string()));
            return;
        }
        let Some(Ok((import, enrollment))) = &self.imported else {
            return;
        };
        let operator = desk
            .station
            .operator()
            .0
            .unwrap_or_else(|| "engineer".into());
        let station = desk.station.config().clone();
        let target = self.target.clone();
        let (enrollment, ca) = (enrollment.clone(), import.group_ca_der.clone());
        let done = desk.tr.t("manifests.enroll_done").to_string();
        let (tx, ctx2) = (self.enroll_tx.clone(), ctx.clone());
        let spawned = std::thread::Builder::new()
            .name("manifest-enroll".into())
            .spawn(move || {
                let answer =
                    enroll_imported_now(&station, &operator, &target, &enrollment, ca.as_deref())
                        .map(|s| {
                            done.replace("{target}", &target)
                                .replace("{enrolled}", &s.enrolled().to_string())
                                .replace("{pending}", &s.pending.to_string())
                                .replace("{failed}", &s.failed.len().to_string())
                                .replace("{retry}", &s.retry_later.len().to_string())
                        })
                        .map_err(|e| e.to_string());
                let _ = tx.send(answer);
                ctx2.request_repaint();
            });
        match spawned {
            Ok(_) => {
                self.enrolling = true;
                self.enrolled = None;
            }
            Err(e) => self.enrolled = Some(Err(format!("the enroll worker could not start: {e}"))),
        }
    }

    /// The form: files, target, enrollment; returns whether Import was clicked.
    fn form_ui(&mut self, ui: &mut egui::Ui, desk: &Desk<'_>) -> bool {
        let tr = desk.tr;
        self.manifest.ui(ui, tr);
        self.signer.ui(ui, tr);
        let targets: Vec<&String> = desk.station.config().dps.keys().collect();
        if self.target.is_empty()
            && let Some(first) = targets.first()
        {
            self.target = (*first).clone();
        }
        ui.horizontal(|ui| {
            ui.label(tr.t("manifests.target"));
            egui::ComboBox::from_id_salt("manifest-target")
                .selected_text(self.target.clone())
                .show_ui(ui, |ui| {
                    for t in &targets {
                        ui.selectable_value(&mut self.target, (*t).clone(), t.as_str());
                    }
                });
        });
        ui.horizontal(|ui| {
            ui.label(tr.t("manifests.enrollment"));
            ui.radio_value(&mut self.group, false, tr.t("manifests.individual"));
            ui.radio_value(&mut self.group, true, tr.t("manifests.group"));
        });
        if self.group {
            ui.horizontal(|ui| {
                let l = ui.label(tr.t("manifests.group_id")).id;
                ui.text_edit_singleline(&mut self.group_id).labelled_by(l);
                let l = ui.label(tr.t("manifests.ca_name")).id;
                ui.text_edit_singleline(&mut self.ca_name).labelled_by(l);
            });
            ui.label(RichText::new(tr.t("manifests.group_hint")).color(desk.palette.weak));
        }
        let busy = self.reading.is_some() || self.enrolling;
        let clicked = ui
            .add_enabled(!busy, egui::Button::new(tr.t("manifests.import")))
            .clicked();
        if let Some(read) = &self.reading {
            let n = read.load(Ordering::Relaxed).to_string();
            ui.label(tr.f("manifests.reading", &[("n", &n)]));
            // The count moves while the worker verifies: look again shortly.
            ui.ctx().request_repaint_after(Duration::from_millis(100));
        }
        if let Some(p) = &self.problem {
            ui.label(RichText::new(format!("▲ {p}")).color(desk.palette.alarm));
        }
        clicked
    }

    /// What the import did: the summary, the table of entries, and Enroll now.
    fn result_ui(&mut self, ui: &mut egui::Ui, desk: &Desk<'_>) -> bool {
        let tr = desk.tr;
        let import = match &self.imported {
            None => return false,
            Some(Err(e)) => {
                ui.label(RichText::new(format!("▲ {e}")).color(desk.palette.alarm));
                return false;
            }
            Some(Ok((import, _))) => import,
        };
        let summary = tr.f(
            "manifests.summary",
            &[
                ("file", &import.file),
                ("total", &import.total.to_string()),
                ("recorded", &import.recorded().to_string()),
                ("batch", &import.batch),
                ("refused", &import.refused().to_string()),
            ],
        );
        if import.refused() > 0 {
            ui.label(RichText::new(format!("▲ {summary}")).color(desk.palette.alarm));
        } else {
            ui.label(summary);
        }
        let clicked = ui
            .add_enabled(
                !self.enrolling && self.reading.is_none() && import.recorded() > 0,
                egui::Button::new(tr.t("manifests.enroll_now")),
            )
            .clicked();
        if self.enrolling {
            ui.label(tr.f("manifests.enrolling", &[("target", &self.target)]));
        }
        match &self.enrolled {
            Some(Ok(text)) => {
                ui.label(text);
            }
            Some(Err(e)) => {
                ui.label(RichText::new(format!("▲ {e}")).color(desk.palette.alarm));
            }
            None => {}
        }
        ui.add_space(8.0);
        entries_table(ui, desk, import);
        clicked
    }
}

/// Every entry of the import, refused first (what needs acting on), then recorded.
fn entries_table(ui: &mut egui::Ui, desk: &Desk<'_>, import: &DeskImport) {
    let tr = desk.tr;
    let width = ui.available_width();
    TableBuilder::new(ui)
        .id_salt("manifest-entries")
        .striped(true)
        .cell_layout(egui::Layout::left_to_right(egui::Align::Center))
        .column(Column::exact(width * 0.07).clip(true))
        .column(Column::exact(width * 0.2).clip(true))
        .column(Column::exact(width * 0.22).clip(true))
        .column(Column::remainder().clip(true))
        .header(ROW_HEIGHT, |mut h| {
            for key in [
                "manifests.col_entry",
                "manifests.col_unique_id",
                "manifests.col_registration_id",
                "manifests.col_result",
            ] {
                h.col(|ui| {
                    ui.strong(tr.t(key));
                });
            }
        })
        .body(|body| {
            body.rows(ROW_HEIGHT, import.rows.len(), |mut row| {
                let Some(r) = import.rows.get(row.index()) else {
                    return;
                };
                let dash = || "–".to_string();
                row.col(|ui| {
                    ui.label(r.index.map_or_else(dash, |i| format!("#{i}")));
                });
                row.col(|ui| {
                    ui.label(r.unique_id.clone().unwrap_or_else(dash));
                });
                row.col(|ui| {
                    ui.label(r.registration_id.clone().unwrap_or_else(dash));
                });
                row.col(|ui| match &r.reason {
                    None => {
                        ui.label(tr.t("manifests.imported"));
                    }
                    Some(reason) => {
                        ui.label(
                            RichText::new(tr.f("manifests.refused", &[("reason", reason)]))
                                .color(desk.palette.alarm),
                        )
                        .on_hover_text(reason);
                    }
                });
            });
        });
}

impl Screen for ManifestsScreen {
    fn id(&self) -> ScreenId {
        MANIFESTS
    }

    fn title_key(&self) -> &'static str {
        "manifests.title"
    }

    fn min_role(&self) -> Role {
        Role::Engineer
    }

    fn logic(&mut self, _ctx: &egui::Context, _station: &StationHandle, _tr: &Messages) {
        if let Ok(answer) = self.import_rx.try_recv() {
            self.reading = None;
            let with = self
                .importing_with
                .take()
                .unwrap_or(ManifestEnrollment::Individual);
            self.imported = Some(answer.map(|a| (a, with)));
        }
        if let Ok(answer) = self.enroll_rx.try_recv() {
            self.enrolling = false;
            self.enrolled = Some(answer);
        }
    }

    fn ui(&mut self, ui: &mut egui::Ui, desk: &Desk<'_>) {
        let tr = desk.tr;
        ui.heading(tr.t("manifests.title"));
        ui.label(tr.t("manifests.hint"));
        ui.add_space(6.0);
        let import = self.form_ui(ui, desk);
        ui.add_space(10.0);
        let enroll = self.result_ui(ui, desk);
        if import {
            self.import(ui.ctx(), desk);
        }
        if enroll {
            self.enroll(ui.ctx(), desk);
        }
    }
}
