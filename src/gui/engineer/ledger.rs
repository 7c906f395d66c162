//! The ledger browser (engineer): "where is device X and is it enrolled". A table of identities
//! that stays smooth over a million rows: only the visible rows are laid out, and only the pages
//! near them are held, fetched from the screen's worker as the user scrolls. A search box (prefix
//! of registration ID or serial), filters, and a detail pane with the identity's certificate or
//! key fingerprint, enrollments and audit trail. The ledger is opened read-only for browsing;
//! actions ([`super::ledger_actions`]) write through the library on their own thread.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use egui::RichText;
use egui_extras::{Column, TableBuilder};

use crate::ledger::browse::{BrowseQuery, BrowseRow, MatchCount, PageKey};
use crate::ledger::{AttestationKind, IdentityId, IdentityState};
use crate::station::operator::{Role, StationHandle};

use super::ledger_actions::Actions;
use super::ledger_detail::{self, DetailState};
use super::ledger_worker::{Answer, COUNT_CAP, PAGE_ROWS, Request, Worker};
use crate::gui::i18n::Messages;
use crate::gui::screen::{Desk, Screen, ScreenId};

/// The ledger screen's id.
pub const LEDGER: ScreenId = "ledger";

/// Pages kept in memory around the visible rows; others are dropped and fetched again if needed.
const KEEP_PAGES: usize = 12;
/// Rows are as tall as the registration ID's selectable label (the desk's large type).
pub const ROW_HEIGHT: f32 = 32.0;

/// The filter form as typed (applied to the query when it parses).
#[derive(Debug, Clone, Default)]
struct Form {
    search: String,
    state: Option<IdentityState>,
    mode: Option<AttestationKind>,
    batch: String,
    from: String,
    until: String,
    oldest_first: bool,
}

/// The ledger browser.
pub struct LedgerScreen {
    worker: Option<Worker>,
    worker_error: Option<String>,
    form: Form,
    /// Why the date fields do not parse, if they do not.
    form_error: Option<String>,
    query: BrowseQuery,
    generation: u64,
    pages: HashMap<usize, Vec<BrowseRow>>,
    /// The last row's key of each page fetched so far (index = page).
    ends: Vec<Option<PageKey>>,
    requested: HashSet<usize>,
    /// Rows the table scrolls over: the count when exact, else what is known plus a page.
    rows: usize,
    /// Set when a short page showed where the rows end.
    end_known: bool,
    count: Option<MatchCount>,
    error: Option<String>,
    /// When the current query was sent, until its first page arrived (for `bench gui --ledger`).
    sent_at: Option<Instant>,
    first_rows_after: Option<Duration>,
    selected: Option<(IdentityId, String)>,
    detail: DetailState,
    /// `None` while the chain is being checked, `Some(Ok(None))` when it holds.
    verified: Option<Result<Option<String>, String>>,
    actions: Actions,
}

impl Default for LedgerScreen {
    fn default() -> Self {
        Self::new()
    }
}

impl LedgerScreen {
    /// A screen that opens the ledger when first shown.
    pub fn new() -> Self {
        LedgerScreen {
            worker: None,
            worker_error: None,
            form: Form::default(),
            form_error: None,
            query: BrowseQuery::default(),
            generation: 0,
            pages: HashMap::new(),
            ends: Vec::new(),
            requested: HashSet::new(),
            rows: 0,
            end_known: false,
            count: None,
            error: None,
            sent_at: None,
            first_rows_after: None,
            selected: None,
            detail: DetailState::default(),
            verified: None,
            actions: Actions::default(),
        }
    }

    /// The time from the last query change to its first rows on screen, once they arrived.
    pub fn first_rows_after(&self) -> Option<Duration> {
        self.first_rows_after
    }

    /// Whether the first page of the current query is shown.
    pub fn has_rows(&self) -> bool {
        self.pages.contains_key(&0)
    }

    /// Sets the search text as if typed (for `bench gui --ledger`).
    pub fn type_search(&mut self, text: &str) {
        self.form.search = text.to_string();
        self.apply_form();
    }

    /// Rows held in memory (the bench checks that scrolling does not load the table).
    pub fn rows_held(&self) -> usize {
        self.pages.values().map(Vec::len).sum()
    }

    fn ensure_worker(&mut self, ctx: &egui::Context, station: &StationHandle) {
        if self.worker.is_some() || self.worker_error.is_some() {
            return;
        }
        match Worker::start(station.config().ledger.clone(), ctx.clone()) {
            Ok(w) => {
                w.send(Request::Verify);
                self.worker = Some(w);
                self.restart();
            }
            Err(e) => self.worker_error = Some(e.to_string()),
        }
    }

