//! The ledger screen's actions: re-queue a failed enrollment, revoke an identity (and its DPS
//! enrollment), export what the table shows as CSV. Each asks for confirmation with a reason,
//! re-checks the engineer role when confirmed, runs the library function
//! ([`crate::station::identity_actions`], [`crate::ledger::Ledger::export_browse_csv`]) on its own
//! thread, and is audited with the reason.

use std::path::PathBuf;
use std::sync::mpsc::{Receiver, channel};

use egui::RichText;

use crate::ledger::browse::BrowseQuery;
use crate::ledger::{Ledger, WriterIdentity};
use crate::station::identity_actions::{DpsCleanup, requeue_enrollment, revoke_identity};
use crate::station::operator::{Role, StationHandle};

use crate::gui::screen::Desk;
use crate::gui::widgets::file_pick::{FilePick, PickKind};

/// Which action a dialog confirms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Requeue,
    Revoke,
    Export,
}

/// A confirmation being filled in.
struct Dialog {
    action: Action,
    registration_id: String,
    reason: String,
    query: BrowseQuery,
}

/// The dialogs, the running action and its last result.
pub struct Actions {
    dialog: Option<Dialog>,
    target: FilePick,
    running: Option<Receiver<Result<String, String>>>,
    /// The last result: (is an error, text).
    message: Option<(bool, String)>,
}

impl Default for Actions {
    fn default() -> Self {
        Actions {
            dialog: None,
            target: FilePick::new("ledger-export", PickKind::SaveFile),
            running: None,
            message: None,
        }
    }
}

impl Actions {
    /// Opens the confirmation for `action` on `registration_id`.
    pub fn ask(&mut self, action: Action, registration_id: &str) {
        self.dialog = Some(Dialog {
            action,
            registration_id: registration_id.to_string(),
            reason: String::new(),
            query: BrowseQuery::default(),
        });
    }

    /// Whether an action is under way.
    pub fn busy(&self) -> bool {
        self.running.is_some()
    }

