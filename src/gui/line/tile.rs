//! One fixture slot as a tile: its state in big type with a shape beside the text (never colour
//! alone), the device's serial and registration ID, time in the slot, and for a failure the
//! operator's words with the stage and detail one click away.

use std::time::Duration;

use egui::{Align2, Color32, FontId, Pos2, Rect, Sense, Stroke, StrokeKind, Vec2};

use crate::central::station_side::lease_gate::Waiting;
use crate::station::events::Stage;
use crate::station::operator::line_view::{Advice, advice};
use crate::station::operator::{SlotState, SlotView};

use super::super::i18n::Messages;
use super::super::screen::Desk;

/// The shape drawn beside a state word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mark {
    None,
    Check,
    Cross,
    Triangle,
}

/// The operator's name of a stage.
pub fn stage_key(stage: Stage) -> String {
    format!("stage.{}", stage.as_str())
}

/// The advice message key.
pub fn advice_key(a: Advice) -> &'static str {
    match a {
        Advice::Reseat => "advice.reseat",
        Advice::SetAside => "advice.set_aside",
        Advice::CallEngineer => "advice.call_engineer",
    }
}

fn format_secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 60.0 {
        format!("{s:.1} s")
    } else {
        format!("{}:{:02}", d.as_secs() / 60, d.as_secs() % 60)
    }
}

