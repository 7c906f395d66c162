//! The station's side of the central ledger (issue 18): what a joined station runs beside its line.
//!
//! - [`sync`]: the worker thread that uploads the ledger's outbox (`ledger::outbox`) in seq order
//!   (batches, backoff with jitter, stops on a refusal);
//! - [`receipts`]: a receipt checked against what was sent and applied to the ledger in one
//!   transaction (stored, rows marked uploaded, appended to the chain, quarantines and central
//!   enrollment results recorded);
//! - [`https`], [`tls`], [`join`], [`start`]: the mutual-TLS link, joining, starting from `[central]`;
//! - [`lease_gate`], [`lease_keeper`]: a batch issues identities only from leases the service
//!   granted; the keeper tops them up ahead of need and returns what was not used.

pub mod https;
pub mod join;
pub mod lease_gate;
pub mod lease_keeper;
pub mod receipts;
pub mod start;
pub mod sync;
pub mod tls;
