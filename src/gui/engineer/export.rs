//! The export wizard: enrollment files for a site that enrolls from another network, over the
//! library's `export_pending` (what `dps-station dps export --config … --batch …` runs). Choose a
//! batch file (its settings, DPS target and key source), a destination folder, acknowledge the
//! warning when the files will hold secrets (symmetric keys), export on a worker that reports
//! each step, then a summary of what was written where and what was left out.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, Sender};

use egui::RichText;

use crate::dps::export::ExportSummary;
use crate::gui::i18n::Messages;
use crate::gui::screen::{Desk, Screen, ScreenId};
use crate::gui::widgets::file_pick::{FilePick, PickKind};
use crate::ledger::Ledger;
use crate::station::batch_doc::mode_has_secrets;
use crate::station::config::{BatchConfig, StationConfig};
use crate::station::enrollment::{ExportReport, batch_settings, export_pending, x509_group_record};
use crate::station::individual_keys::IndividualKeys;
use crate::station::keys::StationKeys;
use crate::station::operator::{Role, StationHandle};

/// The export wizard's id.
pub const EXPORT: ScreenId = "export";

/// The steps the worker reports (message keys), in order.
const STEPS: [&str; 4] = [
    "exportui.step_batch",
    "exportui.step_ledger",
    "exportui.step_keys",
    "exportui.step_write",
];

enum Answer {
    Listed(Vec<PathBuf>),
    Chosen(PathBuf, Result<Chosen, String>),
    Step(usize),
    Done(Result<(PathBuf, ExportReport), String>),
}

#[derive(Clone)]
struct Chosen {
    name: String,
    mode: String,
    target: String,
    secrets: bool,
}

/// The wizard's state.
pub struct ExportScreen {
    tx: Sender<Answer>,
    rx: Receiver<Answer>,
    files: Option<Vec<PathBuf>>,
    listing: bool,
    chosen: Option<(PathBuf, Result<Chosen, String>)>,
    folder: FilePick,
    acknowledged: bool,
    step: Option<usize>,
    result: Option<Result<(PathBuf, ExportReport), String>>,
}

impl Default for ExportScreen {
    fn default() -> Self {
        let (tx, rx) = mpsc::channel();
        Self {
            tx,
            rx,
            files: None,
            listing: false,
            chosen: None,
            folder: FilePick::new("export-folder", PickKind::Folder),
            acknowledged: false,
            step: None,
            result: None,
        }
    }
}

fn spawn(
    ctx: &egui::Context,
    tx: &Sender<Answer>,
    job: impl FnOnce(&dyn Fn(Answer)) + Send + 'static,
) {
    let (ctx, tx) = (ctx.clone(), tx.clone());
    let started = std::thread::Builder::new()
        .name("export-wizard".into())
        .spawn(move || {
            let send = |a: Answer| {
                let _ = tx.send(a);
                ctx.request_repaint();
            };
            job(&send);
        });
    if let Err(e) = started {
        tracing::warn!(error = %e, "the export wizard could not start a worker thread");
    }
}

