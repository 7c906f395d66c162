//! What an officer does in an open HSM session: the keys and certificates on the token (URI with
//! a copy button, type, protection flags, batches that use them), the forms of `hsm init-ca`,
//! `hsm import-key`, `hsm group-key` and `hsm poe-cert`, the chain export, and the session's
//! audit rows as they are written. It only draws and returns an [`Op`] for the session worker.

use std::path::{Path, PathBuf};

use egui::RichText;
use zeroize::Zeroizing;

use crate::gui::i18n::Messages;
use crate::gui::theme::Palette;
use crate::gui::widgets::file_pick::{FilePick, PickKind};
use crate::secret::SecretString;
use crate::station::officer_session::{
    AuditLine, CaForm, KeyKind, KeyRow, Op, SecondOfficer, check_verification_code,
};

/// The forms of an open session.
pub struct KeysPanel {
    ca: CaForm,
    import_label: String,
    import_file: FilePick,
    import_pass: Zeroizing<String>,
    group_label: String,
    group_key: Zeroizing<String>,
    pop_ca: String,
    pop_code: String,
    pop_out: FilePick,
    chain_out: FilePick,
    second_name: String,
    second_pass: Zeroizing<String>,
}

impl KeysPanel {
    /// Empty forms; files are written to `out_dir` unless the officer chooses otherwise.
    pub fn new(out_dir: &Path) -> Self {
        let mut pop_out = FilePick::new("officer-pop-out", PickKind::SaveFile);
        pop_out.set_path(&out_dir.join("verification-certificate.pem"));
        let mut chain_out = FilePick::new("officer-chain-out", PickKind::SaveFile);
        chain_out.set_path(&out_dir.join("ca-chain.pem"));
        Self {
            ca: CaForm::default(),
            import_label: String::new(),
            import_file: FilePick::new(
                "officer-import-key",
                PickKind::File(&["pem", "der", "p8", "key"]),
            ),
            import_pass: secret_field(),
            group_label: String::new(),
            group_key: secret_field(),
            pop_ca: "root-ca".into(),
            pop_code: String::new(),
            pop_out,
            chain_out,
            second_name: String::new(),
            second_pass: secret_field(),
        }
    }

