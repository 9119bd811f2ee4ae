//! Hosts that limit their RSTs: telling them from filtered hosts, and
//! pacing them once told.
//!
//! Many hosts and firewalls send at most so many RSTs a second and drop the
//! SYNs they would have refused beyond that: the ports look filtered, and a
//! retry in the same second meets the same spent budget. Nothing in the
//! answers of that second tells such a host from one whose firewall drops
//! most ports; only an attempt made after the budget refills does. So:
//!
//! 1. **Held silence.** A port's final silence is held, not reported, when
//!    its host refused [`MIN_REFUSED`] attempts and no attempt launched
//!    after this port's first was refused (the host's answers stopped).
//!    A held port is reported filtered as soon as a later-launched
//!    attempt is refused (the streak broke) or its host has nothing else
//!    in flight.
//! 2. **A test.** When [`STREAK`] such silences are held, the one that
//!    made the streak is tried once more, [`TEST_AFTER`] after its first
//!    attempt went out (a budget of so many a second has refilled by
//!    then), and again [`TEST_AFTER`] later if that went unanswered ([`TESTS`]
//!    in all). Meanwhile the host is paced as if limited.
//! 3. **The verdict.** An answer to the test: the host limits its RSTs;
//!    every held port gets one more attempt, and every launch to the host
//!    waits its turn, at three quarters of the RSTs it sent in its busiest
//!    second. Silence: the host filters; its held ports are reported, and
//!    it is never suspected again.
//!
//! A wrong suspicion costs one host a second; the evidence needed (a dozen
//! refusals, then two dozen ports silent on every try with none refused
//! after) does not come from a path's loss, which answers a retry, nor
//! from a burst of it. Each probe machine judges the hosts it probes with
//! what it saw of them.

use std::time::{Duration, Instant};

/// Refusals a host gives before its silences are held.
pub const MIN_REFUSED: u16 = 4;
/// Held silences that make a host suspected of a limit, and tested.
pub const STREAK: u16 = 16;
/// How long after its first attempt the test goes out.
pub const TEST_AFTER: Duration = Duration::from_millis(1100);
/// Tests a host gets before it is cleared.
pub const TESTS: u8 = 2;
/// The share of the host's busiest second of RSTs it is paced at.
const PACE_SHARE: f64 = 0.75;

/// What becomes of a port whose every attempt went unanswered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Silence {
    /// Report it (filtered).
    Report,
    /// Hold it: ask again ([`RstWatch::recheck`]) a little later.
    Hold,
    /// It is its host's test: try it once more at this time.
    Test(Instant),
}

/// What becomes of a held port, asked again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held {
    /// Still undecided: hold it.
    Hold,
    /// Report it (filtered).
    Report,
    /// Its host limits its RSTs: one more attempt, paced.
    Retry,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum State {
    #[default]
    Watching,
    Testing,
    Limited,
    /// Tested and found filtering: never suspected again.
    Cleared,
}

/// One host's RSTs and silences, its state, and its pace.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RstWatch {
    state: State,
    refused: u16,
    /// The latest launch of an attempt that was refused.
    last_refused_launch: Option<Instant>,
    /// Refusals in the current second (from `second`) and the busiest
    /// one before it.
    second: Option<Instant>,
    this_second: u16,
    busiest: u16,
    /// Silences held now, and those of them that make the streak.
    held: u16,
    streak: u16,
    /// Tests that went unanswered.
    tests: u8,
    /// Time between launches while testing or limited.
    delay: Duration,
    /// The next free launch turn.
    next: Option<Instant>,
}

impl RstWatch {
    /// An attempt launched at `launched` was refused (an RST) at `now`.
    pub fn refused(&mut self, launched: Instant, now: Instant) {
        self.refused = self.refused.saturating_add(1);
        match self.second {
            Some(start) if now < start + Duration::from_secs(1) => self.this_second += 1,
            _ => {
                self.busiest = self.busiest.max(self.this_second);
                self.second = Some(now);
                self.this_second = 1;
            }
        }
        if self.last_refused_launch.is_none_or(|last| launched > last) {
            self.last_refused_launch = Some(launched);
            // The held silences launched before it are reported at their
            // next look.
            self.streak = 0;
        }
    }

    /// A port first tried at `first` went unanswered on every attempt.
    pub fn silent(&mut self, first: Instant) -> Silence {
        match self.state {
            State::Cleared | State::Limited => return Silence::Report,
            State::Testing => {
                self.held += 1;
                return Silence::Hold;
            }
            State::Watching => {}
        }
        let after_answers = self.last_refused_launch.is_some_and(|last| first > last);
        if self.refused < MIN_REFUSED || !after_answers {
            return Silence::Report;
        }
        self.held += 1;
        self.streak += 1;
        if self.streak < STREAK {
            return Silence::Hold;
        }
        self.state = State::Testing;
        self.delay = self.pace_delay();
        Silence::Test(first + TEST_AFTER)
    }

    /// A held port first tried at `first`, asked again; `in_flight` is its
    /// host's probes in flight, held ones included.
    pub fn recheck(&mut self, first: Instant, in_flight: u32) -> Held {
        let verdict = match self.state {
            State::Testing => Held::Hold,
            State::Limited => Held::Retry,
            State::Cleared => Held::Report,
            State::Watching => {
                let broken = self.last_refused_launch.is_some_and(|last| first <= last);
                let idle = in_flight <= u32::from(self.held);
                if broken || idle {
                    Held::Report
                } else {
                    Held::Hold
                }
            }
        };
        if verdict != Held::Hold {
            self.held = self.held.saturating_sub(1);
            if self.state == State::Watching {
                self.streak = self.streak.min(self.held);
            }
        }
        verdict
    }

