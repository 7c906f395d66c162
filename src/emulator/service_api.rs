//! The 15 operations of the service (enrollment-management) API, REFERENCE.md §2 and §4.

use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::api_error::{ApiError, code};
use super::app::App;
use super::clock;
use super::enrollment::{self, Kind};
use super::paging;
use super::routes::{Call, json};
use super::sas;
use super::store::{BulkMode, Rules, bulk_result};

/// Checks the SAS token: policy name, that `sr` covers this host and path, expiry, signature.
pub fn authorize(app: &App, call: &Call<'_>) -> Result<(), ApiError> {
    let token = sas::parse(call.header("authorization"))
        .map_err(|e| ApiError::unauthorized(e.to_string()))?;
    if let Some(skn) = &token.skn
        && !skn.eq_ignore_ascii_case(&app.policy_name)
    {
        return Err(ApiError::unauthorized(
            sas::SasError::WrongKeyName(skn.clone()).to_string(),
        ));
    }
    let host = call.header("host").unwrap_or("").to_ascii_lowercase();
    let host_no_port = host
        .rsplit_once(':')
        .map(|(h, _)| h.to_owned())
        .unwrap_or_else(|| host.clone());
    let covered = [app.host_name.to_ascii_lowercase(), host, host_no_port]
        .into_iter()
        .chain(app.listener_hosts.iter().cloned())
        .filter(|h| !h.is_empty())
        .any(|h| token.covers(&format!("{h}{}", call.raw_path)));
    if !covered {
        return Err(ApiError::unauthorized(
            sas::SasError::WrongResource(token.sr_decoded.clone()).to_string(),
        ));
    }
    let [primary, secondary] = &app.keys;
    token
        .verify(&[primary, secondary], clock::unix_now(), &app.policy_name)
        .map_err(|e| ApiError::unauthorized(e.to_string()))
}

fn method_not_allowed(call: &Call<'_>) -> ApiError {
    ApiError::new(
        code::METHOD_NOT_ALLOWED,
        format!("{} is not allowed on {}", call.method, call.raw_path),
    )
}

fn parse_body(call: &Call<'_>) -> Result<Value, ApiError> {
    serde_json::from_slice(&call.body)
        .map_err(|e| ApiError::bad_request(format!("the body is not valid JSON: {e}")))
}

