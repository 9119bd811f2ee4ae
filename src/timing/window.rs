//! A congestion window: how many probes may be in flight, grown while
//! answers come and cut when answers show that probes were dropped. TCP's
//! (and nmap's) slow start, congestion avoidance and multiplicative
//! decrease, counted in probes.
//!
//! Pure: `now` is an argument (it only spaces the cuts).

use std::time::Instant;

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
    /// An answer came only to a retry: an earlier attempt (or its answer),
    /// sent at this instant, was lost. nmap's sign of drops.
    Drop(Instant),
}

/// Share of a round's probes that may always be dropped before the window
/// is cut: the internet loses a few packets whatever the rate (netsim's
/// profiles: 1 % and 10 % of probes); a path the scan overruns loses far
/// more.
const LOSS_TOLERANCE: f64 = 1.0 / 8.0;
/// Standard deviations above the background loss a round's drops must be
/// before they are taken for congestion rather than chance.
const LOSS_SIGMAS: f64 = 3.0;
/// Fewest signals a round is judged on. A round of a small window is a
/// handful of answers, and one chance loss in two answers looked like half
/// the path dropping: on a lossy world (9.75 % of tries lost) a window at
/// its floor was cut again about one round in five and never grew back.
pub const MIN_ROUND: u32 = 32;

/// Drops a round of `n` signals may hold before it counts as congestion,
/// when the path loses `background` of the probes anyway: more than 1/8 of
/// the round, and more than chance explains (the binomial mean plus three
/// standard deviations).
pub fn tolerated_drops(n: u32, background: f64) -> f64 {
    let n = f64::from(n);
    let p = background.clamp(0.0, 1.0);
    let chance = n * p + LOSS_SIGMAS * (n * p * (1.0 - p)).sqrt();
    (n * LOSS_TOLERANCE).max(chance)
}

/// Slow start below `ssthresh`, congestion avoidance above it, halving when
/// a round's drops (a round: a window's worth of answers, at least
/// [`MIN_ROUND`]) are more than the background loss explains
/// ([`tolerated_drops`]). A drop counts only if the lost attempt was sent
/// after the last cut (TCP's rule, RFC 5681 §3.1's "one cut per window of
/// data"): the answers to retries of probes lost in one congestion event
/// arrive for seconds after it (a retry waits a whole timeout), and taking
/// each round of them for a new event halved a lossy scan's window from
/// 4 096 to its floor after a half-second overrun, where it then crawled
/// at ~30 probes/s for minutes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window {
    cwnd: f64,
    ssthresh: f64,
    floor: f64,
    max: f64,
    last_cut: Option<Instant>,
    cuts: u64,
    /// Answers and drops in the current round, and its length: the window
    /// when it began (at least [`MIN_ROUND`]).
    round: u32,
    round_drops: u32,
    round_len: u32,
}

impl Window {
    /// A window at its initial size.
    pub fn new(p: WindowParams) -> Window {
        let max = p.max.max(1) as f64;
        let floor = (p.floor.max(1) as f64).min(max);
        let cwnd = (p.initial as f64).clamp(floor, max);
        Window {
            cwnd,
            ssthresh: max,
            floor,
            max,
            last_cut: None,
            cuts: 0,
            round: 0,
            round_drops: 0,
            // The window's round, not the asked-for start's: a start above
            // the cap (1 024 asked, 16 allowed) made a first round of 1 024
            // signals that a small scan never finished, so it never cut.
            round_len: Self::round_len(cwnd),
        }
    }

    fn round_len(cwnd: f64) -> u32 {
        (cwnd as u32).max(MIN_ROUND)
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

    /// Takes what ended one probe at `now`; `background` is the share of
    /// tries the path loses anyway (the scan's measured loss).
    pub fn on(&mut self, signal: Signal, now: Instant, background: f64) {
        match signal {
            Signal::Silence => return,
            Signal::Answer => self.round += 1,
            Signal::Drop(sent) => {
                self.round += 1;
                // A probe lost before the last cut: that event was answered.
                if self.last_cut.is_none_or(|cut| sent >= cut) {
                    self.round_drops += 1;
                }
            }
        }
        if self.round >= self.round_len {
            let lossy = f64::from(self.round_drops) > tolerated_drops(self.round, background);
            self.round = 0;
            self.round_drops = 0;
            if lossy {
                self.cut(now);
            }
            self.round_len = Self::round_len(self.cwnd);
            if lossy {
                return;
            }
        }
        if signal == Signal::Answer {
            // Slow start: +1 per answer (doubles per round trip);
            // congestion avoidance: +1 per window's worth of answers.
            let inc = if self.slow_start() {
                1.0
            } else {
                1.0 / self.cwnd
            };
            self.cwnd = (self.cwnd + inc).min(self.max);
        }
    }

    /// Multiplicative decrease.
    fn cut(&mut self, now: Instant) {
        self.ssthresh = (self.cwnd / 2.0).max(self.floor);
        self.cwnd = self.ssthresh;
        self.last_cut = Some(now);
        self.cuts += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

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
            w.on(Signal::Answer, t, 0.0);
        }
        assert_eq!(w.allowed(), 20);
        for _ in 0..1000 {
            w.on(Signal::Answer, t, 0.0);
        }
        assert_eq!(w.allowed(), 100, "never above --concurrency");
    }

