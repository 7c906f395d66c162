//! Leases: the only way a joined station may issue identities of a batch (issue 18, point 4).
//!
//! A lease is a signed count of identities of one batch, valid until its expiry. The service grants
//! it in one transaction that first locks the batch's row (`SELECT ... FOR UPDATE`), so replicas of
//! the service serialise on PostgreSQL and the sum over every station's leases never exceeds the
//! batch's cap (`batches.allocated <= cap` is also a CHECK). At batch close the station returns the
//! lease: what it used stays allocated, the rest goes back to the batch, once.
//!
//! An expired lease the station never returned stays allocated: the station may have spent it
//! while offline, and its rows (with the lease id in each identity snapshot) come later. The station
//! returns it when it next reaches the service; an administrator can close it by hand
//! ([`close_lease`] as `central lease close`, docs/central.md) when the station is gone for good.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::json;

use super::audit::{self, AuditEntry};
use super::clock;
use super::db;
use super::state::{ApiRefusal, AuthedStation, SharedCentral, refuse};
use crate::central::signing::{ServiceSigner, Signed};
use crate::central::wire::{Lease, LeaseRequest, LeaseReturn, LeaseReturned, paths};

/// The lease routes, for `service::router` to merge.
pub fn routes() -> Router<SharedCentral> {
    Router::new()
        .route(paths::LEASES, post(request_lease))
        .route(paths::LEASE_RETURN, post(return_lease))
}

/// `POST /v1/leases`.
async fn request_lease(
    State(central): State<SharedCentral>,
    station: AuthedStation,
    Json(request): Json<LeaseRequest>,
) -> Result<Json<Signed<Lease>>, ApiRefusal> {
    same_station(&station, &request.station_id)?;
    clock::check(&station.station_id, &request.station_time)?;
    let mut client = central
        .db
        .get()
        .await
        .map_err(|e| db::pool_unavailable("granting a lease", &e))?;
    match grant(&mut client, &central.signer, &station.station_id, &request).await {
        Ok(Granted::Lease(signed)) => Ok(Json(signed)),
        Ok(Granted::Refused(refusal)) => Err(refusal),
        Err(e) => Err(db::unavailable("granting a lease", &db::describe(&e))),
    }
}

/// `POST /v1/leases/return`.
async fn return_lease(
    State(central): State<SharedCentral>,
    station: AuthedStation,
    Json(request): Json<LeaseReturn>,
) -> Result<Json<Signed<LeaseReturned>>, ApiRefusal> {
    same_station(&station, &request.station_id)?;
    clock::check(&station.station_id, &request.station_time)?;
    let mut client = central
        .db
        .get()
        .await
        .map_err(|e| db::pool_unavailable("returning a lease", &e))?;
    let closed = close_lease(
        &mut client,
        Some(&station.station_id),
        &station.station_id,
        &request.lease_id,
        request.used,
    )
    .await
    .map_err(|e| db::unavailable("returning a lease", &db::describe(&e)))?;
    let returned = closed?;
    central
        .signer
        .sign(&returned)
        .map(Json)
        .map_err(|e| refuse(StatusCode::INTERNAL_SERVER_ERROR, "signing", e.to_string()))
}

fn same_station(station: &AuthedStation, claimed: &str) -> Result<(), ApiRefusal> {
    if station.station_id == claimed {
        return Ok(());
    }
    Err(refuse(
        StatusCode::FORBIDDEN,
        "station_mismatch",
        format!(
            "station {} sent a request in the name of station {claimed}: each station asks only for itself; check station.toml's station id",
            station.station_id
        ),
    ))
}

/// What a lease request came to: a signed lease, or a refusal (already in the central audit).
pub enum Granted {
    Lease(Signed<Lease>),
    Refused(ApiRefusal),
}

