//! Reports with plots (engineer): choose a batch or a UTC day, see its yield, throughput per
//! hour, time per device (median, 95th percentile), failures by stage and by slot (with the
//! fixture-fault hint), and write the report files (Markdown, CSV, SVG) to the reports folder.
//!
//! The ledger is read and the files written on a worker thread; `ui` only draws what it holds.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, Sender};

use egui::{Color32, RichText};
use egui_plot::{Bar, BarChart, Legend, Plot};

use crate::gui::i18n::Messages;
use crate::gui::screen::{Desk, Screen, ScreenId};
use crate::ledger::{Ledger, RunScope};
use crate::station::ledger_report::{LedgerReport, scope_text};
use crate::station::operator::{Role, StationHandle};
use crate::station::report_data::{ReportData, hour_label};

/// The reports screen's id.
pub const REPORTS: ScreenId = "reports";

/// Days offered in the day list, newest first.
const DAYS_LISTED: usize = 366;

/// What the worker answers.
enum Answer {
    /// The batches and days that have device runs.
    Lists(Result<(Vec<String>, Vec<String>), String>),
    /// A report read from the ledger.
    Report(Box<Result<LedgerReport, String>>),
    /// Files written (the Markdown's path), or why not.
    Written(Result<PathBuf, String>),
}

/// Batch or day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Batch,
    Day,
}

/// The reports screen.
pub struct ReportsScreen {
    tx: Sender<Answer>,
    rx: Receiver<Answer>,
    kind: Kind,
    batches: Vec<String>,
    days: Vec<String>,
    chosen: Option<String>,
    lists_asked: bool,
    lists_error: Option<String>,
    loading: bool,
    report: Option<Result<LedgerReport, String>>,
    writing: bool,
    written: Option<Result<PathBuf, String>>,
}

impl Default for ReportsScreen {
    fn default() -> Self {
        Self::new()
    }
}

impl ReportsScreen {
    /// A screen that reads the ledger when first shown.
    pub fn new() -> Self {
        let (tx, rx) = mpsc::channel();
        Self {
            tx,
            rx,
            kind: Kind::Batch,
            batches: Vec::new(),
            days: Vec::new(),
            chosen: None,
            lists_asked: false,
            lists_error: None,
            loading: false,
            report: None,
            writing: false,
            written: None,
        }
    }

    fn spawn(&self, ctx: &egui::Context, job: impl FnOnce() -> Answer + Send + 'static) {
        let (tx, ctx) = (self.tx.clone(), ctx.clone());
        let spawned = std::thread::Builder::new()
            .name("reports".into())
            .spawn(move || {
                let _ = tx.send(job());
                ctx.request_repaint();
            });
        if let Err(e) = spawned {
            tracing::error!("the reports worker could not start: {e}");
        }
    }

    fn ask_lists(&mut self, ctx: &egui::Context, ledger: PathBuf) {
        self.lists_asked = true;
        self.spawn(ctx, move || {
            Answer::Lists(
                Ledger::open_read_only(&ledger)
                    .and_then(|l| {
                        let batches = l.list_batches()?.into_iter().map(|b| b.name).collect();
                        Ok((batches, l.run_days(DAYS_LISTED)?))
                    })
                    .map_err(|e| e.to_string()),
            )
        });
    }

    fn ask_report(&mut self, ctx: &egui::Context, ledger: PathBuf, scope: RunScope) {
        self.loading = true;
        self.written = None;
        self.spawn(ctx, move || {
            let report = Ledger::open_read_only(&ledger)
                .map_err(|e| e.to_string())
                .and_then(|l| LedgerReport::read(&l, scope).map_err(|e| e.to_string()));
            Answer::Report(Box::new(report))
        });
    }

    fn scope(&self) -> Option<RunScope> {
        let chosen = self.chosen.clone()?;
        Some(match self.kind {
            Kind::Batch => RunScope::Batch(chosen),
            Kind::Day => RunScope::Day(chosen),
        })
    }

