//! Throttling and fault injection: what makes the emulator behave like a busy, imperfect service.
//!
//! The rate is a token bucket holding one minute's worth of operations and refilling evenly
//! (the service's exact algorithm is UNCONFIRMED): a client that keeps to N per minute is never
//! throttled; a burst beyond the bucket gets 429 with `Retry-After` in whole seconds.

use std::time::{Duration, Instant};

use super::config::Faults;

/// A token bucket for "N operations per minute".
#[derive(Debug)]
pub struct RateLimiter {
    per_minute: f64,
    capacity: f64,
    tokens: f64,
    last: Instant,
}

impl RateLimiter {
    /// A full bucket of `burst` tokens (one minute's worth when `None`), refilled at `per_minute`.
    pub fn new(per_minute: u32, burst: Option<u32>) -> Self {
        let per_minute = f64::from(per_minute.max(1));
        let capacity = burst.map_or(per_minute, |b| f64::from(b.max(1)));
        Self {
            per_minute,
            capacity,
            tokens: capacity,
            last: Instant::now(),
        }
    }

    /// Takes one token, or says how many seconds until one is there.
    pub fn acquire(&mut self, now: Instant) -> Result<(), u64> {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.per_minute / 60.0).min(self.capacity);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - self.tokens) * 60.0 / self.per_minute;
            Err(wait.ceil().max(1.0) as u64)
        }
    }
}

/// What a fault draw decided for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Answer 500 without processing.
    Error,
    /// Drop the connection without processing.
    DropBefore,
    /// Process, then drop the connection instead of answering.
    DropAfter,
    /// Answer 200 with HTML, without processing.
    Garbage,
}

/// Draws the faults for one request: an optional delay and an optional failure.
pub fn draw(faults: &Faults) -> (Option<Duration>, Option<Fault>) {
    let delay = (faults.slow_rate > 0.0 && rand::random_bool(faults.slow_rate.clamp(0.0, 1.0)))
        .then_some(faults.slow_delay);
    let fault = if faults.error_rate > 0.0 && rand::random_bool(faults.error_rate.clamp(0.0, 1.0)) {
        Some(Fault::Error)
    } else if faults.garbage_rate > 0.0 && rand::random_bool(faults.garbage_rate.clamp(0.0, 1.0)) {
        Some(Fault::Garbage)
    } else if faults.drop_rate > 0.0 && rand::random_bool(faults.drop_rate.clamp(0.0, 1.0)) {
        Some(if rand::random_bool(0.5) {
            Fault::DropBefore
        } else {
            Fault::DropAfter
        })
    } else {
        None
    };
    (delay, fault)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_a_minute_then_throttles_then_refills() {
        let start = Instant::now();
        let mut r = RateLimiter::new(60, None);
        for _ in 0..60 {
            r.acquire(start).unwrap();
        }
        assert_eq!(r.acquire(start), Err(1));
        assert!(r.acquire(start + Duration::from_millis(1100)).is_ok());
        assert!(r.acquire(start + Duration::from_millis(1200)).is_err());
    }

    #[test]
    fn a_small_burst_spreads_the_minute_evenly() {
        let start = Instant::now();
        let mut r = RateLimiter::new(600, Some(2));
        assert!(r.acquire(start).is_ok());
        assert!(r.acquire(start).is_ok());
        assert!(r.acquire(start).is_err());
        assert!(
            r.acquire(start + Duration::from_millis(110)).is_ok(),
            "600/min is one per 100 ms"
        );
    }

    #[test]
    fn no_faults_by_default() {
        for _ in 0..100 {
            assert_eq!(draw(&Faults::default()), (None, None));
        }
        let all = Faults {
            error_rate: 1.0,
            ..Faults::default()
        };
        assert_eq!(draw(&all).1, Some(Fault::Error));
    }
}
