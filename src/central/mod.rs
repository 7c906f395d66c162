//! The central ledger (issue 18): many stations, one truth on PostgreSQL.
//!
//! The station's SQLite ledger stays the write-ahead truth on the line; nothing on the line waits for
//! the network. Each station copies every audit row (and with it every identity state change) into an
//! **outbox** in the same SQLite transaction; a sync worker uploads the outbox in order to the central
//! service, which stores it idempotently in PostgreSQL, checks the station's hash chain, refuses a
//! device or registration ID another station already holds (quarantine), and answers with a **signed
//! receipt** that the station appends to its own chain. Batches on a joined station issue identities
//! only from a **lease** (a signed count the service allocated under a row lock, so all stations
//! together never exceed the batch's cap). The service may also hold the DPS connection string and
//! enroll for the stations (**central enrollment**).
//!
//! Layout, and who may import what:
//! - [`wire`]: the JSON the station and the service exchange (the only shared vocabulary);
//! - [`signing`]: receipts and leases are signed by the service and verified by stations;
//! - [`link`]: the station's view of the service ([`link::CentralLink`]), implemented over HTTPS with
//!   mutual TLS, so station code can be tested against the real service;
//! - [`station_side`] (station): outbox, sync worker, receipts, leases on the line;
//! - [`temp_cluster`]: a throwaway PostgreSQL cluster for the tests and `bench central`;
//! - [`bench`]: `bench central`, the service and joined stations measured over HTTPS as a site runs
//!   them (the one module that uses both sides);
//! - [`service`]: the service (`dps-station central serve`): PostgreSQL schema, mTLS API, ingest,
//!   leases, central enrollment, verification.
//!
//! `central` may use `ledger` (the audit chain's canonical form), `identity` and `dps`; nothing below
//! `station` imports `central::service`.

pub mod bench;
pub mod link;
pub mod service;
pub mod signing;
pub mod station_side;
pub mod temp_cluster;
pub mod wire;
