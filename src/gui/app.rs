//! The desk: the shell around the screens. `logic()` reads the station's events and does what
//! the screens asked (on worker threads where it would wait: starting a batch opens keys and the
//! ledger, a role password is hashed slowly on purpose); `draw()` only draws. Workers and the
//! station wake the window with `request_repaint`.

use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use egui::{RichText, ViewportCommand};

use crate::station::events::Event;
use crate::station::operator::line_view::{Health, SlotState};
use crate::station::operator::scan::{self, ScanRoute};
use crate::station::operator::{LineView, Role, Stamped, StationEvent, StationHandle};

use super::i18n::{Language, Messages};
use super::line;
use super::scan::ScanCollector;
use super::screen::{Desk, PickerState, Screen, ScreenId, UiCommand};
use super::sound::{self, Sound};
use super::theme::{self, Palette};

/// How the desk opens.
#[derive(Debug, Clone, Default)]
pub struct DeskOptions {
    /// Full screen, no decorations; leaving needs an engineer.
    pub kiosk: bool,
    /// Play sounds (default from station.toml).
    pub sounds: Option<bool>,
    /// Language (default from station.toml, then the OS locale).
    pub language: Option<Language>,
}

enum JobDone {
    Started(Result<String, String>),
    Unlocked(Role, Result<(), String>),
}

/// A message in the shell's notice line: the answer to the last thing the operator did.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    /// Whether it is a refusal (shown with a mark and colour).
    pub error: bool,
    /// The text.
    pub text: String,
}

/// The operator's desk.
pub struct DeskApp {
    station: StationHandle,
    view: LineView,
    events: Receiver<Stamped<StationEvent>>,
    tx: Sender<UiCommand>,
    rx: Receiver<UiCommand>,
    jobs_tx: Sender<JobDone>,
    jobs_rx: Receiver<JobDone>,
    ctx: Arc<OnceLock<egui::Context>>,
    tr: Messages,
    light: bool,
    sounds: bool,
    kiosk: bool,
    styled: Option<bool>,
    cjk: bool,
    screens: Vec<Box<dyn Screen>>,
    current: ScreenId,
    scan: ScanCollector,
    picker: PickerState,
    notice: Option<Notice>,
    sign_in_name: String,
    unlock: Option<(Role, String)>,
    highlight: Option<String>,
    quit: bool,
    exited: bool,
}

impl DeskApp {
    /// A desk over `station`.
    pub fn new(station: StationHandle, options: DeskOptions) -> Self {
        let ctx: Arc<OnceLock<egui::Context>> = Arc::new(OnceLock::new());
        let waker = {
            let ctx = ctx.clone();
            Arc::new(move || {
                if let Some(c) = ctx.get() {
                    c.request_repaint();
                }
            })
        };
        let (view, events) = station.subscribe(Some(waker));
        let (tx, rx) = mpsc::channel();
        let (jobs_tx, jobs_rx) = mpsc::channel();
        let desk = &station.config().desk;
        let language = options
            .language
            .unwrap_or_else(|| Language::choose(desk.language.as_deref()));
        let columns = desk.columns_for(station.config().fixture.slots.len().max(8));
        let screens = super::screens::all(&station, columns);
        Self {
            light: desk.light,
            sounds: options.sounds.unwrap_or(desk.sounds),
            kiosk: options.kiosk,
            station,
            view,
            events,
            tx,
            rx,
            jobs_tx,
            jobs_rx,
            ctx,
            tr: Messages::new(language),
            styled: None,
            cjk: false,
            screens,
            current: line::LINE,
            scan: ScanCollector::default(),
            picker: PickerState::default(),
            notice: None,
            sign_in_name: String::new(),
            unlock: None,
            highlight: None,
            quit: false,
            exited: false,
        }
    }

    /// The line as this desk sees it (tests read the counters from here).
    pub fn view(&self) -> &LineView {
        &self.view
    }

    /// The messages in the desk's language.
    pub fn messages(&self) -> &Messages {
        &self.tr
    }

    /// The screen shown.
    pub fn current(&self) -> ScreenId {
        self.current
    }

    /// The answer to the last thing the operator did.
    pub fn notice(&self) -> Option<&Notice> {
        self.notice.as_ref()
    }

    /// The slot highlighted by a device-label scan.
    pub fn highlight(&self) -> Option<&str> {
        self.highlight.as_deref()
    }

    /// Whether Hangul can render (Noto Sans CJK was found).
    pub fn has_cjk_font(&self) -> bool {
        self.cjk
    }

