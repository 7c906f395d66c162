//! Request dispatch. Paths are matched by hand rather than by axum's router because the service
//! matches them case-insensitively (the Node SDK sends `/enrollmentgroups/`) and accepts a
//! trailing slash (`POST /enrollments/` for bulk); IDs in the path arrive percent-encoded.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use tokio::sync::Notify;

use super::api_error::{ApiError, code};
use super::app::{self, App};
use super::limits::{self, Fault};
use super::sas;
use super::{device_api, hub_api, service_api};

/// api-versions of the service API the emulator answers (older ones are still used by SDKs).
pub const SERVICE_API_VERSIONS: &[&str] = &["2018-04-01", "2019-03-31", "2021-10-01", "2026-11-01"];

/// api-versions of the device API.
pub const DEVICE_API_VERSIONS: &[&str] = &[
    "2018-11-01",
    "2019-03-31",
    "2021-06-01",
    "2021-11-01-preview",
];

/// What the connection layer tells handlers about the connection a request came on.
#[derive(Clone)]
pub struct Connection {
    /// The client's certificate chain (HTTPS with a client certificate), leaf first.
    pub peer_certificates: Option<Arc<Vec<Vec<u8>>>>,
    /// Notified to make the connection task drop the socket without answering.
    pub kill: Arc<Notify>,
}

/// A parsed request, handed to the service or device API.
pub struct Call<'a> {
    /// Method.
    pub method: &'a Method,
    /// Percent-decoded path segments (no empty segments).
    pub segments: Vec<String>,
    /// Raw path, for SAS `sr` matching.
    pub raw_path: &'a str,
    /// Headers.
    pub headers: &'a HeaderMap,
    /// Body.
    pub body: Bytes,
    /// The `api-version` query parameter.
    pub api_version: Option<String>,
    /// The connection.
    pub connection: &'a Connection,
}

impl Call<'_> {
    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        k.eq_ignore_ascii_case(name).then(|| sas::percent_decode(v))
    })
}

fn too_large(max: usize, close: bool) -> Response {
    let mut r = ApiError::new(
        code::TOO_LARGE,
        format!(
            "the body exceeds the maximum message size of {max} bytes; send fewer or smaller items"
        ),
    )
    .into_response();
    if close {
        // The unread rest of the body makes the connection unusable.
        r.headers_mut().insert(
            axum::http::header::CONNECTION,
            axum::http::HeaderValue::from_static("close"),
        );
    }
    r
}

/// Which API a path belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Api {
    Service,
    Device,
    Hub,
}

fn classify(segments: &[String]) -> Option<Api> {
    if hub_api::is_hub_path(segments) {
        return Some(Api::Hub);
    }
    let first = segments.first()?.to_ascii_lowercase();
    if [
        "enrollments",
        "enrollmentgroups",
        "registrations",
        "certificates",
    ]
    .contains(&first.as_str())
    {
        return Some(Api::Service);
    }
    (segments.get(1).map(|s| s.to_ascii_lowercase()).as_deref() == Some("registrations"))
        .then_some(Api::Device)
}

/// The one handler behind every route.
pub async fn handle(
    State(app): State<Arc<App>>,
    axum::Extension(connection): axum::Extension<Connection>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let max = app.limits.max_message_bytes;
    // Bodies up to a hard cap are read in full before a 413, so that the client, still
    // writing, does not meet a closed socket; beyond the cap the connection is closed.
    let cap = max.saturating_mul(16).max(1 << 20);
    let body = match axum::body::to_bytes(body, cap).await {
        Ok(b) if b.len() > max => return too_large(max, false),
        Ok(b) => b,
        Err(e) if e.to_string().contains("length limit") => return too_large(max, true),
        Err(e) => {
            return ApiError::bad_request(format!("the request body could not be read: {e}"))
                .into_response();
        }
    };
    let raw_path = parts.uri.path();
    let segments: Vec<String> = raw_path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(sas::percent_decode)
        .collect();
    let Some(api) = classify(&segments) else {
        return ApiError::new(
            code::NOT_FOUND,
            format!("no such resource: {} {raw_path}", parts.method),
        )
        .into_response();
    };

    let (delay, fault) = limits::draw(&app.faults());
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    match fault {
        Some(Fault::Garbage) => {
            let mut r = Response::new(Body::from(
                "<html><body><h1>Gateway</h1><p>injected fault: not a DPS answer</p></body></html>",
            ));
            r.headers_mut().insert(
                axum::http::header::CONTENT_TYPE,
                axum::http::HeaderValue::from_static("text/html"),
            );
            return r;
        }
        Some(Fault::Error) => {
            return ApiError::new(
                code::INTERNAL,
                "injected fault: internal server error; retry",
            )
            .into_response();
        }
        Some(Fault::DropBefore) => return drop_connection(&connection).await,
        _ => {}
    }

    let call = Call {
        method: &parts.method,
        segments,
        raw_path,
        headers: &parts.headers,
        body,
        api_version: query_param(parts.uri.query(), "api-version"),
        connection: &connection,
    };
    let result = match api {
        Api::Service => service(&app, &call),
        Api::Device => device_api::handle(&app, &call),
        Api::Hub => service_api::authorize(&app, &call).and_then(|()| hub_api::handle(&app, &call)),
    };
    if fault == Some(Fault::DropAfter) {
        return drop_connection(&connection).await;
    }
    match result {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(status = %e.status, code = e.code, message = %e.message, "answering with an error");
            e.into_response()
        }
    }
}

fn service(app: &App, call: &Call<'_>) -> Result<Response, ApiError> {
    if let Err(seconds) = app::take(&app.operations) {
        return Err(ApiError::throttled(seconds));
    }
    check_api_version(call.api_version.as_deref(), SERVICE_API_VERSIONS)?;
    service_api::authorize(app, call)?;
    service_api::dispatch(app, call)
}

/// Refuses a missing or unknown api-version (what the real service does is UNCONFIRMED).
pub fn check_api_version(version: Option<&str>, known: &[&str]) -> Result<(), ApiError> {
    match version {
        None | Some("") => Err(ApiError::new(
            code::BAD_API_VERSION,
            format!(
                "the api-version query parameter is missing; use one of {}",
                known.join(", ")
            ),
        )),
        Some(v) if known.contains(&v) => Ok(()),
        Some(v) => Err(ApiError::new(
            code::BAD_API_VERSION,
            format!(
                "api-version '{v}' is not supported; use one of {}",
                known.join(", ")
            ),
        )),
    }
}

async fn drop_connection(connection: &Connection) -> Response {
    connection.kill.notify_one();
    // The connection task drops the socket; this answer is never sent.
    tokio::time::sleep(std::time::Duration::from_secs(30)).await;
    StatusCode::SERVICE_UNAVAILABLE.into_response()
}

/// A JSON answer.
pub fn json(status: StatusCode, value: &serde_json::Value) -> Response {
    let mut r = Response::new(Body::from(value.to_string()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/json; charset=utf-8"),
    );
    r
}
