//! `--rate`: a cap on new connects per second, all workers together, as one
//! shared GCRA (the generic cell rate algorithm of ATM networks, the "virtual
//! scheduling" form).
//!
//! The whole state is one number, the *theoretical arrival time* (TAT): the
//! instant at which the next connect would be on schedule. A connect at `now`
//! is allowed when `now >= TAT - tolerance`, and moves TAT to
//! `max(TAT, now) + interval`. Kept in an [`AtomicU64`] (nanoseconds since the
//! limiter was made) and advanced by compare-and-swap, it is shared by every
//! worker and every thread without a lock, so the rate holds from the first
//! second whatever the number of workers (a bucket per worker let each of 64
//! workers send its first token at once).
//!
//! Pure: the limiter never reads the clock; the caller passes `now` (the style
//! of quinn-proto and smoltcp), so tests drive it with a fake clock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How much time's worth of connects may go out back to back: a bounded
/// burst, large enough that a worker woken a little late by `epoll`
/// (millisecond timeouts) still keeps up with the asked rate. Never more
/// than one connect when the interval between two is longer than this.
const BURST_WINDOW: Duration = Duration::from_millis(10);

/// A rate limiter shared by every worker (see the module docs).
#[derive(Debug)]
pub struct Gcra {
    /// The instant TAT 0 stands for.
    epoch: Instant,
    /// Nanoseconds between two connects at the asked rate.
    interval_ns: u64,
    /// How far ahead of schedule a connect may go (the burst).
    tolerance_ns: u64,
    /// Theoretical arrival time of the next connect, ns since `epoch`.
    tat: AtomicU64,
}

impl Gcra {
    /// A limiter of `rate` connects per second from `now`; the first connect
    /// is allowed at `now`. `rate` must be positive (a smaller one is taken
    /// as one connect an hour).
    pub fn new(rate: f64, now: Instant) -> Gcra {
        let interval = if rate.is_finite() && rate > 1.0 / 3600.0 {
            1e9 / rate
        } else {
            3600e9
        };
        let interval_ns = (interval as u64).max(1);
        let burst = (BURST_WINDOW.as_nanos() as u64 / interval_ns).max(1);
        Gcra {
            epoch: now,
            interval_ns,
            tolerance_ns: (burst - 1) * interval_ns,
            tat: AtomicU64::new(0),
        }
    }

    /// Connects per second.
    pub fn rate(&self) -> f64 {
        1e9 / self.interval_ns as f64
    }

    /// The most connects that go out back to back.
    pub fn burst(&self) -> u64 {
        self.tolerance_ns / self.interval_ns + 1
    }