    /// The station this desk drives.
    pub fn station(&self) -> &StationHandle {
        &self.station
    }

    /// Screens this role may open, in navigation order.
    pub fn allowed(&self) -> Vec<ScreenId> {
        let role = self.view.role.unwrap_or(Role::Operator);
        self.screens
            .iter()
            .filter(|s| role.allows(s.min_role()) || s.also_for().contains(&role))
            .map(|s| s.id())
            .collect()
    }

    fn say(&mut self, error: bool, text: impl Into<String>) {
        self.notice = Some(Notice {
            error,
            text: text.into(),
        });
    }

    /// Reads events and does what the screens asked. Never draws.
    pub fn logic(&mut self, ctx: &egui::Context) {
        let _ = self.ctx.set(ctx.clone());
        if self.styled != Some(self.light) {
            theme::apply(ctx, self.light);
            if self.styled.is_none() {
                self.cjk = theme::add_cjk_font(ctx);
                if !self.cjk {
                    tracing::warn!(
                        "{} is missing: Korean text shows as boxes; install fonts-noto-cjk",
                        theme::NOTO_CJK
                    );
                }
            }
            self.styled = Some(self.light);
        }
        while let Ok(stamped) = self.events.try_recv() {
            self.view.apply(&stamped);
            match &stamped.event {
                StationEvent::Engine(Event::Passed { .. }) if self.sounds => {
                    sound::play(Sound::Pass)
                }
                StationEvent::Engine(Event::Failed { .. }) if self.sounds => {
                    sound::play(Sound::Fail)
                }
                StationEvent::BatchStarted { name, .. } => {
                    self.picker.open = false;
                    self.picker.starting = false;
                    self.say(false, self.tr.f("notice.started", &[("batch", name)]));
                }
                StationEvent::Engine(Event::LabelTaken { slot, serial }) => {
                    self.say(
                        false,
                        self.tr
                            .f("notice.label_taken", &[("serial", serial), ("slot", slot)]),
                    );
                }
                StationEvent::Engine(Event::LabelRefused { serial, reason }) => {
                    self.say(
                        true,
                        self.tr.f(
                            "notice.label_refused",
                            &[("serial", serial), ("reason", reason)],
                        ),
                    );
                }
                StationEvent::BatchEnded {
                    report: Some(r), ..
                } => {
                    self.say(false, self.tr.f("notice.report", &[("path", r)]));
                }
                _ => {}
            }
        }
        while let Ok(done) = self.jobs_rx.try_recv() {
            match done {
                JobDone::Started(Ok(_)) => {}
                JobDone::Started(Err(e)) => {
                    self.picker.starting = false;
                    self.say(true, e);
                }
                JobDone::Unlocked(role, Ok(())) => {
                    let key = format!("role.{}", role.as_str());
                    self.say(
                        false,
                        self.tr.f("notice.unlocked", &[("role", self.tr.t(&key))]),
                    );
                }
                JobDone::Unlocked(_, Err(e)) => self.say(true, e),
            }
        }
        while let Ok(command) = self.rx.try_recv() {
            self.execute(ctx, command);
        }
        for screen in &mut self.screens {
            screen.logic(ctx, &self.station, &self.tr);
        }
        // The role may have changed: stay only on a screen it allows.
        if !self.allowed().contains(&self.current) {
            self.current = line::LINE;
        }
        if ctx.input(|i| i.viewport().close_requested()) {
            let role = self.view.role.unwrap_or(Role::Operator);
            if self.kiosk && !self.quit && !role.allows(Role::Engineer) {
                ctx.send_viewport_cmd(ViewportCommand::CancelClose);
                self.say(true, self.tr.t("notice.kiosk_locked").to_string());
            } else {
                self.exit();
            }
        }
        if self.view.running {
            // Times in the slots move on even without events.
            ctx.request_repaint_after(Duration::from_millis(500));
        }
    }

    /// Tells every screen the desk is going (once): an open HSM session logs out.
    pub fn exit(&mut self) {
        if !self.exited {
            self.exited = true;
            for screen in &mut self.screens {
                screen.on_exit();
            }
        }
    }

    fn spawn_job(
        &self,
        ctx: &egui::Context,
        job: impl FnOnce(&StationHandle) -> JobDone + Send + 'static,
    ) {
        let station = self.station.clone();
        let tx = self.jobs_tx.clone();
        let ctx = ctx.clone();
        let spawned = std::thread::Builder::new()
            .name("desk-job".into())
            .spawn(move || {
                let _ = tx.send(job(&station));
                ctx.request_repaint();
            });
        if let Err(e) = spawned {
            tracing::error!("cannot start a worker thread: {e}");
        }
    }

