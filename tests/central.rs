//! Integration tests of the central ledger (issue 18): a real PostgreSQL cluster made per test in a
//! temp dir (`initdb`/`pg_ctl`, Debian's `postgresql`), the real service over HTTPS with mutual TLS
//! on 127.0.0.1, station processes with their own SQLite ledgers.

#[path = "central/pg.rs"]
mod pg;

#[path = "central/schema.rs"]
mod schema;

#[path = "central/enroll_support.rs"]
mod enroll_support;

#[path = "central/enroll.rs"]
mod enroll;

#[path = "central/enroll_e2e.rs"]
mod enroll_e2e;

#[path = "central/ingest_support.rs"]
mod ingest_support;

#[path = "central/ingest.rs"]
mod ingest;

#[path = "central/service.rs"]
mod service;
#[path = "central/verify.rs"]
mod verify;

#[path = "central/join.rs"]
mod join;
