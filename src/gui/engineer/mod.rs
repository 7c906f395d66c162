//! The production engineer's screens (behind the engineer role): the ledger, batches, reports,
//! enrollment and exports. Each drives library code (ledger queries, export, enroll, reports) on
//! its own worker; none reimplements it.

pub mod enrollment;
pub mod reports;
