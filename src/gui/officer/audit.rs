//! The audit view (officer and engineer) and the ledger's health (issue 11 point 3), on one
//! screen: the hash-chained audit log a page at a time with filters (key session, actor,
//! operation, subject, time), `verify` with a progress bar naming the first broken row, the
//! ledger's counts, and a time range exported as CSV for auditors.
//!
//! The screen opens the ledger read-only for everything it does, so a ledger that fails verify
//! or comes from a newer dps-station is only ever shown, never written. All reading happens in
//! [`super::audit_jobs`]; `ui` draws what has arrived.

use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver};

use egui::RichText;
use egui_extras::{Column, TableBuilder};

use crate::gui::i18n::Messages;
use crate::gui::screen::{Desk, Screen, ScreenId};
use crate::gui::widgets::file_pick::{FilePick, PickKind};
use crate::ledger::audit_query::{Bound, parse_time_bound};
use crate::ledger::schema;
use crate::ledger::{
    AuditFilter, AuditId, AuditPage, KeySessionId, LedgerStats, TimeRange, VerifyProgress,
};
use crate::station::operator::{Role, StationHandle};

use super::audit_jobs::{Answer, Jobs, Verified, export_path};
use super::audit_parts::{alarm, field, stats_grid, verified_ui};

/// The audit screen's id.
pub const AUDIT: ScreenId = "audit";

/// Rows per page: a few screens' worth; the table lays out only those in view.
const PAGE_ROWS: u32 = 200;

/// The filter fields as typed.
#[derive(Default)]
struct FilterForm {
    session: String,
    actor: String,
    action: String,
    subject: String,
    from: String,
    to: String,
}

impl FilterForm {
    /// The filter, or the message for the first field that is not understood.
    fn parse(&self, tr: &Messages) -> Result<AuditFilter, String> {
        let key_session = match self.session.trim() {
            "" => None,
            s => Some(KeySessionId(
                s.parse::<i64>()
                    .map_err(|_| tr.t("audit.bad_session").to_string())?,
            )),
        };
        Ok(AuditFilter {
            key_session,
            actor: Some(self.actor.clone()),
            action: Some(self.action.clone()),
            subject: Some(self.subject.clone()),
            range: range(&self.from, &self.to)?,
        })
    }
}

/// A time range from two typed fields (either may be empty).
fn range(from: &str, to: &str) -> Result<TimeRange, String> {
    let bound = |t: &str, b| -> Result<Option<String>, String> {
        match t.trim() {
            "" => Ok(None),
            t => parse_time_bound(t, b).map(Some).map_err(|e| e.to_string()),
        }
    };
    Ok(TimeRange {
        from: bound(from, Bound::From)?,
        to: bound(to, Bound::To)?,
    })
}

/// The audit screen.
pub struct AuditScreen {
    jobs: Option<(Jobs, Receiver<Answer>)>,
    form: FilterForm,
    form_error: Option<String>,
    applied: AuditFilter,
    /// The `before` cursor of each page seen; the last is the page shown.
    cursors: Vec<Option<AuditId>>,
    seq: u64,
    loading: bool,
    page: Option<Result<AuditPage, String>>,
    /// A row to mark (the first broken row, after "Show row").
    marked: Option<i64>,
    stats: Option<Result<LedgerStats, String>>,
    /// The file's schema version, once known.
    schema: Option<i64>,
    verifying: Option<VerifyProgress>,
    verified: Option<Result<Verified, String>>,
    export_from: String,
    export_to: String,
    folder: FilePick,
    exporting: Option<u64>,
    exported: Option<Result<(PathBuf, u64), String>>,
}

impl AuditScreen {
    /// The screen; the export folder starts as the station's reports folder.
    pub fn new(station: &StationHandle) -> Self {
        let mut folder = FilePick::new("audit-export", PickKind::Folder);
        folder.set_path(&station.config().reports);
        Self {
            jobs: None,
            form: FilterForm::default(),
            form_error: None,
            applied: AuditFilter::default(),
            cursors: vec![None],
            seq: 0,
            loading: false,
            page: None,
            marked: None,
            stats: None,
            schema: None,
            verifying: None,
            verified: None,
            export_from: String::new(),
            export_to: String::new(),
            folder,
            exporting: None,
            exported: None,
        }
    }

