//! The station's side of the central ledger (issue 18): what a joined station runs on the line.

pub mod lease_gate;
pub mod lease_keeper;
