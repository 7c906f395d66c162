//! The officer's HSM screen: the HSM profiles with their modules present on this machine, the
//! tokens each module shows, the profile's notes; opening a key-injection session with one PIN
//! entry; the session's banner on every screen; closing it on request, when idle, when the
//! window closes, and when the token goes away. The session itself lives on a worker
//! ([`crate::station::officer_session`]); this screen only draws and passes messages.

use std::sync::mpsc::{Receiver, Sender, TryRecvError};
use std::time::{Duration, Instant, SystemTime};

use egui::RichText;
use zeroize::Zeroizing;

use crate::gui::i18n::Messages;
use crate::gui::screen::{Desk, Screen, ScreenId};
use crate::gui::widgets::file_pick::{FilePick, PickKind};
use crate::station::officer_session::{
    self as officer_session, AuditLine, CloseReason, KeyRow, Op, OpenRequest, PinTries,
    ProfileInventory, Reply, TokenDescription,
};
use crate::station::operator::{Role, StationHandle};

use super::keys::{KeysPanel, PanelView, secret_field, take_secret, text_field};

/// The HSM screen's id.
pub const HSM: ScreenId = "officer.hsm";

/// How long closing waits for the worker's logout when the window closes.
const EXIT_WAIT: Duration = Duration::from_secs(5);

enum Phase {
    Opening,
    Open {
        token: TokenDescription,
        since: SystemTime,
    },
    Removed(String),
}

struct Live {
    ops: Sender<Op>,
    replies: Receiver<Reply>,
    officer: String,
    phase: Phase,
    keys: Vec<KeyRow>,
    audit: Vec<AuditLine>,
    busy: bool,
    last_activity: Instant,
    closing: bool,
}

/// The HSM session screen.
pub struct SessionScreen {
    profiles: Option<Vec<ProfileInventory>>,
    listing: Option<Receiver<Vec<ProfileInventory>>>,
    /// Threads that use a PKCS#11 module (the inventory, session workers): waited for on exit.
    workers: Vec<std::thread::JoinHandle<()>>,
    chosen: Option<(usize, String)>,
    module: FilePick,
    pin: Zeroizing<String>,
    live: Option<Live>,
    /// The last outcome: (is an error, text).
    message: Option<(bool, String)>,
    panel: KeysPanel,
    idle_close: Duration,
}

impl SessionScreen {
    /// The screen for `station` (idle time from its `[officer]` section).
    pub fn new(station: &StationHandle) -> Self {
        let config = station.config();
        Self {
            profiles: None,
            listing: None,
            workers: Vec::new(),
            chosen: None,
            module: FilePick::new("officer-module", PickKind::File(&["so", "dylib"])),
            pin: secret_field(),
            live: None,
            message: None,
            panel: KeysPanel::new(&config.reports),
            idle_close: config.officer.idle_close,
        }
    }

    fn list_profiles(&mut self, ctx: &egui::Context) {
        let (tx, rx) = std::sync::mpsc::channel();
        let ctx = ctx.clone();
        let spawned = std::thread::Builder::new()
            .name("officer-profiles".into())
            .spawn(move || {
                let rows = officer_session::hsm_inventory();
                let _ = tx.send(rows);
                ctx.request_repaint();
            });
        if let Ok(handle) = spawned {
            self.listing = Some(rx);
            self.workers.push(handle);
        }
    }

