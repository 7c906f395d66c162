//! `GET /v1/status` and `central status`: what the service knows of every station.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::get;

use super::db;
use super::state::{ApiRefusal, AuthedStation, SharedCentral};
use crate::central::wire::{StationStatus, StatusReport, paths};

/// The status route (behind the station layer: any joined station may look).
pub fn routes() -> Router<SharedCentral> {
    Router::new().route(paths::STATUS, get(status))
}

async fn status(
    State(central): State<SharedCentral>,
    station: AuthedStation,
) -> Result<Json<StatusReport>, ApiRefusal> {
    let what = format!("station {}'s status request", station.station_id);
    let client = central
        .db
        .get()
        .await
        .map_err(|e| db::pool_unavailable(&what, &e))?;
    report(&client)
        .await
        .map(Json)
        .map_err(|e| db::unavailable(&what, &db::describe(&e)))
}

/// One row per station, by id. `lease_left` counts open, unexpired leases minus the identities the
/// station reported issued from them; `conflicts` its quarantined identities.
pub async fn report(
    client: &tokio_postgres::Client,
) -> Result<StatusReport, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT s.station_id, s.revoked_at IS NOT NULL, s.head_seq,
                    to_char(s.last_seen AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),
                    COALESCE((SELECT sum(GREATEST(l.count - (SELECT count(*) FROM identities i
                                                             WHERE i.station_id = l.station_id
                                                               AND i.lease_id = l.lease_id), 0))
                              FROM leases l
                              WHERE l.station_id = s.station_id AND l.returned_at IS NULL
                                AND l.expires_at > now()), 0)::bigint,
                    (SELECT count(*) FROM quarantine q WHERE q.station_id = s.station_id)::bigint,
                    to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')
             FROM stations s ORDER BY s.station_id",
            &[],
        )
        .await?;
    let service_time = match rows.first() {
        Some(row) => row.get(6),
        None => crate::ledger::now(),
    };
    let stations = rows
        .iter()
        .map(|row| StationStatus {
            station_id: row.get(0),
            revoked: row.get(1),
            head_seq: row.get(2),
            last_seen: row.get(3),
            lease_left: u64::try_from(row.get::<_, i64>(4)).unwrap_or(0),
            conflicts: u64::try_from(row.get::<_, i64>(5)).unwrap_or(0),
        })
        .collect();
    Ok(StatusReport {
        service_time,
        stations,
    })
}

/// The report as a text table for the administrator's terminal.
pub fn table(report: &StatusReport) -> String {
    let mut out = format!(
        "{:<24} {:>10} {:<21} {:>10} {:>9}  {}\n",
        "STATION", "HEAD SEQ", "LAST SEEN", "LEASE LEFT", "CONFLICTS", "STATE"
    );
    for s in &report.stations {
        out.push_str(&format!(
            "{:<24} {:>10} {:<21} {:>10} {:>9}  {}\n",
            s.station_id,
            s.head_seq,
            s.last_seen.as_deref().unwrap_or("never"),
            s.lease_left,
            s.conflicts,
            if s.revoked { "■ revoked" } else { "joined" }
        ));
    }
    if report.stations.is_empty() {
        out.push_str("(no station has joined yet: `dps-station central token create`)\n");
    }
    out
}
