//! Enrollment (engineer): the queue by DPS target and state, DPS's answers over the last day
//! (enrolled, throttled 429, server errors, no answer, refused) as a plot and in text, and each
//! target's operation quota. Read from the ledger on a worker; `ui` only draws.

use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::{SystemTime, UNIX_EPOCH};

use egui::RichText;
use egui_plot::{Bar, BarChart, Legend, Plot};

use crate::gui::i18n::Messages;
use crate::gui::screen::{Desk, Screen, ScreenId};
use crate::gui::widgets::file_pick::{FilePick, PickKind};
use crate::ledger::Ledger;
use crate::station::enroll_now::{enroll_now, import_results_now};
use crate::station::enrollment_view::{AnswerKind, EnrollmentOverview};
use crate::station::operator::{Role, StationHandle};
use crate::station::report_data::hour_label;

/// The enrollment screen's id.
pub const ENROLLMENT: ScreenId = "enrollment";

/// Hours of DPS answers shown.
const HOURS: i64 = 24;

/// DPS's documented rate limit per service (operations per minute), shown when station.toml
/// sets none for a target.
const DPS_OPERATIONS_PER_MINUTE: u32 = 1000;

/// The enrollment screen.
pub struct EnrollmentScreen {
    tx: Sender<Result<EnrollmentOverview, String>>,
    rx: Receiver<Result<EnrollmentOverview, String>>,
    asked: bool,
    loading: bool,
    overview: Option<Result<EnrollmentOverview, String>>,
    enroll_tx: Sender<Result<String, String>>,
    enroll_rx: Receiver<Result<String, String>>,
    /// The target being enrolled now.
    enrolling: Option<String>,
    /// The last enroll-now's outcome, in words.
    enrolled: Option<Result<String, String>>,
    /// Results returned by an offline site: the file or folder, and the target they are for.
    results: FilePick,
    import_target: String,
    import_tx: Sender<Result<String, String>>,
    import_rx: Receiver<Result<String, String>>,
    importing: bool,
    imported: Option<Result<String, String>>,
}

impl Default for EnrollmentScreen {
    fn default() -> Self {
        Self::new()
    }
}

impl EnrollmentScreen {
    /// A screen that reads the ledger when first shown.
    pub fn new() -> Self {
        let (tx, rx) = mpsc::channel();
        let (enroll_tx, enroll_rx) = mpsc::channel();
        let (import_tx, import_rx) = mpsc::channel();
        Self {
            results: FilePick::new("enrollment-results", PickKind::File(&[]))
                .labelled("enrollment.results_file"),
            import_target: String::new(),
            import_tx,
            import_rx,
            importing: false,
            imported: None,
            tx,
            rx,
            asked: false,
            loading: false,
            overview: None,
            enroll_tx,
            enroll_rx,
            enrolling: None,
            enrolled: None,
        }
    }

    fn ask(&mut self, ctx: &egui::Context, ledger: PathBuf) {
        self.asked = true;
        self.loading = true;
        let (tx, ctx) = (self.tx.clone(), ctx.clone());
        let spawned = std::thread::Builder::new()
            .name("enrollment-view".into())
            .spawn(move || {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0));
                // A station that has run no batch yet has no ledger file: nothing is queued.
                let overview = if ledger.exists() {
                    Ledger::open_read_only(&ledger)
                        .and_then(|l| EnrollmentOverview::read(&l, now, HOURS))
                        .map_err(|e| e.to_string())
                } else {
                    Ok(EnrollmentOverview::default())
                };
                let _ = tx.send(overview);
                ctx.request_repaint();
            });
        if let Err(e) = spawned {
            self.loading = false;
            self.overview = Some(Err(format!("the enrollment worker could not start: {e}")));
        }
    }
}

impl EnrollmentScreen {
    /// Enroll-now on a worker: the probe, then the `dps enroll` path; the answer in words.
    fn enroll(&mut self, ctx: &egui::Context, desk: &Desk<'_>, target: String) {
        // It changes the ledger and DPS: the role is checked again at the click.
        if let Err(e) = desk.station.require(Role::Engineer) {
            self.enrolled = Some(Err(e.to_string()));
            return;
        }
        let operator = desk
            .station
            .operator()
            .0
            .unwrap_or_else(|| "engineer".into());
        let (station, tr_done) = (
            desk.station.config().clone(),
            desk.tr.t("enrollment.enroll_done").to_string(),
        );
        let (tx, ctx2) = (self.enroll_tx.clone(), ctx.clone());
        self.enrolling = Some(target.clone());
        self.enrolled = None;
        let spawned = std::thread::Builder::new()
            .name("enroll-now".into())
            .spawn(move || {
                let answer = enroll_now(&station, &operator, &target)
                    .map(|s| {
                        tr_done
                            .replace("{target}", &target)
                            .replace("{enrolled}", &s.enrolled().to_string())
                            .replace("{pending}", &s.pending.to_string())
                            .replace("{failed}", &s.failed.len().to_string())
                            .replace("{retry}", &s.retry_later.len().to_string())
                    })
                    .map_err(|e| e.to_string());
                let _ = tx.send(answer);
                ctx2.request_repaint();
            });
        if let Err(e) = spawned {
            self.enrolling = None;
            self.enrolled = Some(Err(format!("the enroll worker could not start: {e}")));
        }
    }
}