    /// Sends the current query afresh: page 0 and the count.
    fn restart(&mut self) {
        self.generation += 1;
        self.pages.clear();
        self.ends.clear();
        self.requested.clear();
        self.rows = 0;
        self.end_known = false;
        self.count = None;
        self.error = None;
        self.sent_at = Some(Instant::now());
        self.first_rows_after = None;
        self.request_page(0);
        if let Some(w) = &self.worker {
            w.send(Request::Count {
                generation: self.generation,
                query: self.query.clone(),
            });
        }
    }

    /// Asks for page `page`, from the nearest known page end before it.
    fn request_page(&mut self, page: usize) {
        if self.requested.contains(&page) || self.pages.contains_key(&page) {
            return;
        }
        let Some(worker) = &self.worker else { return };
        let (start, skip) = match (0..page)
            .rev()
            .find_map(|p| self.ends.get(p).and_then(|k| k.clone()).map(|k| (p, k)))
        {
            Some((p, key)) => (Some(key), (page - p - 1) as u32),
            None => (None, page as u32),
        };
        worker.send(Request::Page {
            generation: self.generation,
            query: self.query.clone(),
            page,
            start,
            skip,
        });
        self.requested.insert(page);
    }

    /// Turns the form into the query; a date that does not parse keeps the old query.
    fn apply_form(&mut self) {
        let date = |text: &str, next_day: bool| -> Result<Option<String>, String> {
            let text = text.trim();
            if text.is_empty() {
                return Ok(None);
            }
            let format = time::macros::format_description!("[year]-[month]-[day]");
            let day = time::Date::parse(text, format).map_err(|_| text.to_string())?;
            let day = if next_day {
                day.next_day().unwrap_or(day)
            } else {
                day
            };
            Ok(Some(day.format(format).map_err(|_| text.to_string())?))
        };
        match (date(&self.form.from, false), date(&self.form.until, true)) {
            (Ok(from), Ok(until)) => {
                self.form_error = None;
                let batch = self.form.batch.trim();
                let query = BrowseQuery {
                    search: self.form.search.trim().to_string(),
                    state: self.form.state,
                    batch: (!batch.is_empty()).then(|| batch.to_string()),
                    mode: self.form.mode,
                    from,
                    until,
                    oldest_first: self.form.oldest_first,
                };
                if query != self.query {
                    self.query = query;
                    self.restart();
                }
            }
            (Err(bad), _) | (_, Err(bad)) => self.form_error = Some(bad),
        }
    }

    fn take(&mut self, answer: Answer) {
        match answer {
            Answer::Page {
                generation,
                page,
                rows,
            } if generation == self.generation => {
                self.requested.remove(&page);
                match rows {
                    Ok(rows) => {
                        if page == 0
                            && let Some(sent) = self.sent_at.take()
                        {
                            self.first_rows_after = Some(sent.elapsed());
                        }
                        let full = rows.len() == PAGE_ROWS as usize;
                        let seen = page * PAGE_ROWS as usize + rows.len();
                        if self.ends.len() <= page {
                            self.ends.resize(page + 1, None);
                        }
                        self.ends[page] = rows.last().map(BrowseRow::key);
                        if full {
                            if !self.end_known {
                                self.rows = self.rows.max(seen + PAGE_ROWS as usize);
                            }
                        } else {
                            self.end_known = true;
                            self.rows = seen;
                        }
                        self.pages.insert(page, rows);
                    }
                    Err(e) => self.error = Some(e),
                }
            }
            Answer::Count { generation, count } if generation == self.generation => match count {
                Ok(c) => {
                    self.count = Some(c);
                    if let MatchCount::Exactly(n) = c {
                        self.rows = n as usize;
                        self.end_known = true;
                    } else if !self.end_known {
                        self.rows = self.rows.max(COUNT_CAP as usize);
                    }
                }
                Err(e) => self.error = Some(e),
            },
            Answer::Detail(id, detail) => self.detail.take(id, detail),
            Answer::Verified(v) => self.verified = Some(v),
            _ => {}
        }
    }

    /// Drops pages far from the visible ones.
    fn evict(&mut self, visible: usize) {
        if self.pages.len() <= KEEP_PAGES {
            return;
        }
        let mut far: Vec<usize> = self.pages.keys().copied().collect();
        far.sort_by_key(|p| std::cmp::Reverse(p.abs_diff(visible)));
        for p in far.into_iter().take(self.pages.len() - KEEP_PAGES) {
            self.pages.remove(&p);
        }
    }

    fn row(&self, index: usize) -> Option<&BrowseRow> {
        let page = index / PAGE_ROWS as usize;
        self.pages
            .get(&page)
            .and_then(|rows| rows.get(index % PAGE_ROWS as usize))
    }

    /// Whether the ledger may be written from this screen: its chain checked and intact.
    pub(super) fn writable(&self) -> bool {
        matches!(self.verified, Some(Ok(None)))
    }

