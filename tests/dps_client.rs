//! DPS client tests: connection strings, payload shapes checked against the 2021-10-01 OpenAPI
//! schema, enrollment files, and every operation and error against our own DPS emulator over real
//! HTTP on 127.0.0.1.

#[path = "dps_client/support.rs"]
mod support;

#[path = "dps_client/connection_string.rs"]
mod connection_string;

#[path = "dps_client/payload.rs"]
mod payload;

#[path = "dps_client/operations.rs"]
mod operations;

#[path = "dps_client/errors.rs"]
mod errors;

#[path = "dps_client/resilience.rs"]
mod resilience;

#[path = "dps_client/secrets.rs"]
mod secrets;

#[path = "dps_client/station.rs"]
mod station;

#[path = "dps_client/export.rs"]
mod export;

#[path = "dps_client/manifest.rs"]
mod manifest;

#[path = "dps_client/manifest_ca.rs"]
mod manifest_ca;
