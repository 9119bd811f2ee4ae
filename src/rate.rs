//! `--rate`: a cap on new connects per second, as a token bucket.
//!
//! Pure: the bucket never reads the clock; the caller passes `now` (the
//! style of quinn-proto and smoltcp), so tests drive it with a fake clock.
//! The event loop gives each worker a bucket with its share of the rate; the
//! threads engine shares one behind a mutex.

use std::time::{Duration, Instant};

/// How much time's worth of tokens may pile up: a bounded burst, large
/// enough that a worker woken a little late by `epoll` (millisecond timeouts)
/// still keeps up with the asked rate.
const BURST_WINDOW: Duration = Duration::from_millis(10);

/// A token bucket: `rate` tokens a second, at most `burst` saved up.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    /// Tokens per second.
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A bucket refilled at `rate` per second from `now`, holding one token.
    /// `rate` must be positive.
    pub fn new(rate: f64, now: Instant) -> TokenBucket {
        let rate = rate.max(f64::MIN_POSITIVE);
        TokenBucket {
            rate,
            burst: (rate * BURST_WINDOW.as_secs_f64()).max(1.0),
            tokens: 1.0,
            last: now,
        }
    }

    /// Tokens per second.
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// The largest number of tokens the bucket holds.
    pub fn burst(&self) -> f64 {
        self.burst
    }

    fn refill(&mut self, now: Instant) {
        if now > self.last {
            let dt = (now - self.last).as_secs_f64();
            self.tokens = (self.tokens + dt * self.rate).min(self.burst);
            self.last = now;
        }
    }

    /// Takes a token if there is one at `now`.
    #[inline]
    pub fn try_take(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// How long after `now` the next token is there (zero if it is).
    pub fn wait(&mut self, now: Instant) -> Duration {
        self.refill(now);
        if self.tokens >= 1.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((1.0 - self.tokens) / self.rate)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Takes tokens as fast as a caller polling every `tick` would.
    fn taken(rate: f64, tick: Duration, run: Duration) -> u64 {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(rate, t0);
        let mut now = t0;
        let mut n = 0;
        while now < t0 + run {
            while b.try_take(now) {
                n += 1;
            }
            now += tick;
        }
        n
    }

    #[test]
    fn the_rate_holds_over_time() {
        for rate in [10.0, 1_000.0, 10_000.0, 100_000.0, 1_000_000.0] {
            for tick in [
                Duration::from_micros(10),
                Duration::from_millis(1),
                Duration::from_millis(3),
            ] {
                let n = taken(rate, tick, Duration::from_secs(10)) as f64;
                let want = rate * 10.0;
                assert!(
                    (n - want).abs() <= want * 0.01 + 2.0,
                    "rate {rate} tick {tick:?}: {n}"
                );
            }
        }
    }

    #[test]
    fn the_burst_is_bounded() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(1000.0, t0);
        let later = t0 + Duration::from_secs(60);
        let mut n = 0;
        while b.try_take(later) {
            n += 1;
        }
        assert_eq!(n, 10); // 10 ms worth
        assert_eq!(b.wait(later), Duration::from_millis(1));
        assert!(b.try_take(later + Duration::from_millis(1)));
    }

    #[test]
    fn a_clock_going_back_is_ignored() {
        let t0 = Instant::now() + Duration::from_secs(1);
        let mut b = TokenBucket::new(1.0, t0);
        assert!(b.try_take(t0));
        assert!(!b.try_take(t0 - Duration::from_millis(500)));
        assert!(b.wait(t0) > Duration::ZERO);
    }
}
