//! Choosing a batch: the files of the station's batches folder (or the one a work-order scan
//! named), what the chosen one will do before it starts, and its errors inline; Start stays off
//! while one stands.

use egui::RichText;

use super::super::screen::{Desk, UiCommand};

/// Draws the picker's content; returns true when the operator cancels.
pub fn picker(ui: &mut egui::Ui, desk: &Desk<'_>) -> bool {
    let tr = desk.tr;
    let mut cancel = false;
    ui.heading(tr.t("picker.title"));
    ui.horizontal_top(|ui| {
        ui.vertical(|ui| {
            ui.set_min_width(260.0);
            if desk.picker.files.is_empty() {
                ui.label(tr.t("picker.none"));
            }
            for f in &desk.picker.files {
                let name = f
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let chosen = desk.picker.preview.as_ref().is_some_and(|(p, _)| p == f);
                if ui.selectable_label(chosen, name).clicked() {
                    desk.send(UiCommand::Preview(f.clone()));
                }
            }
        });
        // No vertical separator here: in a horizontal layout it takes all the height there is, and
        // the modal would grow past the screen.
        ui.add_space(24.0);
        ui.vertical(|ui| {
            let Some((path, preview)) = &desk.picker.preview else {
                ui.label(tr.t("picker.choose"));
                return;
            };
            match preview {
                Err(e) => {
                    ui.label(
                        RichText::new(format!("▲ {}", tr.t("picker.invalid")))
                            .color(desk.palette.alarm)
                            .strong(),
                    );
                    ui.label(e);
                }
                Ok(p) => {
                    egui::Grid::new("preview")
                        .num_columns(2)
                        .spacing([16.0, 6.0])
                        .show(ui, |ui| {
                            let row = |ui: &mut egui::Ui, k: &str, v: &str| {
                                ui.label(RichText::new(tr.t(k)).color(desk.palette.weak));
                                // A PKCS#11 URI is one long word: wrap it inside the modal
                                // rather than let the modal grow past the screen.
                                ui.scope(|ui| {
                                    ui.set_max_width(620.0);
                                    ui.add(egui::Label::new(v).wrap());
                                });
                                ui.end_row();
                            };
                            row(ui, "preview.batch", &p.name);
                            row(ui, "preview.product", &p.product);
                            row(ui, "preview.mode", &p.mode);
                            row(ui, "preview.size", &p.size);
                            row(ui, "preview.sample_id", &p.sample_id);
                            row(ui, "preview.dps", &p.dps_target);
                            row(ui, "preview.id_scope", &p.id_scope);
                            let serials = if p.serials_from_labels {
                                "preview.serials_label"
                            } else {
                                "preview.serials_device"
                            };
                            row(ui, "preview.serials", tr.t(serials));
                            row(
                                ui,
                                "preview.keys",
                                &if p.keys.is_empty() {
                                    "–".to_string()
                                } else {
                                    p.keys.join("\n")
                                },
                            );
                        });
                    for problem in &p.problems {
                        ui.label(RichText::new(format!("▲ {problem}")).color(desk.palette.alarm));
                    }
                }
            }
            ui.add_space(8.0);
            ui.horizontal(|ui| {
                let ok = matches!(preview, Ok(p) if p.problems.is_empty()) && !desk.picker.starting;
                let label = if desk.picker.starting {
                    tr.t("picker.starting")
                } else {
                    tr.t("picker.start")
                };
                if ui.add_enabled(ok, egui::Button::new(label)).clicked() {
                    desk.send(UiCommand::StartBatch(path.clone()));
                }
                if ui.button(tr.t("common.cancel")).clicked() {
                    cancel = true;
                }
            });
        });
    });
    if desk.picker.preview.is_none() && ui.button(tr.t("common.cancel")).clicked() {
        cancel = true;
    }
    cancel
}