/// Routes a service-API call to its operation.
pub fn dispatch(app: &App, call: &Call<'_>) -> Result<Response, ApiError> {
    let seg: Vec<&str> = call.segments.iter().map(String::as_str).collect();
    let collection = seg[0].to_ascii_lowercase();
    let kind = match collection.as_str() {
        "enrollments" => Kind::Individual,
        "enrollmentgroups" => Kind::Group,
        "certificates" => return super::ca_registry::handle(app, call, &seg[1..]),
        _ => return registrations(app, call, &seg[1..]),
    };
    let m = call.method;
    match &seg[1..] {
        [] if m == Method::POST => bulk(app, call, kind),
        [q] if q.eq_ignore_ascii_case("query") && m == Method::POST => query(app, call, kind),
        [id] if m == Method::PUT => {
            let body = parse_body(call)?;
            let now = clock::now_rfc3339();
            let doc = app.change().put(
                kind,
                body,
                Some(id),
                call.header("if-match"),
                &Rules {
                    limits: &app.limits,
                    linked_hubs: &app.linked_hubs,
                    now: &now,
                },
            )?;
            Ok(json(StatusCode::OK, &enrollment::render(&doc)))
        }
        [id] if m == Method::GET => {
            let doc = enrollment::render(app.lock().get(kind, id)?);
            Ok(json(StatusCode::OK, &doc))
        }
        [id] if m == Method::DELETE => {
            app.change().delete(kind, id, call.header("if-match"))?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        [id, a] if a.eq_ignore_ascii_case("attestationmechanism") && m == Method::POST => {
            let att = enrollment::attestation_with_keys(app.lock().get(kind, id)?);
            Ok(json(StatusCode::OK, &att))
        }
        [] | [_] | [_, _] => Err(method_not_allowed(call)),
        _ => Err(ApiError::new(
            code::NOT_FOUND,
            format!("no such resource: {}", call.raw_path),
        )),
    }
}

fn bulk(app: &App, call: &Call<'_>, kind: Kind) -> Result<Response, ApiError> {
    let body = parse_body(call)?;
    let list_field = match kind {
        Kind::Individual => "enrollments",
        Kind::Group => "enrollmentGroups",
    };
    let mode_text = body.get("mode").and_then(Value::as_str).unwrap_or("");
    let mode = BulkMode::parse(mode_text).ok_or_else(|| {
        ApiError::new(
            code::BAD_BULK,
            format!("bulk mode '{mode_text}' is not create, update, updateIfMatchETag or delete"),
        )
    })?;
    let items = match body.get(list_field) {
        Some(Value::Array(items)) => items.clone(),
        _ => {
            return Err(ApiError::new(
                code::BAD_BULK,
                format!("the bulk body has no \"{list_field}\" array"),
            ));
        }
    };
    if items.is_empty() {
        return Err(ApiError::new(
            code::BAD_BULK,
            format!("the bulk body's \"{list_field}\" array is empty"),
        ));
    }
    let max = app.limits.max_bulk_items;
    if items.len() > max {
        return Err(ApiError::new(
            code::BAD_BULK,
            format!(
                "a bulk operation takes at most {max} items, this one has {}; split it",
                items.len()
            ),
        ));
    }
    let now = clock::now_rfc3339();
    let errors = app.change().bulk(
        kind,
        items,
        mode,
        &Rules {
            limits: &app.limits,
            linked_hubs: &app.linked_hubs,
            now: &now,
        },
    );
    Ok(json(StatusCode::OK, &bulk_result(kind, &errors)))
}

fn page_response(
    items: Vec<Value>,
    next: Option<String>,
    item_type: &str,
    size: usize,
) -> Response {
    let mut r = json(StatusCode::OK, &Value::Array(items));
    let h = r.headers_mut();
    h.insert(
        "x-ms-item-type",
        HeaderValue::from_static(match item_type {
            "enrollment" => "enrollment",
            "enrollmentGroup" => "enrollmentGroup",
            _ => "deviceRegistration",
        }),
    );
    h.insert("x-ms-max-item-count", HeaderValue::from(size));
    if let Some(last) = next
        && let Ok(v) = HeaderValue::from_str(&paging::encode_token(&last))
    {
        h.insert("x-ms-continuation", v);
    }
    r
}

fn query(app: &App, call: &Call<'_>, kind: Kind) -> Result<Response, ApiError> {
    let from: &[&str] = match kind {
        Kind::Individual => &["enrollments"],
        Kind::Group => &["enrollmentGroups"],
    };
    paging::check_query(&call.body, from)?;
    let size = paging::page_size(call.header("x-ms-max-item-count"))?;
    let after = paging::decode_token(call.header("x-ms-continuation"))?;
    let (items, next) = app.lock().page(kind, after.as_deref(), size);
    Ok(page_response(items, next, kind.item_type(), size))
}

fn registrations(app: &App, call: &Call<'_>, rest: &[&str]) -> Result<Response, ApiError> {
    let m = call.method;
    match rest {
        [id] if m == Method::GET => {
            let state = app.lock().registration(id)?.state.clone();
            Ok(json(StatusCode::OK, &state))
        }
        [id] if m == Method::DELETE => {
            app.change()
                .delete_registration(id, call.header("if-match"))?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        // Node and C# send a query body here although the spec has none: accepted and ignored.
        [group, q] if q.eq_ignore_ascii_case("query") && m == Method::POST => {
            let size = paging::page_size(call.header("x-ms-max-item-count"))?;
            let after = paging::decode_token(call.header("x-ms-continuation"))?;
            let (items, next) = app.lock().registrations_page(group, after.as_deref(), size);
            Ok(page_response(items, next, "deviceRegistration", size))
        }
        [_] | [_, _] => Err(method_not_allowed(call)),
        _ => Err(ApiError::new(
            code::NOT_FOUND,
            format!("no such resource: {}", call.raw_path),
        )),
    }
}
