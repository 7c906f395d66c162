//! The ledger screen's detail pane: one identity as DPS shows it (certificate subject, issuer,
//! thumbprints, validity and PEM to copy; or the symmetric key's fingerprint, never the key), its
//! enrollments (target, attempts, last DPS error, etag) and every audit row that names it.

use egui::RichText;

use crate::ledger::{FailureStage, IdentityId, IdentityState};
use crate::station::enrollment::pem_certificate;

use super::ledger_actions::{Action, Actions};
use super::ledger_worker::Detail;
use crate::gui::i18n::Messages;
use crate::gui::screen::Desk;

/// What the pane holds for the selected identity.
#[derive(Debug, Default)]
pub struct DetailState {
    for_id: Option<IdentityId>,
    detail: Option<Result<Box<Detail>, String>>,
    pem: Option<String>,
}

impl DetailState {
    /// Waiting for the worker's answer about `id`.
    pub fn loading(id: IdentityId) -> Self {
        DetailState {
            for_id: Some(id),
            detail: None,
            pem: None,
        }
    }

    /// Takes the worker's answer (ignored if the user picked another row meanwhile).
    pub fn take(&mut self, id: IdentityId, detail: Result<Box<Detail>, String>) {
        if self.for_id == Some(id) {
            self.pem = detail
                .as_ref()
                .ok()
                .and_then(|d| d.identity.certificate_der.as_deref())
                .map(pem_certificate);
            self.detail = Some(detail);
        }
    }

    /// Draws the pane.
    pub fn ui(
        &mut self,
        ui: &mut egui::Ui,
        desk: &Desk<'_>,
        id: IdentityId,
        actions: &mut Actions,
        writable: bool,
    ) {
        let tr = desk.tr;
        let detail = match (&self.detail, self.for_id == Some(id)) {
            (Some(Ok(d)), true) => d,
            (Some(Err(e)), true) => {
                ui.label(
                    RichText::new(format!("▲ {}", tr.f("ledger.error", &[("error", e)])))
                        .color(desk.palette.alarm),
                );
                return;
            }
            _ => {
                ui.label(tr.t("ledger.loading"));
                return;
            }
        };
        let i = &detail.identity;
        egui::ScrollArea::vertical()
            .id_salt("ledger-detail-scroll")
            .show(ui, |ui| {
                ui.heading(&i.registration_id);
                ui.horizontal(|ui| {
                    state_label(ui, i.state, desk);
                    if let Some(reason) = i.failed_reason.as_ref().or(i.revoked_reason.as_ref()) {
                        ui.label(reason);
                    }
                });
                actions_ui(ui, desk, detail, actions, writable);
                ui.separator();
                grid(ui, tr, "ledger-identity", |row| {
                    row("ledger.col.mode", i.attestation.as_str().to_string());
                    row("ledger.col.batch", i.batch.clone().unwrap_or_default());
                    if let Some(d) = &i.device {
                        row("ledger.col.model", d.model.clone());
                        row("ledger.col.serial", d.serial_number.clone());
                    }
                    row(
                        "ledger.col.operator",
                        i.operator.clone().unwrap_or_default(),
                    );
                    row("ledger.station", i.station.clone().unwrap_or_default());
                    row("ledger.col.time", i.created_at.clone());
                });
                if let Some(c) = &i.certificate {
                    ui.separator();
                    ui.strong(tr.t("ledger.certificate"));
                    grid(ui, tr, "ledger-cert", |row| {
                        row("ledger.subject", c.subject.clone());
                        row("ledger.issuer", c.issuer.clone());
                        row("ledger.sha1", c.sha1_thumbprint.clone());
                        row("ledger.sha256", c.sha256_thumbprint.clone());
                        row("ledger.cert_serial", c.serial.clone());
                        row(
                            "ledger.validity",
                            format!("{} – {}", c.not_before, c.not_after),
                        );
                    });
                    if let Some(pem) = &self.pem {
                        if ui.button(tr.t("ledger.copy_pem")).clicked() {
                            ui.ctx().copy_text(pem.clone());
                        }
                        ui.add(
                            egui::Label::new(RichText::new(pem).monospace().size(11.0))
                                .selectable(true),
                        );
                    }
                }
                if let Some(f) = &i.key_fingerprint {
                    ui.separator();
                    grid(ui, tr, "ledger-key", |row| {
                        row("ledger.key_fingerprint", f.as_str().to_string());
                    });
                }
                ui.separator();
                ui.strong(tr.t("ledger.enrollments"));
                if detail.enrollments.is_empty() {
                    ui.label(tr.t("ledger.no_enrollment"));
                }
                for (n, e) in detail.enrollments.iter().enumerate() {
                    grid(ui, tr, &format!("ledger-enrollment-{n}"), |row| {
                        row("ledger.target", e.dps_target.clone());
                        row("ledger.col.enrollment", e.state.as_str().to_string());
                        row("ledger.attempts", e.attempts.to_string());
                        row(
                            "ledger.last_error",
                            e.last_error.clone().unwrap_or_default(),
                        );
                        row("ledger.etag", e.etag.clone().unwrap_or_default());
                    });
                }
                ui.separator();
                ui.strong(tr.f(
                    "ledger.audit_rows",
                    &[("n", &detail.audit.len().to_string())],
                ));
                for a in &detail.audit {
                    ui.label(
                        RichText::new(format!(
                            "{}  {}  {}  {}",
                            a.at.get(..19).unwrap_or(&a.at),
                            a.actor,
                            a.action,
                            a.details
                        ))
                        .monospace()
                        .size(11.0),
                    );
                }
            });
    }
}