impl EnrollmentScreen {
    /// Import of an offline site's results on a worker; the answer in words.
    fn import(&mut self, ctx: &egui::Context, desk: &Desk<'_>) {
        // It changes the ledger: the role is checked again at the click.
        if let Err(e) = desk.station.require(Role::Engineer) {
            self.imported = Some(Err(e.to_string()));
            return;
        }
        let Some(path) = self.results.path() else {
            self.imported = Some(Err(desk.tr.t("enrollment.import_no_file").to_string()));
            return;
        };
        let operator = desk
            .station
            .operator()
            .0
            .unwrap_or_else(|| "engineer".into());
        let station = desk.station.config().clone();
        let target = self.import_target.clone();
        let done = desk.tr.t("enrollment.import_done").to_string();
        let (tx, ctx2) = (self.import_tx.clone(), ctx.clone());
        self.importing = true;
        self.imported = None;
        let spawned = std::thread::Builder::new()
            .name("import-results".into())
            .spawn(move || {
                let answer = import_results_now(&station, &operator, &target, &path)
                    .map(|s| {
                        done.replace("{target}", &target)
                            .replace("{read}", &s.read.to_string())
                            .replace("{enrolled}", &s.enrolled.to_string())
                            .replace("{failed}", &s.reported_failed.len().to_string())
                            .replace("{not_pending}", &s.not_pending.len().to_string())
                    })
                    .map_err(|e| e.to_string());
                let _ = tx.send(answer);
                ctx2.request_repaint();
            });
        if let Err(e) = spawned {
            self.importing = false;
            self.imported = Some(Err(format!("the import worker could not start: {e}")));
        }
    }

    /// The offline site's results: target, file or folder, import.
    fn import_ui(&mut self, ui: &mut egui::Ui, desk: &Desk<'_>) -> bool {
        let tr = desk.tr;
        let targets: Vec<&String> = desk.station.config().dps.keys().collect();
        if self.import_target.is_empty()
            && let Some(first) = targets.first()
        {
            self.import_target = (*first).clone();
        }
        ui.label(RichText::new(tr.t("enrollment.import_title")).strong());
        ui.label(tr.t("enrollment.import_hint"));
        ui.horizontal(|ui| {
            ui.label(tr.t("enrollment.target"));
            egui::ComboBox::from_id_salt("import-target")
                .selected_text(self.import_target.clone())
                .show_ui(ui, |ui| {
                    for t in &targets {
                        ui.selectable_value(&mut self.import_target, (*t).clone(), t.as_str());
                    }
                });
        });
        self.results.ui(ui, tr);
        let clicked = ui
            .add_enabled(
                !self.importing && !self.import_target.is_empty(),
                egui::Button::new(tr.t("enrollment.import_button")),
            )
            .clicked();
        if self.importing {
            ui.label(tr.t("enrollment.importing"));
        }
        match &self.imported {
            Some(Ok(text)) => {
                ui.label(text);
            }
            Some(Err(e)) => {
                ui.label(RichText::new(format!("▲ {e}")).color(desk.palette.alarm));
            }
            None => {}
        }
        clicked
    }
}

fn answers_plot(ui: &mut egui::Ui, tr: &Messages, o: &EnrollmentOverview, desk: &Desk<'_>) {
    let first = o.hours.first().map_or(0, |h| h.start_unix);
    let x_label = tr.f(
        "enrollment.axis_hours",
        &[(
            "start",
            &o.hours
                .first()
                .map_or("–".into(), |h| hour_label(h.start_unix)),
        )],
    );
    let response = Plot::new("enrollment-answers")
        .height(220.0)
        .legend(Legend::default())
        .x_axis_label(x_label)
        .y_axis_label(tr.t("enrollment.axis_answers"))
        .allow_scroll(false)
        .include_y(0.0)
        .show(ui, |p| {
            let n = AnswerKind::ALL.len() as f64;
            for (k, kind) in AnswerKind::ALL.into_iter().enumerate() {
                let colour = if kind.abnormal() {
                    desk.palette.alarm
                } else {
                    desk.palette.weak
                };
                let offset = (k as f64 - (n - 1.0) / 2.0) * 0.15;
                let bars = o
                    .hours
                    .iter()
                    .map(|h| {
                        let x = (h.start_unix - first) as f64 / 3600.0 + offset;
                        let count = h.counts.get(&kind).copied().unwrap_or(0);
                        Bar::new(x, count as f64).width(0.14).fill(colour)
                    })
                    .collect();
                let name = tr
                    .t(&format!("enrollment.answer.{}", kind.key()))
                    .to_string();
                p.bar_chart(BarChart::new(name, bars).color(colour));
            }
        })
        .response;
    let label = format!("plot enrollment answers: {} hours", o.hours.len());
    response.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Figure, true, label.clone()));
}