    fn ns(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    /// Takes the right to one connect at `now`, if the rate allows it.
    #[inline]
    pub fn try_take(&self, now: Instant) -> bool {
        let t = self.ns(now);
        let mut tat = self.tat.load(Ordering::Relaxed);
        loop {
            if tat > t.saturating_add(self.tolerance_ns) {
                return false;
            }
            let next = tat.max(t).saturating_add(self.interval_ns);
            match self
                .tat
                .compare_exchange_weak(tat, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(seen) => tat = seen,
            }
        }
    }

    /// Whether a connect at `now` is allowed, without taking it.
    #[inline]
    pub fn allows(&self, now: Instant) -> bool {
        self.tat.load(Ordering::Relaxed) <= self.ns(now).saturating_add(self.tolerance_ns)
    }

    /// Counts one event at `now` whether or not the rate allowed it: the
    /// limiter runs into debt, and [`allows`](Self::allows) says no until
    /// the schedule catches up. For a budget spent by what already
    /// happened (an attempt that went unanswered) rather than asked first.
    #[inline]
    pub fn charge(&self, now: Instant) {
        let t = self.ns(now);
        let mut tat = self.tat.load(Ordering::Relaxed);
        loop {
            let next = tat.max(t).saturating_add(self.interval_ns);
            match self
                .tat
                .compare_exchange_weak(tat, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return,
                Err(seen) => tat = seen,
            }
        }
    }

    /// How long after `now` the next connect is allowed (zero if it is).
    pub fn wait(&self, now: Instant) -> Duration {
        let t = self.ns(now);
        let tat = self.tat.load(Ordering::Relaxed);
        Duration::from_nanos(tat.saturating_sub(t.saturating_add(self.tolerance_ns)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Takes connects as fast as `workers` callers polling every `tick` would.
    fn taken_per_second(rate: f64, workers: usize, tick: Duration, secs: u64) -> Vec<u64> {
        let t0 = Instant::now();
        let g = Gcra::new(rate, t0);
        let mut per_second = vec![0u64; secs as usize];
        let mut now = t0;
        while now < t0 + Duration::from_secs(secs) {
            for _ in 0..workers {
                while g.try_take(now) {
                    per_second[(now - t0).as_secs() as usize] += 1;
                }
            }
            now += tick;
        }
        per_second
    }

    #[test]
    fn the_rate_holds_over_time() {
        for rate in [10.0, 1_000.0, 10_000.0, 100_000.0, 1_000_000.0] {
            for tick in [
                Duration::from_micros(10),
                Duration::from_millis(1),
                Duration::from_millis(3),
            ] {
                let n: u64 = taken_per_second(rate, 1, tick, 10).iter().sum();
                let want = rate * 10.0;
                assert!(
                    (n as f64 - want).abs() <= want * 0.01 + 2.0,
                    "rate {rate} tick {tick:?}: {n}"
                );
            }
        }
    }

    /// A bucket per worker let `--rate 1 --threads 64` send 64 connects in
    /// the first second.
    #[test]
    fn rate_one_with_64_workers_holds_from_the_first_second() {
        for (rate, workers) in [(1.0, 64), (10.0, 64), (1_000.0, 64), (50_000.0, 16)] {
            let seconds = taken_per_second(rate, workers, Duration::from_micros(100), 5);
            for (s, &n) in seconds.iter().enumerate() {
                assert!(
                    (n as f64 - rate).abs() <= rate * 0.05 + 1.0,
                    "rate {rate}, {workers} workers, second {s}: {n}"
                );
            }
        }
        let t0 = Instant::now();
        let g = Gcra::new(1.0, t0);
        assert!(g.try_take(t0));
        assert!(!g.try_take(t0 + Duration::from_millis(999)));
        assert!(g.try_take(t0 + Duration::from_secs(1)));
    }

    #[test]
    fn the_burst_is_bounded() {
        let t0 = Instant::now();
        let g = Gcra::new(1000.0, t0);
        assert_eq!(g.burst(), 10);
        let later = t0 + Duration::from_secs(60);
        let mut n = 0;
        while g.try_take(later) {
            n += 1;
        }
        assert_eq!(n, 10); // 10 ms worth
        assert_eq!(g.wait(later), Duration::from_millis(1));
        assert!(g.try_take(later + Duration::from_millis(1)));
    }

    #[test]
    fn shared_between_threads_the_total_holds() {
        let t0 = Instant::now();
        let g = Gcra::new(1000.0, t0);
        let at = t0 + Duration::from_secs(1);
        let taken: u64 = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(|| {
                        let mut n = 0u64;
                        while g.try_take(at) {
                            n += 1;
                        }
                        n
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        // 1 s of schedule was not used: only the burst goes out.
        assert_eq!(taken, 10);
    }

    #[test]
    fn a_clock_going_back_is_ignored() {
        let t0 = Instant::now() + Duration::from_secs(1);
        let g = Gcra::new(1.0, t0);
        assert!(g.try_take(t0));
        assert!(!g.try_take(t0 - Duration::from_millis(500)));
        assert!(g.wait(t0) > Duration::ZERO);
    }
}