/// Allocates a lease for `station` in one transaction under the batch's row lock: grants
/// `min(requested, lease_size, cap - allocated)`; none left is a `batch_full` refusal. Every
/// outcome is a `central_audit` row. `Err` only for database failures (a 503 for the station).
pub async fn grant(
    client: &mut tokio_postgres::Client,
    signer: &ServiceSigner,
    station: &str,
    request: &LeaseRequest,
) -> Result<Granted, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    let row = tx
        .query_opt(
            "SELECT cap, allocated, lease_size, lease_ttl_seconds FROM batches WHERE batch = $1 FOR UPDATE",
            &[&request.batch],
        )
        .await?;
    let Some(row) = row else {
        let refusal = refuse(
            StatusCode::NOT_FOUND,
            "unknown_batch",
            format!(
                "station {station} asked for a lease of batch {}, which the central service does not know: set its cap with `dps-station central batch set {} --cap N`",
                request.batch, request.batch
            ),
        );
        return refuse_grant(tx, station, request, refusal).await;
    };
    let (cap, allocated) = (row.get::<_, i64>(0), row.get::<_, i64>(1));
    if request.count == 0 {
        let refusal = refuse(
            StatusCode::BAD_REQUEST,
            "bad_count",
            format!(
                "station {station} asked for a lease of 0 identities of batch {}: update dps-station",
                request.batch
            ),
        );
        return refuse_grant(tx, station, request, refusal).await;
    }
    if cap <= allocated {
        let refusal = refuse(
            StatusCode::CONFLICT,
            "batch_full",
            format!(
                "batch {} is full: all {cap} identities of its cap are leased or used; station {station} stops taking devices. Raise the cap with `dps-station central batch set {} --cap N` if more are wanted",
                request.batch, request.batch
            ),
        );
        return refuse_grant(tx, station, request, refusal).await;
    }
    let (lease_size, ttl) = (row.get::<_, i32>(2), row.get::<_, i32>(3));
    let count = i64::from(request.count)
        .min(i64::from(lease_size))
        .min(cap - allocated);
    let count32 = i32::try_from(count).unwrap_or(i32::MAX);
    let now = time::OffsetDateTime::now_utc();
    let issued_at = rfc3339(now);
    let expires_at = rfc3339(now + time::Duration::seconds(i64::from(ttl)));
    let lease_id = format!("L-{}", uuid::Uuid::new_v4());
    tx.execute(
        "INSERT INTO leases (lease_id, batch, station_id, count, issued_at, expires_at)
         VALUES ($1, $2, $3, $4, $5::text::timestamptz, $6::text::timestamptz)",
        &[
            &lease_id,
            &request.batch,
            &station,
            &count32,
            &issued_at,
            &expires_at,
        ],
    )
    .await?;
    tx.execute(
        "UPDATE batches SET allocated = allocated + $2 WHERE batch = $1",
        &[&request.batch, &count],
    )
    .await?;
    let details = json!({ "batch": request.batch, "requested": request.count, "count": count,
        "allocated": allocated + count, "cap": cap, "expires_at": expires_at })
    .to_string();
    audit::append(
        &tx,
        &AuditEntry {
            station_id: station,
            actor: station,
            action: "lease.granted",
            subject: &lease_id,
            details: &details,
        },
    )
    .await?;
    let lease = Lease {
        lease_id,
        station_id: station.to_string(),
        batch: request.batch.clone(),
        count: u32::try_from(count).unwrap_or(0),
        issued_at,
        expires_at,
    };
    // Sign before committing: a lease that cannot be signed is not granted.
    let signed = match signer.sign(&lease) {
        Ok(signed) => signed,
        Err(e) => {
            tx.rollback().await?;
            return Ok(Granted::Refused(refuse(
                StatusCode::INTERNAL_SERVER_ERROR,
                "signing",
                format!("the central service cannot sign leases ({e}); tell its administrator"),
            )));
        }
    };
    tx.commit().await?;
    tracing::info!(station, lease = %lease.lease_id, batch = %lease.batch, count, "lease granted");
    Ok(Granted::Lease(signed))
}

/// Records a refused lease request in the central audit and commits that alone.
async fn refuse_grant(
    tx: tokio_postgres::Transaction<'_>,
    station: &str,
    request: &LeaseRequest,
    refusal: ApiRefusal,
) -> Result<Granted, tokio_postgres::Error> {
    let details = json!({ "code": refusal.body.code, "message": refusal.body.message,
        "requested": request.count })
    .to_string();
    audit::append(
        &tx,
        &AuditEntry {
            station_id: station,
            actor: station,
            action: "lease.refused",
            subject: &request.batch,
            details: &details,
        },
    )
    .await?;
    tx.commit().await?;
    Ok(Granted::Refused(refusal))
}