    /// Draws the session's keys, forms and audit rows; returns an operation to run.
    pub fn ui(
        &mut self,
        ui: &mut egui::Ui,
        tr: &Messages,
        palette: Palette,
        view: PanelView<'_>,
    ) -> Option<Op> {
        let mut op = None;
        keys_table(ui, tr, palette, view.keys);
        ui.separator();
        let enabled = !view.busy;
        ui.add_enabled_ui(enabled, |ui| {
            if view.dual_control {
                ui.label(RichText::new(tr.t("officer.dual_hint")).strong());
                ui.horizontal(|ui| {
                    text_field(
                        ui,
                        tr.t("officer.second_name"),
                        &mut self.second_name,
                        false,
                    );
                    text_field(
                        ui,
                        tr.t("officer.second_password"),
                        &mut self.second_pass,
                        true,
                    );
                });
            }
            ui.label(RichText::new(tr.t("officer.ca_title")).strong());
            ui.horizontal(|ui| {
                text_field(
                    ui,
                    tr.t("officer.root_label"),
                    &mut self.ca.root_label,
                    false,
                );
                text_field(ui, tr.t("officer.root_cn"), &mut self.ca.root_cn, false);
            });
            ui.horizontal(|ui| {
                text_field(
                    ui,
                    tr.t("officer.intermediate_label"),
                    &mut self.ca.intermediate_label,
                    false,
                );
                text_field(
                    ui,
                    tr.t("officer.intermediate_cn"),
                    &mut self.ca.intermediate_cn,
                    false,
                );
            });
            ui.horizontal(|ui| {
                text_field(
                    ui,
                    tr.t("officer.organization"),
                    &mut self.ca.organization,
                    false,
                );
                ui.label(tr.t("officer.days"));
                ui.add(egui::DragValue::new(&mut self.ca.root_days).range(1..=36500));
                ui.add(egui::DragValue::new(&mut self.ca.intermediate_days).range(1..=36500));
            });
            if ui.button(tr.t("officer.create_ca")).clicked() {
                op = Some(Op::InitCa {
                    form: self.ca.clone(),
                    second: self.take_second(ui.ctx()),
                });
            }
            ui.separator();
            ui.label(RichText::new(tr.t("officer.import_title")).strong());
            ui.horizontal(|ui| {
                text_field(
                    ui,
                    tr.t("officer.import_label"),
                    &mut self.import_label,
                    false,
                );
                text_field(
                    ui,
                    tr.t("officer.import_passphrase"),
                    &mut self.import_pass,
                    true,
                );
            });
            self.import_file.ui(ui, tr);
            if ui.button(tr.t("officer.import_ca")).clicked() {
                match self.import_file.path() {
                    Some(file) => {
                        let pass = take_secret(ui.ctx(), &mut self.import_pass);
                        op = Some(Op::ImportCaKey {
                            label: self.import_label.clone(),
                            file,
                            passphrase: pass,
                            second: self.take_second(ui.ctx()),
                        });
                    }
                    None => {
                        op = Some(Op::ImportCaKey {
                            label: self.import_label.clone(),
                            file: PathBuf::new(),
                            passphrase: None,
                            second: None,
                        })
                    }
                }
            }
            ui.separator();
            ui.label(RichText::new(tr.t("officer.group_title")).strong());
            ui.horizontal(|ui| {
                text_field(
                    ui,
                    tr.t("officer.group_label"),
                    &mut self.group_label,
                    false,
                );
                if ui.button(tr.t("officer.group_create")).clicked() {
                    op = Some(Op::CreateGroupKey {
                        label: self.group_label.clone(),
                    });
                }
            });
            ui.horizontal(|ui| {
                text_field(ui, tr.t("officer.group_key"), &mut self.group_key, true);
                if ui.button(tr.t("officer.group_import")).clicked() {
                    let key = take_secret(ui.ctx(), &mut self.group_key)
                        .unwrap_or_else(|| SecretString::new(String::new()));
                    op = Some(Op::ImportGroupKey {
                        label: self.group_label.clone(),
                        key,
                    });
                }
            });
            ui.separator();
            ui.label(RichText::new(tr.t("officer.pop_title")).strong());
            ui.horizontal(|ui| {
                text_field(ui, tr.t("officer.pop_ca"), &mut self.pop_ca, false);
                text_field(ui, tr.t("officer.pop_code"), &mut self.pop_code, false);
            });
            if let Err(why) = check_verification_code(&self.pop_code)
                && !self.pop_code.is_empty()
            {
                ui.label(RichText::new(format!("▲ {why}")).color(palette.warn));
            }
            self.pop_out.ui(ui, tr);
            if ui.button(tr.t("officer.pop_sign")).clicked() {
                op = Some(Op::Verification {
                    ca_label: self.pop_ca.clone(),
                    code: self.pop_code.clone(),
                    out: self.pop_out.path().unwrap_or_default(),
                });
            }
            ui.separator();
            ui.label(RichText::new(tr.t("officer.chain_title")).strong());
            self.chain_out.ui(ui, tr);
            if ui.button(tr.t("officer.chain_export")).clicked() {
                op = Some(Op::ExportChain {
                    root_label: self.ca.root_label.clone(),
                    intermediate_label: self.ca.intermediate_label.clone(),
                    out: self.chain_out.path().unwrap_or_default(),
                });
            }
        });
        ui.separator();
        audit_list(ui, tr, view.audit);
        op
    }

    /// The second officer's name and password for one operation; the password field is emptied.
    fn take_second(&mut self, ctx: &egui::Context) -> Option<SecondOfficer> {
        let password = take_secret(ctx, &mut self.second_pass)?;
        Some(SecondOfficer {
            name: self.second_name.trim().to_owned(),
            password,
        })
    }

    /// Empties every secret field (the session closed).
    pub fn clear_secrets(&mut self, ctx: &egui::Context) {
        drop(take_secret(ctx, &mut self.import_pass));
        drop(take_secret(ctx, &mut self.group_key));
        drop(take_secret(ctx, &mut self.second_pass));
    }
}

/// What the panel shows from the worker's last answer.
pub struct PanelView<'a> {
    /// Keys and certificates.
    pub keys: &'a [KeyRow],
    /// The session's audit rows.
    pub audit: &'a [AuditLine],
    /// An operation is running.
    pub busy: bool,
    /// Dual control is on.
    pub dual_control: bool,
}

