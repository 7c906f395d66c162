//! The station's side of the central ledger (issue 18): the sync worker that uploads the ledger's
//! outbox (`ledger::outbox`) and stores the service's signed receipts.
//!
//! - [`sync`]: the worker thread (batches in seq order, backoff with jitter, stops on a refusal);
//! - [`receipts`]: a receipt checked against what was sent and applied to the ledger in one
//!   transaction (stored, rows marked uploaded, appended to the chain, quarantines and central
//!   enrollment results recorded).

pub mod https;
pub mod join;
pub mod receipts;
pub mod start;
pub mod sync;
pub mod tls;
