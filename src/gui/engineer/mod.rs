//! The production engineer's screens (behind the engineer role): the ledger, batches, reports,
//! enrollment and exports. Each drives library code (ledger queries, export, enroll, reports) on
//! its own worker; none reimplements it.

pub mod batch_editor;
pub mod batch_editor_worker;
pub mod central;
pub mod enrollment;
pub mod export;
pub mod ledger;
pub mod ledger_actions;
pub mod ledger_bench;
pub mod ledger_detail;
pub mod ledger_worker;
pub mod manifests;
pub mod reports;