    /// The batch/day switch and the list to choose from (a list, not a drop-down: an engineer
    /// sees what ran at a glance).
    fn chooser(&mut self, ui: &mut egui::Ui, tr: &Messages, ledger: &Path) {
        let mut changed = false;
        ui.horizontal(|ui| {
            for (kind, key) in [
                (Kind::Batch, "reports.by_batch"),
                (Kind::Day, "reports.by_day"),
            ] {
                if ui.radio_value(&mut self.kind, kind, tr.t(key)).changed() {
                    self.chosen = None;
                }
            }
        });
        if ui.button(tr.t("reports.refresh")).clicked() {
            self.ask_lists(ui.ctx(), ledger.to_path_buf());
            changed = self.chosen.is_some();
        }
        let items = match self.kind {
            Kind::Batch => &self.batches,
            Kind::Day => &self.days,
        };
        egui::ScrollArea::vertical()
            .id_salt("reports-choice")
            .max_height(ui.available_height() - 8.0)
            .show(ui, |ui| {
                if items.is_empty() {
                    ui.label(tr.t("reports.none"));
                }
                for item in items {
                    let on = self.chosen.as_deref() == Some(item.as_str());
                    if ui.selectable_label(on, item).clicked() && !on {
                        self.chosen = Some(item.clone());
                        changed = true;
                    }
                }
            });
        if changed && let Some(scope) = self.scope() {
            self.ask_report(ui.ctx(), ledger.to_path_buf(), scope);
        }
    }
}

/// The figures in text, with the fixture hint as an abnormal line (▲, colour and words).
fn figures(ui: &mut egui::Ui, tr: &Messages, d: &ReportData, alarm: Color32) {
    let pct = |r: f64| format!("{:.1}%", r * 100.0);
    let ms = |d: std::time::Duration| d.as_millis().to_string();
    ui.label(tr.f(
        "reports.yield",
        &[
            ("devices", &d.devices.to_string()),
            ("passed", &d.passed.to_string()),
            ("failed", &d.failed.to_string()),
            ("yield", &pct(d.yield_ratio)),
        ],
    ));
    if d.passed == 0 {
        ui.label(tr.t("reports.no_time"));
    } else {
        ui.label(tr.f(
            "reports.times",
            &[("median", &ms(d.median)), ("p95", &ms(d.p95))],
        ));
    }
    ui.label(tr.f(
        "reports.peak",
        &[("peak", &format!("{:.0}", d.peak_per_hour()))],
    ));
    match &d.fixture_hint {
        Some(h) => {
            ui.label(
                RichText::new(tr.f(
                    "reports.fixture_hint",
                    &[
                        ("slot", &h.slot),
                        ("rate", &pct(h.rate)),
                        ("others", &pct(h.others_rate)),
                    ],
                ))
                .color(alarm)
                .strong(),
            );
        }
        None => {
            ui.label(tr.t("reports.no_fixture_hint"));
        }
    }
}

/// One plot, labelled for screen readers and tests (`plot throughput: 3 points`).
fn plot(
    ui: &mut egui::Ui,
    width: f32,
    id: &str,
    title: &str,
    points: usize,
    (x, y): (&str, &str),
    build: impl FnOnce(&mut egui_plot::PlotUi<'_>),
) {
    ui.vertical(|ui| {
        ui.set_width(width);
        ui.label(RichText::new(title).strong());
        let response = Plot::new(format!("reports-{id}"))
            .width(width)
            .height(200.0)
            .legend(Legend::default())
            .x_axis_label(x)
            .y_axis_label(y)
            .allow_scroll(false)
            .include_y(0.0)
            .include_x(-0.8)
            .include_x(points.max(1) as f64 - 0.2)
            .show(ui, |p| build(p))
            .response;
        let label = format!("plot {id}: {points} points");
        response.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Figure, true, label.clone()));
    });
}

