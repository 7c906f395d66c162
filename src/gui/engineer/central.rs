//! Central ledger (engineer, issue 18 point 6): this station's outbox depth, last receipt, held
//! leases and the conflicts the service reported, and every station as the service sees it
//! (chain head, lease left, conflicts). Read by `station::central_view` on a worker; `ui` only
//! draws. Conflicts and expired leases are the abnormal states: ▲ and the alarm colour, with text.

use std::sync::mpsc::{self, Receiver, Sender};

use egui::RichText;
use egui_extras::{Column, TableBuilder};

use crate::gui::i18n::Messages;
use crate::gui::screen::{Desk, Screen, ScreenId};
use crate::ledger::now;
use crate::station::central_view::{CentralView, ServiceView, conflict_text};
use crate::station::config::StationConfig;
use crate::station::operator::{Role, StationHandle};

/// The central panel's id.
pub const CENTRAL: ScreenId = "central";

/// The central ledger panel.
pub struct CentralScreen {
    tx: Sender<Result<CentralView, String>>,
    rx: Receiver<Result<CentralView, String>>,
    asked: bool,
    loading: bool,
    view: Option<Result<CentralView, String>>,
}

impl Default for CentralScreen {
    fn default() -> Self {
        Self::new()
    }
}

impl CentralScreen {
    /// A panel that reads when first shown.
    pub fn new() -> Self {
        let (tx, rx) = mpsc::channel();
        Self {
            tx,
            rx,
            asked: false,
            loading: false,
            view: None,
        }
    }

    fn ask(&mut self, ctx: &egui::Context, config: StationConfig) {
        self.asked = true;
        self.loading = true;
        let (tx, ctx) = (self.tx.clone(), ctx.clone());
        let spawned = std::thread::Builder::new()
            .name("central-view".into())
            .spawn(move || {
                let _ = tx.send(CentralView::read(&config));
                ctx.request_repaint();
            });
        if let Err(e) = spawned {
            self.loading = false;
            self.view = Some(Err(format!("the central worker could not start: {e}")));
        }
    }
}

impl Screen for CentralScreen {
    fn id(&self) -> ScreenId {
        CENTRAL
    }

    fn title_key(&self) -> &'static str {
        "central.title"
    }

    fn min_role(&self) -> Role {
        Role::Engineer
    }

    fn logic(&mut self, _ctx: &egui::Context, _station: &StationHandle, _tr: &Messages) {
        while let Ok(answer) = self.rx.try_recv() {
            self.loading = false;
            self.view = Some(answer);
        }
    }

    fn ui(&mut self, ui: &mut egui::Ui, desk: &Desk<'_>) {
        let tr = desk.tr;
        if !self.asked {
            self.ask(ui.ctx(), desk.station.config().clone());
        }
        ui.heading(tr.t("central.title"));
        ui.horizontal(|ui| {
            if ui
                .add_enabled(!self.loading, egui::Button::new(tr.t("central.refresh")))
                .clicked()
            {
                self.ask(ui.ctx(), desk.station.config().clone());
            }
            if self.loading {
                ui.label(tr.t("central.working"));
            }
        });
        let view = match &self.view {
            None => return,
            Some(Err(e)) => {
                ui.label(RichText::new(format!("▲ {e}")).color(desk.palette.alarm));
                return;
            }
            Some(Ok(v)) => v,
        };
        egui::ScrollArea::vertical().show(ui, |ui| {
            this_station(ui, desk, view);
            ui.separator();
            leases(ui, desk, view);
            ui.separator();
            conflicts(ui, desk, view);
            ui.separator();
            service(ui, desk, view);
        });
    }
}

fn this_station(ui: &mut egui::Ui, desk: &Desk<'_>, v: &CentralView) {
    let tr = desk.tr;
    ui.label(RichText::new(tr.t("central.this_station")).strong());
    match &v.joined {
        Some(j) => {
            ui.label(tr.f(
                "central.joined",
                &[
                    ("url", &j.url),
                    ("station", &j.station_id),
                    (
                        "enrollment",
                        tr.t(if j.enrollment == "central" {
                            "central.enroll_by_service"
                        } else {
                            "central.enroll_by_station"
                        }),
                    ),
                ],
            ));
        }
        None => {
            ui.label(tr.t("central.not_joined"));
        }
    }
    ui.label(tr.f(
        "central.outbox",
        &[
            ("depth", &v.outbox_depth.to_string()),
            ("last", &v.last_seq.to_string()),
        ],
    ));
    match &v.last_receipt {
        Some(r) => ui.label(tr.f(
            "central.last_receipt",
            &[
                ("first", &r.first_seq.to_string()),
                ("last", &r.last_seq.to_string()),
                ("head", &r.head_seq.to_string()),
                ("position", &r.central_position.to_string()),
                ("at", &r.received_at),
            ],
        )),
        None => ui.label(tr.t("central.no_receipt")),
    };
}

