//! `POST /v1/join`: a station trades a one-time token and a certificate signing request for a
//! client certificate issued by the service's CA.
//!
//! The token is checked under a row lock (two joins racing with one token: one wins), the secret by
//! its hash in constant time. A station that joins again with a new token (it lost its key) gets a
//! new certificate that replaces the old one; its chain on the service continues. A revoked station
//! cannot join again under the same id.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Extension, Json, Router};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use sha2::{Digest, Sha256};

use super::audit::{self, AuditEntry};
use super::ca::{Authority, CsrError};
use super::state::{ApiRefusal, SharedCentral, refuse};
use super::stations::audit_refusal;
use super::tokens::{JoinToken, same_digest};
use super::{clock, db};
use crate::central::wire::{JoinRequest, JoinResponse, paths};

/// The longest station id accepted (it becomes a certificate CN, at most 64 characters).
pub const MAX_STATION_ID: usize = 64;

/// The join route; `authority` issues the certificates.
pub fn routes(authority: Arc<Authority>) -> Router<SharedCentral> {
    Router::new()
        .route(paths::JOIN, post(join))
        .layer(Extension(authority))
}

async fn join(
    State(central): State<SharedCentral>,
    Extension(authority): Extension<Arc<Authority>>,
    body: Bytes,
) -> Result<Json<JoinResponse>, ApiRefusal> {
    let request: JoinRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(e) => {
            let refusal = refuse(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!(
                    "the join request is not valid JSON ({e}): update dps-station on the station"
                ),
            );
            audit_refusal(&central, "", &refusal).await;
            return Err(refusal);
        }
    };
    let station_id = request.station_id.clone();
    match join_station(&central, &authority, request).await {
        Ok(response) => Ok(Json(response)),
        Err(refusal) => {
            audit_refusal(&central, &station_id, &refusal).await;
            Err(refusal)
        }
    }
}

/// True for ids a certificate CN and station.toml can both carry.
pub fn valid_station_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_STATION_ID
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