    fn execute(&mut self, ctx: &egui::Context, command: UiCommand) {
        match command {
            UiCommand::Navigate(id) => {
                // The station decides what the role may open; the navigation only hides the rest.
                let roles = self
                    .screens
                    .iter()
                    .find(|s| s.id() == id)
                    .map(|s| (s.min_role(), s.also_for()));
                let check = roles.map(|(least, also)| {
                    let first = self.station.require(least);
                    match first {
                        Ok(()) => Ok(()),
                        Err(e) => {
                            if also.iter().any(|r| self.station.require(*r).is_ok()) {
                                Ok(())
                            } else {
                                Err(e)
                            }
                        }
                    }
                });
                match check {
                    Some(Ok(())) => self.current = id,
                    Some(Err(e)) => self.say(true, e.to_string()),
                    None => self.say(true, self.tr.t("notice.not_allowed").to_string()),
                }
            }
            UiCommand::ShowPicker(open) => {
                self.picker.open = open;
                if open {
                    self.picker.files = self.station.batch_files();
                    if self.picker.files.is_empty() {
                        let dir = self.station.config().desk.batches.display().to_string();
                        self.say(true, self.tr.f("notice.no_batches", &[("dir", &dir)]));
                    }
                }
            }
            UiCommand::Preview(path) => {
                let p = self.station.preview(&path).map_err(|e| e.to_string());
                self.picker.preview = Some((path, p));
            }
            UiCommand::StartBatch(path) => {
                self.picker.starting = true;
                self.spawn_job(ctx, move |s| {
                    JobDone::Started(s.start_batch(&path).map_err(|e| e.to_string()))
                });
            }
            UiCommand::Batch(c) => {
                if let Err(e) = self.station.batch(c) {
                    self.say(true, e.to_string());
                }
            }
            UiCommand::SignIn(name) => match self.station.sign_in(&name) {
                Ok(()) => {
                    self.sign_in_name.clear();
                    self.say(
                        false,
                        self.tr.f("notice.signed_in", &[("name", name.trim())]),
                    );
                }
                Err(e) => self.say(true, e.to_string()),
            },
            UiCommand::SignOut => self.station.sign_out(),
            UiCommand::Unlock(role, password) => {
                self.unlock = None;
                self.spawn_job(ctx, move |s| {
                    JobDone::Unlocked(role, s.unlock(role, &password).map_err(|e| e.to_string()))
                });
            }
            UiCommand::Acknowledge(seq) => self.view.acknowledge(seq),
            UiCommand::Scan(code) => self.route_scan(ctx, &code),
            UiCommand::ToggleTheme => self.light = !self.light,
            UiCommand::ToggleSound => self.sounds = !self.sounds,
            UiCommand::ToggleLanguage => {
                let next = match self.tr.language() {
                    Language::En => Language::Ko,
                    Language::Ko => Language::En,
                };
                self.tr = Messages::new(next);
            }
            UiCommand::Quit => match self.station.require(Role::Engineer) {
                Ok(()) => {
                    self.quit = true;
                    ctx.send_viewport_cmd(ViewportCommand::Close);
                }
                Err(e) => self.say(true, e.to_string()),
            },
        }
    }

    fn route_scan(&mut self, ctx: &egui::Context, code: &str) {
        let desk = &self.station.config().desk;
        match scan::route(code, &desk.roles, &desk.batches) {
            ScanRoute::Badge(name) => self.execute(ctx, UiCommand::SignIn(name)),
            ScanRoute::WorkOrder(path) => {
                if self.view.running {
                    self.say(true, self.tr.t("notice.batch_running").to_string());
                } else {
                    self.execute(ctx, UiCommand::ShowPicker(true));
                    self.execute(ctx, UiCommand::Preview(path));
                }
            }
            ScanRoute::DeviceSerial(serial)
                if self
                    .view
                    .slots
                    .iter()
                    .any(|s| matches!(s.state, SlotState::NeedsLabel { .. })) =>
            {
                // A slot waits for its device's label: the engine decides which slot takes it
                // and answers with an event (taken, or refused with the reason).
                if let Err(e) = self.station.label(&serial) {
                    self.say(true, e.to_string());
                }
            }
            ScanRoute::DeviceSerial(serial) => {
                let slot = self
                    .view
                    .slots
                    .iter()
                    .find(|s| s.serial.as_deref() == Some(serial.as_str()))
                    .map(|s| s.name.clone());
                match slot {
                    Some(s) => {
                        self.say(
                            false,
                            self.tr.f(
                                "notice.device_in_slot",
                                &[("serial", &serial), ("slot", &s)],
                            ),
                        );
                        self.highlight = Some(s);
                    }
                    None => self.say(
                        true,
                        self.tr.f("notice.device_not_here", &[("serial", &serial)]),
                    ),
                }
            }
            ScanRoute::Unknown(s) => {
                self.say(true, self.tr.f("notice.scan_unknown", &[("scan", &s)]))
            }
        }
    }