fn plots(ui: &mut egui::Ui, tr: &Messages, d: &ReportData, grey: Color32, alarm: Color32) {
    let hours = d.bucket_secs as f64 / 3600.0;
    let first = d.throughput.first().map_or(0, |b| b.start_unix);
    let x_hour = |start: i64| (start - first) as f64 / 3600.0;
    // Two plots a row, each half of what is left.
    let w = ((ui.available_width() - 24.0) / 2.0).clamp(220.0, 600.0);
    egui::Grid::new("reports-plots")
        .num_columns(2)
        .spacing([16.0, 16.0])
        .show(ui, |ui| {
            let start = d.throughput.first().map(|b| hour_label(b.start_unix));
            let x = tr.f(
                "reports.axis_hours",
                &[("start", start.as_deref().unwrap_or("–"))],
            );
            plot(
                ui,
                w,
                "throughput",
                tr.t("reports.plot_throughput"),
                d.throughput.len(),
                (&x, tr.t("reports.axis_per_hour")),
                |p| {
                    // Bars, not a line: one hour of work is one visible bar, not a lone point.
                    let bars = |failed: bool, offset: f64, colour: Color32| {
                        d.throughput
                            .iter()
                            .map(|b| {
                                let n = if failed { b.failed } else { b.passed };
                                Bar::new(x_hour(b.start_unix) + offset * hours, n as f64 / hours)
                                    .width(0.4 * hours)
                                    .fill(colour)
                            })
                            .collect()
                    };
                    p.bar_chart(
                        BarChart::new(tr.t("reports.passed"), bars(false, -0.2, grey)).color(grey),
                    );
                    p.bar_chart(
                        BarChart::new(tr.t("reports.failed"), bars(true, 0.2, alarm)).color(alarm),
                    );
                },
            );
            plot(
                ui,
                w,
                "time",
                tr.t("reports.plot_time"),
                d.histogram.len(),
                (tr.t("reports.axis_ms"), tr.t("reports.axis_devices")),
                |p| {
                    let bars = d
                        .histogram
                        .iter()
                        .map(|b| {
                            Bar::new((b.lo_ms + b.hi_ms) as f64 / 2.0, b.count as f64)
                                .width((b.hi_ms - b.lo_ms) as f64 * 0.9)
                                .fill(grey)
                        })
                        .collect();
                    p.bar_chart(BarChart::new(tr.t("reports.devices"), bars).color(grey));
                },
            );
            ui.end_row();
            let stages: Vec<(&String, &usize)> = d.failures_by_stage.iter().collect();
            plot(
                ui,
                w,
                "stages",
                tr.t("reports.plot_stages"),
                stages.len(),
                (tr.t("reports.axis_stage"), tr.t("reports.axis_devices")),
                |p| {
                    let bars = stages
                        .iter()
                        .enumerate()
                        .map(|(i, (stage, n))| {
                            Bar::new(i as f64, **n as f64).name(*stage).fill(alarm)
                        })
                        .collect();
                    p.bar_chart(BarChart::new(tr.t("reports.failed"), bars).color(alarm));
                },
            );
            plot(
                ui,
                w,
                "slots",
                tr.t("reports.plot_slots"),
                d.slots.len(),
                (tr.t("reports.axis_slot"), tr.t("reports.axis_devices")),
                |p| {
                    let bars = |failed: bool, offset: f64| {
                        d.slots
                            .iter()
                            .enumerate()
                            .map(|(i, s)| {
                                let n = if failed {
                                    s.failed
                                } else {
                                    s.devices - s.failed
                                };
                                Bar::new(i as f64 + offset, n as f64)
                                    .width(0.4)
                                    .fill(if failed { alarm } else { grey })
                                    .name(&s.slot)
                            })
                            .collect()
                    };
                    p.bar_chart(
                        BarChart::new(tr.t("reports.passed"), bars(false, -0.2)).color(grey),
                    );
                    p.bar_chart(
                        BarChart::new(tr.t("reports.failed"), bars(true, 0.2)).color(alarm),
                    );
                },
            );
            ui.end_row();
        });
    // The plots' categories in words: a slot or a stage is read, not guessed from a bar's place.
    let slots: Vec<String> = d
        .slots
        .iter()
        .map(|s| format!("{} {}/{}", s.slot, s.failed, s.devices))
        .collect();
    ui.label(tr.f("reports.slots_text", &[("slots", &slots.join(" · "))]));
    let stages: Vec<String> = d
        .failures_by_stage
        .iter()
        .map(|(s, n)| format!("{s} {n}"))
        .collect();
    if !stages.is_empty() {
        ui.label(tr.f("reports.stages_text", &[("stages", &stages.join(" · "))]));
    }
}

