//! `GET /v1/health`: for load balancers and the administrator, no certificate needed.
//!
//! 200 only when the database answers, its schema is at least this build's, and it takes writes;
//! otherwise 503 with the same body saying which (a replica promoted late answers `writable: false`,
//! so a load balancer sends stations elsewhere).

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;

use super::db;
use super::migrations;
use super::state::SharedCentral;
use crate::central::wire::{Health, paths};

/// The health route.
pub fn routes() -> Router<SharedCentral> {
    Router::new().route(paths::HEALTH, get(health))
}

async fn health(State(central): State<SharedCentral>) -> (StatusCode, Json<Health>) {
    let health = check(&central.db).await;
    let status = if health.ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(health))
}

/// Asks the database; never fails (an unreachable database is `ok: false`).
pub async fn check(pool: &deadpool_postgres::Pool) -> Health {
    let down = Health {
        ok: false,
        schema_version: 0,
        writable: false,
    };
    let client = match pool.get().await {
        Ok(client) => client,
        Err(e) => {
            tracing::warn!(error = %e, "health: no database connection");
            return down;
        }
    };
    let row = client
        .query_one(
            "SELECT NOT pg_is_in_recovery() AND current_setting('transaction_read_only') = 'off',
                    (SELECT COALESCE(max(version), 0)::bigint FROM refinery_schema_history)",
            &[],
        )
        .await;
    match row {
        Ok(row) => {
            let writable: bool = row.get(0);
            let schema_version: i64 = row.get(1);
            Health {
                ok: writable && schema_version >= migrations::latest_version(),
                schema_version,
                writable,
            }
        }
        Err(e) => {
            tracing::warn!(error = %db::describe(&e), "health: the database did not answer");
            down
        }
    }
}