    /// Draws the shell and the current screen. Changes nothing but what is drawn; asks by command.
    pub fn draw(&mut self, ui: &mut egui::Ui) {
        if let Some(code) = self.scan.take(ui.ctx()) {
            let _ = self.tx.send(UiCommand::Scan(code));
            ui.ctx().request_repaint();
        }
        let palette = Palette::of(self.light);
        egui::Frame::central_panel(ui.style())
            .fill(palette.base)
            .show(ui, |ui| {
                // A frame is only as big as what it holds: claim the window, so a short screen
                // (Central ledger, Enrollment) does not leave the unpainted window below it.
                ui.set_min_size(ui.available_size());
                self.top_bar(ui, palette);
                self.banners(ui, palette);
                self.notifications(ui, palette);
                ui.separator();
                let now = SystemTime::now();
                let desk = Desk {
                    view: &self.view,
                    tr: &self.tr,
                    palette,
                    now,
                    picker: &self.picker,
                    highlight: self.highlight.as_deref(),
                    station: &self.station,
                    send: &self.tx,
                };
                let current = self.current;
                if let Some(screen) = self.screens.iter_mut().find(|s| s.id() == current) {
                    screen.ui(ui, &desk);
                }
                self.unlock_dialog(ui);
            });
    }

    fn top_bar(&mut self, ui: &mut egui::Ui, p: Palette) {
        let tr = &self.tr;
        let send = |c: UiCommand| {
            let _ = self.tx.send(c);
        };
        ui.horizontal_wrapped(|ui| {
            ui.label(
                RichText::new(&self.station.config().name)
                    .size(26.0)
                    .strong(),
            );
            ui.separator();
            match &self.view.operator {
                Some(name) => {
                    let role = self.view.role.unwrap_or(Role::Operator);
                    ui.label(
                        RichText::new(tr.f(
                            "bar.signed_in",
                            &[
                                ("name", name),
                                ("role", tr.t(&format!("role.{}", role.as_str()))),
                            ],
                        ))
                        .strong(),
                    );
                    if ui.button(tr.t("bar.sign_out")).clicked() {
                        send(UiCommand::SignOut);
                    }
                    if ui.button(tr.t("bar.role")).clicked() {
                        self.unlock = Some((Role::Engineer, String::new()));
                    }
                }
                None => {
                    ui.label(tr.t("bar.name"));
                    let edit = ui.add(
                        egui::TextEdit::singleline(&mut self.sign_in_name)
                            .desired_width(160.0)
                            .hint_text(tr.t("bar.name_hint")),
                    );
                    let enter = edit.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
                    if ui.button(tr.t("bar.sign_in")).clicked() || enter {
                        send(UiCommand::SignIn(self.sign_in_name.clone()));
                    }
                }
            }
            ui.separator();
            for (label, health) in [
                (tr.t("health.keys"), self.view.keys),
                (tr.t("health.ledger"), self.view.ledger),
                (tr.t("health.dps"), self.view.dps),
            ] {
                health_badge(ui, tr, label, health, p);
            }
            ui.separator();
            if ui.button(tr.language().code()).clicked() {
                send(UiCommand::ToggleLanguage);
            }
            if ui
                .button(if self.light {
                    tr.t("bar.dark")
                } else {
                    tr.t("bar.light")
                })
                .clicked()
            {
                send(UiCommand::ToggleTheme);
            }
            if ui
                .button(if self.sounds {
                    tr.t("bar.sound_off")
                } else {
                    tr.t("bar.sound_on")
                })
                .clicked()
            {
                send(UiCommand::ToggleSound);
            }
        });
        let allowed = self.allowed();
        if allowed.len() > 1 {
            ui.horizontal(|ui| {
                for s in self.screens.iter().filter(|s| allowed.contains(&s.id())) {
                    if ui
                        .selectable_label(self.current == s.id(), tr.t(s.title_key()))
                        .clicked()
                    {
                        send(UiCommand::Navigate(s.id()));
                    }
                }
            });
        }
    }