impl Screen for ReportsScreen {
    fn id(&self) -> ScreenId {
        REPORTS
    }

    fn title_key(&self) -> &'static str {
        "reports.title"
    }

    fn min_role(&self) -> Role {
        Role::Engineer
    }

    fn logic(&mut self, _ctx: &egui::Context, _station: &StationHandle, _tr: &Messages) {
        while let Ok(answer) = self.rx.try_recv() {
            match answer {
                Answer::Lists(Ok((batches, days))) => {
                    (self.batches, self.days, self.lists_error) = (batches, days, None);
                }
                Answer::Lists(Err(e)) => self.lists_error = Some(e),
                Answer::Report(report) => {
                    self.loading = false;
                    self.report = Some(*report);
                }
                Answer::Written(result) => {
                    self.writing = false;
                    self.written = Some(result);
                }
            }
        }
    }

    fn ui(&mut self, ui: &mut egui::Ui, desk: &Desk<'_>) {
        let tr = desk.tr;
        let config = desk.station.config();
        let ledger = config.ledger.clone();
        if !self.lists_asked {
            self.ask_lists(ui.ctx(), ledger.clone());
        }
        ui.heading(tr.t("reports.title"));
        ui.horizontal_top(|ui| {
            ui.allocate_ui(egui::vec2(220.0, ui.available_height()), |ui| {
                ui.vertical(|ui| {
                    ui.set_width(220.0);
                    self.chooser(ui, tr, &ledger);
                });
            });
            ui.separator();
            ui.vertical(|ui| self.report_ui(ui, desk));
        });
    }
}

impl ReportsScreen {
    fn report_ui(&mut self, ui: &mut egui::Ui, desk: &Desk<'_>) {
        let tr = desk.tr;
        let config = desk.station.config();
        if let Some(e) = &self.lists_error {
            ui.label(RichText::new(format!("▲ {e}")).color(desk.palette.alarm));
        }
        if self.loading {
            ui.label(tr.t("reports.working"));
        }
        let report = match &self.report {
            None => {
                ui.label(tr.t("reports.pick"));
                return;
            }
            Some(Err(e)) => {
                ui.label(RichText::new(format!("▲ {e}")).color(desk.palette.alarm));
                return;
            }
            Some(Ok(r)) => r,
        };
        ui.label(RichText::new(scope_text(&report.scope)).strong());
        let (grey, alarm) = (desk.palette.weak, desk.palette.alarm);
        let mut write = false;
        egui::ScrollArea::vertical().show(ui, |ui| {
            figures(ui, tr, &report.data, alarm);
            ui.horizontal(|ui| {
                write = ui
                    .add_enabled(!self.writing, egui::Button::new(tr.t("reports.write")))
                    .clicked();
                if self.writing {
                    ui.label(tr.t("reports.writing"));
                }
                match &self.written {
                    Some(Ok(md)) => {
                        ui.label(tr.f("reports.written", &[("path", &md.display().to_string())]));
                    }
                    Some(Err(e)) => {
                        ui.label(RichText::new(format!("▲ {e}")).color(alarm));
                    }
                    None => {}
                }
            });
            ui.add_space(8.0);
            plots(ui, tr, &report.data, grey, alarm);
        });
        if write {
            let (report, dir) = (report.clone(), config.reports.clone());
            // Writing files changes something: the role is checked again at the click.
            if let Err(e) = desk.station.require(Role::Engineer) {
                self.written = Some(Err(e.to_string()));
                return;
            }
            self.writing = true;
            self.spawn(ui.ctx(), move || {
                Answer::Written(
                    report
                        .write(&dir)
                        .map(|(md, _)| md)
                        .map_err(|e| e.to_string()),
                )
            });
        }
    }
}
