//! The window that opens instead of the desk when station.toml cannot be used: the error in
//! full (file, key, what to change), so the engineer at the line sees it where they looked, not
//! only in a terminal that a desktop launcher never shows.

use super::i18n::{Language, Messages};
use super::{GuiError, has_display, icon, theme};

struct ErrorApp {
    tr: Messages,
    message: String,
    styled: bool,
}

impl eframe::App for ErrorApp {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        if !self.styled {
            theme::apply(ui.ctx(), false);
            theme::add_cjk_font(ui.ctx());
            self.styled = true;
        }
        egui::Frame::central_panel(ui.style()).show(ui, |ui| {
            ui.set_min_size(ui.available_size());
            ui.heading(format!("▲ {}", self.tr.t("error.station_title")));
            ui.add_space(8.0);
            ui.label(egui::RichText::new(&self.message).monospace());
            ui.add_space(8.0);
            ui.label(self.tr.t("error.station_hint"));
            ui.add_space(16.0);
            if ui.button(self.tr.t("common.close")).clicked() {
                ui.ctx().send_viewport_cmd(egui::ViewportCommand::Close);
            }
        });
    }
}

/// Shows `message` in a window until it is closed.
pub fn show(message: &str, language: Option<&str>) -> Result<(), GuiError> {
    if !has_display() {
        return Err(GuiError::NoDisplay);
    }
    let app = ErrorApp {
        tr: Messages::new(Language::choose(language)),
        message: message.to_string(),
        styled: false,
    };
    let native = eframe::NativeOptions {
        viewport: icon::with_icon(egui::ViewportBuilder::default())
            .with_title("dps-station")
            .with_inner_size([900.0, 420.0]),
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