    fn banners(&self, ui: &mut egui::Ui, p: Palette) {
        for text in self.screens.iter().filter_map(|s| s.banner(&self.tr)) {
            let colour = if text.starts_with('▲') {
                p.warn
            } else {
                p.text
            };
            egui::Frame::new()
                .stroke(egui::Stroke::new(2.0, colour))
                .inner_margin(6.0)
                .show(ui, |ui| {
                    ui.label(RichText::new(text).color(colour).strong());
                });
        }
    }

    fn notifications(&mut self, ui: &mut egui::Ui, p: Palette) {
        let tr = &self.tr;
        if let Some(n) = &self.notice {
            let text = if n.error {
                format!("▲ {}", n.text)
            } else {
                n.text.clone()
            };
            let colour = if n.error { p.warn } else { p.text };
            ui.horizontal(|ui| {
                ui.label(RichText::new(text).color(colour));
                if ui.small_button("×").clicked() {
                    self.notice = None;
                }
            });
        }
        for problem in &self.view.problems {
            egui::Frame::new()
                .stroke(egui::Stroke::new(2.0, p.warn))
                .inner_margin(6.0)
                .show(ui, |ui| {
                    ui.horizontal(|ui| {
                        let slot = problem
                            .slot
                            .as_ref()
                            .map(|s| tr.f("problem.slot", &[("slot", s)]))
                            .unwrap_or_default();
                        let text = match &problem.message {
                            Some(m) => {
                                let args: Vec<(&str, &str)> =
                                    m.args.iter().map(|(k, v)| (*k, v.as_str())).collect();
                                tr.f(m.key, &args)
                            }
                            None => problem.text.clone(),
                        };
                        ui.label(RichText::new(format!("▲ {slot}{text}")).color(p.text));
                        if ui.button(tr.t("problem.ack")).clicked() {
                            let _ = self.tx.send(UiCommand::Acknowledge(problem.seq));
                        }
                    });
                });
        }
    }

    fn unlock_dialog(&mut self, ui: &mut egui::Ui) {
        let Some((role, password)) = &mut self.unlock else {
            return;
        };
        let tr = &self.tr;
        let mut close = false;
        let mut submit = None;
        let modal = egui::Modal::new(egui::Id::unique("unlock")).show(ui.ctx(), |ui| {
            ui.heading(tr.t("unlock.title"));
            ui.horizontal(|ui| {
                // Selectable labels, not radio buttons: a whole word to press with a glove, and
                // the theme's tile fill hides egui's unselected radio circle.
                for r in [Role::Operator, Role::Engineer, Role::Officer] {
                    ui.selectable_value(role, r, tr.t(&format!("role.{}", r.as_str())));
                }
            });
            if *role != Role::Operator {
                ui.label(tr.t("unlock.password"));
                let edit = ui.add(
                    egui::TextEdit::singleline(password)
                        .password(true)
                        .desired_width(280.0),
                );
                if edit.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter)) {
                    submit = Some((*role, password.clone()));
                }
            }
            ui.horizontal(|ui| {
                if ui.button(tr.t("unlock.ok")).clicked() {
                    submit = Some((*role, password.clone()));
                }
                if ui.button(tr.t("common.cancel")).clicked() {
                    close = true;
                }
            });
        });
        if let Some((r, pw)) = submit {
            let _ = self.tx.send(UiCommand::Unlock(r, pw));
        }
        if close || modal.should_close() {
            self.unlock = None;
        }
    }
}

fn health_badge(ui: &mut egui::Ui, tr: &Messages, label: &str, health: Health, p: Palette) {
    let (word, colour, mark) = match health {
        Health::Unknown => (tr.t("health.unknown"), p.weak, "○"),
        Health::Ok => (tr.t("health.ok"), p.text, "●"),
        Health::Degraded => (tr.t("health.degraded"), p.warn, "▲"),
        Health::Lost => (tr.t("health.lost"), p.alarm, "■"),
    };
    ui.label(RichText::new(format!("{mark} {label}: {word}")).color(colour));
}

impl eframe::App for DeskApp {
    fn logic(&mut self, ctx: &egui::Context, _frame: &mut eframe::Frame) {
        DeskApp::logic(self, ctx);
    }

    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        self.draw(ui);
    }

    fn on_exit(&mut self, _gl: Option<&eframe::glow::Context>) {
        self.exit();
    }
}

impl Drop for DeskApp {
    fn drop(&mut self) {
        self.exit();
    }
}