    /// The test was answered: the host limits its RSTs.
    pub fn test_answered(&mut self) {
        self.state = State::Limited;
    }

    /// The test went unanswered: `true` if the host filters those ports,
    /// `false` to test once more (another probe machine pacing the same
    /// host may have spent the second's budget: each sees its own part of
    /// a host's probes).
    pub fn test_silent(&mut self) -> bool {
        self.tests += 1;
        if self.tests < TESTS {
            return false;
        }
        self.state = State::Cleared;
        self.delay = Duration::ZERO;
        self.next = None;
        true
    }

    /// A launch to the host at `now` takes the next turn: `None` to go at
    /// once, else the later time it is given (held for it: the next asker
    /// gets the one after).
    pub fn turn(&mut self, now: Instant) -> Option<Instant> {
        if self.delay.is_zero() {
            return None;
        }
        let turn = self.next.filter(|&t| t > now).unwrap_or(now);
        self.next = Some(turn + self.delay);
        (turn > now).then_some(turn)
    }

    /// Three quarters of the RSTs of the host's busiest second, as a time
    /// between launches.
    fn pace_delay(&self) -> Duration {
        let per_second = f64::from(self.busiest.max(self.this_second).max(1));
        Duration::from_secs_f64(1.0 / (per_second * PACE_SHARE))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// A host that refused `n` attempts launched 1 ms apart from `t0`,
    /// all answered at 30 ms.
    fn refused(n: u32) -> (Instant, RstWatch) {
        let t0 = Instant::now();
        let mut w = RstWatch::default();
        for i in 0..n {
            w.refused(t0 + i * MS, t0 + 30 * MS);
        }
        (t0, w)
    }

    /// 30 refusals in the first 15 ms, then 20 ports silent on every
    /// try: the sixteenth silence is the test, 1.1 s after its first
    /// attempt; its answer makes the host limited, and the held ports are
    /// retried at 22.5 a second.
    #[test]
    fn refusals_then_silence_are_tested_and_an_answer_paces_the_host() {
        let t0 = Instant::now();
        let mut w = RstWatch::default();
        for i in 0..30 {
            w.refused(t0 + i * MS / 2, t0 + 20 * MS + i * MS / 2);
        }
        let first = |i: u32| t0 + 15 * MS + i * MS;
        for i in 0..15 {
            assert_eq!(w.silent(first(i)), Silence::Hold, "silence {i}");
        }
        assert_eq!(w.silent(first(15)), Silence::Test(first(15) + TEST_AFTER));
        assert_eq!(w.recheck(first(0), 70), Held::Hold, "testing");
        assert_eq!(w.turn(t0), None);
        assert_eq!(w.turn(t0), Some(t0 + Duration::from_secs_f64(1.0 / 22.5)));
        w.test_answered();
        assert_eq!(w.state, State::Limited);
        assert_eq!(w.recheck(first(0), 70), Held::Retry);
        assert_eq!(w.silent(first(20)), Silence::Report, "its retry was paced");
    }

    /// The same, but the test goes unanswered twice: the held ports are
    /// reported and the host is never suspected again.
    #[test]
    fn a_silent_test_clears_the_host_for_good() {
        let (t0, mut w) = refused(10);
        for i in 0..16 {
            w.silent(t0 + (20 + i) * MS);
        }
        assert!(!w.test_silent(), "tested once more");
        assert_eq!(w.recheck(t0 + 20 * MS, 40), Held::Hold);
        assert!(w.test_silent());
        assert_eq!(w.recheck(t0 + 20 * MS, 40), Held::Report);
        assert_eq!(w.turn(t0), None, "no pace");
        assert_eq!(w.silent(t0 + 90 * MS), Silence::Report);
    }

    /// A refusal to an attempt launched later breaks the streak: the held
    /// ports launched before it are reported.
    #[test]
    fn a_later_refusal_releases_the_held_silences() {
        let (t0, mut w) = refused(10);
        for i in 0..5 {
            assert_eq!(w.silent(t0 + (20 + i) * MS), Silence::Hold);
        }
        w.refused(t0 + 40 * MS, t0 + 60 * MS);
        for i in 0..5 {
            assert_eq!(w.recheck(t0 + (20 + i) * MS, 50), Held::Report);
        }
        assert_eq!(w.silent(t0 + 50 * MS), Silence::Hold, "a new streak");
    }

    /// A host that has nothing in flight but its held ports has no more to
    /// say: they are reported.
    #[test]
    fn held_silences_of_an_idle_host_are_reported() {
        let (t0, mut w) = refused(10);
        for i in 0..3 {
            w.silent(t0 + (20 + i) * MS);
        }
        assert_eq!(w.recheck(t0 + 20 * MS, 4), Held::Hold, "one more in flight");
        assert_eq!(w.recheck(t0 + 21 * MS, 2), Held::Report);
    }

    /// Too few refusals, or silences launched before the last refusal:
    /// reported at once.
    #[test]
    fn silence_without_the_pattern_is_reported_at_once() {
        let (t0, mut w) = refused(3);
        assert_eq!(w.silent(t0 + 50 * MS), Silence::Report, "three refusals");
        w.refused(t0 + 60 * MS, t0 + 80 * MS);
        assert_eq!(w.silent(t0 + 50 * MS), Silence::Report, "launched before");
        assert_eq!(w.silent(t0 + 70 * MS), Silence::Hold);
    }
}
