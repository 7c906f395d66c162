//! Who is asking: the layer that turns a client certificate into an [`AuthedStation`] (or a
//! refusal), revocation, and the refusal audit every area of the service uses.
//!
//! The certificate was already checked against the service's CA during the TLS handshake; here its
//! SHA-256 is looked up in `stations`, every request (nothing cached: a revocation on one replica
//! holds on all at once).

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use super::audit::{self, AuditEntry};
use super::ca::certificate_cn;
use super::db;
use super::state::{ApiRefusal, AuthedStation, SharedCentral, refuse};

/// The leaf certificate (DER) the client presented on this connection, if any; put into every
/// request's extensions by the server's accept loop.
#[derive(Debug, Clone, Default)]
pub struct PeerCertificate(pub Option<std::sync::Arc<Vec<u8>>>);

/// How often `last_seen` is written at most per station (a write per request would cost ingest).
const LAST_SEEN_EVERY_SECONDS: f64 = 5.0;

/// The axum middleware in front of every route that needs a joined station: unknown and revoked
/// certificates are refused with 403 (and audited); a known one becomes an [`AuthedStation`].
pub async fn authenticate(
    State(central): State<SharedCentral>,
    mut request: Request,
    next: Next,
) -> Response {
    let peer = request
        .extensions()
        .get::<PeerCertificate>()
        .and_then(|p| p.0.clone());
    let Some(der) = peer else {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "no_client_certificate",
            "this call needs the station's client certificate: join the station with `dps-station central join URL --token TOKEN`",
        )
        .into_response();
    };
    match identify(&central, &der).await {
        Ok(station) => {
            request.extensions_mut().insert(station);
            next.run(request).await
        }
        Err(refusal) => refusal.into_response(),
    }
}

