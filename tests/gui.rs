//! The operator's desk driven like an operator drives it: egui_kittest clicks and types through
//! the accessibility tree over the real engine, SoftHSM2, pseudo-terminals and the DPS emulator.

#[path = "gui/audit.rs"]
mod audit;
#[path = "gui/batch_editor.rs"]
mod batch_editor;
#[path = "gui/cli.rs"]
mod cli;
#[path = "gui/common.rs"]
mod common;
#[path = "gui/export.rs"]
mod export;
#[path = "gui/first_run.rs"]
mod first_run;
#[path = "gui/korean.rs"]
mod korean;
#[path = "gui/lease.rs"]
mod lease;
#[path = "gui/ledger.rs"]
mod ledger;
#[path = "gui/line.rs"]
mod line;
#[path = "gui/manifests.rs"]
mod manifests;
#[path = "gui/officer.rs"]
mod officer;
#[path = "gui/reports.rs"]
mod reports;
#[path = "gui/roles.rs"]
mod roles;
#[path = "gui/scan.rs"]
mod scan;

#[path = "gui/central.rs"]
mod central;
