//! The security officer's screens (behind the officer role): key-injection sessions on the HSM,
//! CA keys, proof of possession, and the audit log (which engineers may read too). They drive
//! `src/keystore` and `station::key_session`, never a second copy of them.

pub mod audit;
pub mod audit_jobs;
mod audit_parts;
pub mod keys;
pub mod session;
