//! The batch's figures beside the tiles: passed, failed, yield, devices per hour, median time per
//! device, ETA for counted batches, and the enrollment queue with DPS reachability.

use std::time::Duration;

use egui::RichText;

use crate::station::operator::line_view::Health;

use super::super::screen::Desk;

fn minutes(d: Duration) -> String {
    let m = d.as_secs() / 60;
    format!("{}:{:02}", m / 60, m % 60)
}

/// Draws the counters column.
pub fn counters(ui: &mut egui::Ui, desk: &Desk<'_>) {
    let v = desk.view;
    let tr = desk.tr;
    let big = |ui: &mut egui::Ui, label: &str, value: String| {
        ui.label(RichText::new(label).color(desk.palette.weak));
        ui.label(RichText::new(value).size(34.0).strong());
        ui.add_space(4.0);
    };
    // A resumed batch counts on from what earlier runs did (the engine's target is this run's).
    let target = v
        .target
        .map(|t| format!(" / {}", t + v.done_before))
        .unwrap_or_default();
    big(
        ui,
        tr.t("count.passed"),
        format!("{}{target}", v.done_before + v.passed),
    );
    big(ui, tr.t("count.failed"), v.failed.to_string());
    big(
        ui,
        tr.t("count.yield"),
        v.yield_ratio()
            .map(|y| format!("{:.1} %", y * 100.0))
            .unwrap_or_else(|| "–".into()),
    );
    big(
        ui,
        tr.t("count.per_hour"),
        v.per_hour(desk.now)
            .map(|r| format!("{r:.0}"))
            .unwrap_or_else(|| "–".into()),
    );
    big(
        ui,
        tr.t("count.median"),
        v.median_time()
            .map(|m| format!("{:.1} s", m.as_secs_f64()))
            .unwrap_or_else(|| "–".into()),
    );
    if v.target.is_some() {
        big(
            ui,
            tr.t("count.eta"),
            v.eta(desk.now).map(minutes).unwrap_or_else(|| "–".into()),
        );
    }
    ui.separator();
    ui.label(RichText::new(tr.t("enroll.title")).strong());
    ui.label(tr.f("enroll.pending", &[("n", &v.pending.to_string())]));
    ui.label(tr.f("enroll.confirmed", &[("n", &v.enrolled.to_string())]));
    let refused = tr.f("enroll.refused", &[("n", &v.refused.to_string())]);
    if v.refused > 0 {
        ui.label(RichText::new(format!("▲ {refused}")).color(desk.palette.alarm));
    } else {
        ui.label(refused);
    }
    let dps = match v.dps {
        Health::Unknown => tr.t("health.unknown"),
        Health::Ok => tr.t("health.dps_ok"),
        Health::Degraded | Health::Lost => tr.t("health.dps_unreachable"),
    };
    if matches!(v.dps, Health::Degraded | Health::Lost) {
        ui.label(RichText::new(format!("▲ {dps}")).color(desk.palette.warn));
    } else {
        ui.label(dps);
    }
}