/// Looks the certificate up; refusals are audited.
async fn identify(central: &SharedCentral, der: &[u8]) -> Result<AuthedStation, ApiRefusal> {
    let sha = hex::encode(Sha256::digest(der));
    let named = certificate_cn(der).unwrap_or_else(|| "(no name)".into());
    let client = central
        .db
        .get()
        .await
        .map_err(|e| db::pool_unavailable(&format!("station {named}"), &e))?;
    let database =
        |e: tokio_postgres::Error| db::unavailable(&format!("station {named}"), &db::describe(&e));
    // Prepared once per connection: this runs before every authenticated request.
    let lookup = client
        .prepare_cached(
            "SELECT station_id, revoked_at IS NOT NULL, COALESCE(revoked_reason, ''),
                    COALESCE(to_char(revoked_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI \"UTC\"'), ''),
                    last_seen IS NULL OR last_seen < now() - make_interval(secs => $2)
             FROM stations WHERE certificate_sha256 = $1",
        )
        .await
        .map_err(database)?;
    let row = client
        .query_opt(&lookup, &[&sha, &LAST_SEEN_EVERY_SECONDS])
        .await
        .map_err(database)?;
    drop(client);
    let Some(row) = row else {
        let refusal = refuse(
            StatusCode::FORBIDDEN,
            "unknown_station",
            format!(
                "station {named} is not known to the central service (its certificate {} is not the one it joined with, or it never joined): join it again with a new token (`dps-station central token create` on the service host, then `dps-station central join` on the station)",
                &sha[..16]
            ),
        );
        audit_refusal(central, &named, &refusal).await;
        return Err(refusal);
    };
    let station_id: String = row.get(0);
    if row.get::<_, bool>(1) {
        let reason: String = row.get(2);
        let since: String = row.get(3);
        let refusal = refuse(
            StatusCode::FORBIDDEN,
            "revoked",
            format!(
                "station {station_id} was revoked on {since} ({reason}): it may not send data to the central service; ask the service's administrator (its local ledger keeps everything)"
            ),
        );
        audit_refusal(central, &station_id, &refusal).await;
        return Err(refusal);
    }
    if row.get::<_, bool>(4) {
        touch_last_seen(central, &station_id).await;
    }
    Ok(AuthedStation {
        station_id,
        certificate_sha256: sha,
    })
}

/// Best effort: a read-only database must not stop reads, so a failed write is only logged.
async fn touch_last_seen(central: &SharedCentral, station_id: &str) {
    let Ok(client) = central.db.get().await else {
        return;
    };
    if let Err(e) = client
        .execute(
            "UPDATE stations SET last_seen = now() WHERE station_id = $1",
            &[&station_id],
        )
        .await
    {
        tracing::debug!(station = station_id, error = %db::describe(&e), "last_seen not written");
    }
}

/// Writes a refusal into the service's audit chain, in its own transaction (the request's own
/// transaction, if any, is rolled back). Best effort: when the database is what failed, the refusal
/// is only logged. Every area calls this for its refusals ("every refusal is in both chains").
pub async fn audit_refusal(central: &SharedCentral, station_id: &str, refusal: &ApiRefusal) {
    let details = serde_json::json!({
        "status": refusal.status.as_u16(),
        "code": refusal.body.code,
        "message": refusal.body.message,
    })
    .to_string();
    let entry = AuditEntry {
        station_id,
        actor: "service",
        action: "request.refused",
        subject: &refusal.body.code,
        details: &details,
    };
    tracing::warn!(station = station_id, code = %refusal.body.code, "{}", refusal.body.message);
    let result = async {
        let mut client = central.db.get().await.map_err(|e| e.to_string())?;
        let tx = client.transaction().await.map_err(|e| db::describe(&e))?;
        audit::append(&tx, &entry)
            .await
            .map_err(|e| db::describe(&e))?;
        tx.commit().await.map_err(|e| db::describe(&e))
    }
    .await;
    if let Err(error) = result {
        tracing::error!(station = station_id, %error, "the refusal could not be audited");
    }
}

/// Refuses (and audits) a body whose `station_id` is not the certificate's station.
pub async fn require_same(
    central: &SharedCentral,
    authed: &AuthedStation,
    claimed: &str,
) -> Result<(), ApiRefusal> {
    if authed.station_id == claimed {
        return Ok(());
    }
    let refusal = refuse(
        StatusCode::FORBIDDEN,
        "station_mismatch",
        format!(
            "station {} sent a request for station {claimed}: a station may only speak for itself; check station.toml's station name against the certificate it joined with",
            authed.station_id
        ),
    );
    audit_refusal(central, &authed.station_id, &refusal).await;
    Err(refusal)
}

/// Why `central station revoke` did not revoke.
#[derive(Debug, thiserror::Error)]
pub enum RevokeError {
    #[error("no station {0} has joined this central service: see `dps-station central status`")]
    Unknown(String),
    #[error("station {0} is already revoked")]
    Already(String),
    #[error("the central database failed: {0}")]
    Database(String),
}

/// Revokes a station: from now on every replica refuses its certificate. Audited with `actor`.
pub async fn revoke(
    client: &mut tokio_postgres::Client,
    station_id: &str,
    reason: &str,
    actor: &str,
) -> Result<(), RevokeError> {
    let database = |e: tokio_postgres::Error| RevokeError::Database(db::describe(&e));
    let tx = client.transaction().await.map_err(database)?;
    let row = tx
        .query_opt(
            "SELECT revoked_at IS NOT NULL FROM stations WHERE station_id = $1 FOR UPDATE",
            &[&station_id],
        )
        .await
        .map_err(database)?;
    match row {
        None => return Err(RevokeError::Unknown(station_id.into())),
        Some(row) if row.get::<_, bool>(0) => {
            return Err(RevokeError::Already(station_id.into()));
        }
        Some(_) => {}
    }
    tx.execute(
        "UPDATE stations SET revoked_at = now(), revoked_reason = $2 WHERE station_id = $1",
        &[&station_id, &reason],
    )
    .await
    .map_err(database)?;
    let details = serde_json::json!({ "reason": reason }).to_string();
    audit::append(
        &tx,
        &AuditEntry {
            station_id,
            actor,
            action: "station.revoked",
            subject: station_id,
            details: &details,
        },
    )
    .await
    .map_err(database)?;
    tx.commit().await.map_err(database)
}