    /// Starts the jobs on first sight, and with them the first page and the counts.
    fn start(&mut self, ctx: &egui::Context, station: &StationHandle) {
        if self.jobs.is_none() {
            let (tx, rx) = mpsc::channel();
            let jobs = Jobs::new(station.config().ledger.clone(), tx, ctx.clone());
            jobs.stats();
            self.jobs = Some((jobs, rx));
            self.query();
        }
    }

    /// Asks for the page at the top of the cursor stack.
    fn query(&mut self) {
        let Some((jobs, _)) = &self.jobs else { return };
        self.seq += 1;
        self.loading = true;
        let before = self.cursors.last().copied().flatten();
        jobs.page(self.seq, self.applied.clone(), before, PAGE_ROWS);
    }

    /// Reading is for officers and engineers; the shell checked on navigation, this re-checks
    /// before each action (a role may have been dropped since).
    fn may(station: &StationHandle) -> Result<(), String> {
        station
            .require(Role::Officer)
            .or_else(|_| station.require(Role::Engineer))
            .map_err(|e| e.to_string())
    }

    fn filters_ui(&mut self, ui: &mut egui::Ui, desk: &Desk<'_>) {
        let tr = desk.tr;
        let hint = tr.t("audit.time_hint");
        let form = &mut self.form;
        ui.horizontal(|ui| {
            field(ui, tr.t("audit.session"), &mut form.session, 60.0, "");
            field(ui, tr.t("audit.actor"), &mut form.actor, 130.0, "");
            field(
                ui,
                tr.t("audit.action"),
                &mut form.action,
                170.0,
                "key_session.",
            );
        });
        ui.horizontal(|ui| {
            field(ui, tr.t("audit.subject"), &mut form.subject, 170.0, "");
            field(ui, tr.t("audit.from"), &mut form.from, 170.0, hint);
            field(ui, tr.t("audit.to"), &mut form.to, 170.0, hint);
        });
        ui.horizontal(|ui| {
            if ui.button(tr.t("audit.apply")).clicked() {
                match Self::may(desk.station).and_then(|()| self.form.parse(tr)) {
                    Ok(filter) => {
                        self.form_error = None;
                        self.applied = filter;
                        self.cursors = vec![None];
                        self.marked = None;
                        self.query();
                    }
                    Err(e) => self.form_error = Some(e),
                }
            }
            if ui.button(tr.t("audit.clear")).clicked() {
                self.form = FilterForm::default();
                self.form_error = None;
                self.applied = AuditFilter::default();
                self.cursors = vec![None];
                self.marked = None;
                self.query();
            }
            let older = self
                .page
                .as_ref()
                .and_then(|p| p.as_ref().ok())
                .and_then(|p| p.older);
            if ui
                .add_enabled(
                    self.cursors.len() > 1,
                    egui::Button::new(tr.t("audit.newer")),
                )
                .clicked()
            {
                self.cursors.pop();
                self.query();
            }
            if ui
                .add_enabled(older.is_some(), egui::Button::new(tr.t("audit.older")))
                .clicked()
            {
                self.cursors.push(older);
                self.query();
            }
            if ui.button(tr.t("audit.refresh")).clicked() {
                self.query();
            }
            if self.loading {
                ui.spinner();
                ui.label(tr.t("audit.loading"));
            }
        });
        if let Some(e) = &self.form_error {
            alarm(ui, desk, e);
        }
    }

