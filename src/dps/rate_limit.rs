//! A client-side token bucket set to the DPS instance's operation quota, so a batch paces itself
//! instead of running into 429 storms. Every HTTP call counts as one operation (a bulk call of 10
//! too: DPS bills API calls), including the GETs of idempotency checks.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The default quota of a DPS instance (operations per minute per service unit).
pub const DEFAULT_OPERATIONS_PER_MINUTE: u32 = 1_000;

/// Share of the quota actually used: the service counts over windows we cannot see, and a request
/// delayed in the network arrives next to its successor; 1% headroom keeps us under the line.
const HEADROOM: f64 = 0.99;

/// A blocking token bucket shared by all threads using one client.
#[derive(Debug)]
pub struct RateLimiter {
    per_second: f64,
    capacity: f64,
    state: Mutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
    /// After a 429 with `Retry-After`, nobody sends before this instant.
    paused_until: Option<Instant>,
}

impl RateLimiter {
    /// A limiter for `operations_per_minute` (at least 1). The bucket holds one second's worth
    /// (at least one operation), so bursts stay small and the pace is even.
    pub fn new(operations_per_minute: u32) -> Self {
        let per_second = f64::from(operations_per_minute.max(1)) * HEADROOM / 60.0;
        let capacity = per_second.max(1.0);
        Self {
            per_second,
            capacity,
            state: Mutex::new(Bucket {
                tokens: 1.0,
                last: Instant::now(),
                paused_until: None,
            }),
        }
    }

    /// Blocks until one operation may be sent, then takes it.
    pub fn acquire(&self) {
        loop {
            let wait = {
                // A poisoned lock only means another thread panicked mid-update; the bucket
                // stays usable.
                let mut b = self.state.lock().unwrap_or_else(|e| e.into_inner());
                let now = Instant::now();
                if let Some(until) = b.paused_until {
                    if now < until {
                        Some(until - now)
                    } else {
                        b.paused_until = None;
                        None
                    }
                } else {
                    None
                }
                .or_else(|| {
                    let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
                    b.tokens = (b.tokens + elapsed * self.per_second).min(self.capacity);
                    b.last = now;
                    if b.tokens >= 1.0 {
                        b.tokens -= 1.0;
                        None
                    } else {
                        Some(Duration::from_secs_f64((1.0 - b.tokens) / self.per_second))
                    }
                })
            };
            match wait {
                None => return,
                Some(d) => std::thread::sleep(d),
            }
        }
    }

    /// Holds every sender back for `pause` (the service said `Retry-After`), and empties the
    /// bucket so the retries do not all leave at once afterwards.
    pub fn pause(&self, pause: Duration) {
        let mut b = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let until = Instant::now() + pause;
        b.paused_until = Some(b.paused_until.map_or(until, |u| u.max(until)));
        b.tokens = 0.0;
    }

    /// Operations per second this limiter allows (after headroom).
    pub fn per_second(&self) -> f64 {
        self.per_second
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paces_to_the_quota() {
        // 600/min ≈ 9.9/s: 11 acquisitions need about one second beyond the first token.
        let limiter = RateLimiter::new(600);
        let start = Instant::now();
        for _ in 0..11 {
            limiter.acquire();
        }
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(900), "{took:?}");
        assert!(took < Duration::from_millis(1_600), "{took:?}");
    }

    #[test]
    fn pause_holds_senders_back() {
        let limiter = RateLimiter::new(60_000);
        limiter.acquire();
        limiter.pause(Duration::from_millis(300));
        let start = Instant::now();
        limiter.acquire();
        assert!(start.elapsed() >= Duration::from_millis(290));
    }
}
