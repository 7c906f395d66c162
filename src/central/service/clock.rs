//! Stations' clocks: receipts and leases carry times, so a station whose clock is far off is refused
//! (it would spend expired leases, or stamp rows with times the auditor cannot trust).

use axum::http::StatusCode;

use super::state::{ApiRefusal, refuse};
use crate::central::wire::MAX_CLOCK_SKEW_SECONDS;

/// `Err(refusal)` when `station_time` (RFC 3339) is unreadable or more than
/// [`MAX_CLOCK_SKEW_SECONDS`] from the service's clock.
pub fn check(station_id: &str, station_time: &str) -> Result<(), ApiRefusal> {
    let Some(skew) = skew_seconds(station_time) else {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "bad_clock",
            format!(
                "station {station_id} sent an unreadable time `{station_time}`: update dps-station"
            ),
        ));
    };
    if skew.abs() > MAX_CLOCK_SKEW_SECONDS {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "clock_skew",
            format!(
                "station {station_id}'s clock is {skew} s off the central service's (at most {MAX_CLOCK_SKEW_SECONDS} s allowed): set the station's clock (NTP) and it retries by itself"
            ),
        ));
    }
    Ok(())
}

/// Station time minus service time, in seconds; `None` if unreadable.
pub fn skew_seconds(station_time: &str) -> Option<i64> {
    let at =
        time::OffsetDateTime::parse(station_time, &time::format_description::well_known::Rfc3339)
            .ok()?;
    Some((at - time::OffsetDateTime::now_utc()).whole_seconds())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clock_ten_minutes_off_is_refused_and_a_close_one_is_not() {
        let now = time::OffsetDateTime::now_utc();
        let fmt = |t: time::OffsetDateTime| {
            t.format(&time::format_description::well_known::Rfc3339)
                .unwrap()
        };
        assert!(check("st-1", &fmt(now + time::Duration::seconds(5))).is_ok());
        assert!(check("st-1", &fmt(now - time::Duration::minutes(10))).is_err());
        assert!(check("st-1", "yesterday").is_err());
    }
}