/// The buttons for what may be done to this identity now.
fn actions_ui(
    ui: &mut egui::Ui,
    desk: &Desk<'_>,
    detail: &Detail,
    actions: &mut Actions,
    writable: bool,
) {
    let tr = desk.tr;
    let i = &detail.identity;
    ui.horizontal(|ui| {
        let requeue = i.state == IdentityState::Failed
            && i.failed_stage == Some(FailureStage::Enroll)
            && !detail.enrollments.is_empty();
        if requeue
            && ui
                .add_enabled(writable, egui::Button::new(tr.t("ledger.requeue")))
                .clicked()
        {
            actions.ask(Action::Requeue, &i.registration_id);
        }
        if i.state != IdentityState::Revoked
            && ui
                .add_enabled(writable, egui::Button::new(tr.t("ledger.revoke")))
                .clicked()
        {
            actions.ask(Action::Revoke, &i.registration_id);
        }
    });
}

/// A state with a shape mark and colour when it is abnormal (never colour alone).
pub fn state_label(ui: &mut egui::Ui, state: IdentityState, desk: &Desk<'_>) {
    match state {
        IdentityState::Failed => {
            ui.label(RichText::new(format!("▲ {state}")).color(desk.palette.alarm));
        }
        IdentityState::Revoked => {
            ui.label(RichText::new(format!("■ {state}")).color(desk.palette.warn));
        }
        _ => {
            ui.label(state.as_str());
        }
    }
}

/// A two-column grid of (message key, value) rows.
fn grid(
    ui: &mut egui::Ui,
    tr: &Messages,
    id: &str,
    rows: impl FnOnce(&mut dyn FnMut(&str, String)),
) {
    let tr_weak = ui.visuals().weak_text_color();
    let mut pairs: Vec<(String, String)> = Vec::new();
    rows(&mut |k, v| pairs.push((k.to_string(), v)));
    egui::Grid::new(id)
        .num_columns(2)
        .spacing([12.0, 4.0])
        .show(ui, |ui| {
            for (k, v) in pairs {
                ui.label(RichText::new(tr.t(&k)).color(tr_weak));
                ui.add(egui::Label::new(v).selectable(true).wrap());
                ui.end_row();
            }
        });
}