/// Closes a lease: records `used`, gives `count - used` back to its batch, appends a central audit
/// row. Once only: closing it again with the same `used` answers the same figure and gives nothing
/// back; another `used` is refused. `owner` is the station that must hold the lease (`None` for an
/// administrator); `actor` is who closes it. The outer `Err` is a database failure.
pub async fn close_lease(
    client: &mut tokio_postgres::Client,
    owner: Option<&str>,
    actor: &str,
    lease_id: &str,
    used: u32,
) -> Result<Result<LeaseReturned, ApiRefusal>, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    let row = tx
        .query_opt(
            "SELECT batch, station_id, count, used FROM leases WHERE lease_id = $1 FOR UPDATE",
            &[&lease_id],
        )
        .await?;
    let who = owner.unwrap_or(actor);
    let Some(row) = row else {
        return refused(
            tx,
            who,
            actor,
            lease_id,
            refuse(
                StatusCode::NOT_FOUND,
                "unknown_lease",
                format!(
                    "{who} returned lease {lease_id}, which the central service never granted: check that the station is joined to this service"
                ),
            ),
        )
        .await;
    };
    let batch: String = row.get(0);
    let holder: String = row.get(1);
    let count: i32 = row.get(2);
    let already: Option<i32> = row.get(3);
    let used_i = i32::try_from(used).unwrap_or(i32::MAX);
    if owner.is_some_and(|o| o != holder) {
        return refused(
            tx,
            who,
            actor,
            lease_id,
            refuse(
                StatusCode::FORBIDDEN,
                "not_your_lease",
                format!(
                    "station {who} returned lease {lease_id}, which belongs to station {holder}: a station returns only its own leases"
                ),
            ),
        )
        .await;
    }
    if used_i > count {
        return refused(
            tx,
            who,
            actor,
            lease_id,
            refuse(
                StatusCode::BAD_REQUEST,
                "bad_used",
                format!(
                    "{who} says it used {used} identities of lease {lease_id}, which holds only {count}: the station's ledger needs checking (`dps-station ledger verify`)"
                ),
            ),
        )
        .await;
    }
    let at = crate::ledger::now();
    match already {
        Some(before) if before == used_i => {
            // A retry of a return whose answer was lost: the same answer, nothing given back twice.
            tx.commit().await?;
            return Ok(Ok(LeaseReturned {
                lease_id: lease_id.to_string(),
                returned: u32::try_from(count - before).unwrap_or(0),
                at,
            }));
        }
        Some(before) => {
            return refused(
                tx,
                who,
                actor,
                lease_id,
                refuse(
                    StatusCode::CONFLICT,
                    "already_returned",
                    format!(
                        "lease {lease_id} was already returned with {before} used; {who} now says {used}: nothing more is given back; check the station's ledger"
                    ),
                ),
            )
            .await;
        }
        None => {}
    }
    let back = i64::from(count - used_i);
    tx.execute(
        "UPDATE leases SET used = $2, returned_at = now() WHERE lease_id = $1",
        &[&lease_id, &used_i],
    )
    .await?;
    tx.execute(
        "UPDATE batches SET allocated = allocated - $2 WHERE batch = $1",
        &[&batch, &back],
    )
    .await?;
    let details =
        json!({ "batch": batch, "count": count, "used": used, "returned": back }).to_string();
    audit::append(
        &tx,
        &AuditEntry {
            station_id: &holder,
            actor,
            action: "lease.returned",
            subject: lease_id,
            details: &details,
        },
    )
    .await?;
    tx.commit().await?;
    tracing::info!(lease = lease_id, %batch, used, returned = back, "lease returned");
    Ok(Ok(LeaseReturned {
        lease_id: lease_id.to_string(),
        returned: u32::try_from(back).unwrap_or(0),
        at,
    }))
}

/// Records a refused return in the central audit and commits that alone.
async fn refused(
    tx: tokio_postgres::Transaction<'_>,
    station: &str,
    actor: &str,
    lease_id: &str,
    refusal: ApiRefusal,
) -> Result<Result<LeaseReturned, ApiRefusal>, tokio_postgres::Error> {
    let details = json!({ "code": refusal.body.code, "message": refusal.body.message }).to_string();
    audit::append(
        &tx,
        &AuditEntry {
            station_id: station,
            actor,
            action: "lease.return_refused",
            subject: lease_id,
            details: &details,
        },
    )
    .await?;
    tx.commit().await?;
    Ok(Err(refusal))
}

/// RFC 3339 UTC with seconds, as every time on the wire.
pub fn rfc3339(at: time::OffsetDateTime) -> String {
    let format =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    at.to_offset(time::UtcOffset::UTC)
        .format(&format)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_string())
}