    fn filters_ui(&mut self, ui: &mut egui::Ui, tr: &Messages) {
        let mut changed = false;
        ui.horizontal_wrapped(|ui| {
            let label = ui.label(tr.t("ledger.search"));
            changed |= ui
                .add(
                    egui::TextEdit::singleline(&mut self.form.search)
                        .hint_text(tr.t("ledger.search_hint"))
                        .desired_width(240.0),
                )
                .labelled_by(label.id)
                .changed();
            changed |= choice(
                ui,
                "ledger-state",
                tr.t("ledger.state"),
                &mut self.form.state,
                IdentityState::ALL,
                tr,
            );
            changed |= choice(
                ui,
                "ledger-mode",
                tr.t("ledger.mode"),
                &mut self.form.mode,
                AttestationKind::ALL,
                tr,
            );
            let label = ui.label(tr.t("ledger.batch"));
            changed |= ui
                .add(egui::TextEdit::singleline(&mut self.form.batch).desired_width(140.0))
                .labelled_by(label.id)
                .changed();
            ui.label(tr.t("ledger.from"));
            changed |= ui
                .add(
                    egui::TextEdit::singleline(&mut self.form.from)
                        .hint_text("YYYY-MM-DD")
                        .desired_width(100.0),
                )
                .changed();
            ui.label(tr.t("ledger.until"));
            changed |= ui
                .add(
                    egui::TextEdit::singleline(&mut self.form.until)
                        .hint_text("YYYY-MM-DD")
                        .desired_width(100.0),
                )
                .changed();
            changed |= ui
                .checkbox(&mut self.form.oldest_first, tr.t("ledger.oldest_first"))
                .changed();
        });
        if changed {
            self.apply_form();
        }
    }

    fn status_ui(&self, ui: &mut egui::Ui, desk: &Desk<'_>) {
        let tr = desk.tr;
        ui.horizontal(|ui| {
            let count = match self.count {
                Some(MatchCount::Exactly(n)) => tr.f("ledger.count", &[("n", &group(n))]),
                Some(MatchCount::MoreThan(n)) => tr.f("ledger.count_more", &[("n", &group(n))]),
                None => tr.t("ledger.counting").to_string(),
            };
            ui.label(count);
            match &self.verified {
                None => {
                    ui.label(RichText::new(tr.t("ledger.verifying")).color(desk.palette.weak));
                }
                Some(Ok(None)) => {}
                Some(Ok(Some(broken))) => {
                    ui.label(
                        RichText::new(tr.f("ledger.broken", &[("row", broken)]))
                            .color(desk.palette.alarm),
                    );
                }
                Some(Err(e)) => {
                    ui.label(
                        RichText::new(tr.f("ledger.unverified", &[("error", e)]))
                            .color(desk.palette.warn),
                    );
                }
            }
        });
        for problem in [&self.worker_error, &self.error, &self.form_error]
            .into_iter()
            .flatten()
        {
            ui.label(
                RichText::new(format!("▲ {}", tr.f("ledger.error", &[("error", problem)])))
                    .color(desk.palette.alarm),
            );
        }
    }

    /// The table; returns the page of the first visible row and a row that was clicked.
    fn table_ui(&mut self, ui: &mut egui::Ui, desk: &Desk<'_>) -> (usize, Option<usize>) {
        let tr = desk.tr;
        let mut first_visible = usize::MAX;
        let mut clicked = None;
        let mut missing: Vec<usize> = Vec::new();
        let selected = self.selected.as_ref().map(|(id, _)| *id);
        // Widths from the space left beside the detail pane, every frame: the pane may open.
        let width = ui.available_width();
        TableBuilder::new(ui)
            .id_salt("ledger-table")
            .striped(true)
            .cell_layout(egui::Layout::left_to_right(egui::Align::Center))
            .column(Column::exact(width * 0.2).clip(true))
            .columns(Column::exact(width * 0.085).clip(true), 7)
            .column(Column::remainder().clip(true))
            .header(ROW_HEIGHT, |mut h| {
                for key in [
                    "ledger.col.registration_id",
                    "ledger.col.serial",
                    "ledger.col.model",
                    "ledger.col.mode",
                    "ledger.col.state",
                    "ledger.col.batch",
                    "ledger.col.operator",
                    "ledger.col.time",
                    "ledger.col.enrollment",
                ] {
                    h.col(|ui| {
                        ui.strong(tr.t(key));
                    });
                }
            })
            .body(|body| {
                body.rows(ROW_HEIGHT, self.rows, |mut row| {
                    let index = row.index();
                    first_visible = first_visible.min(index);
                    let Some(r) = self.row(index) else {
                        missing.push(index / PAGE_ROWS as usize);
                        row.col(|ui| {
                            ui.label(RichText::new("…").color(desk.palette.weak));
                        });
                        return;
                    };
                    row.set_selected(selected == Some(r.id));
                    row.col(|ui| {
                        if ui
                            .selectable_label(selected == Some(r.id), &r.registration_id)
                            .clicked()
                        {
                            clicked = Some(index);
                        }
                    });
                    let dash = || "–".to_string();
                    row.col(|ui| {
                        ui.label(r.serial_number.clone().unwrap_or_else(dash));
                    });
                    row.col(|ui| {
                        ui.label(r.model.clone().unwrap_or_else(dash));
                    });
                    row.col(|ui| {
                        ui.label(r.mode.as_str());
                    });
                    row.col(|ui| {
                        ledger_detail::state_label(ui, r.state, desk);
                    });
                    row.col(|ui| {
                        ui.label(r.batch.clone().unwrap_or_else(dash));
                    });
                    row.col(|ui| {
                        ui.label(r.operator.clone().unwrap_or_else(dash));
                    });
                    row.col(|ui| {
                        ui.label(
                            r.created_at
                                .get(..19)
                                .unwrap_or(&r.created_at)
                                .replace('T', " "),
                        );
                    });
                    row.col(|ui| {
                        ui.label(r.enrollment.map(|e| e.as_str()).unwrap_or("–"));
                    });
                });
            });
        missing.sort_unstable();
        missing.dedup();
        for page in missing {
            self.request_page(page);
        }
        let first_page = if first_visible == usize::MAX {
            0
        } else {
            first_visible / PAGE_ROWS as usize
        };
        (first_page, clicked)
    }
}

