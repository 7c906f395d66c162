//! Looks, after ISA-101 HMI practice: a grey base, no decorative colour, colour only for abnormal
//! states and always with text and a shape, big targets for gloved hands, a dark and a light
//! theme. Fonts: egui's own for Latin, Noto Sans CJK from the system for Hangul.

use std::sync::Arc;

use egui::epaint::text::{FontInsert, FontPriority, InsertFontFamily};
use egui::{Color32, FontData, FontFamily, FontId, TextStyle};

/// The colours of one theme.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Palette {
    /// Window background.
    pub base: Color32,
    /// A tile's background in a normal state.
    pub tile: Color32,
    /// Normal text.
    pub text: Color32,
    /// Secondary text.
    pub weak: Color32,
    /// Failure / lost (red).
    pub alarm: Color32,
    /// Needs attention / degraded (amber).
    pub warn: Color32,
    /// Pass: not a colour of its own on purpose (normal is grey); a darker frame.
    pub pass_frame: Color32,
    /// Text on alarm/warn fills.
    pub on_alarm: Color32,
}

impl Palette {
    /// The dark theme.
    pub const DARK: Palette = Palette {
        base: Color32::from_rgb(0x2b, 0x2b, 0x2b),
        tile: Color32::from_rgb(0x3a, 0x3a, 0x3a),
        text: Color32::from_rgb(0xf0, 0xf0, 0xf0),
        weak: Color32::from_rgb(0xb4, 0xb4, 0xb4),
        alarm: Color32::from_rgb(0xd0, 0x20, 0x20),
        warn: Color32::from_rgb(0xf0, 0xb0, 0x00),
        pass_frame: Color32::from_rgb(0x9a, 0x9a, 0x9a),
        on_alarm: Color32::from_rgb(0xff, 0xff, 0xff),
    };
    /// The light theme.
    pub const LIGHT: Palette = Palette {
        base: Color32::from_rgb(0xd4, 0xd4, 0xd4),
        tile: Color32::from_rgb(0xe8, 0xe8, 0xe8),
        text: Color32::from_rgb(0x10, 0x10, 0x10),
        weak: Color32::from_rgb(0x50, 0x50, 0x50),
        alarm: Color32::from_rgb(0xc0, 0x10, 0x10),
        warn: Color32::from_rgb(0xe8, 0xa0, 0x00),
        pass_frame: Color32::from_rgb(0x60, 0x60, 0x60),
        on_alarm: Color32::from_rgb(0xff, 0xff, 0xff),
    };

    /// The palette for the theme choice.
    pub fn of(light: bool) -> Palette {
        if light { Self::LIGHT } else { Self::DARK }
    }
}

/// Applies the theme and glove-sized spacing to the context.
pub fn apply(ctx: &egui::Context, light: bool) {
    let p = Palette::of(light);
    let mut visuals = if light {
        egui::Visuals::light()
    } else {
        egui::Visuals::dark()
    };
    visuals.panel_fill = p.base;
    visuals.window_fill = p.tile;
    visuals.override_text_color = Some(p.text);
    ctx.set_visuals(visuals);
    ctx.all_styles_mut(|style| {
        style.spacing.interact_size = egui::vec2(64.0, 44.0);
        style.spacing.button_padding = egui::vec2(16.0, 10.0);
        style.spacing.item_spacing = egui::vec2(10.0, 8.0);
        style
            .text_styles
            .insert(TextStyle::Body, FontId::proportional(20.0));
        style
            .text_styles
            .insert(TextStyle::Button, FontId::proportional(22.0));
        style
            .text_styles
            .insert(TextStyle::Heading, FontId::proportional(28.0));
        style
            .text_styles
            .insert(TextStyle::Small, FontId::proportional(16.0));
        style
            .text_styles
            .insert(TextStyle::Monospace, FontId::monospace(18.0));
    });
}

/// Where Debian's `fonts-noto-cjk` puts Noto Sans CJK; face 1 of the collection is the Korean one.
pub const NOTO_CJK: &str = "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc";
const NOTO_CJK_KR_FACE: u32 = 1;

/// Adds Noto Sans CJK (Korean face) after egui's own fonts, so Hangul renders; returns whether
/// it was found. Without it Korean shows as boxes, and the caller says how to fix that.
pub fn add_cjk_font(ctx: &egui::Context) -> bool {
    let Ok(bytes) = std::fs::read(NOTO_CJK) else {
        return false;
    };
    let data = FontData::from_blob(Arc::new(bytes), NOTO_CJK_KR_FACE);
    ctx.add_font(FontInsert::new(
        "noto-sans-cjk-kr",
        data,
        vec![
            InsertFontFamily {
                family: FontFamily::Proportional,
                priority: FontPriority::Lowest,
            },
            InsertFontFamily {
                family: FontFamily::Monospace,
                priority: FontPriority::Lowest,
            },
        ],
    ));
    true
}
