//! Time stamps as the service writes them (RFC 3339, UTC) and the Unix time SAS expiry is checked against.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Now, as the `createdDateTimeUtc` / `timestampUtc` strings of the service.
pub fn now_rfc3339() -> String {
    OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_owned())
}

/// Formats a certificate validity bound the same way.
pub fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_owned())
}

/// Seconds since the Unix epoch, for SAS `se`.
pub fn unix_now() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}
