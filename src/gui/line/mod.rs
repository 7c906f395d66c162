//! The line screen, where an operator spends the shift: one tile per fixture slot laid out as the
//! fixture is built, the batch's counters and enrollment queue, and the batch controls with
//! keyboard shortcuts (F2 start, F5 pause, F6 resume, F8 close; Esc cancels a dialog).

mod counters;
mod picker;
pub mod tile;

use std::collections::BTreeSet;

use egui::{Key, RichText, Vec2};

use crate::station::events::BatchState;
use crate::station::operator::{BatchCommand, Role};

use super::screen::{Desk, Screen, ScreenId, UiCommand};

/// The line screen's id.
pub const LINE: ScreenId = "line";

/// The line screen and what only it remembers (open dialogs, expanded failures).
#[derive(Debug, Default)]
pub struct LineScreen {
    /// Tiles per row.
    pub columns: usize,
    confirm_close: bool,
    expanded: BTreeSet<String>,
}

impl LineScreen {
    /// A line screen laid out `columns` tiles per row.
    pub fn new(columns: usize) -> Self {
        Self {
            columns: columns.max(1),
            ..Self::default()
        }
    }

    fn controls(&mut self, ui: &mut egui::Ui, desk: &Desk<'_>) {
        let tr = desk.tr;
        let v = desk.view;
        let running = v.running;
        let state = v.state;
        let signed_in = v.operator.is_some();
        let (start, pause, resume, close) = ui.input(|i| {
            (
                i.key_pressed(Key::F2),
                i.key_pressed(Key::F5),
                i.key_pressed(Key::F6),
                i.key_pressed(Key::F8),
            )
        });
        ui.horizontal(|ui| {
            let can_start = !running && signed_in;
            if ui
                .add_enabled(can_start, egui::Button::new(tr.t("line.start")))
                .clicked()
                || (start && can_start && !desk.picker.open)
            {
                desk.send(UiCommand::ShowPicker(true));
            }
            // F2 again in the open picker starts the chosen batch (after a work-order scan the
            // operator's hands stay on the scanner and the keyboard).
            if let (true, Some((path, Ok(p)))) =
                (start && can_start && desk.picker.open, &desk.picker.preview)
                && p.problems.is_empty()
                && !desk.picker.starting
            {
                desk.send(UiCommand::StartBatch(path.clone()));
            }
            let can_pause = running && state == Some(BatchState::Running);
            if ui
                .add_enabled(can_pause, egui::Button::new(tr.t("line.pause")))
                .clicked()
                || (pause && can_pause)
            {
                desk.send(UiCommand::Batch(BatchCommand::Pause));
            }
            let can_resume = running && state == Some(BatchState::Paused);
            if ui
                .add_enabled(can_resume, egui::Button::new(tr.t("line.resume")))
                .clicked()
                || (resume && can_resume)
            {
                desk.send(UiCommand::Batch(BatchCommand::Resume));
            }
            if ui
                .add_enabled(running, egui::Button::new(tr.t("line.close")))
                .clicked()
                || (close && running)
            {
                self.confirm_close = true;
            }
            ui.add_space(20.0);
            let batch = match (&v.batch, state) {
                (Some(b), Some(s)) => tr.f(
                    "line.batch_state",
                    &[("batch", b), ("state", tr.t(state_key(s)))],
                ),
                _ => tr.t("line.no_batch").to_string(),
            };
            ui.label(RichText::new(batch).strong());
            if !signed_in {
                ui.label(
                    RichText::new(format!("▲ {}", tr.t("line.sign_in_first")))
                        .color(desk.palette.warn),
                );
            }
        });
    }

    fn dialogs(&mut self, ui: &mut egui::Ui, desk: &Desk<'_>) {
        let tr = desk.tr;
        let escape = ui.input(|i| i.key_pressed(Key::Escape));
        if self.confirm_close {
            let modal = egui::Modal::new(egui::Id::unique("confirm-close")).show(ui.ctx(), |ui| {
                ui.heading(tr.t("close.title"));
                ui.label(tr.t("close.body"));
                ui.horizontal(|ui| {
                    if ui.button(tr.t("close.confirm")).clicked() {
                        desk.send(UiCommand::Batch(BatchCommand::Close));
                        self.confirm_close = false;
                    }
                    if ui.button(tr.t("common.cancel")).clicked() {
                        self.confirm_close = false;
                    }
                });
            });
            if escape || modal.should_close() {
                self.confirm_close = false;
            }
        }
        if desk.picker.open {
            let mut cancel = false;
            let modal = egui::Modal::new(egui::Id::unique("picker")).show(ui.ctx(), |ui| {
                ui.set_min_width(720.0);
                cancel = picker::picker(ui, desk);
            });
            if cancel || escape || modal.should_close() {
                desk.send(UiCommand::ShowPicker(false));
            }
        }
    }
}

/// The message key of a batch state.
pub fn state_key(s: BatchState) -> &'static str {
    match s {
        BatchState::Open => "batch.open",
        BatchState::Running => "batch.running",
        BatchState::Paused => "batch.paused",
        BatchState::Closed => "batch.closed",
    }
}

impl Screen for LineScreen {
    fn id(&self) -> ScreenId {
        LINE
    }

    fn title_key(&self) -> &'static str {
        "nav.line"
    }

    fn min_role(&self) -> Role {
        Role::Operator
    }

    fn ui(&mut self, ui: &mut egui::Ui, desk: &Desk<'_>) {
        self.controls(ui, desk);
        ui.separator();
        let slots = &desk.view.slots;
        egui::Panel::right("counters")
            .resizable(false)
            .exact_size(260.0)
            .show(ui, |ui| {
                // On a short screen (a batch adds "time left", a notification a line above) the
                // last counters would fall off the window: they scroll instead.
                egui::ScrollArea::vertical().show(ui, |ui| counters::counters(ui, desk));
            });
        if slots.is_empty() {
            ui.centered_and_justified(|ui| {
                ui.label(
                    RichText::new(desk.tr.t("line.empty"))
                        .size(28.0)
                        .color(desk.palette.weak),
                );
            });
        } else {
            let columns = self.columns.min(slots.len()).max(1);
            let rows = slots.len().div_ceil(columns);
            let gap = 10.0;
            let avail = ui.available_size();
            let w = ((avail.x - gap * (columns as f32 - 1.0)) / columns as f32).max(120.0);
            let h = ((avail.y - gap * (rows as f32 - 1.0)) / rows as f32).clamp(110.0, 320.0);
            egui::ScrollArea::vertical().show(ui, |ui| {
                ui.spacing_mut().item_spacing = Vec2::splat(gap);
                for row in slots.chunks(columns) {
                    ui.horizontal(|ui| {
                        for slot in row {
                            let expanded = self.expanded.contains(&slot.name);
                            if tile::tile(ui, slot, Vec2::new(w, h), desk, expanded)
                                && !self.expanded.remove(&slot.name)
                            {
                                self.expanded.insert(slot.name.clone());
                            }
                        }
                    });
                }
            });
        }
        self.dialogs(ui, desk);
    }
}
