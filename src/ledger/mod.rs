//! The ledger: one SQLite file that is the station's source of truth.
