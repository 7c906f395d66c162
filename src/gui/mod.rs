//! The operator's desk (egui/eframe, glow renderer: it runs on Mesa's software OpenGL on a
//! factory PC with no GPU). The shell ([`app::DeskApp`]: top bar, role-aware navigation,
//! notifications, scanner input, sounds) hosts one [`screen::Screen`] per screen; screens draw
//! and send [`screen::UiCommand`]s, the shell carries them out on the
//! [`crate::station::operator::StationHandle`]. Nothing below `gui` knows a screen exists.

pub mod app;
pub mod bench;
pub mod engineer;
pub mod error_window;
pub mod first_run;
pub mod i18n;
pub mod icon;
pub mod line;
pub mod officer;
pub mod scan;
pub mod screen;
pub mod screens;
pub mod sound;
pub mod station_screen;
pub mod theme;
pub mod widgets;

pub use app::{DeskApp, DeskOptions};

use crate::station::operator::StationHandle;

/// Why the window could not open.
#[derive(Debug, thiserror::Error)]
pub enum GuiError {
    /// No X display to open a window on.
    #[error(
        "no display to open the window on (DISPLAY is not set); use `dps-station run --headless --batch <file>` on a machine without a screen"
    )]
    NoDisplay,
    /// eframe could not start (no OpenGL, display refused).
    #[error(
        "the window could not open: {0}; use `dps-station run --headless --batch <file>` instead"
    )]
    Window(String),
}

/// Whether there is a display to open a window on (X11; Wayland sessions run it via XWayland).
pub fn has_display() -> bool {
    std::env::var_os("DISPLAY").is_some_and(|d| !d.is_empty())
}

/// Opens the desk's window over `station` and returns when it closes.
pub fn run(station: StationHandle, options: DeskOptions) -> Result<(), GuiError> {
    if !has_display() {
        return Err(GuiError::NoDisplay);
    }
    let kiosk = options.kiosk;
    let title = format!("dps-station — {}", station.config().name);
    let mut viewport = icon::with_icon(egui::ViewportBuilder::default())
        .with_title(&title)
        .with_inner_size([1280.0, 800.0])
        .with_min_inner_size([800.0, 600.0]);
    if kiosk {
        viewport = viewport.with_fullscreen(true).with_decorations(false);
    }
    let native = eframe::NativeOptions {
        viewport,
        renderer: eframe::Renderer::Glow,
        ..eframe::NativeOptions::default()
    };
    eframe::run_native(
        "dps-station",
        native,
        Box::new(move |_cc| Ok(Box::new(DeskApp::new(station, options)))),
    )
    .map_err(|e| GuiError::Window(e.to_string()))
}