/// Draws a tile of `size`; returns whether it was clicked (to show or hide the detail).
pub fn tile(
    ui: &mut egui::Ui,
    slot: &SlotView,
    size: Vec2,
    desk: &Desk<'_>,
    expanded: bool,
) -> bool {
    let (tr, p, now) = (desk.tr, desk.palette, desk.now);
    let highlight = desk.highlight == Some(slot.name.as_str());
    let (rect, response) = ui.allocate_exact_size(size, Sense::click());
    let painter = ui.painter_at(rect);
    let (fill, text, word, mark, frame) = match &slot.state {
        SlotState::Idle => (
            p.tile,
            p.weak,
            tr.t("tile.idle").to_string(),
            Mark::None,
            p.tile,
        ),
        SlotState::Waiting => (
            p.tile,
            p.weak,
            tr.t("tile.waiting").to_string(),
            Mark::None,
            p.tile,
        ),
        SlotState::Working(stage) => (
            p.tile,
            p.text,
            tr.t(&stage_key(*stage)).to_string(),
            Mark::None,
            p.weak,
        ),
        SlotState::Passed => (
            p.tile,
            p.text,
            tr.t("tile.pass").to_string(),
            Mark::Check,
            p.pass_frame,
        ),
        SlotState::Failed { .. } => (
            p.alarm,
            p.on_alarm,
            tr.t("tile.fail").to_string(),
            Mark::Cross,
            p.alarm,
        ),
        SlotState::PortAbsent { .. } => (
            p.warn,
            Color32::BLACK,
            tr.t("tile.port_absent").to_string(),
            Mark::Triangle,
            p.warn,
        ),
        SlotState::Stopped(_) => (
            p.warn,
            Color32::BLACK,
            tr.t("tile.attention").to_string(),
            Mark::Triangle,
            p.warn,
        ),
        // Not a fault of the line: grey tile, a triangle and the words (HMI: never colour alone).
        SlotState::LeaseWaiting(_) => (
            p.tile,
            p.text,
            tr.t("lease.tile_word").to_string(),
            Mark::Triangle,
            p.weak,
        ),
        // The operator must act, but nothing is wrong: grey tile, a mark and a framed word.
        SlotState::NeedsLabel { .. } => (
            p.tile,
            p.text,
            tr.t("tile.scan_label").to_string(),
            Mark::Triangle,
            p.warn,
        ),
    };
    painter.rect_filled(rect, 6.0, fill);
    let frame_width = if highlight { 6.0 } else { 3.0 };
    let frame_colour = if highlight { p.warn } else { frame };
    painter.rect_stroke(
        rect.shrink(1.5),
        6.0,
        Stroke::new(frame_width, frame_colour),
        StrokeKind::Inside,
    );
    let pad = 10.0;
    let small = FontId::proportional((size.y * 0.09).clamp(14.0, 20.0));
    painter.text(
        rect.left_top() + Vec2::new(pad, pad),
        Align2::LEFT_TOP,
        &slot.name,
        FontId::proportional((size.y * 0.11).clamp(16.0, 24.0)),
        text,
    );
    if let Some(seated) = slot.seated {
        let t = slot
            .took
            .or_else(|| now.duration_since(seated).ok())
            .unwrap_or_default();
        painter.text(
            rect.right_top() + Vec2::new(-pad, pad),
            Align2::RIGHT_TOP,
            format_secs(t),
            small.clone(),
            text,
        );
    }
    // The state word: PASS/FAIL at least 40 px high, whatever the tile size.
    let big = matches!(
        slot.state,
        SlotState::Passed | SlotState::Failed { .. } | SlotState::Stopped(_)
    );
    let word_size = if big {
        (size.y * 0.26).max(40.0)
    } else {
        (size.y * 0.14).clamp(18.0, 30.0)
    };
    let centre = rect.center() - Vec2::new(0.0, size.y * 0.08);
    // Shrink to the tile's width (mark + word), never below 40 px for PASS/FAIL.
    let fit = |word_size: f32| {
        let g = painter.layout_no_wrap(word.clone(), FontId::proportional(word_size), text);
        let w = g.size().x
            + if mark == Mark::None {
                0.0
            } else {
                word_size * 0.8 + 10.0
            };
        (g, w)
    };
    let (mut galley, width) = fit(word_size);
    let room = size.x - 2.0 * pad;
    let mut word_size = word_size;
    if width > room {
        let floor = if big { 40.0 } else { 14.0 };
        word_size = (word_size * room / width).max(floor);
        galley = fit(word_size).0;
    }
    let mark_size = word_size * 0.8;
    let total = galley.size().x
        + if mark == Mark::None {
            0.0
        } else {
            mark_size + 10.0
        };
    let left = centre.x - total / 2.0;
    if mark != Mark::None {
        let m = Rect::from_center_size(
            Pos2::new(left + mark_size / 2.0, centre.y),
            Vec2::splat(mark_size),
        );
        draw_mark(&painter, m, mark, text);
    }
    let word_left = left
        + if mark == Mark::None {
            0.0
        } else {
            mark_size + 10.0
        };
    painter.galley(
        Pos2::new(word_left, centre.y - galley.size().y / 2.0),
        galley,
        text,
    );
    let mut y = centre.y + word_size * 0.6 + 4.0;
    // Lines wrap inside the tile rather than run over its edge.
    let line = |y: &mut f32, s: &str| {
        let g = painter.layout(s.to_string(), small.clone(), text, size.x - 2.0 * pad);
        let h = g.size().y;
        painter.galley(Pos2::new(rect.center().x - g.size().x / 2.0, *y), g, text);
        *y += h + 4.0;
    };
    match &slot.state {
        SlotState::Failed { stage, detail } => {
            line(&mut y, tr.t(advice_key(advice(*stage))));
            if expanded {
                line(
                    &mut y,
                    &tr.f("tile.at_stage", &[("stage", tr.t(&stage_key(*stage)))]),
                );
                let wrapped = painter.layout(
                    detail.clone(),
                    FontId::proportional(small.size * 0.85),
                    text,
                    rect.width() - 2.0 * pad,
                );
                painter.galley(Pos2::new(rect.left() + pad, y), wrapped, text);
            } else {
                line(&mut y, tr.t("tile.details"));
            }
        }
        SlotState::PortAbsent { path, waited } => {
            let wrapped = painter.layout(
                port_absent_text(tr, path, *waited),
                FontId::proportional(small.size * 0.85),
                text,
                rect.width() - 2.0 * pad,
            );
            painter.galley(Pos2::new(rect.left() + pad, y), wrapped, text);
        }
        SlotState::NeedsLabel { hardware_id } => {
            line(&mut y, tr.t("tile.scan_label_detail"));
            if !hardware_id.is_empty() {
                line(&mut y, hardware_id);
            }
        }
        SlotState::LeaseWaiting(why) => {
            let wrapped = painter.layout(
                lease_waiting_text(tr, why),
                FontId::proportional(small.size * 0.85),
                text,
                rect.width() - 2.0 * pad,
            );
            painter.galley(Pos2::new(rect.left() + pad, y), wrapped, text);
        }
        SlotState::Stopped(reason) => {
            let wrapped = painter.layout(
                reason.clone(),
                FontId::proportional(small.size * 0.85),
                text,
                rect.width() - 2.0 * pad,
            );
            painter.galley(Pos2::new(rect.left() + pad, y), wrapped, text);
        }
        _ => {
            if let Some(s) = &slot.serial {
                line(&mut y, s);
            }
            if let Some(r) = &slot.registration_id {
                line(&mut y, r);
            }
        }
    }
    // What a screen reader (and a test) reads: the slot, its state word and, for a failure, the
    // operator's advice and the stage.
    let spoken = match &slot.state {
        SlotState::Failed { stage, detail } => format!(
            "{} {word}: {} ({}; {detail})",
            slot.name,
            tr.t(advice_key(advice(*stage))),
            tr.t(&stage_key(*stage))
        ),
        SlotState::PortAbsent { path, waited } => {
            format!(
                "{} {word}: {}",
                slot.name,
                port_absent_text(tr, path, *waited)
            )
        }
        SlotState::Stopped(reason) => format!("{} {word}: {reason}", slot.name),
        SlotState::LeaseWaiting(why) => {
            format!("{} {word}: {}", slot.name, lease_waiting_text(tr, why))
        }
        _ => format!("{} {word}", slot.name),
    };
    response.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Button, true, spoken.clone()));
    response.clicked()
}

