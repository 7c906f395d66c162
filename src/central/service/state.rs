//! What every request handler of the service shares, and who is asking.

use std::sync::Arc;

use axum::Json;
use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};

use crate::central::signing::ServiceSigner;
use crate::central::wire::Refusal;

/// The service's shared state: the database pool and the signing key. Nothing else: replicas share
/// everything through PostgreSQL.
pub struct Central {
    pub db: deadpool_postgres::Pool,
    pub signer: ServiceSigner,
}

/// What handlers receive (`axum::extract::State<SharedCentral>`).
pub type SharedCentral = Arc<Central>;

/// The station a request comes from, proven by its client certificate. The TLS layer puts it into
/// the request's extensions after checking the certificate against the service's CA and the
/// `stations` table (unknown or revoked stations never reach a handler).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthedStation {
    pub station_id: String,
    pub certificate_sha256: String,
}

impl<S: Send + Sync> FromRequestParts<S> for AuthedStation {
    type Rejection = ApiRefusal;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<AuthedStation>().cloned().ok_or_else(|| {
            refuse(
                StatusCode::UNAUTHORIZED,
                "no_client_certificate",
                "this call needs the station's client certificate: join the station with `dps-station central join`",
            )
        })
    }
}

/// The one shape of every refusal the API sends: a status and a [`Refusal`] body. Handlers return
/// `Result<Json<T>, ApiRefusal>`.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiRefusal {
    pub status: StatusCode,
    pub body: Refusal,
}

impl IntoResponse for ApiRefusal {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

/// Builds an [`ApiRefusal`]; `message` names the station or thing and says what to do.
pub fn refuse(status: StatusCode, code: &str, message: impl Into<String>) -> ApiRefusal {
    ApiRefusal {
        status,
        body: Refusal {
            code: code.to_string(),
            message: message.into(),
        },
    }
}
