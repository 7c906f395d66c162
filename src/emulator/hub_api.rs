//! The local hub over the emulator's HTTP(S) API, signed like the service API (the DPS policy's
//! SAS): `GET /devices` (the identities DPS created), `GET /twins/{deviceId}` (a twin), and
//! `GET /devices/{deviceId}/messages/events` (the telemetry kept). The last one is the
//! emulator's own: a real hub hands telemetry to back ends through its Event Hubs endpoint,
//! which is not emulated. `dps-station hub-telemetry` reads it.

use axum::http::{Method, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

use super::api_error::{ApiError, code};
use super::app::App;
use super::hub;
use super::ids;
use super::routes::{Call, json as json_response};

/// Whether a path is the hub's (`/devices...`, `/twins/...`).
pub fn is_hub_path(segments: &[String]) -> bool {
    segments
        .first()
        .is_some_and(|s| s.eq_ignore_ascii_case("devices") || s.eq_ignore_ascii_case("twins"))
}

/// Handles a hub call (already authorized).
pub fn handle(app: &App, call: &Call<'_>) -> Result<Response, ApiError> {
    if call.method != Method::GET {
        return Err(ApiError::new(
            code::METHOD_NOT_ALLOWED,
            format!(
                "the local hub's API is read-only here: {} {}",
                call.method, call.raw_path
            ),
        ));
    }
    let seg: Vec<String> = call
        .segments
        .iter()
        .map(|s| s.to_ascii_lowercase())
        .collect();
    let not_found = |id: &str| {
        ApiError::new(
            code::NOT_FOUND,
            format!("device '{id}' has no identity in the local hub"),
        )
    };
    match seg
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["devices"] => {
            let devices: Vec<Value> = app.lock().hub_devices.values().map(hub::describe).collect();
            Ok(json_response(StatusCode::OK, &Value::Array(devices)))
        }
        ["twins", _] | ["devices", _] => {
            let id = &call.segments[1];
            let state = app.lock();
            let device = state
                .hub_devices
                .get(&ids::key(id))
                .ok_or_else(|| not_found(id))?;
            Ok(json_response(StatusCode::OK, &hub::describe(device)))
        }
        ["devices", _, "messages", "events"] => {
            let id = &call.segments[1];
            let messages: Vec<Value> = app
                .telemetry()
                .messages(Some(id))
                .iter()
                .map(|m| m.to_json())
                .collect();
            Ok(json_response(
                StatusCode::OK,
                &json!({ "deviceId": id, "messages": messages }),
            ))
        }
        _ => Err(ApiError::new(
            code::NOT_FOUND,
            format!("no such hub resource: {} {}", call.method, call.raw_path),
        )),
    }
}
