//! Integration tests of the central ledger (issue 18): a real PostgreSQL cluster made per test in a
//! temp dir (`initdb`/`pg_ctl`, Debian's `postgresql`), the real service over HTTPS with mutual TLS
//! on 127.0.0.1, station processes with their own SQLite ledgers.

#[path = "central/pg.rs"]
mod pg;

#[path = "central/schema.rs"]
mod schema;

#[path = "central/leases.rs"]
mod leases;

#[path = "central/service.rs"]
mod service;

#[path = "central/station_outbox.rs"]
mod station_outbox;

#[path = "central/station_sync.rs"]
mod station_sync;

#[path = "central/enroll_support.rs"]
mod enroll_support;

#[path = "central/enroll.rs"]
mod enroll;

#[path = "central/enroll_e2e.rs"]
mod enroll_e2e;

#[path = "central/ingest_support.rs"]
mod ingest_support;

#[path = "central/lease_station.rs"]
mod lease_station;

#[path = "central/station_https.rs"]
mod station_https;

#[path = "central/join.rs"]
mod join;

#[path = "central/ingest.rs"]
mod ingest;

#[path = "central/station_ingest.rs"]
mod station_ingest;

#[path = "central/verify.rs"]
mod verify;

#[path = "central/station_service.rs"]
mod station_service;

#[path = "central/lease_service.rs"]
mod lease_service;

#[path = "central/stations_e2e.rs"]
mod stations_e2e;

#[path = "central/bench.rs"]
mod bench;