/// A combo box over `values` with an "all" choice; true when the choice changed.
fn choice<T: Copy + PartialEq + std::fmt::Display>(
    ui: &mut egui::Ui,
    id: &str,
    label: &str,
    value: &mut Option<T>,
    values: &[T],
    tr: &Messages,
) -> bool {
    let before = *value;
    let shown = value.map_or_else(|| tr.t("ledger.all").to_string(), |v| v.to_string());
    egui::ComboBox::new(id, label)
        .selected_text(shown)
        .show_ui(ui, |ui| {
            ui.selectable_value(value, None, tr.t("ledger.all"));
            for v in values {
                ui.selectable_value(value, Some(*v), v.to_string());
            }
        });
    *value != before
}

/// 1234567 → "1,234,567".
fn group(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

impl Screen for LedgerScreen {
    fn id(&self) -> ScreenId {
        LEDGER
    }

    fn title_key(&self) -> &'static str {
        "nav.ledger"
    }

    fn min_role(&self) -> Role {
        Role::Engineer
    }

    fn logic(&mut self, _ctx: &egui::Context, station: &StationHandle, _tr: &Messages) {
        let answers = self
            .worker
            .as_ref()
            .map(Worker::answers)
            .unwrap_or_default();
        for a in answers {
            self.take(a);
        }
        if self.actions.take_done(station) {
            // A revoke or re-queue changed rows: show the ledger as it is now.
            self.restart();
            if let (Some(w), Some((id, reg))) = (&self.worker, &self.selected) {
                w.send(Request::Detail {
                    id: *id,
                    registration_id: reg.clone(),
                });
            }
        }
    }

    fn ui(&mut self, ui: &mut egui::Ui, desk: &Desk<'_>) {
        self.ensure_worker(ui.ctx(), desk.station);
        let tr = desk.tr;
        ui.heading(tr.t("nav.ledger"));
        self.filters_ui(ui, tr);
        ui.horizontal(|ui| {
            self.status_ui(ui, desk);
            ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                self.actions.export_button(ui, desk, &self.query);
            });
        });
        ui.separator();
        let writable = self.writable();
        if let Some(id) = self.selected.as_ref().map(|(id, _)| *id) {
            egui::Panel::right("ledger-detail")
                .resizable(true)
                .default_size(420.0)
                .show(ui, |ui| {
                    if ui.button(tr.t("ledger.close_detail")).clicked() {
                        self.selected = None;
                        self.detail = DetailState::default();
                        return;
                    }
                    self.detail.ui(ui, desk, id, &mut self.actions, writable);
                });
        }
        let (page, clicked) = self.table_ui(ui, desk);
        self.evict(page);
        if let Some(index) = clicked
            && let Some(r) = self.row(index)
        {
            let pick = (r.id, r.registration_id.clone());
            if let Some(w) = &self.worker {
                w.send(Request::Detail {
                    id: pick.0,
                    registration_id: pick.1.clone(),
                });
            }
            self.detail = DetailState::loading(pick.0);
            self.selected = Some(pick);
        }
        self.actions.dialogs_ui(ui, desk);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn counts_are_grouped_by_thousands() {
        assert_eq!(super::group(0), "0");
        assert_eq!(super::group(999), "999");
        assert_eq!(super::group(1000), "1,000");
        assert_eq!(super::group(1_234_567), "1,234,567");
    }
}
