//! Query paging: `x-ms-max-item-count` in, `x-ms-continuation` out only while more pages remain
//! (the Node SDK reads any header, even an empty one, as "more"; REFERENCE.md §2.2).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use super::api_error::ApiError;

/// Page size when the client sends none (UNCONFIRMED on the real service).
pub const DEFAULT_PAGE_SIZE: usize = 100;

/// Largest page the emulator returns, whatever the client asks for.
pub const MAX_PAGE_SIZE: usize = 1000;

/// The page size a request asks for.
pub fn page_size(header: Option<&str>) -> Result<usize, ApiError> {
    match header.map(str::trim) {
        None | Some("") => Ok(DEFAULT_PAGE_SIZE),
        Some(h) => match h.parse::<i64>() {
            Ok(n) if n > 0 => Ok(usize::try_from(n)
                .unwrap_or(MAX_PAGE_SIZE)
                .min(MAX_PAGE_SIZE)),
            Ok(_) => Ok(DEFAULT_PAGE_SIZE),
            Err(_) => Err(ApiError::bad_request(format!(
                "x-ms-max-item-count '{h}' is not a number"
            ))),
        },
    }
}

/// An opaque token, in the spirit of the service's JSON tokens, carrying the last key returned.
pub fn encode_token(last_key: &str) -> String {
    STANDARD.encode(json!({ "after": last_key }).to_string())
}

/// The key a token continues after; a token the emulator did not make is a 400.
pub fn decode_token(token: Option<&str>) -> Result<Option<String>, ApiError> {
    let Some(t) = token.map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    STANDARD
        .decode(t)
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .and_then(|v| v.get("after").and_then(Value::as_str).map(str::to_owned))
        .map(Some)
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "x-ms-continuation '{t}' is not a token this service issued"
            ))
        })
}

/// Checks the query text: `SELECT * FROM <what>`; WHERE clauses are accepted and ignored.
pub fn check_query(body: &[u8], expected_from: &[&str]) -> Result<(), ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            "the query body is empty; send {\"query\": \"SELECT * FROM enrollments\"}",
        ));
    }
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the query body is not JSON: {e}")))?;
    let q = v
        .get("query")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::bad_request("the query body has no \"query\" string"))?;
    let words: Vec<String> = q.split_whitespace().map(str::to_ascii_lowercase).collect();
    let from = words
        .iter()
        .position(|w| w == "from")
        .and_then(|i| words.get(i + 1));
    if words.first().map(String::as_str) != Some("select") || from.is_none() {
        return Err(ApiError::bad_request(format!(
            "query '{q}' is not of the form SELECT * FROM {}",
            expected_from[0]
        )));
    }
    let from = from.map(String::as_str).unwrap_or("");
    if !expected_from.iter().any(|e| e.eq_ignore_ascii_case(from)) {
        return Err(ApiError::bad_request(format!(
            "query '{q}' selects from '{from}', expected {}",
            expected_from[0]
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_foreign_tokens_are_refused() {
        let t = encode_token("dev-7");
        assert_eq!(decode_token(Some(&t)).unwrap().as_deref(), Some("dev-7"));
        assert_eq!(decode_token(None).unwrap(), None);
        assert!(decode_token(Some("garbage!")).is_err());
        assert_eq!(page_size(Some("5")).unwrap(), 5);
        assert_eq!(page_size(None).unwrap(), DEFAULT_PAGE_SIZE);
        assert!(page_size(Some("x")).is_err());
        assert!(
            check_query(
                br#"{"query":"SELECT * FROM enrollments"}"#,
                &["enrollments"]
            )
            .is_ok()
        );
        assert!(
            check_query(
                br#"{"query":"select * from enrollmentGroups where x=1"}"#,
                &["enrollmentGroups"]
            )
            .is_ok()
        );
        assert!(check_query(br#"{"query":"DROP"}"#, &["enrollments"]).is_err());
        assert!(check_query(b"", &["enrollments"]).is_err());
    }
}
