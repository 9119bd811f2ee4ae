//! A congestion window: how many probes may be in flight, grown while
//! answers come and cut when answers show that probes were dropped. TCP's
//! (and nmap's) slow start, congestion avoidance and multiplicative
//! decrease, counted in probes.
//!
//! Pure: `now` is an argument (it only spaces the cuts).

use std::time::{Duration, Instant};

/// The window's bounds and starting point.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WindowParams {
    /// Probes in flight at the start.
    pub initial: usize,
    /// Never fewer in flight than this.
    pub floor: usize,
    /// Never more (`--concurrency`, the fd budget): the caller's cap.
    pub max: usize,
}

/// What ended a probe, as the window sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// The first attempt was answered: the path carried it.
    Answer,
    /// Every attempt went unanswered: a filtered port, most likely, which
    /// says nothing about the path: the window neither grows nor shrinks.
    Silence,
    /// An answer came only to a retry: an earlier attempt (or its answer)
    /// was lost. nmap's sign of drops.
    Drop,
}

/// Share of a round's probes that may be dropped before the window is cut:
/// the internet loses a few packets whatever the rate (netsim's profiles:
/// 1 % and 10 % of probes); a path the scan overruns loses far more.
const LOSS_TOLERANCE: f64 = 1.0 / 8.0;

/// Slow start below `ssthresh`, congestion avoidance above it, halving when
/// more than `LOSS_TOLERANCE` (1/8) of a round's probes (a window's worth of
/// answers) were dropped, at most once per `hold` (one timeout: the drops
/// of one flight of probes are one congestion event, as in TCP's fast
/// recovery).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window {
    cwnd: f64,
    ssthresh: f64,
    floor: f64,
    max: f64,
    last_cut: Option<Instant>,
    cuts: u64,
    /// Answers and drops in the current round, and its length: the window
    /// when it began.
    round: u32,
    round_drops: u32,
    round_len: u32,
}

impl Window {
    pub fn new(p: WindowParams) -> Window {
        let max = p.max.max(1) as f64;
        let floor = (p.floor.max(1) as f64).min(max);
        Window {
            cwnd: (p.initial as f64).clamp(floor, max),
            ssthresh: max,
            floor,
            max,
            last_cut: None,
            cuts: 0,
            round: 0,
            round_drops: 0,
            round_len: p.initial.clamp(1, u32::MAX as usize) as u32,
        }
    }

    /// Probes allowed in flight now.
    pub fn allowed(&self) -> usize {
        self.cwnd as usize
    }

    /// How many times the window was cut.
    pub fn cuts(&self) -> u64 {
        self.cuts
    }

    /// Whether the window is still in slow start.
    pub fn slow_start(&self) -> bool {
        self.cwnd < self.ssthresh
    }

    /// Takes what ended one probe.
    pub fn on(&mut self, signal: Signal, now: Instant, hold: Duration) {
        match signal {
            Signal::Silence => return,
            Signal::Answer => self.round += 1,
            Signal::Drop => {
                self.round += 1;
                self.round_drops += 1;
            }
        }
        if self.round >= self.round_len {
            let lossy = f64::from(self.round_drops) > f64::from(self.round) * LOSS_TOLERANCE;
            self.round = 0;
            self.round_drops = 0;
            if lossy {
                self.cut(now, hold);
            }
            self.round_len = self.cwnd as u32;
            if lossy {
                return;
            }
        }
        match signal {
            Signal::Answer => {
                // Slow start: +1 per answer (doubles per round trip);
                // congestion avoidance: +1 per window's worth of answers.
                let inc = if self.slow_start() {
                    1.0
                } else {
                    1.0 / self.cwnd
                };
                self.cwnd = (self.cwnd + inc).min(self.max);
            }
            Signal::Silence | Signal::Drop => {}
        }
    }

    /// Multiplicative decrease, once per congestion event.
    fn cut(&mut self, now: Instant, hold: Duration) {
        if self
            .last_cut
            .is_some_and(|t| now.saturating_duration_since(t) < hold)
        {
            return; // the same congestion event
        }
        self.ssthresh = (self.cwnd / 2.0).max(self.floor);
        self.cwnd = self.ssthresh;
        self.last_cut = Some(now);
        self.cuts += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    fn window(initial: usize, floor: usize, max: usize) -> Window {
        Window::new(WindowParams {
            initial,
            floor,
            max,
        })
    }

    #[test]
    fn slow_start_doubles_per_round_then_stops_at_the_cap() {
        let t = Instant::now();
        let mut w = window(10, 2, 100);
        // One round: every probe in the window answers.
        for _ in 0..10 {
            w.on(Signal::Answer, t, MS(100));
        }
        assert_eq!(w.allowed(), 20);
        for _ in 0..1000 {
            w.on(Signal::Answer, t, MS(100));
        }
        assert_eq!(w.allowed(), 100, "never above --concurrency");
    }

    /// Runs one round: `n` probes of which `drops` were dropped.
    fn round(w: &mut Window, n: usize, drops: usize, now: Instant) {
        // Drops spread evenly over the round.
        let every = n.checked_div(drops).unwrap_or(usize::MAX);
        for i in 0..n {
            let s = if drops > 0 && i % every == 0 && i / every < drops {
                Signal::Drop
            } else {
                Signal::Answer
            };
            w.on(s, now, MS(100));
        }
    }

    #[test]
    fn a_lossy_round_halves_once_per_hold_then_growth_is_linear() {
        let t = Instant::now();
        let mut w = window(64, 2, 1000);
        // A round is the 64 probes of the first window; 20 of them dropped.
        round(&mut w, 63, 20, t);
        assert_eq!(w.cuts(), 0, "not before the round ends");
        let before = w.allowed();
        w.on(Signal::Answer, t, MS(100));
        assert_eq!((w.allowed(), w.cuts()), (before / 2, 1));
        // Another lossy round within the hold: the same event.
        let n = w.allowed();
        round(&mut w, n, n, t + MS(50));
        assert_eq!((w.allowed(), w.cuts()), (n, 1));
        // Congestion avoidance: a window's worth of answers adds one.
        round(&mut w, n + 1, 0, t + MS(60));
        assert_eq!(w.allowed(), n + 1);
        let n = w.allowed();
        round(&mut w, n, n, t + MS(200));
        assert_eq!((w.allowed(), w.cuts()), (n / 2, 2));
    }

    #[test]
    fn background_loss_below_the_tolerance_does_not_cut() {
        let t = Instant::now();
        let mut w = window(100, 2, 10_000);
        for i in 0..50 {
            // 10 % of every round lost: the lossy profile's random loss.
            let n = w.allowed();
            round(&mut w, n, n / 10, t + MS(200 * i));
        }
        assert_eq!(w.cuts(), 0);
        assert_eq!(w.allowed(), 10_000);
    }

    #[test]
    fn silence_changes_nothing_and_the_floor_holds() {
        let t = Instant::now();
        let mut w = window(8, 4, 100);
        for _ in 0..100 {
            w.on(Signal::Silence, t, MS(100));
        }
        assert_eq!(w.allowed(), 8);
        for i in 0..10 {
            round(&mut w, 8, 8, t + MS(1000 * i));
        }
        assert_eq!(w.allowed(), 4);
    }

    #[test]
    fn bounds_are_consistent_whatever_is_asked() {
        let w = window(0, 0, 0);
        assert_eq!(w.allowed(), 1);
        let w = window(500, 50, 10);
        assert_eq!(w.allowed(), 10);
    }
}