async fn join_station(
    central: &SharedCentral,
    authority: &Authority,
    request: JoinRequest,
) -> Result<JoinResponse, ApiRefusal> {
    let station = request.station_id.as_str();
    if !valid_station_id(station) {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "bad_station_id",
            format!(
                "station id `{}` cannot join: use 1 to {MAX_STATION_ID} letters, digits, '-', '_' or '.' (station.toml's station name)",
                station.chars().take(80).collect::<String>()
            ),
        ));
    }
    clock::check(station, &request.station_time)?;
    let token = JoinToken::parse(&request.token).map_err(|e| {
        refuse(
            StatusCode::BAD_REQUEST,
            "bad_token",
            format!("station {station} cannot join: {e}"),
        )
    })?;
    if !same_digest(&token.ca_sha256, authority.ca_sha256()) {
        return Err(refuse(
            StatusCode::FORBIDDEN,
            "other_service",
            format!(
                "station {station} cannot join: its token was made by another central service (CA {}…): use the URL and token of the same service",
                &token.ca_sha256[..16]
            ),
        ));
    }

    let what = format!("station {station}'s join");
    let mut client = central
        .db
        .get()
        .await
        .map_err(|e| db::pool_unavailable(&what, &e))?;
    let database = |e: tokio_postgres::Error| db::unavailable(&what, &db::describe(&e));
    let tx = client.transaction().await.map_err(database)?;
    let row = tx
        .query_opt(
            "SELECT secret_sha256, station_id, used_by,
                    to_char(used_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI \"UTC\"'),
                    expires_at < now()
             FROM join_tokens WHERE token_id = $1 FOR UPDATE",
            &[&token.token_id],
        )
        .await
        .map_err(database)?;
    let forbidden = |code: &str, message: String| refuse(StatusCode::FORBIDDEN, code, message);
    let Some(row) = row.filter(|r| same_digest(&r.get::<_, String>(0), &token.secret_sha256()))
    else {
        return Err(forbidden(
            "bad_token",
            format!(
                "station {station} cannot join: the service does not know this token (mistyped?): copy it again or make a new one with `dps-station central token create`"
            ),
        ));
    };
    if let Some(used_at) = row.get::<_, Option<String>>(3) {
        let used_by: Option<String> = row.get(2);
        return Err(forbidden(
            "token_used",
            format!(
                "station {station} cannot join: the token was already used (by station {} at {used_at}); a token joins one station once: make a new one with `dps-station central token create`",
                used_by.unwrap_or_default()
            ),
        ));
    }
    if row.get::<_, bool>(4) {
        return Err(forbidden(
            "token_expired",
            format!(
                "station {station} cannot join: the token has expired: make a new one with `dps-station central token create --station {station}`"
            ),
        ));
    }
    if let Some(bound) = row.get::<_, Option<String>>(1)
        && bound != station
    {
        return Err(forbidden(
            "token_other_station",
            format!(
                "station {station} cannot join: the token was made for station {bound}; use that station's name, or make a token for {station}"
            ),
        ));
    }
    let existing = tx
        .query_opt(
            "SELECT revoked_at IS NOT NULL, COALESCE(revoked_reason, '') FROM stations WHERE station_id = $1 FOR UPDATE",
            &[&station],
        )
        .await
        .map_err(database)?;
    if let Some(existing) = &existing
        && existing.get::<_, bool>(0)
    {
        let reason: String = existing.get(1);
        return Err(forbidden(
            "revoked",
            format!(
                "station {station} was revoked ({reason}) and cannot join again under that name: give the station a new name in station.toml and a token for it"
            ),
        ));
    }

    let certificate_pem =
        authority
            .issue_client(station, &request.csr_pem)
            .map_err(|e| match e {
                CsrError::Unreadable { .. } => refuse(
                    StatusCode::BAD_REQUEST,
                    "bad_csr",
                    format!("station {station} cannot join: {e}"),
                ),
                CsrError::Issue { .. } => refuse(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "issue_failed",
                    format!("station {station} cannot join: {e}; tell the service's administrator"),
                ),
            })?;
    let der = CertificateDer::from_pem_slice(certificate_pem.as_bytes()).map_err(|e| {
        refuse(
            StatusCode::INTERNAL_SERVER_ERROR,
            "issue_failed",
            format!("station {station} cannot join: the issued certificate is unreadable ({e})"),
        )
    })?;
    let sha = hex::encode(Sha256::digest(&der));
    tx.execute(
        "INSERT INTO stations (station_id, certificate_sha256, certificate_pem) VALUES ($1, $2, $3)
         ON CONFLICT (station_id) DO UPDATE
            SET certificate_sha256 = EXCLUDED.certificate_sha256,
                certificate_pem = EXCLUDED.certificate_pem,
                joined_at = now()",
        &[&station, &sha, &certificate_pem],
    )
    .await
    .map_err(database)?;
    tx.execute(
        "UPDATE join_tokens SET used_at = now(), used_by = $2 WHERE token_id = $1",
        &[&token.token_id, &station],
    )
    .await
    .map_err(database)?;
    let details = serde_json::json!({
        "token_id": token.token_id,
        "certificate_sha256": sha,
        "rejoined": existing.is_some(),
    })
    .to_string();
    audit::append(
        &tx,
        &AuditEntry {
            station_id: station,
            actor: station,
            action: "station.joined",
            subject: station,
            details: &details,
        },
    )
    .await
    .map_err(database)?;
    tx.commit().await.map_err(database)?;
    tracing::info!(station, rejoined = existing.is_some(), "station joined");
    Ok(JoinResponse {
        station_id: station.to_string(),
        client_certificate_pem: certificate_pem,
        ca_certificate_pem: authority.ca_pem().to_string(),
        signer_certificate_pem: authority.signer_pem().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn station_ids_are_what_a_certificate_name_can_carry() {
        assert!(valid_station_id("line-3.station_2"));
        for bad in ["", "a b", "st/1", "ü", &"x".repeat(65)] {
            assert!(!valid_station_id(bad), "{bad}");
        }
    }
}
