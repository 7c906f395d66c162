//! The audit screen's small drawing pieces: labelled fields, alarm lines, the ledger's counts and
//! verify's result. Kept apart so that `audit.rs` holds only the screen's state and flow.

use egui::RichText;

use crate::gui::i18n::Messages;
use crate::gui::screen::Desk;
use crate::ledger::LedgerStats;

use super::audit_jobs::Verified;

/// A label and its text field, the field labelled by it (screen readers, tests).
pub(super) fn field(ui: &mut egui::Ui, label: &str, text: &mut String, width: f32, hint: &str) {
    let l = ui.label(label);
    ui.add(
        egui::TextEdit::singleline(text)
            .desired_width(width)
            .hint_text(hint),
    )
    .labelled_by(l.id);
}

/// An abnormal state: the alarm colour, the ▲ mark and the words.
pub(super) fn alarm(ui: &mut egui::Ui, desk: &Desk<'_>, text: &str) {
    ui.add(
        egui::Label::new(
            RichText::new(desk.tr.f("audit.problem", &[("problem", text)]))
                .color(desk.palette.alarm)
                .strong(),
        )
        .wrap(),
    );
}

pub(super) fn stats_grid(ui: &mut egui::Ui, tr: &Messages, s: &LedgerStats) {
    egui::Grid::new("audit-stats")
        .num_columns(2)
        .spacing([16.0, 4.0])
        .show(ui, |ui| {
            let mut row = |k: &str, v: String| {
                ui.label(tr.t(k));
                ui.add(egui::Label::new(v).wrap());
                ui.end_row();
            };
            row("audit.stats.file", s.path.clone());
            row("audit.stats.size", human_bytes(s.file_bytes));
            row("audit.stats.schema", s.schema_version.to_string());
            row("audit.stats.audit_rows", s.audit_rows.to_string());
            row("audit.stats.identities", s.identities.to_string());
            for (state, n) in &s.identities_by_state {
                row("audit.stats.in_state", format!("{state}: {n}"));
            }
            row("audit.stats.batches", s.batches.to_string());
            row("audit.stats.key_sessions", s.key_sessions.to_string());
        });
}

/// Draws verify's result; returns a row id when "Show row" was pressed.
pub(super) fn verified_ui(ui: &mut egui::Ui, desk: &Desk<'_>, v: &Verified) -> Option<i64> {
    let tr = desk.tr;
    let rows = v.report.rows_checked.to_string();
    let mut show = None;
    if let Some(b) = &v.report.first_broken {
        let id = b.id.to_string();
        alarm(
            ui,
            desk,
            &tr.f("audit.broken", &[("id", &id), ("problem", &b.problem)]),
        );
        if let Some(r) = &v.broken_row {
            ui.label(tr.f(
                "audit.broken_row",
                &[
                    ("id", &id),
                    ("at", &r.at),
                    ("actor", &r.actor),
                    ("action", &r.action),
                    ("subject", &r.subject),
                ],
            ));
        }
        if ui.button(tr.f("audit.show_row", &[("id", &id)])).clicked() {
            show = Some(b.id);
        }
    } else {
        ui.label(tr.f(
            "audit.intact",
            &[("rows", &rows), ("hash", &v.report.last_hash)],
        ));
    }
    for p in &v.file_problems {
        alarm(ui, desk, p);
    }
    if !v.is_clean() {
        alarm(ui, desk, tr.t("audit.untrusted"));
    }
    show
}

pub(super) fn human_bytes(n: u64) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    if n >= 1024 * 1024 {
        format!("{:.1} MiB", n as f64 / MIB)
    } else {
        format!("{:.1} KiB", n as f64 / 1024.0)
    }
}
