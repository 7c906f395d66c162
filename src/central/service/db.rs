//! The service's database connections, and what a database failure means to a station.

use axum::http::StatusCode;

use super::state::{ApiRefusal, refuse};

/// Why the service could not set up its database pool.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("the database URL is not valid ({reason}): give a URL like postgres://user@host/db")]
    BadUrl { reason: String },
    #[error("the database pool could not be made: {0}")]
    Build(String),
}

/// A pool of `size` connections to `url` (no TLS to PostgreSQL: run the service beside it, or over
/// a Unix socket; see docs/central.md).
pub fn pool(url: &str, size: usize) -> Result<deadpool_postgres::Pool, PoolError> {
    let config: tokio_postgres::Config =
        url.parse()
            .map_err(|e: tokio_postgres::Error| PoolError::BadUrl {
                reason: e.to_string(),
            })?;
    let manager = deadpool_postgres::Manager::from_config(
        config,
        tokio_postgres::NoTls,
        deadpool_postgres::ManagerConfig {
            recycling_method: deadpool_postgres::RecyclingMethod::Fast,
        },
    );
    deadpool_postgres::Pool::builder(manager)
        .max_size(size)
        .build()
        .map_err(|e| PoolError::Build(e.to_string()))
}

/// The refusal a station gets when the database failed: 503 (retry later) for what passes (no
/// connection, disk full, a read-only replica promoted late, serialization failures), naming the
/// cause so the administrator knows what to fix. The station keeps its outbox and retries.
pub fn unavailable(what: &str, error: &dyn std::fmt::Display) -> ApiRefusal {
    tracing::error!(%error, "{what}: database error");
    refuse(
        StatusCode::SERVICE_UNAVAILABLE,
        "database_unavailable",
        format!(
            "{what}: the central database failed ({error}); the station keeps its data and retries"
        ),
    )
}

/// Classifies a PostgreSQL error for the message: full disk and read-only are named, since they
/// need an administrator, not a retry.
pub fn describe(error: &tokio_postgres::Error) -> String {
    use tokio_postgres::error::SqlState;
    match error.code() {
        Some(c) if *c == SqlState::DISK_FULL => {
            "the database's disk is full: free space on the PostgreSQL server".into()
        }
        Some(c) if *c == SqlState::READ_ONLY_SQL_TRANSACTION => {
            "the database is read-only (a replica, or a failover not yet promoted): point the service at the primary".into()
        }
        // tokio-postgres's own words stop at "error connecting to server"; the cause (refused,
        // no such host, password authentication failed) is in its source chain.
        _ => {
            let mut text = error.to_string();
            let mut source = std::error::Error::source(error);
            while let Some(cause) = source {
                let cause_text = cause.to_string();
                if !text.contains(&cause_text) {
                    text = format!("{text}: {cause_text}");
                }
                source = cause.source();
            }
            text
        }
    }
}

/// From a pool error (a connection could not be had).
pub fn pool_unavailable(what: &str, error: &deadpool_postgres::PoolError) -> ApiRefusal {
    unavailable(what, error)
}