    fn table_ui(&mut self, ui: &mut egui::Ui, desk: &Desk<'_>) {
        let tr = desk.tr;
        let page = match &self.page {
            None => return,
            Some(Err(e)) => return alarm(ui, desk, e),
            Some(Ok(p)) => p,
        };
        if page.rows.is_empty() {
            ui.label(tr.t("audit.no_rows"));
            return;
        }
        let first = page.rows.first().map_or(0, |r| r.id.0).to_string();
        let last = page.rows.last().map_or(0, |r| r.id.0).to_string();
        let number = self.cursors.len().to_string();
        ui.label(
            RichText::new(tr.f(
                "audit.page",
                &[("page", &number), ("first", &first), ("last", &last)],
            ))
            .color(desk.palette.weak),
        );
        let marked = self.marked;
        // Denser than the line screens: an officer reads many rows at a desk.
        ui.style_mut().override_font_id = Some(egui::FontId::proportional(15.0));
        TableBuilder::new(ui)
            .id_salt("audit-rows")
            .striped(true)
            .resizable(true)
            .cell_layout(egui::Layout::left_to_right(egui::Align::Center))
            .column(Column::exact(56.0))
            .column(Column::initial(180.0).clip(true))
            .column(Column::initial(70.0).clip(true))
            .column(Column::initial(150.0).clip(true))
            .column(Column::initial(120.0).clip(true))
            .column(Column::initial(75.0).clip(true))
            .column(Column::remainder().clip(true))
            .header(24.0, |mut h| {
                for key in [
                    "audit.col.id",
                    "audit.col.at",
                    "audit.col.actor",
                    "audit.col.action",
                    "audit.col.subject",
                    "audit.col.hash",
                    "audit.col.details",
                ] {
                    h.col(|ui| {
                        ui.strong(tr.t(key));
                    });
                }
            })
            .body(|body| {
                body.rows(20.0, page.rows.len(), |mut row| {
                    let r = &page.rows[row.index()];
                    let broken = marked == Some(r.id.0);
                    row.set_selected(broken);
                    row.col(|ui| {
                        let id = if broken {
                            RichText::new(format!("▲ {}", r.id.0))
                                .color(desk.palette.alarm)
                                .strong()
                        } else {
                            RichText::new(r.id.0.to_string())
                        };
                        ui.label(id)
                            .on_hover_text(tr.f("audit.row_station", &[("station", &r.station)]));
                    });
                    row.col(|ui| {
                        ui.label(&r.at);
                    });
                    row.col(|ui| {
                        ui.label(&r.actor);
                    });
                    row.col(|ui| {
                        ui.label(&r.action);
                    });
                    row.col(|ui| {
                        ui.label(&r.subject);
                    });
                    row.col(|ui| {
                        ui.monospace(r.hash.get(..8).unwrap_or(&r.hash))
                            .on_hover_text(&r.hash);
                    });
                    row.col(|ui| {
                        ui.add(egui::Label::new(&r.details).truncate());
                    });
                });
            });
    }

    fn health_ui(&mut self, ui: &mut egui::Ui, desk: &Desk<'_>) {
        let tr = desk.tr;
        ui.heading(tr.t("audit.health"));
        ui.label(RichText::new(tr.t("audit.read_only")).color(desk.palette.weak));
        if let Some(v) = self.schema.filter(|v| *v > schema::CURRENT_VERSION) {
            let (found, known) = (v.to_string(), schema::CURRENT_VERSION.to_string());
            alarm(
                ui,
                desk,
                &tr.f(
                    "audit.newer_schema",
                    &[("found", &found), ("known", &known)],
                ),
            );
        }
        match &self.stats {
            None => {
                ui.label(tr.t("audit.counting"));
            }
            Some(Err(e)) => alarm(ui, desk, e),
            Some(Ok(s)) => stats_grid(ui, tr, s),
        }
        ui.add_space(6.0);
        let busy = self.verifying.is_some();
        if ui
            .add_enabled(!busy, egui::Button::new(tr.t("audit.verify")))
            .clicked()
        {
            match Self::may(desk.station) {
                Ok(()) => {
                    self.verified = None;
                    self.verifying = Some(VerifyProgress {
                        checked: 0,
                        total: 0,
                    });
                    if let Some((jobs, _)) = &self.jobs {
                        jobs.verify();
                        jobs.stats();
                    }
                }
                Err(e) => self.verified = Some(Err(e)),
            }
        }
        if let Some(p) = self.verifying {
            let fraction = if p.total == 0 {
                0.0
            } else {
                (p.checked as f64 / p.total as f64).min(1.0) as f32
            };
            ui.add(egui::ProgressBar::new(fraction).text(tr.f(
                "audit.verifying",
                &[
                    ("checked", &p.checked.to_string()),
                    ("total", &p.total.to_string()),
                ],
            )));
        }
        let mut show_row = None;
        match &self.verified {
            None => {}
            Some(Err(e)) => alarm(ui, desk, e),
            Some(Ok(v)) => {
                show_row = verified_ui(ui, desk, v);
            }
        }
        if let Some(id) = show_row {
            self.applied = AuditFilter::default();
            self.form = FilterForm::default();
            self.cursors = vec![Some(AuditId(id + 1))];
            self.marked = Some(id);
            self.query();
        }
    }