/// Room reserved in a secret field, so that typing never makes the `String` reallocate (which
/// would leave copies of the first characters in freed memory that no zeroize reaches).
const SECRET_CAPACITY: usize = 512;

/// An empty secret field with its room reserved.
pub fn secret_field() -> Zeroizing<String> {
    Zeroizing::new(String::with_capacity(SECRET_CAPACITY))
}

/// Moves a secret out of its field (leaving it empty) and forgets what egui's undo history of
/// every text field holds; `None` when the field was empty.
pub fn take_secret(ctx: &egui::Context, field: &mut Zeroizing<String>) -> Option<SecretString> {
    let value = std::mem::replace(&mut **field, String::with_capacity(SECRET_CAPACITY));
    forget_text_history(ctx);
    (!value.is_empty()).then(|| SecretString::new(value))
}

/// egui keeps an undo history of text fields in its memory; a masked field's copies must not
/// outlive the moment the secret was sent.
fn forget_text_history(ctx: &egui::Context) {
    ctx.memory_mut(|m| {
        m.data.remove_by_type::<egui::text_edit::TextEditState>();
    });
}

/// A label and a text field the label names (screen readers and tests find it by the label).
pub fn text_field(ui: &mut egui::Ui, label: &str, text: &mut String, masked: bool) {
    let l = ui.label(label);
    ui.add(
        egui::TextEdit::singleline(text)
            .password(masked)
            .desired_width(200.0),
    )
    .labelled_by(l.id);
}

fn kind_key(kind: &KeyKind) -> &'static str {
    match kind {
        KeyKind::EcPrivate => "officer.kind_ec_private",
        KeyKind::EcPublic => "officer.kind_ec_public",
        KeyKind::GenericSecret => "officer.kind_secret",
        KeyKind::Certificate => "officer.kind_certificate",
        KeyKind::Other(_) => "officer.kind_other",
    }
}

fn keys_table(ui: &mut egui::Ui, tr: &Messages, palette: Palette, keys: &[KeyRow]) {
    ui.label(RichText::new(tr.t("officer.keys_title")).strong());
    if keys.is_empty() {
        ui.label(tr.t("officer.no_keys"));
        return;
    }
    egui::Grid::new("officer-keys")
        .num_columns(6)
        .striped(true)
        .spacing([12.0, 4.0])
        .show(ui, |ui| {
            for h in [
                "officer.col_kind",
                "officer.col_label",
                "officer.col_protection",
                "officer.col_batches",
            ] {
                ui.label(RichText::new(tr.t(h)).color(palette.weak));
            }
            ui.label("");
            ui.label(RichText::new(tr.t("officer.col_uri")).color(palette.weak));
            ui.end_row();
            for k in keys {
                ui.label(tr.t(kind_key(&k.kind)));
                ui.label(&k.label);
                let protection = match (k.sensitive, k.extractable) {
                    (Some(true), Some(false)) if k.never_extractable == Some(true) => {
                        RichText::new(tr.t("officer.never_extractable"))
                    }
                    (Some(true), Some(false)) => RichText::new(tr.t("officer.not_extractable")),
                    (_, Some(true)) => RichText::new(format!("▲ {}", tr.t("officer.extractable")))
                        .color(palette.warn),
                    _ => RichText::new("–"),
                };
                ui.label(protection);
                ui.label(if k.batches.is_empty() {
                    "–".to_owned()
                } else {
                    k.batches.join(", ")
                });
                if ui
                    .button(tr.f("officer.copy", &[("label", &k.label)]))
                    .clicked()
                {
                    ui.ctx().copy_text(k.uri.clone());
                }
                ui.label(RichText::new(&k.uri).monospace().small());
                ui.end_row();
            }
        });
}

fn audit_list(ui: &mut egui::Ui, tr: &Messages, audit: &[AuditLine]) {
    ui.label(RichText::new(tr.t("officer.audit_title")).strong());
    if audit.is_empty() {
        ui.label(tr.t("officer.audit_empty"));
        return;
    }
    egui::Grid::new("officer-audit")
        .num_columns(4)
        .striped(true)
        .show(ui, |ui| {
            for a in audit {
                ui.label(&a.at);
                ui.label(&a.actor);
                ui.label(&a.action);
                ui.monospace(&a.subject);
                ui.end_row();
            }
        });
}