    fn open(&mut self, desk: &Desk<'_>, ctx: &egui::Context) {
        let tr = desk.tr;
        // The PIN leaves the field now, whatever happens next.
        let pin = take_secret(ctx, &mut self.pin);
        let (officer, _) = desk.station.operator();
        if let Err(e) = desk.station.require(Role::Officer) {
            self.message = Some((true, e.to_string()));
            return;
        }
        let (Some(officer), Some((index, token))) = (officer, self.chosen.clone()) else {
            self.message = Some((true, tr.t("officer.choose_token").to_owned()));
            return;
        };
        let Some(pin) = pin else {
            self.message = Some((true, tr.t("officer.need_pin").to_owned()));
            return;
        };
        let Some(row) = self.profiles.as_ref().and_then(|p| p.get(index)) else {
            return;
        };
        let config = desk.station.config();
        let request = OpenRequest {
            profile: row.profile.clone(),
            module: self.module.path().or_else(|| row.module.clone()),
            token,
            officer: officer.clone(),
            pin,
            ledger: config.ledger.clone(),
            station: config.name.clone(),
            batches: config.desk.batches.clone(),
            officer_settings: config.officer.clone(),
            roles: config.desk.roles.clone(),
        };
        let ctx = ctx.clone();
        match officer_session::spawn(request, move || ctx.request_repaint()) {
            Ok((ops, replies, handle)) => {
                self.workers.push(handle);
                self.message = None;
                self.live = Some(Live {
                    ops,
                    replies,
                    officer,
                    phase: Phase::Opening,
                    keys: Vec::new(),
                    audit: Vec::new(),
                    busy: true,
                    last_activity: Instant::now(),
                    closing: false,
                });
            }
            Err(e) => self.message = Some((true, e.to_string())),
        }
    }

    fn close(&mut self, reason: CloseReason) {
        if let Some(live) = &mut self.live
            && !live.closing
        {
            live.closing = true;
            live.busy = true;
            if live.ops.send(Op::Close(reason)).is_err() {
                self.live = None;
            }
        }
    }

    fn take_replies(&mut self, ctx: &egui::Context, tr: &Messages) {
        let Some(live) = &mut self.live else {
            return;
        };
        loop {
            let reply = match live.replies.try_recv() {
                Ok(r) => r,
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    self.live = None;
                    self.panel.clear_secrets(ctx);
                    return;
                }
            };
            match reply {
                Reply::Opened { token, since } => {
                    live.phase = Phase::Open { token, since };
                    live.busy = false;
                    live.last_activity = Instant::now();
                }
                Reply::OpenFailed {
                    message,
                    wrong_pin,
                    tries,
                } => {
                    let mut text = message;
                    if wrong_pin || tries.is_some() {
                        text.push('\n');
                        text.push_str(tr.t(match tries {
                            Some(PinTries::CountLow) => "officer.tries_low",
                            Some(PinTries::FinalTry) => "officer.tries_final",
                            Some(PinTries::Locked) => "officer.tries_locked",
                            None => "officer.tries_unknown",
                        }));
                    }
                    self.message = Some((true, text));
                    self.live = None;
                    return;
                }
                Reply::State { keys, audit } => {
                    live.keys = keys;
                    live.audit = audit;
                }
                Reply::Done { message } => {
                    live.busy = false;
                    live.last_activity = Instant::now();
                    self.message = Some((false, message));
                }
                Reply::Failed { message } => {
                    live.busy = false;
                    live.last_activity = Instant::now();
                    self.message = Some((true, message));
                }
                Reply::Removed { message } => {
                    live.phase = Phase::Removed(message);
                    live.busy = false;
                }
                Reply::Closed { reason, problem } => {
                    let key = match reason {
                        CloseReason::Requested => "officer.closed",
                        CloseReason::Idle => "officer.closed_idle",
                        CloseReason::WindowClosed => "officer.closed",
                    };
                    let mut text = tr.t(key).to_owned();
                    let is_error = problem.is_some();
                    if let Some(p) = problem {
                        text.push_str(&format!(" ({p})"));
                    }
                    self.message = Some((is_error, text));
                    self.live = None;
                    self.panel.clear_secrets(ctx);
                    return;
                }
            }
        }
    }

    fn chooser(&mut self, ui: &mut egui::Ui, desk: &Desk<'_>) {
        let tr = desk.tr;
        let palette = desk.palette;
        ui.horizontal(|ui| {
            ui.label(RichText::new(tr.t("officer.profiles")).strong());
            if ui.button(tr.t("officer.refresh")).clicked() {
                self.profiles = None;
                self.list_profiles(ui.ctx());
            }
        });
        let Some(profiles) = &self.profiles else {
            ui.label(tr.t("officer.listing"));
            return;
        };
        for (index, row) in profiles.iter().enumerate() {
            ui.group(|ui| {
                let p = &row.profile;
                ui.label(RichText::new(format!("{} ({})", p.display_name, p.name)).strong());
                match &row.module {
                    Some(m) => {
                        ui.label(tr.f(
                            "officer.module_present",
                            &[("path", &m.display().to_string())],
                        ));
                    }
                    None => {
                        ui.label(RichText::new(tr.t("officer.module_missing")).color(palette.weak));
                    }
                }
                for line in p.operator.notes.lines().filter(|l| !l.trim().is_empty()) {
                    ui.label(RichText::new(format!("• {}", line.trim())).color(palette.weak));
                }
                if !p.hardware {
                    ui.label(
                        RichText::new(format!("▲ {}", tr.t("officer.software_token")))
                            .color(palette.warn),
                    );
                }
                match &row.tokens {
                    Err(e) => {
                        ui.label(RichText::new(format!("▲ {e}")).color(palette.warn));
                    }
                    Ok(tokens) => {
                        for t in tokens {
                            let mut text = tr.f(
                                "officer.token_line",
                                &[
                                    ("label", &t.label),
                                    ("serial", &t.serial),
                                    ("model", &t.model),
                                ],
                            );
                            if let Some((public, private)) = t.free_memory {
                                text.push_str(&tr.f(
                                    "officer.free_memory",
                                    &[
                                        ("public", &public.to_string()),
                                        ("private", &private.to_string()),
                                    ],
                                ));
                            }
                            if t.user_pin_locked {
                                text = format!("▲ {text} — {}", tr.t("officer.tries_locked"));
                            }
                            let selected = self
                                .chosen
                                .as_ref()
                                .is_some_and(|(i, l)| *i == index && *l == t.label);
                            if ui.selectable_label(selected, text).clicked() {
                                self.chosen = Some((index, t.label.clone()));
                            }
                        }
                    }
                }
            });
        }
    }
}