    fn export_ui(&mut self, ui: &mut egui::Ui, desk: &Desk<'_>) {
        let tr = desk.tr;
        ui.heading(tr.t("audit.export"));
        let hint = tr.t("audit.time_hint");
        ui.horizontal(|ui| {
            field(
                ui,
                tr.t("audit.export_from"),
                &mut self.export_from,
                190.0,
                hint,
            );
        });
        ui.horizontal(|ui| {
            field(
                ui,
                tr.t("audit.export_to"),
                &mut self.export_to,
                190.0,
                hint,
            );
        });
        ui.label(RichText::new(tr.t("audit.export_note")).color(desk.palette.weak));
        ui.label(tr.t("audit.export_folder"));
        self.folder.ui(ui, tr);
        let busy = self.exporting.is_some();
        if ui
            .add_enabled(!busy, egui::Button::new(tr.t("audit.export_button")))
            .clicked()
        {
            let start = Self::may(desk.station)
                .and_then(|()| range(&self.export_from, &self.export_to))
                .and_then(|r| {
                    self.folder
                        .path()
                        .map(|f| (r, f))
                        .ok_or_else(|| tr.t("audit.export_no_folder").to_string())
                });
            match start {
                Ok((r, folder)) => {
                    self.exported = None;
                    self.exporting = Some(0);
                    if let Some((jobs, _)) = &self.jobs {
                        let file = export_path(&folder, &r);
                        jobs.export(r, file);
                    }
                }
                Err(e) => self.exported = Some(Err(e)),
            }
        }
        if let Some(n) = self.exporting {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label(tr.f("audit.exporting", &[("rows", &n.to_string())]));
            });
        }
        match &self.exported {
            None => {}
            Some(Err(e)) => alarm(ui, desk, e),
            Some(Ok((path, n))) => {
                ui.label(tr.f(
                    "audit.exported",
                    &[
                        ("rows", &n.to_string()),
                        ("path", &path.display().to_string()),
                    ],
                ));
            }
        }
    }
}

impl Screen for AuditScreen {
    fn id(&self) -> ScreenId {
        AUDIT
    }

    fn title_key(&self) -> &'static str {
        "audit.nav"
    }

    fn min_role(&self) -> Role {
        Role::Officer
    }

    fn also_for(&self) -> &'static [Role] {
        &[Role::Engineer]
    }

    fn ui(&mut self, ui: &mut egui::Ui, desk: &Desk<'_>) {
        self.start(ui.ctx(), desk.station);
        // Two columns: the log on the left, health and export on the right. Each is a child
        // with a fixed width and its own clip, so a wide table cannot run under the side.
        let full = ui.available_size();
        let side = 450.0_f32.min(full.x * 0.4);
        let main = (full.x - side - 16.0).max(200.0);
        let top_down = egui::Layout::top_down(egui::Align::Min);
        ui.horizontal_top(|ui| {
            ui.allocate_ui_with_layout(egui::vec2(main, full.y), top_down, |ui| {
                ui.set_width(main);
                ui.set_clip_rect(ui.max_rect().intersect(ui.clip_rect()));
                ui.heading(desk.tr.t("audit.title"));
                self.filters_ui(ui, desk);
                ui.separator();
                ui.scope(|ui| self.table_ui(ui, desk));
            });
            ui.separator();
            ui.allocate_ui_with_layout(egui::vec2(side, full.y), top_down, |ui| {
                ui.set_width(side);
                egui::ScrollArea::vertical()
                    .id_salt("audit-side")
                    .show(ui, |ui| {
                        self.health_ui(ui, desk);
                        ui.separator();
                        self.export_ui(ui, desk);
                    });
            });
        });
    }

    fn logic(&mut self, _ctx: &egui::Context, _station: &StationHandle, _tr: &Messages) {
        let Some((_, rx)) = &self.jobs else { return };
        let answers: Vec<Answer> = rx.try_iter().collect();
        for a in answers {
            match a {
                Answer::Page { seq, result } => {
                    if seq == self.seq {
                        self.loading = false;
                        self.page = Some(result);
                    }
                }
                Answer::Schema(v) => self.schema = Some(v),
                Answer::Stats(s) => self.stats = Some(s),
                Answer::VerifyProgress(p) => {
                    if self.verifying.is_some() {
                        self.verifying = Some(p);
                    }
                }
                Answer::Verified(v) => {
                    self.verifying = None;
                    self.verified = Some(v);
                }
                Answer::ExportProgress(n) => {
                    if self.exporting.is_some() {
                        self.exporting = Some(n);
                    }
                }
                Answer::Exported(r) => {
                    self.exporting = None;
                    self.exported = Some(r);
                }
            }
        }
    }
}
