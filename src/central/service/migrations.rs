//! The PostgreSQL schema, as refinery migrations embedded in the binary (`migrations/V*.sql`).
//!
//! Numbering: each area adds its own files; versions only grow (refinery refuses to run an older
//! version after a newer one was applied). Every migration grants what `dps_central_service` needs
//! and nothing more: no UPDATE or DELETE on `central_audit` or on the ingested rows.

use refinery::embed_migrations;

embed_migrations!("src/central/service/migrations");

/// Why the schema could not be brought up to date.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error(
        "the central database could not be migrated: {0}; run `dps-station central migrate` as the database's owner"
    )]
    Refinery(#[from] refinery::Error),
}

/// Brings the schema up to date; returns the version it is at. Run as the database owner.
pub async fn run(client: &mut tokio_postgres::Client) -> Result<i64, MigrateError> {
    let report = migrations::runner().run_async(client).await?;
    let applied = report
        .applied_migrations()
        .iter()
        .map(|m| i64::from(m.version()))
        .max();
    let current = migrations::runner()
        .get_last_applied_migration_async(client)
        .await?
        .map(|m| i64::from(m.version()));
    Ok(current.or(applied).unwrap_or(0))
}

/// The newest version this build knows.
pub fn latest_version() -> i64 {
    migrations::runner()
        .get_migrations()
        .iter()
        .map(|m| i64::from(m.version()))
        .max()
        .unwrap_or(0)
}