fn leases(ui: &mut egui::Ui, desk: &Desk<'_>, v: &CentralView) {
    let tr = desk.tr;
    ui.label(RichText::new(tr.t("central.leases")).strong());
    if v.leases.is_empty() {
        ui.label(tr.t("central.no_leases"));
        return;
    }
    let at = now();
    ui.push_id("central-leases", |ui| {
        TableBuilder::new(ui)
            .striped(true)
            .columns(Column::auto().at_least(120.0), 5)
            .header(24.0, |mut h| {
                for key in [
                    "central.col_lease",
                    "central.col_batch",
                    "central.col_count",
                    "central.col_left",
                    "central.col_expires",
                ] {
                    h.col(|ui| {
                        ui.strong(tr.t(key));
                    });
                }
            })
            .body(|mut body| {
                for l in &v.leases {
                    body.row(24.0, |mut row| {
                        row.col(|ui| {
                            ui.label(&l.lease_id);
                        });
                        row.col(|ui| {
                            ui.label(&l.batch);
                        });
                        row.col(|ui| {
                            ui.label(l.count.to_string());
                        });
                        row.col(|ui| {
                            ui.label(l.left().to_string());
                        });
                        row.col(|ui| {
                            if l.expired_at(&at) {
                                ui.label(
                                    RichText::new(
                                        tr.f("central.expired", &[("at", &l.expires_at)]),
                                    )
                                    .color(desk.palette.alarm),
                                );
                            } else {
                                ui.label(&l.expires_at);
                            }
                        });
                    });
                }
            });
    });
}

fn conflicts(ui: &mut egui::Ui, desk: &Desk<'_>, v: &CentralView) {
    let tr = desk.tr;
    ui.label(RichText::new(tr.t("central.conflicts")).strong());
    if v.conflicts.is_empty() {
        ui.label(tr.t("central.no_conflicts"));
        return;
    }
    ui.label(
        RichText::new(tr.f(
            "central.conflicts_count",
            &[("n", &v.conflicts.len().to_string())],
        ))
        .color(desk.palette.alarm),
    );
    for row in &v.conflicts {
        let (serial, held_by, reason) = conflict_text(row);
        ui.label(tr.f(
            "central.conflict",
            &[
                ("at", &row.at),
                ("registration_id", &row.subject),
                ("serial", &serial),
                ("held_by", &held_by),
                ("reason", &reason),
            ],
        ));
    }
}

fn service(ui: &mut egui::Ui, desk: &Desk<'_>, v: &CentralView) {
    let tr = desk.tr;
    ui.label(RichText::new(tr.t("central.service")).strong());
    let report = match &v.service {
        ServiceView::NotJoined => {
            ui.label(tr.t("central.not_joined"));
            return;
        }
        ServiceView::KeyInHsm => {
            ui.label(tr.t("central.key_in_hsm"));
            return;
        }
        ServiceView::Unreachable(e) => {
            ui.label(
                RichText::new(tr.f("central.unreachable", &[("reason", e)]))
                    .color(desk.palette.alarm),
            );
            return;
        }
        ServiceView::Report(r) => r,
    };
    ui.label(tr.f("central.service_time", &[("at", &report.service_time)]));
    ui.push_id("central-stations", |ui| {
        TableBuilder::new(ui)
            .striped(true)
            .columns(Column::auto().at_least(110.0), 6)
            .header(24.0, |mut h| {
                for key in [
                    "central.col_station",
                    "central.col_head",
                    "central.col_lease_left",
                    "central.col_conflicts",
                    "central.col_revoked",
                    "central.col_last_seen",
                ] {
                    h.col(|ui| {
                        ui.strong(tr.t(key));
                    });
                }
            })
            .body(|mut body| {
                for s in &report.stations {
                    body.row(24.0, |mut row| {
                        row.col(|ui| {
                            ui.label(&s.station_id);
                        });
                        row.col(|ui| {
                            ui.label(s.head_seq.to_string());
                        });
                        row.col(|ui| {
                            ui.label(s.lease_left.to_string());
                        });
                        row.col(|ui| {
                            if s.conflicts > 0 {
                                ui.label(
                                    RichText::new(format!("▲ {}", s.conflicts))
                                        .color(desk.palette.alarm),
                                );
                            } else {
                                ui.label("0");
                            }
                        });
                        row.col(|ui| {
                            ui.label(tr.t(if s.revoked {
                                "central.revoked_yes"
                            } else {
                                "central.revoked_no"
                            }));
                        });
                        row.col(|ui| {
                            ui.label(s.last_seen.as_deref().unwrap_or("–"));
                        });
                    });
                }
            });
    });
}
