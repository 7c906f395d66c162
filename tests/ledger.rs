//! Integration tests of the ledger: real SQLite files in temp dirs, the real binary for the CLI,
//! the `sqlite3` shell to tamper with a file as an attacker would.

#[path = "ledger/common.rs"]
mod common;

#[path = "ledger/api.rs"]
mod api;