fn draw_mark(painter: &egui::Painter, r: Rect, mark: Mark, colour: Color32) {
    let s = Stroke::new((r.width() * 0.14).max(3.0), colour);
    match mark {
        Mark::None => {}
        Mark::Check => {
            painter.circle_stroke(
                r.center(),
                r.width() * 0.48,
                Stroke::new(s.width * 0.6, colour),
            );
            painter.line_segment(
                [
                    r.lerp_inside(Vec2::new(0.25, 0.52)),
                    r.lerp_inside(Vec2::new(0.43, 0.7)),
                ],
                s,
            );
            painter.line_segment(
                [
                    r.lerp_inside(Vec2::new(0.43, 0.7)),
                    r.lerp_inside(Vec2::new(0.76, 0.3)),
                ],
                s,
            );
        }
        Mark::Cross => {
            painter.line_segment(
                [
                    r.lerp_inside(Vec2::new(0.15, 0.15)),
                    r.lerp_inside(Vec2::new(0.85, 0.85)),
                ],
                s,
            );
            painter.line_segment(
                [
                    r.lerp_inside(Vec2::new(0.85, 0.15)),
                    r.lerp_inside(Vec2::new(0.15, 0.85)),
                ],
                s,
            );
        }
        Mark::Triangle => {
            let pts = vec![r.center_top(), r.right_bottom(), r.left_bottom()];
            painter.add(egui::Shape::closed_line(
                pts,
                Stroke::new(s.width * 0.6, colour),
            ));
            painter.line_segment(
                [
                    r.lerp_inside(Vec2::new(0.5, 0.35)),
                    r.lerp_inside(Vec2::new(0.5, 0.7)),
                ],
                Stroke::new(s.width * 0.6, colour),
            );
            painter.circle_filled(r.lerp_inside(Vec2::new(0.5, 0.85)), s.width * 0.4, colour);
        }
    }
}

/// What a tile whose port is absent says: the path, how long, and what to do.
/// Why a joined station's slot waits for the central ledger, in the operator's language.
fn lease_waiting_text(tr: &Messages, why: &Waiting) -> String {
    match why {
        Waiting::UsedUp => tr.t("lease.used_up").to_string(),
        Waiting::Expired => tr.t("lease.expired").to_string(),
        Waiting::Refused(reason) => tr.f("lease.refused", &[("reason", reason)]),
    }
}

fn port_absent_text(tr: &Messages, path: &str, waited: Duration) -> String {
    tr.f(
        "tile.port_absent_detail",
        &[("path", path), ("seconds", &waited.as_secs().to_string())],
    )
}