fn list(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

fn run(
    station: &StationConfig,
    batch: &Path,
    dir: &Path,
    send: &dyn Fn(Answer),
) -> Result<ExportReport, String> {
    send(Answer::Step(0));
    let batch = BatchConfig::load(batch, station).map_err(|e| e.to_string())?;
    send(Answer::Step(1));
    let ledger = Ledger::open_read_only(&station.ledger).map_err(|e| e.to_string())?;
    if ledger
        .find_batch(&batch.name)
        .map_err(|e| e.to_string())?
        .is_none()
    {
        return Err(format!(
            "the ledger {} holds no batch named '{}': run it first",
            station.ledger.display(),
            batch.name
        ));
    }
    send(Answer::Step(2));
    // Only symmetric-individual batches have keys to recompute (from the key store's master).
    let keys = match batch.device_key_master {
        Some(_) => {
            let keys =
                StationKeys::open_unattended(&station.keystore).map_err(|e| e.to_string())?;
            Some(IndividualKeys::new(keys, batch.clone()).map_err(|e| e.to_string())?)
        }
        None => None,
    };
    send(Answer::Step(3));
    export_pending(
        &ledger,
        &batch.dps_target,
        Some(&batch.name),
        &batch_settings(&batch),
        // An x509-group batch's devices enroll through its group: written over its issuing CA.
        x509_group_record(&batch).into_iter().collect(),
        keys.as_ref(),
        dir,
    )
    .map_err(|e| e.to_string())
}

impl ExportScreen {
    fn take(&mut self) {
        while let Ok(answer) = self.rx.try_recv() {
            match answer {
                Answer::Listed(files) => {
                    self.listing = false;
                    self.files = Some(files);
                }
                Answer::Chosen(path, chosen) => {
                    self.acknowledged = false;
                    self.result = None;
                    self.chosen = Some((path, chosen));
                }
                Answer::Step(n) => self.step = Some(n),
                Answer::Done(result) => {
                    self.step = None;
                    match &result {
                        Ok((dir, r)) => tracing::info!(
                            folder = %dir.display(),
                            individuals = r.written.individuals,
                            left_out = r.left_out.len(),
                            "enrollment files exported from the desk"
                        ),
                        Err(e) => tracing::warn!(error = %e, "export from the desk failed"),
                    }
                    self.result = Some(result);
                }
            }
        }
    }

    fn choose_ui(&mut self, ui: &mut egui::Ui, desk: &Desk<'_>) {
        let tr = desk.tr;
        let dir = desk.station.config().desk.batches.clone();
        if self.files.is_none() && !self.listing {
            self.listing = true;
            spawn(ui.ctx(), &self.tx, move |send| {
                send(Answer::Listed(list(&dir)))
            });
        }
        ui.label(RichText::new(tr.t("exportui.choose_batch")).strong());
        let Some(files) = &self.files else {
            ui.label(tr.t("batchui.working"));
            return;
        };
        let mut picked = None;
        ui.horizontal_wrapped(|ui| {
            for f in files {
                let name = f
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let on = self.chosen.as_ref().is_some_and(|(p, _)| p == f);
                if ui.selectable_label(on, name).clicked() {
                    picked = Some(f.clone());
                }
            }
        });
        if let Some(path) = picked {
            let station = desk.station.config().clone();
            spawn(ui.ctx(), &self.tx, move |send| {
                let chosen = BatchConfig::load(&path, &station)
                    .map(|b| Chosen {
                        name: b.name.clone(),
                        mode: b.mode.to_string(),
                        target: b.dps_target.clone(),
                        secrets: mode_has_secrets(b.mode) && b.device_key_master.is_some(),
                    })
                    .map_err(|e| e.to_string());
                send(Answer::Chosen(path, chosen));
            });
        }
    }

    fn summary_ui(&self, ui: &mut egui::Ui, tr: &Messages, desk: &Desk<'_>) {
        match &self.result {
            None => {}
            Some(Err(e)) => {
                ui.colored_label(desk.palette.alarm, format!("▲ {e}"));
            }
            Some(Ok((dir, report))) => {
                let w: &ExportSummary = &report.written;
                if w.individuals == 0 && w.groups == 0 {
                    ui.colored_label(desk.palette.warn, format!("▲ {}", tr.t("exportui.nothing")));
                } else {
                    ui.label(
                        RichText::new(tr.f(
                            "exportui.written",
                            &[
                                ("n", &w.individuals.to_string()),
                                ("dir", &dir.display().to_string()),
                            ],
                        ))
                        .strong(),
                    );
                    for f in &w.bulk_files {
                        ui.monospace(format!("■ {}", f.display()));
                    }
                    for name in ["enrollments.csv", "enroll-with-az.sh", "README.txt"] {
                        ui.monospace(format!("■ {}", dir.join(name).display()));
                    }
                    ui.label(tr.f(
                        "exportui.certificates",
                        &[("n", &w.certificate_files.to_string())],
                    ));
                    if w.holds_secrets {
                        ui.colored_label(
                            desk.palette.warn,
                            format!("▲ {}", tr.t("exportui.holds_secrets")),
                        );
                    }
                }
                for u in &report.left_out {
                    ui.label(format!(
                        "■ {}: {}: {}",
                        tr.t("exportui.left_out"),
                        u.registration_id,
                        u.reason
                    ));
                }
            }
        }
    }
}

impl Screen for ExportScreen {
    fn id(&self) -> ScreenId {
        EXPORT
    }

    fn title_key(&self) -> &'static str {
        "exportui.title"
    }

    fn min_role(&self) -> Role {
        Role::Engineer
    }

    fn logic(&mut self, _ctx: &egui::Context, _station: &StationHandle, _tr: &Messages) {
        self.take();
    }

    fn ui(&mut self, ui: &mut egui::Ui, desk: &Desk<'_>) {
        let tr = desk.tr;
        ui.heading(tr.t("exportui.title"));
        ui.label(tr.t("exportui.what"));
        ui.separator();
        self.choose_ui(ui, desk);
        let Some((batch_path, chosen)) = self.chosen.clone() else {
            return;
        };
        let chosen = match chosen {
            Ok(c) => c,
            Err(e) => {
                ui.colored_label(desk.palette.alarm, format!("▲ {e}"));
                return;
            }
        };
        ui.label(tr.f(
            "exportui.batch",
            &[
                ("name", &chosen.name),
                ("mode", &chosen.mode),
                ("target", &chosen.target),
            ],
        ));
        ui.separator();
        ui.label(RichText::new(tr.t("exportui.folder")).strong());
        self.folder.ui(ui, tr);
        if chosen.secrets {
            ui.colored_label(
                desk.palette.warn,
                format!("▲ {}", tr.t("exportui.secrets_warning")),
            );
            ui.checkbox(&mut self.acknowledged, tr.t("exportui.acknowledge"));
        }
        let busy = self.step.is_some();
        let ready = self.folder.path().is_some() && (!chosen.secrets || self.acknowledged) && !busy;
        if ui
            .add_enabled(ready, egui::Button::new(tr.t("exportui.run")))
            .clicked()
        {
            match (desk.station.require(Role::Engineer), self.folder.path()) {
                (Ok(()), Some(dir)) => {
                    self.result = None;
                    self.step = Some(0);
                    let station = desk.station.config().clone();
                    spawn(ui.ctx(), &self.tx, move |send| {
                        let result = run(&station, &batch_path, &dir, send).map(|r| (dir, r));
                        send(Answer::Done(result));
                    });
                }
                (Err(e), _) => self.result = Some(Err(e.to_string())),
                (_, None) => {}
            }
        }
        if let Some(step) = self.step {
            let fraction = step as f32 / STEPS.len() as f32;
            ui.add(egui::ProgressBar::new(fraction).text(tr.t(STEPS[step.min(STEPS.len() - 1)])));
        }
        self.summary_ui(ui, tr, desk);
    }
}