impl Screen for EnrollmentScreen {
    fn id(&self) -> ScreenId {
        ENROLLMENT
    }

    fn title_key(&self) -> &'static str {
        "enrollment.title"
    }

    fn min_role(&self) -> Role {
        Role::Engineer
    }

    fn logic(&mut self, _ctx: &egui::Context, _station: &StationHandle, _tr: &Messages) {
        while let Ok(answer) = self.rx.try_recv() {
            self.loading = false;
            self.overview = Some(answer);
        }
        if let Ok(answer) = self.import_rx.try_recv() {
            self.importing = false;
            self.imported = Some(answer);
            self.asked = false;
        }
        if let Ok(answer) = self.enroll_rx.try_recv() {
            self.enrolling = None;
            self.enrolled = Some(answer);
            // The queue changed (or not): read it again.
            self.asked = false;
        }
    }

    fn ui(&mut self, ui: &mut egui::Ui, desk: &Desk<'_>) {
        let tr = desk.tr;
        let config = desk.station.config();
        if !self.asked {
            self.ask(ui.ctx(), config.ledger.clone());
        }
        ui.heading(tr.t("enrollment.title"));
        ui.horizontal(|ui| {
            if ui
                .add_enabled(!self.loading, egui::Button::new(tr.t("enrollment.refresh")))
                .clicked()
            {
                self.ask(ui.ctx(), config.ledger.clone());
            }
            if self.loading {
                ui.label(tr.t("enrollment.working"));
            }
        });
        // Held out of `self` while drawing, so the import section may change the screen's state.
        let overview = match self.overview.take() {
            None => return,
            Some(Err(e)) => {
                ui.label(RichText::new(format!("▲ {e}")).color(desk.palette.alarm));
                self.overview = Some(Err(e));
                return;
            }
            Some(Ok(o)) => o,
        };
        let o = &overview;
        let mut enroll = None;
        let mut import = false;
        egui::ScrollArea::vertical().show(ui, |ui| {
            ui.label(RichText::new(tr.t("enrollment.queue")).strong());
            if o.queue.is_empty() {
                ui.label(tr.t("enrollment.queue_empty"));
            }
            egui::Grid::new("enrollment-queue")
                .num_columns(6)
                .striped(true)
                .show(ui, |ui| {
                    for key in [
                        "enrollment.target",
                        "enrollment.pending",
                        "enrollment.enrolled",
                        "enrollment.failed",
                        "enrollment.quota",
                        "enrollment.action",
                    ] {
                        ui.label(RichText::new(tr.t(key)).strong());
                    }
                    ui.end_row();
                    for (target, q) in &o.queue {
                        ui.label(target);
                        ui.label(q.pending.to_string());
                        ui.label(q.enrolled.to_string());
                        if q.failed > 0 {
                            ui.label(
                                RichText::new(format!("▲ {}", q.failed)).color(desk.palette.alarm),
                            );
                        } else {
                            ui.label("0");
                        }
                        let quota = config.dps.get(target).and_then(|t| t.operations_per_minute);
                        ui.label(match quota {
                            Some(n) => tr.f("enrollment.quota_set", &[("n", &n.to_string())]),
                            None => tr.f(
                                "enrollment.quota_default",
                                &[("n", &DPS_OPERATIONS_PER_MINUTE.to_string())],
                            ),
                        });
                        let idle = self.enrolling.is_none();
                        if ui
                            .add_enabled(
                                idle && q.pending > 0,
                                egui::Button::new(
                                    tr.f("enrollment.enroll_now", &[("target", target)]),
                                ),
                            )
                            .clicked()
                        {
                            enroll = Some(target.clone());
                        }
                        ui.end_row();
                    }
                });
            if let Some(target) = &self.enrolling {
                ui.label(tr.f("enrollment.enrolling", &[("target", target)]));
            }
            match &self.enrolled {
                Some(Ok(text)) => {
                    ui.label(text);
                }
                Some(Err(e)) => {
                    ui.label(RichText::new(format!("▲ {e}")).color(desk.palette.alarm));
                }
                None => {}
            }
            ui.add_space(12.0);
            import = self.import_ui(ui, desk);
            ui.add_space(12.0);
            ui.label(RichText::new(tr.t("enrollment.answers")).strong());
            let totals: Vec<String> = AnswerKind::ALL
                .into_iter()
                .map(|k| {
                    let n = o.totals.get(&k).copied().unwrap_or(0);
                    let name = tr.t(&format!("enrollment.answer.{}", k.key())).to_string();
                    if k.abnormal() && n > 0 {
                        format!("▲ {name} {n}")
                    } else {
                        format!("{name} {n}")
                    }
                })
                .collect();
            ui.label(tr.f("enrollment.totals", &[("totals", &totals.join(" · "))]));
            if o.hours.is_empty() {
                ui.label(tr.t("enrollment.no_answers"));
            } else {
                answers_plot(ui, tr, o, desk);
            }
        });
        self.overview = Some(Ok(overview));
        if let Some(target) = enroll {
            self.enroll(ui.ctx(), desk, target);
        }
        if import {
            self.import(ui.ctx(), desk);
        }
    }
}
