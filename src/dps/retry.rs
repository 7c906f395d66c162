//! When and how long to wait before re-sending: 429, 5xx, 408 and broken or timed-out connections
//! are retried with exponential backoff and full jitter; a `Retry-After` from the service wins
//! over our own schedule.

use std::time::Duration;

use rand::RngExt as _;

/// How hard the client tries before giving up on one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Sends per call, the first included (at least 1).
    pub max_attempts: u32,
    /// Backoff before the second send; doubles each time.
    pub base_delay: Duration,
    /// Longest single wait.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// The wait before send number `attempt + 1`, after `attempt` failed sends (attempt ≥ 1).
    ///
    /// Full jitter (a random share of the exponential step) spreads the retries of many callers;
    /// with `retry_after` we wait at least that long, plus a little jitter so callers that were
    /// throttled together do not come back together.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let exp = self
            .base_delay
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
            .min(self.max_delay);
        let mut rng = rand::rng();
        match retry_after {
            Some(after) => {
                let extra = rng.random_range(0..=self.base_delay.as_millis().min(1_000) as u64);
                after + Duration::from_millis(extra)
            }
            None => {
                let half = exp / 2;
                let spread = exp.saturating_sub(half).as_millis() as u64;
                half + Duration::from_millis(rng.random_range(0..=spread))
            }
        }
    }
}

/// Whether an HTTP status is worth re-sending.
pub fn is_retryable_status(status: u16) -> bool {
    matches!(status, 408 | 429 | 500 | 502 | 503 | 504)
}

/// Parses `Retry-After` as delta-seconds (the HTTP-date form is not used by Azure; it is ignored).
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let secs: f64 = value.trim().parse().ok()?;
    (secs.is_finite() && (0.0..=3_600.0).contains(&secs)).then(|| Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_stays_bounded() {
        let p = RetryPolicy::default();
        for attempt in 1..=20 {
            let d = p.delay(attempt, None);
            assert!(d <= p.max_delay, "{attempt}: {d:?}");
        }
        let first = p.delay(1, None);
        assert!(first >= Duration::from_millis(100) && first <= Duration::from_millis(200));
        let fifth = p.delay(5, None);
        assert!(fifth >= Duration::from_millis(1_600), "{fifth:?}");
    }

    #[test]
    fn retry_after_is_honoured() {
        let p = RetryPolicy::default();
        let d = p.delay(1, Some(Duration::from_secs(2)));
        assert!(
            d >= Duration::from_secs(2) && d <= Duration::from_millis(2_200),
            "{d:?}"
        );
        assert_eq!(parse_retry_after("3"), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after("0.5"), Some(Duration::from_millis(500)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(parse_retry_after("-1"), None);
    }

    #[test]
    fn retryable_statuses() {
        for s in [408, 429, 500, 502, 503, 504] {
            assert!(is_retryable_status(s));
        }
        for s in [400, 401, 403, 404, 409, 412] {
            assert!(!is_retryable_status(s));
        }
    }
}