/// The moment `since` as UTC wall-clock time (HH:MM:SS).
fn clock(since: SystemTime) -> String {
    let t = time::OffsetDateTime::from(since);
    format!("{:02}:{:02}:{:02} UTC", t.hour(), t.minute(), t.second())
}

impl Screen for SessionScreen {
    fn id(&self) -> ScreenId {
        HSM
    }

    fn title_key(&self) -> &'static str {
        "officer.nav"
    }

    fn min_role(&self) -> Role {
        Role::Officer
    }

    fn ui(&mut self, ui: &mut egui::Ui, desk: &Desk<'_>) {
        let tr = desk.tr;
        if let Some(live) = &mut self.live
            && ui.input(|i| !i.events.is_empty())
        {
            live.last_activity = Instant::now();
        }
        ui.heading(tr.t("officer.nav"));
        if let Some((error, text)) = &self.message {
            let rich = if *error {
                RichText::new(format!("▲ {text}")).color(desk.palette.alarm)
            } else {
                RichText::new(text)
            };
            ui.label(rich);
        }
        egui::ScrollArea::vertical().show(ui, |ui| match &self.live {
            None => {
                self.chooser(ui, desk);
                ui.separator();
                let (officer, _) = desk.station.operator();
                ui.label(tr.f(
                    "officer.as_officer",
                    &[("name", officer.as_deref().unwrap_or("–"))],
                ));
                match &self.chosen {
                    Some((_, label)) => ui.label(tr.f("officer.chosen", &[("label", label)])),
                    None => ui.label(tr.t("officer.choose_token")),
                };
                ui.label(tr.t("officer.module_override"));
                self.module.ui(ui, tr);
                ui.horizontal(|ui| {
                    text_field(ui, tr.t("officer.pin"), &mut self.pin, true);
                    if ui.button(tr.t("officer.open")).clicked() {
                        self.open(desk, ui.ctx());
                    }
                });
                ui.label(RichText::new(tr.t("officer.pin_once")).color(desk.palette.weak));
            }
            Some(live) => {
                let mut close = false;
                let mut op = None;
                match &live.phase {
                    Phase::Opening => {
                        ui.label(tr.t("officer.opening"));
                    }
                    Phase::Removed(message) => {
                        ui.label(RichText::new(format!("▲ {message}")).color(desk.palette.alarm));
                        close = ui.button(tr.t("officer.dismiss")).clicked();
                    }
                    Phase::Open { token, .. } => {
                        ui.horizontal(|ui| {
                            ui.label(tr.f(
                                "officer.open_on",
                                &[("token", &token.label), ("serial", &token.serial)],
                            ));
                            close = ui.button(tr.t("officer.close")).clicked();
                        });
                        if live.busy {
                            ui.label(tr.t("officer.working"));
                        }
                        let view = PanelView {
                            keys: &live.keys,
                            audit: &live.audit,
                            busy: live.busy,
                            dual_control: desk.station.config().officer.dual_control,
                        };
                        op = self.panel.ui(ui, tr, desk.palette, view);
                    }
                }
                if close {
                    if matches!(live.phase, Phase::Removed(_)) {
                        self.live = None;
                    } else {
                        self.close(CloseReason::Requested);
                    }
                } else if let Some(op) = op {
                    if let Err(e) = desk.station.require(Role::Officer) {
                        self.message = Some((true, e.to_string()));
                    } else if let Some(live) = &mut self.live {
                        live.busy = true;
                        live.last_activity = Instant::now();
                        self.message = None;
                        let _ = live.ops.send(op);
                    }
                }
            }
        });
    }

    fn logic(&mut self, ctx: &egui::Context, station: &StationHandle, tr: &Messages) {
        if self.profiles.is_none() && self.listing.is_none() {
            self.list_profiles(ctx);
        }
        if let Some(rx) = &self.listing
            && let Ok(rows) = rx.try_recv()
        {
            self.profiles = Some(rows);
            self.listing = None;
        }
        self.take_replies(ctx, tr);
        let idle = self.live.as_ref().is_some_and(|l| {
            matches!(l.phase, Phase::Open { .. })
                && !l.busy
                && l.last_activity.elapsed() >= self.idle_close
        });
        if idle {
            tracing::info!("officer's HSM session idle: closing it");
            self.close(CloseReason::Idle);
        }
        // The officer signed out or gave up the role: the token is not left logged in for
        // whoever signs in next.
        let open = self
            .live
            .as_ref()
            .is_some_and(|l| matches!(l.phase, Phase::Open { .. }));
        if open && station.require(Role::Officer).is_err() {
            tracing::info!("the officer left the role: closing the HSM session");
            self.close(CloseReason::Requested);
        }
        if let Some(live) = &self.live
            && matches!(live.phase, Phase::Open { .. })
        {
            // Wake up in time to close it when idle, even if nothing else draws.
            ctx.request_repaint_after(Duration::from_millis(500));
        }
    }

    fn banner(&self, tr: &Messages) -> Option<String> {
        let live = self.live.as_ref()?;
        match &live.phase {
            Phase::Opening => None,
            Phase::Open { token, since } => Some(tr.f(
                "officer.banner",
                &[
                    ("officer", &live.officer),
                    ("token", &token.label),
                    ("serial", &token.serial),
                    ("since", &clock(*since)),
                ],
            )),
            Phase::Removed(_) => Some(format!("▲ {}", tr.t("officer.banner_removed"))),
        }
    }

    fn on_exit(&mut self) {
        self.close(CloseReason::WindowClosed);
        // Wait (bounded) for the logout and the ledger record before the process goes.
        let deadline = Instant::now() + EXIT_WAIT;
        while let Some(live) = &self.live {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                tracing::warn!("the HSM session did not close in time as the window closed");
                break;
            }
            match live.replies.recv_timeout(left) {
                Ok(Reply::Closed { .. }) | Err(_) => self.live = None,
                Ok(_) => {}
            }
        }
        // The workers let go of the module (logout, finalise) before the process may exit.
        while self.workers.iter().any(|w| !w.is_finished()) && Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        for w in self.workers.drain(..).filter(|w| w.is_finished()) {
            let _ = w.join();
        }
    }
}
