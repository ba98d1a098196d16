//! A token bucket, so a plugin stays under its provider's rate limit.

use std::time::{Duration, Instant};

/// A provider's allowance: `per_second` sends on average, up to `burst` at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    /// Sends per second, on average; at least 1.
    pub per_second: u32,
    /// Sends allowed back to back after a quiet spell; at least 1.
    pub burst: u32,
}

impl RateLimit {
    /// `per_second` sends a second with a burst of the same size.
    pub fn per_second(per_second: u32) -> Self {
        RateLimit {
            per_second,
            burst: per_second,
        }
    }
}

/// The running state of a [`RateLimit`].
#[derive(Debug)]
pub(crate) struct TokenBucket {
    limit: RateLimit,
    /// Tokens available, in millionths, so refills stay exact integers.
    micro_tokens: u64,
    refilled_at: Instant,
}

const MICRO: u64 = 1_000_000;

impl TokenBucket {
    /// A full bucket; `None` when the limit allows nothing (a zero rate or burst).
    pub(crate) fn new(limit: RateLimit) -> Option<Self> {
        (limit.per_second > 0 && limit.burst > 0).then(|| TokenBucket {
            limit,
            micro_tokens: u64::from(limit.burst) * MICRO,
            refilled_at: Instant::now(),
        })
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.refilled_at);
        let gained = elapsed.as_micros() * u128::from(self.limit.per_second);
        let cap = u64::from(self.limit.burst) * MICRO;
        let gained = u64::try_from(gained).unwrap_or(u64::MAX);
        self.micro_tokens = self.micro_tokens.saturating_add(gained).min(cap);
        self.refilled_at = now;
    }

    /// How long to wait before a token is free; takes it when the answer is zero.
    pub(crate) fn try_take(&mut self, now: Instant) -> Duration {
        self.refill(now);
        if self.micro_tokens >= MICRO {
            self.micro_tokens -= MICRO;
            return Duration::ZERO;
        }
        let missing = MICRO - self.micro_tokens;
        // Rounded up, so the wait is never too short to refill a whole token.
        let micros = missing.div_ceil(u64::from(self.limit.per_second));
        Duration::from_micros(micros)
    }

    /// Blocks until a send is allowed, then counts it.
    pub(crate) fn take(&mut self) {
        loop {
            let wait = self.try_take(Instant::now());
            if wait.is_zero() {
                return;
            }
            std::thread::sleep(wait);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_bucket_allows_the_burst_then_spaces_sends_by_the_rate() {
        let mut bucket = TokenBucket::new(RateLimit {
            per_second: 4,
            burst: 2,
        })
        .unwrap();
        let t0 = bucket.refilled_at;
        assert_eq!(bucket.try_take(t0), Duration::ZERO);
        assert_eq!(bucket.try_take(t0), Duration::ZERO);
        // Empty: a token comes back every 250 ms.
        assert_eq!(bucket.try_take(t0), Duration::from_millis(250));
        let later = t0 + Duration::from_millis(100);
        assert_eq!(bucket.try_take(later), Duration::from_millis(150));
        assert_eq!(
            bucket.try_take(t0 + Duration::from_millis(250)),
            Duration::ZERO
        );
        // A long quiet spell refills no more than the burst.
        let much_later = t0 + Duration::from_secs(60);
        assert_eq!(bucket.try_take(much_later), Duration::ZERO);
        assert_eq!(bucket.try_take(much_later), Duration::ZERO);
        assert!(!bucket.try_take(much_later).is_zero());
    }

    #[test]
    fn take_waits_for_the_rate() {
        let mut bucket = TokenBucket::new(RateLimit {
            per_second: 20,
            burst: 1,
        })
        .unwrap();
        let start = Instant::now();
        for _ in 0..4 {
            bucket.take();
        }
        // One free, then three at 50 ms each.
        assert!(start.elapsed() >= Duration::from_millis(150));
    }

    #[test]
    fn a_zero_limit_is_refused() {
        assert!(TokenBucket::new(RateLimit::per_second(0)).is_none());
        assert!(
            TokenBucket::new(RateLimit {
                per_second: 1,
                burst: 0
            })
            .is_none()
        );
    }
}
