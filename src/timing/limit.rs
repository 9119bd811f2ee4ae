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
//!    in flight. Two exceptions keep it held: a *refill* (refusals, then
//!    [`REFILL_STREAK`] held silences, then refusals again at least
//!    [`REFILL_GAP`] after: the budget came back, so later refusals say
//!    nothing of the silences), and a port first launched inside such a
//!    gap. A port whose first attempt went out while the host answered
//!    and whose last went out after is held too, judged from its last
//!    attempt (its first SYN was lost, its retry met the spent budget).
//! 2. **A test.** When [`STREAK`] such silences are held, or
//!    [`IDLE_STREAK`] with nothing else of the host in flight (once it
//!    refilled, held ports of any kind count), the one that
//!    made the streak and the next silences, [`TEST_PORTS`] ports in all,
//!    are tried once more, [`TEST_AFTER`] after their first attempts went
//!    out (a budget of so many a second has refilled by then), and again
//!    [`TEST_AFTER`] later if that went unanswered ([`TESTS`] rounds in
//!    all). Several ports, because a port held among a limited host's
//!    closed ones may be one it filters. Meanwhile the host is paced as if
//!    limited.
//! 3. **The verdict.** An answer to any test: the host limits its RSTs;
//!    every held port, and every test port still silent, gets one more
//!    attempt, and every launch to the host waits its turn, at three
//!    quarters of the RSTs it sent in its busiest second. Every round of
//!    every test silent: the host filters; its held ports are reported,
//!    and it is never suspected again.
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
/// Held silences, and the time between the launches of the refusals
/// around them, that show a host's refusals came back after a silence (a
/// budget of so many a second refilled).
pub const REFILL_STREAK: u16 = 2;
/// See [`REFILL_STREAK`].
pub const REFILL_GAP: Duration = Duration::from_millis(200);
/// Held silences that make a host with nothing else in flight tested.
pub const IDLE_STREAK: u16 = 8;
/// How long after its first attempt the test goes out.
pub const TEST_AFTER: Duration = Duration::from_millis(1100);
/// Ports a suspected host is tested with.
pub const TEST_PORTS: u8 = 4;
/// Rounds of tests a port gets before its host is cleared.
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
    /// Hold it, judged from its last attempt: its first went out while
    /// its host still answered (and was lost, or filtered), its last
    /// after the host's answers stopped. It makes no streak.
    HoldLast,
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
    /// It tests its host: try it once more at this time.
    Test(Instant),
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
    /// Its refusals stopped for a while, with silences held, and came
    /// back: its held silences are no longer released by refusals.
    refilled: bool,
    /// The latest long gap between the launches of refused attempts.
    quiet: Option<(Instant, Instant)>,
    /// Silences held now, and those of them that make the streak.
    held: u16,
    /// Probes parked (held, or waiting for their test's time): in flight,
    /// but taking no room in the host's window.
    parked: u16,
    streak: u16,
    /// Ports testing the host, and their rounds that went unanswered.
    testers: u8,
    silent_tests: u8,
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
        let Some(last) = self.last_refused_launch else {
            self.last_refused_launch = Some(launched);
            return;
        };
        if launched <= last {
            return;
        }
        self.last_refused_launch = Some(launched);
        if self.refilled {
            return;
        }
        let gap = launched >= last + REFILL_GAP;
        if gap && self.streak >= REFILL_STREAK {
            // Refusals, silence, refusals again: a budget refilled. Every
            // silence is held from now on, until the host is tested.
            self.refilled = true;
            return;
        }
        if gap {
            // The silences of the gap may still be to come (each waits its
            // timeout): they are held, and make the refill when enough.
            self.quiet = Some((last, launched));
        }
        // The held silences launched before it are reported at their next
        // look.
        self.streak = 0;
    }

    /// Whether an attempt first launched at `first` went out in the latest
    /// long gap between the launches of refused attempts.
    fn in_quiet(&self, first: Instant) -> bool {
        self.quiet
            .is_some_and(|(from, to)| from < first && first < to)
    }

    /// A port tried first at `first` and last at `last` went unanswered
    /// on every attempt.
    pub fn silent(&mut self, first: Instant, last: Instant) -> Silence {
        match self.state {
            State::Cleared | State::Limited => return Silence::Report,
            State::Testing if self.testers < TEST_PORTS => {
                self.testers += 1;
                return Silence::Test(first + TEST_AFTER);
            }
            State::Testing => {
                self.held += 1;
                return Silence::Hold;
            }
            State::Watching => {}
        }
        let after_answers =
            self.refilled || self.last_refused_launch.is_some_and(|last| first > last);
        let quiet = !after_answers && self.in_quiet(first);
        if self.refused < MIN_REFUSED {
            return Silence::Report;
        }
        if !(after_answers || quiet) {
            let last_after = self.last_refused_launch.is_some_and(|l| last > l);
            if last_after || self.in_quiet(last) {
                self.held += 1;
                return Silence::HoldLast;
            }
            return Silence::Report;
        }
        self.held += 1;
        self.streak += 1;
        if quiet && self.streak >= REFILL_STREAK {
            self.refilled = true;
        }
        if self.streak < STREAK {
            return Silence::Hold;
        }
        self.test();
        Silence::Test(first + TEST_AFTER)
    }

    /// The host is suspected: one port tests it, and it is paced.
    fn test(&mut self) {
        self.state = State::Testing;
        self.testers = 1;
        self.delay = self.pace_delay();
    }

    /// A probe of the host is parked (held, or waiting for its test's
    /// time) or leaves its parking.
    pub fn park(&mut self) {
        self.parked = self.parked.saturating_add(1);
    }

    /// See [`RstWatch::park`].
    pub fn unpark(&mut self) {
        self.parked = self.parked.saturating_sub(1);
    }

    /// Probes of the host parked now.
    pub fn parked(&self) -> u32 {
        u32::from(self.parked)
    }

    /// A held port first tried at `first`, asked again; `in_flight` is its
    /// host's probes in flight, parked ones included.
    pub fn recheck(&mut self, first: Instant, in_flight: u32) -> Held {
        let verdict = match self.state {
            State::Testing if self.testers < TEST_PORTS => {
                self.testers += 1;
                Held::Test(first + TEST_AFTER)
            }
            State::Testing => Held::Hold,
            State::Limited => Held::Retry,
            State::Cleared => Held::Report,
            State::Watching => {
                let broken = !self.refilled
                    && !self.in_quiet(first)
                    && self.last_refused_launch.is_some_and(|last| first <= last);
                let idle = in_flight <= self.parked();
                if broken {
                    Held::Report
                } else if idle
                    && (self.streak >= IDLE_STREAK || self.refilled && self.held >= IDLE_STREAK)
                {
                    self.test();
                    Held::Test(first + TEST_AFTER)
                } else if idle {
                    Held::Report
                } else {
                    Held::Hold
                }
            }
        };
        if !matches!(verdict, Held::Hold | Held::Test(_)) {
            self.held = self.held.saturating_sub(1);
            if self.state == State::Watching {
                self.streak = self.streak.min(self.held);
            }
        }
        verdict
    }

    /// A test was answered: the host limits its RSTs. `true` if this
    /// answer told it (the first of its tests answered).
    pub fn test_answered(&mut self) -> bool {
        let told = self.state == State::Testing;
        if told {
            self.state = State::Limited;
        }
        told
    }

    /// A round of a test went unanswered: [`Held::Hold`] to test the port
    /// once more (another probe machine pacing the same host may have
    /// spent the second's budget: each sees its own part of a host's
    /// probes), [`Held::Retry`] if another test found the host limited,
    /// [`Held::Report`] when every round of every test was silent (the
    /// host filters) or the host was cleared.
    pub fn test_silent(&mut self) -> Held {
        match self.state {
            State::Limited => return Held::Retry,
            State::Testing => {}
            State::Watching | State::Cleared => return Held::Report,
        }
        self.silent_tests += 1;
        if self.silent_tests < TESTS * self.testers {
            return Held::Hold;
        }
        self.state = State::Cleared;
        self.delay = Duration::ZERO;
        self.next = None;
        Held::Report
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

    impl RstWatch {
        /// A port tried once, at `at`, went unanswered.
        fn silent_once(&mut self, at: Instant) -> Silence {
            self.silent(at, at)
        }
    }

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
            assert_eq!(w.silent_once(first(i)), Silence::Hold, "silence {i}");
        }
        assert_eq!(
            w.silent_once(first(15)),
            Silence::Test(first(15) + TEST_AFTER)
        );
        for i in 0..3 {
            let test = Held::Test(first(i) + TEST_AFTER);
            assert_eq!(w.recheck(first(i), 70), test, "a held port tests it too");
        }
        assert_eq!(w.recheck(first(3), 70), Held::Hold, "four test it");
        assert_eq!(w.turn(t0), None);
        assert_eq!(w.turn(t0), Some(t0 + Duration::from_secs_f64(1.0 / 22.5)));
        assert!(w.test_answered());
        assert_eq!(w.state, State::Limited);
        assert!(!w.test_answered(), "told once");
        assert_eq!(w.recheck(first(0), 70), Held::Retry);
        assert_eq!(
            w.silent_once(first(20)),
            Silence::Report,
            "its retry was paced"
        );
    }

    /// The same, but the one test port goes unanswered twice: the held
    /// ports are reported and the host is never suspected again.
    #[test]
    fn a_silent_test_clears_the_host_for_good() {
        let (t0, mut w) = refused(10);
        for i in 0..16 {
            w.silent_once(t0 + (20 + i) * MS);
        }
        assert_eq!(w.test_silent(), Held::Hold, "tested once more");
        assert_eq!(w.test_silent(), Held::Report);
        assert_eq!(w.recheck(t0 + 20 * MS, 40), Held::Report);
        assert_eq!(w.turn(t0), None, "no pace");
        assert_eq!(w.silent_once(t0 + 90 * MS), Silence::Report);
    }

    /// The silences after the one that made the streak test the host too,
    /// up to `TEST_PORTS`: one answer makes it limited (and the other
    /// tests still silent are retried paced); it is cleared only when
    /// every round of every test is silent.
    #[test]
    fn several_ports_test_a_host() {
        let (t0, mut w) = refused(10);
        let first = |i: u32| t0 + (20 + i) * MS;
        for i in 0..15 {
            assert_eq!(w.silent_once(first(i)), Silence::Hold);
        }
        for i in 15..19 {
            assert_eq!(
                w.silent_once(first(i)),
                Silence::Test(first(i) + TEST_AFTER)
            );
        }
        assert_eq!(
            w.silent_once(first(19)),
            Silence::Hold,
            "four ports test it"
        );
        let mut cleared = w;
        for round in 1..8 {
            assert_eq!(cleared.test_silent(), Held::Hold, "round {round}");
        }
        assert_eq!(cleared.test_silent(), Held::Report);
        assert_eq!(cleared.recheck(first(0), 40), Held::Report);

        assert_eq!(w.test_silent(), Held::Hold);
        assert!(w.test_answered());
        assert_eq!(w.test_silent(), Held::Retry, "a filtered tester, retried");
        assert_eq!(w.recheck(first(0), 40), Held::Retry);
    }

    /// A refusal to an attempt launched later breaks the streak: the held
    /// ports launched before it are reported.
    #[test]
    fn a_later_refusal_releases_the_held_silences() {
        let (t0, mut w) = refused(10);
        for i in 0..5 {
            assert_eq!(w.silent_once(t0 + (20 + i) * MS), Silence::Hold);
        }
        w.refused(t0 + 40 * MS, t0 + 60 * MS);
        for i in 0..5 {
            assert_eq!(w.recheck(t0 + (20 + i) * MS, 50), Held::Report);
        }
        assert_eq!(w.silent_once(t0 + 50 * MS), Silence::Hold, "a new streak");
    }

    /// A host that has nothing in flight but its held ports has no more to
    /// say: they are reported.
    #[test]
    fn held_silences_of_an_idle_host_are_reported() {
        let (t0, mut w) = refused(10);
        for i in 0..3 {
            w.silent_once(t0 + (20 + i) * MS);
            w.park();
        }
        assert_eq!(w.recheck(t0 + 20 * MS, 4), Held::Hold, "one more in flight");
        w.unpark();
        assert_eq!(w.recheck(t0 + 21 * MS, 2), Held::Report);
    }

    /// Too few refusals, or silences launched before the last refusal:
    /// reported at once.
    #[test]
    fn silence_without_the_pattern_is_reported_at_once() {
        let (t0, mut w) = refused(3);
        assert_eq!(
            w.silent_once(t0 + 50 * MS),
            Silence::Report,
            "three refusals"
        );
        w.refused(t0 + 60 * MS, t0 + 80 * MS);
        assert_eq!(
            w.silent_once(t0 + 50 * MS),
            Silence::Report,
            "launched before"
        );
        assert_eq!(w.silent_once(t0 + 70 * MS), Silence::Hold);
    }

    /// A host with nothing in flight but its held ports, and at least
    /// `IDLE_STREAK` of them: tested, not reported (a probe machine sees
    /// only its part of a host, and so fewer silences than `STREAK`).
    #[test]
    fn an_idle_host_with_enough_held_silences_is_tested() {
        let (t0, mut w) = refused(10);
        let first = |i: u32| t0 + (20 + i) * MS;
        for i in 0..IDLE_STREAK.into() {
            assert_eq!(w.silent_once(first(i)), Silence::Hold);
            w.park();
        }
        let parked = w.parked();
        assert_eq!(w.recheck(first(0), parked + 1), Held::Hold, "not idle");
        assert_eq!(
            w.recheck(first(0), parked),
            Held::Test(first(0) + TEST_AFTER)
        );
        assert_eq!(w.state, State::Testing);
        assert_eq!(
            w.recheck(first(1), parked),
            Held::Test(first(1) + TEST_AFTER),
            "more ports test it"
        );
    }

    /// Refusals, held silences, then refusals again `REFILL_GAP` later:
    /// the host's budget refilled, and its held silences stay held (the
    /// later refusals no longer release them), as do silences launched
    /// before those refusals.
    #[test]
    fn a_refill_keeps_the_silences_held() {
        let (t0, mut w) = refused(10);
        for i in 0..2 {
            assert_eq!(w.silent_once(t0 + (20 + i) * MS), Silence::Hold);
        }
        w.refused(t0 + 300 * MS, t0 + 330 * MS);
        assert_eq!(w.recheck(t0 + 20 * MS, 40), Held::Hold, "not released");
        assert_eq!(w.silent_once(t0 + 100 * MS), Silence::Hold);
        w.refused(t0 + 400 * MS, t0 + 430 * MS);
        assert_eq!(w.recheck(t0 + 21 * MS, 40), Held::Hold);
    }

    /// Without held silences yet, a refusal after a long gap only marks
    /// the gap: silences launched in it are held (they are still waiting
    /// their timeouts when it comes), and make the refill when enough;
    /// those launched before it are reported.
    #[test]
    fn silences_in_a_quiet_gap_are_held() {
        let (t0, mut w) = refused(10);
        w.refused(t0 + 300 * MS, t0 + 330 * MS);
        assert_eq!(w.silent_once(t0 + 5 * MS), Silence::Report, "before");
        assert_eq!(w.silent_once(t0 + 50 * MS), Silence::Hold);
        assert!(!w.refilled, "one silence");
        assert_eq!(w.silent_once(t0 + 60 * MS), Silence::Hold);
        assert!(w.refilled);
        w.refused(t0 + 400 * MS, t0 + 430 * MS);
        assert_eq!(w.recheck(t0 + 50 * MS, 40), Held::Hold, "not released");
    }

    /// A port first tried while its host still answered, and last tried
    /// after its answers stopped, is held from its last attempt; it makes
    /// no streak. One tried only while the host answered is reported.
    #[test]
    fn a_port_lost_first_and_silent_after_is_held_from_its_last_try() {
        let (t0, mut w) = refused(10);
        assert_eq!(w.silent(t0 + 5 * MS, t0 + 8 * MS), Silence::Report);
        for i in 0..u32::from(STREAK) {
            let last = t0 + (50 + i) * MS;
            assert_eq!(w.silent(t0 + 5 * MS, last), Silence::HoldLast);
        }
        assert_eq!(w.streak, 0, "no streak, so no test");
        assert_eq!(w.recheck(t0 + 50 * MS, 40), Held::Hold, "from its last");
        w.refused(t0 + 60 * MS, t0 + 90 * MS);
        assert_eq!(w.recheck(t0 + 50 * MS, 40), Held::Report, "released");
    }

    /// A host that refilled goes idle with eight held ports, most held from
    /// their last try (so its streak is short): tested, not reported.
    #[test]
    fn an_idle_refilled_host_is_tested_on_its_held_ports() {
        let (t0, mut w) = refused(10);
        for i in 0..6 {
            let last = t0 + (50 + i) * MS;
            assert_eq!(w.silent(t0 + 5 * MS, last), Silence::HoldLast);
        }
        for i in 0..2 {
            assert_eq!(w.silent_once(t0 + (20 + i) * MS), Silence::Hold);
        }
        w.refused(t0 + 300 * MS, t0 + 330 * MS);
        assert!(w.refilled);
        for _ in 0..8 {
            w.park();
        }
        assert_eq!((w.held, w.streak), (8, 2));
        let first = t0 + 50 * MS;
        assert_eq!(w.recheck(first, 9), Held::Hold, "not idle");
        assert_eq!(w.recheck(first, 8), Held::Test(first + TEST_AFTER));
    }
}