    /// Takes a finished action's result; true when it may have changed the ledger.
    pub fn take_done(&mut self, _station: &StationHandle) -> bool {
        let Some(rx) = &self.running else {
            return false;
        };
        match rx.try_recv() {
            Ok(result) => {
                self.running = None;
                self.message = Some(match result {
                    Ok(text) => (false, text),
                    Err(text) => (true, text),
                });
                true
            }
            Err(std::sync::mpsc::TryRecvError::Empty) => false,
            Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                self.running = None;
                self.message = Some((true, "the action stopped without an answer".into()));
                false
            }
        }
    }

    /// The export button of the toolbar, and the last result.
    pub fn export_button(&mut self, ui: &mut egui::Ui, desk: &Desk<'_>, query: &BrowseQuery) {
        let tr = desk.tr;
        if ui
            .add_enabled(!self.busy(), egui::Button::new(tr.t("ledger.export")))
            .clicked()
        {
            self.dialog = Some(Dialog {
                action: Action::Export,
                registration_id: String::new(),
                reason: String::new(),
                query: query.clone(),
            });
        }
        if self.busy() {
            ui.spinner();
            ui.label(tr.t("ledger.working"));
        } else if let Some((error, text)) = &self.message {
            let text = if *error {
                RichText::new(format!("▲ {text}")).color(desk.palette.alarm)
            } else {
                RichText::new(text)
            };
            ui.label(text);
        }
    }

    /// The open confirmation, if any.
    pub fn dialogs_ui(&mut self, ui: &mut egui::Ui, desk: &Desk<'_>) {
        let tr = desk.tr;
        let Some(dialog) = self.dialog.as_mut() else {
            return;
        };
        let mut close = false;
        let mut confirm = false;
        egui::Modal::new(egui::Id::unique("ledger-action")).show(ui.ctx(), |ui| {
            let (title, body) = match dialog.action {
                Action::Requeue => ("ledger.requeue", "ledger.requeue_body"),
                Action::Revoke => ("ledger.revoke", "ledger.revoke_body"),
                Action::Export => ("ledger.export", "ledger.export_body"),
            };
            ui.heading(tr.t(title));
            ui.label(tr.f(body, &[("id", &dialog.registration_id)]));
            if dialog.action == Action::Export {
                self.target.ui(ui, tr);
            }
            let label = ui.label(tr.t("ledger.reason"));
            ui.add(
                egui::TextEdit::singleline(&mut dialog.reason)
                    .hint_text(tr.t("ledger.reason_hint"))
                    .desired_width(360.0),
            )
            .labelled_by(label.id);
            let ready = !dialog.reason.trim().is_empty()
                && (dialog.action != Action::Export || self.target.path().is_some());
            ui.horizontal(|ui| {
                if ui
                    .add_enabled(ready, egui::Button::new(tr.t("ledger.confirm")))
                    .clicked()
                {
                    confirm = true;
                }
                if ui.button(tr.t("common.cancel")).clicked() {
                    close = true;
                }
            });
        });
        if confirm && let Some(dialog) = self.dialog.take() {
            self.start(dialog, desk, ui.ctx());
        } else if close {
            self.dialog = None;
        }
    }

    fn start(&mut self, dialog: Dialog, desk: &Desk<'_>, ctx: &egui::Context) {
        // The role may have been given up since the dialog opened.
        if let Err(e) = desk.station.require(Role::Engineer) {
            self.message = Some((true, e.to_string()));
            return;
        }
        let config = desk.station.config().clone();
        let writer = WriterIdentity {
            station: config.name.clone(),
            operator: desk.station.operator().0.unwrap_or_default(),
        };
        let target: Option<PathBuf> = self.target.path();
        let tr = desk.tr;
        let done_requeue = tr.f("ledger.requeued", &[("id", &dialog.registration_id)]);
        let done_revoke = tr.f("ledger.revoked", &[("id", &dialog.registration_id)]);
        let deferred = tr.t("ledger.dps_deferred").to_string();
        let exported = tr.t("ledger.exported").to_string();
        let (tx, rx) = channel();
        let ctx = ctx.clone();
        let spawned = std::thread::Builder::new()
            .name("ledger-action".into())
            .spawn(move || {
                let result = match dialog.action {
                    Action::Requeue => requeue_enrollment(
                        &config.ledger,
                        &writer,
                        &dialog.registration_id,
                        &dialog.reason,
                    )
                    .map(|()| done_requeue)
                    .map_err(|e| e.to_string()),
                    Action::Revoke => {
                        revoke_identity(&config, &writer, &dialog.registration_id, &dialog.reason)
                            .map(|outcome| {
                                let later: Vec<String> = outcome
                                    .dps
                                    .iter()
                                    .filter_map(|d| match d {
                                        DpsCleanup::Deferred { target, error } => {
                                            Some(format!("{target}: {error}"))
                                        }
                                        DpsCleanup::Deleted { .. } => None,
                                    })
                                    .collect();
                                if later.is_empty() {
                                    done_revoke
                                } else {
                                    format!("{done_revoke} {deferred} {}", later.join("; "))
                                }
                            })
                            .map_err(|e| e.to_string())
                    }
                    Action::Export => {
                        export(&config.ledger, &writer, &dialog, target).map(|(n, path)| {
                            exported
                                .replace("{n}", &n.to_string())
                                .replace("{path}", &path)
                        })
                    }
                };
                let _ = tx.send(result);
                ctx.request_repaint();
            });
        match spawned {
            Ok(_) => self.running = Some(rx),
            Err(e) => self.message = Some((true, e.to_string())),
        }
    }
}

/// Writes the query's rows to `target` and audits it (who, where, how many, why).
fn export(
    ledger_path: &std::path::Path,
    writer: &WriterIdentity,
    dialog: &Dialog,
    target: Option<PathBuf>,
) -> Result<(u64, String), String> {
    let target = target.ok_or_else(|| "choose a file to write".to_string())?;
    let file = std::fs::File::create(&target)
        .map_err(|e| format!("cannot write {}: {e}", target.display()))?;
    let reader = Ledger::open_read_only(ledger_path).map_err(|e| e.to_string())?;
    let rows = reader
        .export_browse_csv(&dialog.query, std::io::BufWriter::new(file))
        .map_err(|e| e.to_string())?;
    drop(reader);
    let mut ledger = Ledger::open(ledger_path, writer).map_err(|e| e.to_string())?;
    ledger
        .append_audit(
            &writer.operator,
            "ledger.exported",
            &format!("station:{}", writer.station),
            &serde_json::json!({
                "file": target.display().to_string(),
                "rows": rows,
                "search": dialog.query.search,
                "reason": dialog.reason.trim(),
            }),
        )
        .map_err(|e| e.to_string())?;
    Ok((rows, target.display().to_string()))
}
