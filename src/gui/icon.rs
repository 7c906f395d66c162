//! The window's icon: the package's 256×256 PNG, compiled in, so the window carries the same
//! icon as the desktop entry without a file to find at run time. eframe decodes it with the
//! `image` crate it already depends on (PNG only), so it costs no new dependency.

use std::sync::Arc;

/// The icon's PNG, as installed under `/usr/share/icons/hicolor/256x256/apps`.
const PNG: &[u8] = include_bytes!("../../assets/icons/256x256/dps-station.png");

/// The icon for `ViewportBuilder::with_icon`; `None` (the window manager's default icon, and a
/// warning) if the compiled-in PNG does not decode, which the test below rules out.
pub fn window_icon() -> Option<Arc<egui::IconData>> {
    match eframe::icon_data::from_png_bytes(PNG) {
        Ok(icon) => Some(Arc::new(icon)),
        Err(e) => {
            tracing::warn!("the window icon does not decode: {e}");
            None
        }
    }
}

/// `viewport` with the window icon set.
pub fn with_icon(viewport: egui::ViewportBuilder) -> egui::ViewportBuilder {
    match window_icon() {
        Some(icon) => viewport.with_icon(icon),
        None => viewport,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_icon_decodes_to_256_square_rgba() {
        let icon = window_icon().expect("the compiled-in icon decodes");
        assert_eq!((icon.width, icon.height), (256, 256));
        assert_eq!(icon.rgba.len(), 256 * 256 * 4);
        // Not a blank square: some pixels are opaque, some transparent (the rounded corners).
        assert!(icon.rgba.chunks(4).any(|p| p[3] == 255));
        assert!(icon.rgba.chunks(4).any(|p| p[3] == 0));
    }
}
