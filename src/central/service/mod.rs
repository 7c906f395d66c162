//! The central service (`dps-station central serve`): stateless HTTPS with mutual TLS in front of
//! PostgreSQL. Several replicas may run behind a load balancer; everything they share is in the
//! database (row locks for leases, `FOR UPDATE SKIP LOCKED` for enrollment work).

pub mod audit;
pub mod clock;
pub mod db;
pub mod enroll;
pub mod enroll_args;
pub mod enroll_jobs;
pub mod enroll_round;
pub mod leases;
pub mod leases_admin;
pub mod migrations;
pub mod state;

// ingest (issue 18): outbox rows in, signed receipts out; conflicts; verification.
pub mod ingest;
pub mod ingest_identities;
pub mod ingest_rows;
pub mod receipts;
pub mod verify;
pub mod verify_ledger;

// svc (issue 18): the service's shell.
pub mod ca;
pub mod health;
pub mod join;
pub mod server;
pub mod stations;
pub mod status;
pub mod tls;
pub mod tokens;

pub use server::router;
