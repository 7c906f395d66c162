//! Integration tests of the ledger: real SQLite files in temp dirs, the real binary for the CLI,
//! the `sqlite3` shell to tamper with a file as an attacker would.

#[path = "ledger/common.rs"]
mod common;

#[path = "ledger/api.rs"]
mod api;

#[path = "ledger/migrations.rs"]
mod migrations;

#[path = "ledger/state_machine.rs"]
mod state_machine;

#[path = "ledger/lock.rs"]
mod lock;

#[path = "ledger/audit.rs"]
mod audit;

#[path = "ledger/bad_files.rs"]
mod bad_files;

#[path = "ledger/secrets.rs"]
mod secrets;

#[path = "ledger/cli.rs"]
mod cli;

#[path = "ledger/reprovision.rs"]
mod reprovision;

#[path = "ledger/audit_query.rs"]
mod audit_query;

#[path = "ledger/browse.rs"]
mod browse;

#[path = "ledger/actions.rs"]
mod actions;