    /// Runs one round: `n` probes of which `drops` were dropped (sent at
    /// `sent`), the path losing `background` anyway.
    fn round(w: &mut Window, n: usize, drops: usize, sent: Instant, now: Instant, background: f64) {
        // Drops spread evenly over the round.
        let every = n.checked_div(drops).unwrap_or(usize::MAX);
        for i in 0..n {
            let s = if drops > 0 && i % every == 0 && i / every < drops {
                Signal::Drop(sent)
            } else {
                Signal::Answer
            };
            w.on(s, now, background);
        }
    }

    #[test]
    fn a_lossy_round_halves_once_then_growth_is_linear() {
        let t = Instant::now();
        let mut w = window(64, 2, 1000);
        // A round is the 64 probes of the first window; 20 of them dropped.
        round(&mut w, 63, 20, t, t, 0.0);
        assert_eq!(w.cuts(), 0, "not before the round ends");
        let before = w.allowed();
        w.on(Signal::Answer, t, 0.0);
        assert_eq!((w.allowed(), w.cuts()), (before / 2, 1));
        // Congestion avoidance: a window's worth of answers adds one.
        let n = w.allowed();
        round(&mut w, n + 1, 0, t, t + MS(60), 0.0);
        assert_eq!(w.allowed(), n + 1);
        // Drops of probes sent after the cut: a new event.
        let n = w.allowed();
        round(&mut w, n, n, t + MS(100), t + MS(200), 0.0);
        assert_eq!((w.allowed(), w.cuts()), (n / 2, 2));
    }

    /// A half-second overrun of a lossy path: the answers to the retries
    /// of the probes it lost kept coming for seconds, each round of them
    /// was taken for a new congestion event, and the window fell from
    /// 4 096 to its floor.
    #[test]
    fn drops_of_probes_sent_before_the_last_cut_do_not_cut_again() {
        let t = Instant::now();
        let mut w = window(4096, 2, 4096);
        round(&mut w, 4096, 2000, t, t + MS(1000), 0.1);
        assert_eq!((w.allowed(), w.cuts()), (2048, 1));
        // Rounds of the same event's retries, answered later.
        for i in 0..20 {
            round(&mut w, 2048, 1000, t + MS(i), t + MS(1100 + 200 * i), 0.1);
        }
        assert_eq!(w.cuts(), 1);
        assert!(w.allowed() >= 2048, "{}", w.allowed());
    }

    #[test]
    fn background_loss_does_not_cut() {
        let t = Instant::now();
        let mut w = window(100, 2, 10_000);
        for i in 0..50 {
            // 10 % of every round lost: the lossy profile's random loss.
            let n = w.allowed();
            let now = t + MS(200 * i);
            round(&mut w, n, n / 10, now, now, 0.1);
        }
        assert_eq!(w.cuts(), 0);
        assert_eq!(w.allowed(), 10_000);
    }

    /// At its floor a window's round was two answers, and one chance loss
    /// in two (9.75 % per try on netsim's lossy profile, about one round
    /// in five) cut it again: it never grew back.
    #[test]
    fn a_window_at_its_floor_grows_back_through_chance_loss() {
        let t = Instant::now();
        let mut w = window(2, 2, 4096);
        let mut j = 0u64;
        for i in 0..400u64 {
            // A round trip's worth of answers; one in ten a drop.
            let now = t + MS(100 * i);
            for _ in 0..w.allowed() {
                j += 1;
                let s = if j % 10 == 3 {
                    Signal::Drop(now)
                } else {
                    Signal::Answer
                };
                w.on(s, now, 0.0975);
            }
        }
        assert_eq!(w.cuts(), 0);
        assert!(w.allowed() > 1000, "{}", w.allowed());
    }

    #[test]
    fn tolerated_drops_follow_the_background_loss() {
        // No background: an eighth of the round.
        assert_eq!(tolerated_drops(64, 0.0), 8.0);
        // 9.75 %: 32 answers may hold 8.2 drops by chance, 4 096 hold 512.
        assert!((tolerated_drops(32, 0.0975) - 8.15).abs() < 0.05);
        assert_eq!(tolerated_drops(4096, 0.0975), 512.0);
        // A path losing a third anyway: a cut needs well over a third.
        assert!(tolerated_drops(1000, 0.33) > 370.0);
    }

    #[test]
    fn silence_changes_nothing_and_the_floor_holds() {
        let t = Instant::now();
        let mut w = window(8, 4, 100);
        for _ in 0..100 {
            w.on(Signal::Silence, t, 0.0);
        }
        assert_eq!(w.allowed(), 8);
        for i in 0..10 {
            let now = t + MS(1000 * i);
            round(&mut w, 32, 32, now, now, 0.0);
        }
        assert_eq!(w.allowed(), 4);
    }

    /// `--concurrency 16` with the templates' 1 024-probe start: the first
    /// round was 1 024 signals long, and a 300-port scan losing a third of
    /// its SYNs never finished it, so its window was never cut.
    #[test]
    fn a_start_above_the_cap_judges_its_first_round_at_the_cap() {
        let t = Instant::now();
        let mut w = window(1024, 2, 16);
        assert_eq!(w.allowed(), 16);
        round(&mut w, 32, 16, t, t, 0.0);
        assert_eq!((w.allowed(), w.cuts()), (8, 1));
    }

    #[test]
    fn bounds_are_consistent_whatever_is_asked() {
        let w = window(0, 0, 0);
        assert_eq!(w.allowed(), 1);
        let w = window(500, 50, 10);
        assert_eq!(w.allowed(), 10);
    }
}
