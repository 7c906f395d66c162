//! The tests' PostgreSQL: a throwaway cluster per test (`central::temp_cluster`), with helpers that
//! panic with PostgreSQL's own message, as a test should.

#![allow(dead_code)]

use std::ops::Deref;
use std::process::Output;
use std::time::{Duration, Instant};

use dps_station::central::temp_cluster::TempCluster;

pub use dps_station::central::temp_cluster::ADMIN;

/// A running cluster with an empty `central` database; stopped and deleted when dropped.
pub struct PgCluster(TempCluster);

impl Deref for PgCluster {
    type Target = TempCluster;
    fn deref(&self) -> &TempCluster {
        &self.0
    }
}

impl PgCluster {
    pub fn start() -> PgCluster {
        PgCluster(TempCluster::start().unwrap_or_else(|e| panic!("{e}")))
    }

    /// Makes a login role in `dps_central_service` (after the migrations) and returns its URL.
    pub fn service_login(&self, login: &str) -> String {
        self.0
            .service_login(login)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn start_again(&self) {
        self.0.start_again().unwrap_or_else(|e| panic!("{e}"))
    }

    /// Stops the server at once (`-m immediate`), as if it died.
    pub fn stop(&self) {
        self.0.stop().unwrap_or_else(|e| panic!("{e}"))
    }

    /// Runs SQL as the superuser; panics with psql's message if it fails.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        self.0.psql(db, sql).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Runs SQL as `user`; the caller looks at the outcome.
    pub fn try_psql(&self, user: &str, db: &str, sql: &str) -> Output {
        self.0
            .try_psql(user, db, sql)
            .unwrap_or_else(|e| panic!("{e}"))
    }
}

/// Waits up to `limit` for `check` to hold (for the outage tests: "the outbox drains").
pub fn wait_for(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    check()
}
