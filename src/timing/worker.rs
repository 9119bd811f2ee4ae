//! One probe machine's adaptive timing ([`WorkerTiming`]): the scan-wide
//! estimate, window and retry evidence (this machine's share of them), and
//! the per-host table, tied together. The machine asks it how long an
//! attempt waits, how many retries a probe gets, and whether a host has
//! room; it tells it every answer and every silence.

use std::time::{Duration, Instant};

use super::KERNEL_SYN_RTO;
use super::hosts::HostTimingTable;
use super::limit::{Held, Silence};
use super::rtt::RttEstimator;
use super::settings::{AdaptiveTiming, retry_doubling};
use super::summary::TimingSummary;
use super::window::{Signal, Window, WindowParams};

/// Samples a host needs before its own estimate replaces the scan's.
pub const HOST_SAMPLES: u32 = 3;
/// Slots of the per-host table of each probe machine (~100 bytes each).
pub const HOST_SLOTS: usize = 2048;
/// Doublings of an unknown host's timeout, at most.
const MAX_BACKOFF: u32 = 3;
/// How far past `--max-rtt-timeout` a retry, or a host measured farther,
/// may wait ([`WorkerTiming::timeout`]).
pub const FAR_FACTOR: u32 = 3;
/// ... but never past this, unless `--max-rtt-timeout` is itself longer.
pub const FAR_CEILING: Duration = Duration::from_secs(10);
/// The most a known host's retry waits beyond its first attempt, once
/// answers have been seen coming late ([`RetryEvidence::seen_late`]).
const LATE_SLACK: Duration = Duration::from_millis(200);
/// ... and while none have: on a machine that keeps time, a steady far
/// host's retry needs no more than its first attempt's margin. With the
/// full slack, the retry of a 986 ms host's filtered port waited 1.34 s
/// and ended netsim's internet-like /22 scan.
const QUIET_SLACK: Duration = Duration::from_millis(50);
/// The share of answers after their known host's own timeout from which
/// the retries get [`LATE_SLACK`]: one in a thousand (quiet runs of
/// internet-like /22 see 0-5 in 49 000 per worker; a loaded one, with
/// netsim's timers 34 ms late at p99, over 1 %).
const LATE_SEEN_SHARE: f64 = 1e-3;
/// Probes of one host in flight at the start.
const HOST_WINDOW_INITIAL: usize = 64;
/// Probes of one host in flight, never fewer (a window's floor).
const HOST_WINDOW_FLOOR: usize = 2;

/// Retries a probe gets at least, once the scan's answers run late: on a
/// loaded machine answers come after their deadline, a retry with the
/// same timeout misses them again, and with the loss model's one retry
/// (internet-like's 1 %) one run reported 4 691 closed ports of 533 hosts
/// filtered (netsim's timers 200 ms late). A third chance catches them.
const LATE_MIN_RETRIES: u32 = 2;

/// The share of answers that may come late (after a known host's own
/// timeout) before the scan counts as running late: one in a hundred. A
/// retry waits longer than the first attempt (`LATE_SLACK`), so while
/// fewer than one answer in 100 outruns the first wait, those outrunning
/// the retry's too are of the order of the loss target. With one in a
/// thousand, a machine whose simulator's timers ran 43 ms late (p99) gave
/// every filtered port of internet-like a third try and ended a second
/// later, every state right with two.
const LATE_SHARE: f64 = 1e-2;

/// Answers the scan needs before its measured loss sets the retries of a
/// host it knows nothing of (before: nmap's one retry).
const LOSS_SAMPLES: u64 = 200;
/// How often an answering port may be missed on a host the scan has no
/// record of: retries are added until the measured loss, to the power of
/// the attempts, is below this.
const MISS_TARGET: f64 = 1e-4;

/// The scan's evidence on retries, for hosts without a record of their own
/// (untracked hosts): how many
/// answers came, how many only to a retry (a loss), and the highest try
/// that was answered.
#[derive(Debug, Clone, Copy, Default)]
struct RetryEvidence {
    answers: u64,
    lost: u64,
    max_ok_try: u32,
    /// Answers that came later than their known host's own timeout (an
    /// attempt still waiting: one launched before the host was known, or
    /// a retry's longer wait): the path, or this machine, runs late.
    late: u64,
}

impl RetryEvidence {
    fn answered(&mut self, needed: u32) {
        self.answers += 1;
        if needed > 0 {
            self.lost += 1;
        }
        self.max_ok_try = self.max_ok_try.max(needed);
    }

    /// Retries for a host the scan has no record of: enough that an
    /// answering port is missed less than once in 10 000 at the loss the
    /// scan measures (the share of answers that needed a retry), at least
    /// one (nmap's rule for a host that never needed one), never more than
    /// the scan ever needed plus one. The highest try answered anywhere
    /// alone gave a /20 scan's filtered ports on untracked hosts five
    /// attempts each, because somewhere one port had needed three.
    fn retries(&self, max_retries: u32) -> u32 {
        let by_loss = self.by_loss().unwrap_or(1);
        let wanted = by_loss.min(self.max_ok_try + 1).max(1);
        match self.runs_late() {
            true => max_retries.min(wanted.max(LATE_MIN_RETRIES)),
            false => max_retries.min(wanted),
        }
    }

    /// Whether answers come after known hosts' timeouts more than once in
    /// a hundred: then every probe gets at least [`LATE_MIN_RETRIES`].
    fn runs_late(&self) -> bool {
        self.late_beyond(LATE_SHARE)
    }

    /// Whether answers have been seen coming late more than once in a
    /// thousand, or the scan has too few answers to say they do not: then
    /// a known host's retry waits [`LATE_SLACK`] longer than its first
    /// attempt, else [`QUIET_SLACK`].
    fn seen_late(&self) -> bool {
        self.answers < LOSS_SAMPLES || self.late_beyond(LATE_SEEN_SHARE)
    }

    /// Whether more than `share` of the answers came late.
    fn late_beyond(&self, share: f64) -> bool {
        self.late as f64 > share * self.answers.max(1) as f64
    }

    /// The share of tries the path loses whatever the scan does: answers
    /// that came only to a retry, over all answers, starting from a prior
    /// of 1 % in 100 answers (the windows judge drops against it).
    fn background(&self) -> f64 {
        (self.lost as f64 + 1.0) / (self.answers as f64 + 100.0)
    }

    /// The retries the measured loss calls for (an answering port missed
    /// less than once in 10 000), once the scan has enough answers to say:
    /// `None` before.
    ///
    /// The loss is taken at the low end of what the answers show (the
    /// measured share less two standard errors): a retry is added only
    /// when the answers show it is needed, not on the measurement's noise.
    /// Internet-like loses 0.9975 % a try, where two tries miss an
    /// answering port just under once in 10⁴: its workers measured 0.958 %
    /// and 1.0009 % in one run, and the second gave every filtered port a
    /// third try, which held the scan's far hosts a second longer.
    fn by_loss(&self) -> Option<u32> {
        if self.answers < LOSS_SAMPLES {
            return None;
        }
        let n = self.answers as f64;
        let share = (self.lost as f64 / n).min(0.99);
        let loss = share - 2.0 * (share * (1.0 - share) / n).sqrt();
        if loss <= 0.0 {
            return Some(1);
        }
        // Smallest r with loss^(r+1) <= MISS_TARGET.
        Some((MISS_TARGET.ln() / loss.ln()).ceil().max(2.0) as u32 - 1)
    }
}

/// Which estimate and window a probe's host uses: a slot in the worker's
/// host table, or none (the host's bucket was busy: scan-wide only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostRef(u32);

impl HostRef {
    /// A probe whose host is not in the table: the scan-wide estimate applies.
    pub const UNTRACKED: HostRef = HostRef(u32::MAX);

    fn slot(self) -> Option<usize> {
        (self != HostRef::UNTRACKED).then_some(self.0 as usize)
    }
}

/// One probe machine's adaptive timing: the scan-wide estimate and
/// window (this worker's share of them), and its per-host table.
#[derive(Debug, Clone)]
pub struct WorkerTiming {
    params: AdaptiveTiming,
    max_retries: u32,
    scan_rtt: RttEstimator,
    scan_window: Window,
    scan_retries: RetryEvidence,
    host_window: WindowParams,
    hosts: HostTimingTable,
    karn_skipped: u64,
    /// Hosts found to limit their RSTs (sorted when read), and the extra
    /// attempts their held ports got.
    limited_hosts: Vec<u64>,
    limited_retries: u64,
}

impl WorkerTiming {
    /// `max_in_flight` is the worker's share of `--concurrency`.
    pub fn new(params: AdaptiveTiming, max_retries: u32, max_in_flight: usize) -> WorkerTiming {
        let max = max_in_flight.max(1);
        let host_window = WindowParams {
            initial: HOST_WINDOW_INITIAL,
            floor: HOST_WINDOW_FLOOR,
            max,
        };
        WorkerTiming {
            params,
            max_retries,
            scan_rtt: RttEstimator::new(),
            scan_window: Window::new(WindowParams {
                initial: params.initial_window,
                floor: HOST_WINDOW_FLOOR,
                max,
            }),
            scan_retries: RetryEvidence::default(),
            host_window,
            hosts: HostTimingTable::new(HOST_SLOTS, host_window),
            karn_skipped: 0,
            limited_hosts: Vec::new(),
            limited_retries: 0,
        }
    }

    /// Probes the scan-wide window allows in flight.
    pub fn window(&self) -> usize {
        self.scan_window.allowed()
    }

    /// A new probe of `host` wants to go out: its slot (now counting it in
    /// flight), or `None` if the host's own window is full (try later).
    pub fn enter(&mut self, host: u64) -> Option<HostRef> {
        let Some(slot) = self.hosts.claim(host, self.host_window) else {
            return Some(HostRef::UNTRACKED);
        };
        let s = self.hosts.get_mut(slot);
        let taking_room = s.in_flight - s.watch.parked().min(s.in_flight);
        if taking_room as usize >= s.window.allowed() {
            return None;
        }
        s.in_flight += 1;
        Some(HostRef(slot as u32))
    }

    /// A launch to `host` at `now`: `None` to go at once, else the turn
    /// its pace gives it (a host found, or being tested, to limit its
    /// RSTs: [`super::limit`]).
    pub fn pace(&mut self, host: HostRef, now: Instant) -> Option<Instant> {
        let slot = host.slot()?;
        self.hosts.get_mut(slot).watch.turn(now)
    }

    /// An attempt to `host` launched at `launched` was refused at `now`.
    pub fn refused(&mut self, host: HostRef, launched: Instant, now: Instant) {
        if let Some(slot) = host.slot() {
            self.hosts.get_mut(slot).watch.refused(launched, now);
        }
    }

    /// A probe to `host` tried at `first` and last at `last` went
    /// unanswered on every attempt: report it, hold it, or test its host
    /// with it.
    pub fn silence(&mut self, host: HostRef, first: Instant, last: Instant) -> Silence {
        match host.slot() {
            Some(slot) => self.hosts.get_mut(slot).watch.silent(first, last),
            None => Silence::Report,
        }
    }

    /// A held probe to `host`, first tried at `first`, asked again.
    pub fn recheck(&mut self, host: HostRef, first: Instant) -> Held {
        let Some(slot) = host.slot() else {
            return Held::Report;
        };
        let s = self.hosts.get_mut(slot);
        let in_flight = s.in_flight;
        let verdict = s.watch.recheck(first, in_flight);
        if verdict == Held::Retry {
            self.limited_retries += 1;
        }
        verdict
    }

    /// A probe of `host` is parked: held, or waiting for its test's time.
    /// It stays in flight but leaves its room in the host's window.
    pub fn park(&mut self, host: HostRef) {
        if let Some(slot) = host.slot() {
            self.hosts.get_mut(slot).watch.park();
        }
    }

    /// A parked probe of `host` goes out again, or is over.
    pub fn unpark(&mut self, host: HostRef) {
        if let Some(slot) = host.slot() {
            self.hosts.get_mut(slot).watch.unpark();
        }
    }

    /// A test of whether `host` limits its RSTs was answered.
    pub fn test_answered(&mut self, host: HostRef) {
        if let Some(slot) = host.slot() {
            if self.hosts.get_mut(slot).watch.test_answered() {
                // Once per host and table slot: rare, so it may allocate.
                self.limited_hosts.push(self.hosts.key(slot));
            }
        }
    }

    /// A round of a test of whether `host` limits its RSTs went
    /// unanswered: test the port again, retry it paced, or report it.
    pub fn test_silent(&mut self, host: HostRef) -> Held {
        let Some(slot) = host.slot() else {
            return Held::Report;
        };
        let verdict = self.hosts.get_mut(slot).watch.test_silent();
        if verdict == Held::Retry {
            self.limited_retries += 1;
        }
        verdict
    }

    /// The probe is over (answered, silent, or abandoned).
    pub fn leave(&mut self, host: HostRef) {
        if let Some(slot) = host.slot() {
            let s = self.hosts.get_mut(slot);
            s.in_flight = s.in_flight.saturating_sub(1);
        }
    }

    /// The estimate a host's probes use: its own with enough samples, the
    /// scan's otherwise.
    fn estimate(&self, host: HostRef) -> &RttEstimator {
        match host.slot().map(|s| &self.hosts.get(s).rtt) {
            Some(rtt) if rtt.samples() >= HOST_SAMPLES => rtt,
            _ => &self.scan_rtt,
        }
    }

    /// Whether `host` has an estimate of its own ([`HOST_SAMPLES`] samples
    /// or more): then its own timeout rules its attempts.
    fn known(&self, host: HostRef) -> bool {
        host.slot()
            .is_some_and(|s| self.hosts.get(s).rtt.samples() >= HOST_SAMPLES)
    }

    /// The smoothed RTT a probe of `host` is timed by (its own, or the
    /// scan's), once there is a sample: service detection waits by it.
    pub fn srtt(&self, host: HostRef) -> Option<Duration> {
        let rtt = self.estimate(host);
        (rtt.samples() > 0).then(|| rtt.srtt())
    }

    /// How long attempt `try_no` (0 = first) of a probe to `host` waits.
    ///
    /// A host with an estimate of its own is *known*: its timeout, and its
    /// retries wait as long (silence there means a filtered port or a
    /// loss). An unknown host waits the scan's timeout but never less than
    /// `--initial-rtt-timeout`: the first answers of a scan come from its
    /// nearest hosts, and a scan-wide estimate made of them timed out one
    /// probe in nine on netsim's internet-like hosts for nothing (measured,
    /// docs/TIMING.md). A first attempt to a host with one or two samples
    /// waits no longer than its own RFC 6298 timeout (`young_timeout`).
    /// An unknown host's retries back off, doubling the
    /// wait (RFC 6298 §5.5) within `--max-rtt-timeout`, until it answers.
    ///
    /// `--max-rtt-timeout` bounds every first attempt and the scan-wide
    /// estimate; a retry, and a host whose own samples show it farther
    /// (then its smoothed RTT + 50 %), may wait up to [`FAR_FACTOR`] times it (never beyond
    /// [`FAR_CEILING`] unless the maximum itself is): with `-T5`'s 300 ms
    /// the 5 % of internet-like hosts beyond 300 ms were never found, as
    /// their answers always came after the deadline.
    pub fn timeout(&self, host: HostRef, try_no: u32) -> Duration {
        let wait = self.wait(host, try_no);
        match try_no {
            // A known host's wait is within its young bound already: the
            // same estimate under a lower ceiling.
            0 if !self.known(host) => wait.min(self.young_timeout(host)),
            _ => wait,
        }
    }

    /// The wait attempt `try_no` to `host` gets from the host's own answers,
    /// if they decide it: a known host's timeout, or a first attempt's
    /// bound from a host's first samples (`young_timeout`). `None` while
    /// the wait comes from the scan's estimate, which moves with whatever
    /// hosts answered last: the machine shortens a waiting attempt by this
    /// only ([`crate::engine::machine`]'s re-judging). A host never heard
    /// from keeps the wait the scan's rules gave it (the initial timeout at
    /// least, a backed-off or far retry): near hosts answering fast says
    /// nothing of how far this one is.
    pub fn own_timeout(&self, host: HostRef, try_no: u32) -> Option<Duration> {
        let samples = host.slot().map_or(0, |s| self.hosts.get(s).rtt.samples());
        match (samples, try_no) {
            (n, _) if n >= HOST_SAMPLES => Some(self.wait(host, try_no)),
            (0, _) | (_, 1..) => None,
            _ => match self.young_timeout(host) {
                Duration::MAX => None,
                young => Some(self.wait(host, 0).min(young)),
            },
        }
    }

    /// [`Self::timeout`] without the bound of a host's first samples
    /// (`young_timeout`): the wait a back-off doubles.
    fn wait(&self, host: HostRef, try_no: u32) -> Duration {
        let p = &self.params;
        let max = p.max_rtt.max(p.min_rtt);
        let far = || max.max(max.saturating_mul(FAR_FACTOR).min(FAR_CEILING));
        let slot = host.slot().map(|s| self.hosts.get(s));
        if let Some(s) = slot.filter(|s| s.rtt.samples() >= HOST_SAMPLES) {
            // Past the maximum only as far as the host's RTT needs (+50 %,
            // the estimate's own floor margin: +25 % still timed out one
            // open port in 60 on -T5's 300-700 ms hosts).
            let own = &s.rtt;
            let reach = max
                .max(own.srtt().saturating_add(own.srtt() / 2))
                .min(far());
            let wait = own.timeout(p.initial_rtt, p.min_rtt, reach);
            // A retry waits a little longer: the path may just have slowed
            // (a loaded simulator ran 150-200 ms late, and retries with the
            // same 100 ms wait reported thousands of closed ports filtered),
            // and longer still once answers are seen coming late.
            let slack = match self.scan_retries.seen_late() {
                true => LATE_SLACK,
                false => QUIET_SLACK,
            };
            return match try_no {
                0 => wait,
                _ => wait.saturating_add(wait.min(slack)),
            };
        }
        // An unknown host: the scan's estimate.
        let estimate = self.scan_rtt.timeout(p.initial_rtt, p.min_rtt, p.max_rtt);
        let backoff = slot.map_or(0, |s| s.backoff);
        let doublings = backoff + retry_doubling(p, estimate, try_no);
        let wait = estimate
            .max(p.guess())
            .saturating_mul(1 << doublings.min(MAX_BACKOFF));
        if try_no == 0 {
            return wait.min(max);
        }
        // What the estimate would be without the maximum: above it, the
        // scan's answers come later than the maximum lets a first attempt
        // wait, and an unknown host's retry must wait past it to hear them.
        let uncut = self
            .scan_rtt
            .timeout(p.initial_rtt, p.min_rtt, Duration::MAX);
        // A retry whose back-off the maximum would cut waits the far
        // ceiling: -T5's doubled 250 ms still lost the hosts 500-900 ms away
        // (recall 97.6 % on internet-like). So does a retry whose estimate
        // the maximum cut: once the scan-wide estimate passed 250 ms a
        // retry was not doubled, waited -T5's 300 ms like the first try,
        // and the hosts 300-900 ms away were never heard (97.4 %).
        // And so does any retry where the maximum is below twice the
        // initial guess (-T5's 300 ms against its 250): with the estimate
        // between the two, a retry was not doubled, waited as long as the
        // first attempt, and neither heard a host 310-420 ms away; each of
        // internet-like's five missed open ports under -T5 had two SYNs,
        // both answered after their socket closed.
        let doubled_guess_cut = p.guess().saturating_mul(2) > max;
        match wait > max || uncut > max || doubled_guess_cut {
            true => far(),
            false => wait,
        }
    }

    /// A first attempt's wait for a host with one or two samples of its
    /// own: RFC 6298's timeout from them (`srtt + 4 × rttvar`: three times a
    /// first sample, ~2.5 times two alike), when that is shorter than the
    /// unknown host's wait. Its answers are already measured, and three
    /// times them is a wide margin; the scan-wide wait (never under
    /// `--initial-rtt-timeout`, and late in a scan made of its slowest
    /// answers, ~1.6 s on internet-like) held each of its filtered or lost
    /// ports that long: on internet-like /22, 9 568 of the 29 142 first
    /// attempts made before their host was known were to such hosts.
    /// `Duration::MAX` (no bound) for a host without samples, a backed-off
    /// one (its answers came after a wait, which is what it needs) and an
    /// untracked one.
    fn young_timeout(&self, host: HostRef) -> Duration {
        let p = &self.params;
        match host.slot().map(|s| self.hosts.get(s)) {
            Some(s) if s.rtt.samples() > 0 && s.backoff == 0 => {
                s.rtt.timeout(p.initial_rtt, p.min_rtt, Duration::MAX)
            }
            _ => Duration::MAX,
        }
    }

    /// How long a probe waits when its host's window is full.
    pub fn host_wait(&self, host: u64) -> Duration {
        let srtt = self
            .hosts
            .find(host)
            .map(|s| self.hosts.get(s).rtt)
            .filter(|r| r.samples() > 0)
            .unwrap_or(self.scan_rtt)
            .srtt();
        (srtt / 2).clamp(Duration::from_millis(1), Duration::from_millis(100))
    }

    /// Retries a probe to `host` may still get: `--retries` at most.
    ///
    /// Once the scan has `LOSS_SAMPLES` (200) answers, every host gets what the
    /// scan's measured loss calls for (an answering port missed less than
    /// once in 10⁴: `RetryEvidence::retries`), and at least
    /// `LATE_MIN_RETRIES` while answers run late. A host's own few
    /// answers cannot tell its loss from the scan's: one chance loss in
    /// its ~100 answers (1 % on internet-like) gave every filtered port of
    /// the host a third try, and those chains were the tail of the scan;
    /// and a host not yet seen losing one answer got nmap's one retry on a
    /// path losing 10 % (lossy's recall 0.998, below the loss model's
    /// 0.9991 at the tries used). One unlucky port that needed a fourth
    /// try no longer gives its host's filtered ports five attempts of
    /// ~2.2 s each either (lossy /22, seed 935: the last 8 s of the scan).
    ///
    /// Before that, a tracked host gets one retry beyond the most it ever
    /// needed (nmap's rule), an untracked one nmap's one retry.
    pub fn retries(&self, host: HostRef) -> u32 {
        if self.scan_retries.by_loss().is_some() {
            return self.scan_retries.retries(self.max_retries);
        }
        match host.slot() {
            Some(s) => self.max_retries.min(self.hosts.get(s).max_ok_try + 1),
            None => self.scan_retries.retries(self.max_retries),
        }
    }

    /// An attempt `try_no` of a probe to `host` was answered after
    /// `elapsed`; the attempt before it (if any) had waited `waited`. `rtt`
    /// is its clean sample, or `None` when Karn's rule forbids one. An
    /// answer to a retry means an earlier attempt was lost — a drop for the
    /// windows — unless the answer took longer than the earlier attempt
    /// waited: then the timeout was too short (spurious),
    /// nothing was lost, and an unknown host keeps the backed-off timeout
    /// for its next probes (RFC 6298 §5.5–5.7) until it gives samples.
    pub fn answered(
        &mut self,
        host: HostRef,
        try_no: u32,
        elapsed: Duration,
        waited: Duration,
        rtt: Option<Duration>,
        now: Instant,
    ) {
        let spurious = try_no > 0 && elapsed >= waited;
        // A first attempt's wait as the host stands before this answer: a
        // known host's own timeout, else the unknown host's wait. Only a
        // spurious timeout and a known host's late answer need it; a known
        // host's wait is never under `--min-rtt-timeout`, so an answer
        // within that is not late (on loopback, every answer).
        let may_be_late = elapsed > self.params.min_rtt && self.known(host);
        let first_wait = match spurious || may_be_late {
            true => self.wait(host, 0),
            false => Duration::ZERO,
        };
        // The doublings of the unknown-host wait that this answer needed; one
        // at most from an answer to a resent SYN (see the back-off below).
        let needed_backoff = if !spurious {
            0
        } else {
            let now_backoff = host.slot().map_or(0, |s| self.hosts.get(s).backoff);
            // From the unknown host's wait, which the back-off multiplies,
            // not from a shorter wait its first samples gave.
            let base = first_wait / (1 << now_backoff);
            let cap = if rtt.is_some() { MAX_BACKOFF } else { 1 };
            let mut level = 0;
            while level < cap && base.saturating_mul(1 << level) <= elapsed {
                level += 1;
            }
            level
        };
        let signal = if try_no == 0 || spurious {
            Signal::Answer
        } else {
            // The attempt before this one went out a wait before it.
            let started = now.checked_sub(elapsed).unwrap_or(now);
            Signal::Drop(started.checked_sub(waited).unwrap_or(started))
        };
        // Only a real loss shows that more retries can pay.
        let needed = if matches!(signal, Signal::Drop(_)) {
            try_no
        } else {
            0
        };
        // Later than a known host's own timeout now: the path, or this
        // machine, runs late.
        if may_be_late && elapsed > first_wait {
            self.scan_retries.late += 1;
        }
        match rtt {
            Some(rtt) => self.scan_rtt.sample(rtt),
            None => self.karn_skipped += 1,
        }
        self.scan_retries.answered(needed);
        let background = self.scan_retries.background();
        self.scan_window.on(signal, now, background);
        if let Some(slot) = host.slot() {
            let s = self.hosts.get_mut(slot);
            let unheard = s.rtt.samples() == 0;
            match rtt {
                Some(rtt) => {
                    if s.bounded {
                        s.rtt = RttEstimator::new();
                        s.bounded = false;
                    }
                    s.rtt.sample(rtt);
                }
                // A host farther than the kernel's RTO gives no clean
                // sample (every SYN to it was resent before its answer
                // came): the time to its answers, at least its RTT, is its
                // estimate until it gives one. Without it such a host
                // stayed unknown, each attempt backed off to twice the
                // initial wait (~2.2 s, the kernel's two SYNs in it), and
                // with the four tries lossy calls for its filtered ports
                // made the scan's tail (netsim lossy, seed 3: a 1 055 ms
                // host, 9.3 s of a 9.6 s bound).
                None if elapsed >= KERNEL_SYN_RTO && (s.bounded || unheard) => {
                    s.rtt.sample(elapsed);
                    s.bounded = true;
                }
                None => {}
            }
            s.max_ok_try = s.max_ok_try.max(needed);
            s.window.on(signal, now, background);
            // An answer to a retransmitted SYN (no clean sample) may be to
            // the kernel's later SYN: it only backs off a host that has
            // never given a clean sample (one farther than the kernel's RTO).
            // It backs off one doubling at most (the cap above): a SYN lost
            // and resent by the kernel looks the same, and one such answer
            // set an 8-fold, 10 s wait that ended an internet-like /22 scan
            // 4 s late.
            let trusted = rtt.is_some() || unheard;
            if spurious && trusted && s.rtt.samples() < HOST_SAMPLES {
                s.backoff = s.backoff.max(needed_backoff);
            } else if s.rtt.samples() >= HOST_SAMPLES {
                s.backoff = 0;
            }
        }
    }

    /// Every attempt of a probe went unanswered.
    pub fn silent(&mut self, host: HostRef, now: Instant) {
        self.scan_window.on(Signal::Silence, now, 0.0);
        if let Some(slot) = host.slot() {
            self.hosts
                .get_mut(slot)
                .window
                .on(Signal::Silence, now, 0.0);
        }
    }

    /// The hosts (their indexes in the scan's order) found to limit their
    /// RSTs, sorted, each once.
    pub fn limited_hosts(&self) -> Vec<u64> {
        let mut hosts = self.limited_hosts.clone();
        hosts.sort_unstable();
        hosts.dedup();
        hosts
    }

    /// Where this worker's timing stands, for the summary.
    pub fn summary(&self) -> TimingSummary {
        TimingSummary {
            window: self.scan_window.allowed() as u64,
            window_cuts: self.scan_window.cuts(),
            hosts_tracked: self.hosts.estimates(HOST_SAMPLES).count() as u64,
            rst_limited_hosts: self.limited_hosts().len() as u64,
            rst_limited_retries: self.limited_retries,
            ..TimingSummary::adaptive(&self.params, &self.scan_rtt, self.karn_skipped)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timing::Template;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    /// `-T4`'s settings.
    fn t4_params() -> AdaptiveTiming {
        params(Template::Aggressive)
    }

    /// `-T3`'s settings (the default).
    fn t3_params() -> AdaptiveTiming {
        params(Template::Normal)
    }

    /// A template's adaptive settings.
    fn params(template: Template) -> AdaptiveTiming {
        let v = template.values();
        AdaptiveTiming {
            initial_rtt: v.initial_rtt,
            min_rtt: v.min_rtt,
            max_rtt: v.max_rtt,
            initial_window: v.initial_window,
        }
    }

    /// `-T5`'s worker state.
    fn t5() -> WorkerTiming {
        WorkerTiming::new(
            params(Template::Insane),
            Template::Insane.values().max_retries,
            1000,
        )
    }

    fn t4() -> WorkerTiming {
        WorkerTiming::new(t4_params(), Template::Aggressive.values().max_retries, 1000)
    }

    #[test]
    fn a_host_gets_its_own_timeout_after_three_samples() {
        let t0 = Instant::now();
        let mut t = t4();
        // A near host answers fast; a far one has not answered yet.
        let near = t.enter(1).unwrap();
        assert_eq!(t.timeout(near, 0), MS(500), "initial before any sample");
        for i in 0..2 {
            t.answered(near, 0, MS(300), Duration::ZERO, Some(MS(300)), t0 + MS(i));
        }
        let far = t.enter(2).unwrap();
        // Two samples: both hosts are still unknown.
        assert_eq!(t.timeout(near, 0), t.timeout(far, 0));
        for i in 0..60 {
            t.answered(near, 0, MS(2), Duration::ZERO, Some(MS(2)), t0 + MS(10 + i));
        }
        assert_eq!(t.timeout(near, 0), MS(100), "min-rtt-timeout");
        // A host without samples of its own waits at least the initial
        // timeout: the scan's first answers come from its nearest hosts.
        assert_eq!(t.timeout(far, 0), MS(500));
        // A known host's retries wait a little longer (twice, at most
        // 200 ms more: a path that just slowed); an unknown one's wait twice
        // as long, up to max-rtt-timeout.
        assert_eq!(t.timeout(near, 1), MS(200));
        let unknown = t.timeout(far, 0);
        assert_eq!(t.timeout(far, 1), (unknown * 2).min(MS(1250)));
        assert_eq!(t.timeout(far, 10), t.timeout(far, 1));
    }

    /// 28 % of an internet-like /22 scan's first attempts went out before
    /// their host had three samples; those to a host with one or two waited
    /// the scan-wide timeout (at least the 1 s guess, ~1.6 s late in the
    /// scan) when its own first answer already said ~100 ms.
    #[test]
    fn a_host_with_one_sample_waits_its_rfc_timeout_not_the_scans() {
        let t0 = Instant::now();
        let mut t = WorkerTiming::new(t3_params(), 10, 1000);
        // The scan has measured slow answers elsewhere: 1.5 s.
        let slow = t.enter(1).unwrap();
        for i in 0..5 {
            t.answered(slow, 0, MS(1500), Duration::ZERO, Some(MS(900)), t0 + MS(i));
        }
        let fresh = t.enter(2).unwrap();
        let unknown = t.timeout(fresh, 0);
        assert!(unknown >= MS(1000), "{unknown:?}");
        // One answer in 100 ms: 100 + 4 × 50 ms.
        t.answered(
            fresh,
            0,
            MS(100),
            Duration::ZERO,
            Some(MS(100)),
            t0 + MS(10),
        );
        assert_eq!(t.timeout(fresh, 0), MS(300));
        // Two alike: 100 + 4 × 37.5 ms.
        t.answered(
            fresh,
            0,
            MS(100),
            Duration::ZERO,
            Some(MS(100)),
            t0 + MS(11),
        );
        assert_eq!(t.timeout(fresh, 0), MS(250));
        // Never longer than the unknown host's wait (here ~2 s: the scan's
        // slow answers): a far host's first sample gives 3 × 600 ms.
        let far = t.enter(3).unwrap();
        t.answered(far, 0, MS(600), Duration::ZERO, Some(MS(600)), t0 + MS(12));
        let none = t.enter(4).unwrap();
        assert!(t.timeout(none, 0) > MS(1800), "{:?}", t.timeout(none, 0));
        assert_eq!(t.timeout(far, 0), MS(1800));
        // Retries keep the unknown host's rule (a third sample makes the
        // host known before most retries go out).
        assert_eq!(t.timeout(fresh, 1), t.timeout(none, 1));
        assert!(t.timeout(slow, 0) > MS(1000));
    }

    /// A host whose first sample gave a 300 ms wait, then a retry answered
    /// only after 1.2 s: its back-off is counted from the unknown host's
    /// wait (1 s: one doubling), not from the 300 ms (three), which the
    /// back-off then multiplied the unknown wait by.
    #[test]
    fn a_young_hosts_back_off_counts_from_the_unknown_wait() {
        let t0 = Instant::now();
        let mut t = WorkerTiming::new(t3_params(), 10, 1000);
        let h = t.enter(1).unwrap();
        t.answered(h, 0, MS(100), Duration::ZERO, Some(MS(100)), t0);
        assert_eq!(t.timeout(h, 0), MS(300));
        t.answered(h, 1, MS(1200), MS(300), Some(MS(1200)), t0 + MS(2000));
        // One doubling of the unknown wait (now the scan's, ~1.49 s); from
        // the 300 ms it was three, 8 × 1.49 s.
        let fresh = t.enter(2).unwrap();
        assert_eq!(t.timeout(h, 0), t.timeout(fresh, 0) * 2);
    }

    #[test]
    fn retries_back_off_from_the_guess_not_from_a_measured_estimate() {
        let t0 = Instant::now();
        let mut t = t4();
        // The scan has measured slow answers: its timeout is above the
        // initial guess (500 ms) and below max-rtt-timeout (1250 ms).
        let known = t.enter(1).unwrap();
        for (i, ms) in [600, 650, 700, 620, 680, 640].into_iter().enumerate() {
            t.answered(
                known,
                0,
                MS(ms),
                Duration::ZERO,
                Some(MS(ms)),
                t0 + MS(i as u64),
            );
        }
        let far = t.enter(2).unwrap();
        let first = t.timeout(far, 0);
        assert!(first > MS(500) && first < MS(1250), "{first:?}");
        // A retry waits as long: the estimate already spans the slow hosts.
        assert_eq!(t.timeout(far, 1), first);
        // An untracked host likewise.
        assert_eq!(t.timeout(HostRef::UNTRACKED, 1), first);
    }

    #[test]
    fn untracked_hosts_get_the_retries_the_measured_loss_calls_for() {
        let evidence = |answers: u64, lost: u64, max_ok_try: u32| RetryEvidence {
            answers,
            lost,
            max_ok_try,
            late: 0,
        };
        // Too few answers, or no loss: nmap's one retry.
        assert_eq!(evidence(0, 0, 0).retries(10), 1);
        assert_eq!(evidence(199, 50, 3).retries(10), 1);
        assert_eq!(evidence(10_000, 0, 0).retries(10), 1);
        // 1 % of answers came only to a retry: 0.01² = 1e-4, one retry.
        assert_eq!(evidence(10_000, 100, 3).retries(10), 1);
        // 10 %: 0.1⁴ = 1e-4, three retries; 20 %: five (0.2⁶ < 1e-4).
        assert_eq!(evidence(10_000, 1_000, 5).retries(10), 3);
        assert_eq!(evidence(10_000, 2_000, 9).retries(10), 5);
        // A share just above 1 %, within its measurement's noise: still
        // one (internet-like's workers measured 0.958 % and 1.0009 %).
        assert_eq!(evidence(49_557, 496, 3).retries(10), 1);
        assert_eq!(evidence(49_696, 476, 3).retries(10), 1);
        // Well above it: two.
        assert_eq!(evidence(50_000, 1_000, 3).retries(10), 2);
        // Never more than the scan ever needed plus one, nor --retries.
        assert_eq!(evidence(10_000, 2_000, 1).retries(10), 2);
        assert_eq!(evidence(10_000, 2_000, 9).retries(2), 2);
        assert_eq!(evidence(10_000, 2_000, 9).retries(0), 0);
    }

    /// Lossy /22, seed 935: one port of a far host needed its fourth try,
    /// and every filtered port of that host then got four retries of
    /// ~2.2 s each, the last 8 s of the scan.
    #[test]
    fn one_unlucky_port_does_not_set_a_far_hosts_filtered_retries() {
        let t0 = Instant::now();
        let mut t = t4();
        // The scan: 10 % of answers needed a retry (three retries by the
        // loss model).
        let near = t.enter(1).unwrap();
        for i in 0..1000 {
            let try_no = u32::from(i % 10 == 0);
            t.answered(near, try_no, MS(50), MS(100), Some(MS(50)), t0);
        }
        assert_eq!(t.scan_retries.by_loss(), Some(3));
        let far = t.enter(2).unwrap();
        t.answered(far, 7, MS(400), MS(500), Some(MS(400)), t0);
        assert_eq!(t.scan_retries.by_loss(), Some(3));
        assert_eq!(t.retries(far), 3, "the loss model's three; not eight");
        // Without enough evidence, the host's own record rules.
        let mut fresh = t4();
        let h = fresh.enter(2).unwrap();
        fresh.answered(h, 7, MS(400), MS(500), Some(MS(400)), t0);
        assert_eq!(fresh.retries(h), 6, "-T4's --max-retries");
    }

    /// Judged again by the scan's estimate, which falls as near hosts
    /// answer, a far host's first attempts and its retries (backed off, or
    /// at the far ceiling) would lose the wait that lets its answers in.
    /// Only a host's own answers may shorten a waiting attempt.
    #[test]
    fn only_a_hosts_own_answers_shorten_its_waiting_attempts() {
        let t0 = Instant::now();
        let mut t = t4();
        let h = t.enter(1).unwrap();
        assert_eq!(t.own_timeout(h, 0), None, "never heard from");
        assert_eq!(t.own_timeout(h, 1), None);
        t.answered(h, 0, MS(80), MS(0), Some(MS(80)), t0);
        // One sample bounds a first attempt (RFC 6298: three times it)...
        assert_eq!(t.own_timeout(h, 0), Some(MS(240)));
        // ... but a retry still waits by the scan's rules.
        assert_eq!(t.own_timeout(h, 1), None);
        t.answered(h, 0, MS(80), MS(0), Some(MS(80)), t0);
        t.answered(h, 0, MS(80), MS(0), Some(MS(80)), t0);
        assert_eq!(t.own_timeout(h, 0), Some(t.timeout(h, 0)));
        assert_eq!(t.own_timeout(h, 1), Some(t.timeout(h, 1)));
        assert_eq!(t.own_timeout(HostRef::UNTRACKED, 0), None);
    }

    /// Internet-like /22: ~1 % of answers come only to a retry, so most
    /// hosts show one such chance loss in their ~100 answers, and each then
    /// gave all its filtered ports a third try (the loss model's two tries
    /// already miss an answering port less than once in 10⁴).
    #[test]
    fn one_chance_loss_does_not_give_its_hosts_filtered_ports_a_third_try() {
        let t0 = Instant::now();
        let mut t = t4();
        let hosts: Vec<HostRef> = (0..10).map(|h| t.enter(h).unwrap()).collect();
        for (n, &h) in hosts.iter().enumerate() {
            for i in 0..100 {
                // One answer in 100 came to the retry (a loss).
                let try_no = u32::from(i == n);
                t.answered(h, try_no, MS(50), MS(200), Some(MS(50)), t0 + MS(i as u64));
            }
        }
        assert_eq!(t.scan_retries.by_loss(), Some(1));
        for &h in &hosts {
            assert_eq!(t.retries(h), 1, "two tries, not three");
        }
    }

    /// Lossy (5 % each way): a host not yet seen losing an answer got
    /// nmap's one retry though the scan measured 10 % of answers lost, and
    /// its open ports were missed one in a hundred (recall 0.998, below the
    /// loss model's 0.9991 at the tries used).
    #[test]
    fn a_host_not_yet_seen_losing_gets_the_retries_a_lossy_path_calls_for() {
        let t0 = Instant::now();
        let mut t = t4();
        let busy = t.enter(1).unwrap();
        for i in 0..1000 {
            let try_no = match i {
                _ if i % 100 == 0 => 2,
                _ if i % 10 == 0 => 1,
                _ => 0,
            };
            t.answered(busy, try_no, MS(50), MS(200), Some(MS(50)), t0);
        }
        let fresh = t.enter(2).unwrap();
        for _ in 0..5 {
            t.answered(fresh, 0, MS(80), MS(0), Some(MS(80)), t0);
        }
        assert_eq!(t.retries(fresh), 3, "0.1⁴ ≤ 1e-4: four tries");
        assert_eq!(t.retries(HostRef::UNTRACKED), 3);
    }

    /// A loaded machine: answers come after their known host's timeout
    /// (netsim's timers 200 ms late), and a retry with the same wait misses
    /// them again; more than one answer in 100 that late gives every probe
    /// a third try, which caught them.
    #[test]
    fn answers_later_than_known_timeouts_give_every_probe_a_third_try() {
        let t0 = Instant::now();
        let mut t = t4();
        let h = t.enter(1).unwrap();
        for i in 0..1000 {
            t.answered(h, 0, MS(20), MS(0), Some(MS(20)), t0 + MS(i));
        }
        assert_eq!(t.retries(h), 1);
        let own = t.timeout(h, 0);
        // A few late answers are chance.
        for i in 0..5 {
            t.answered(h, 0, own + MS(100), MS(0), None, t0 + MS(1001 + i));
        }
        assert_eq!(t.retries(h), 1);
        // More than one in a hundred: the scan runs late.
        for i in 0..10 {
            t.answered(h, 0, own + MS(150), MS(0), None, t0 + MS(1010 + i));
        }
        assert!(t.scan_retries.runs_late());
        assert_eq!(t.retries(h), LATE_MIN_RETRIES);
        assert_eq!(t.retries(HostRef::UNTRACKED), LATE_MIN_RETRIES);
    }

    /// A known host's retry waits its first attempt's timeout plus a
    /// slack: 200 ms while the scan has too few answers to tell, 50 ms once
    /// its answers keep time, 200 ms again once more than one in a thousand
    /// comes after its known host's timeout.
    #[test]
    fn a_retry_waits_the_late_slack_only_where_answers_are_seen_late() {
        let t0 = Instant::now();
        let mut t = WorkerTiming::new(t3_params(), Template::Normal.values().max_retries, 1000);
        let far = t.enter(1).unwrap();
        for i in 0..10 {
            t.answered(far, 0, MS(986), MS(0), Some(MS(986)), t0 + MS(i));
        }
        let own = t.timeout(far, 0);
        assert!(own > MS(986) && own < MS(1200), "{own:?}");
        assert_eq!(t.timeout(far, 1), own + LATE_SLACK, "too few answers");
        let near = t.enter(2).unwrap();
        for i in 0..2000 {
            t.answered(near, 0, MS(40), MS(0), Some(MS(40)), t0 + MS(10 + i));
        }
        assert_eq!(t.timeout(far, 0), own);
        assert_eq!(t.timeout(far, 1), own + QUIET_SLACK, "answers keep time");
        let late = t.timeout(near, 0) + MS(60);
        t.answered(near, 0, late, MS(0), None, t0 + MS(3000));
        assert!(!t.scan_retries.seen_late(), "one in 2 011 is chance");
        for i in 0..3 {
            t.answered(near, 0, late, MS(0), None, t0 + MS(3010 + i));
        }
        assert!(t.scan_retries.seen_late());
        assert_eq!(t.timeout(far, 1), own + LATE_SLACK);
        assert!(!t.scan_retries.runs_late(), "no third try for that");
    }

    /// -T5 (300 ms at most) never found the internet-like hosts beyond
    /// 300 ms: their answers always came after the deadline.
    #[test]
    fn t5_keeps_hosts_farther_than_its_max_rtt_timeout() {
        let t0 = Instant::now();
        let mut t = t5();
        let h = t.enter(3).unwrap();
        // First attempts keep -T5's bound; a retry the bound would cut
        // waits three times it.
        assert_eq!(t.timeout(h, 0), MS(250));
        assert_eq!(t.timeout(h, 1), MS(900));
        // A host measured at 700 ms gets a timeout that covers it.
        for i in 0..5 {
            t.answered(h, 1, MS(700), MS(250), Some(MS(700)), t0 + MS(i));
        }
        let own = t.timeout(h, 0);
        assert!(own > MS(700) && own <= MS(900), "{own:?}");
        // Nothing waits past three times the maximum.
        for i in 0..5 {
            t.answered(h, 0, MS(5000), MS(0), Some(MS(5000)), t0 + MS(10 + i));
        }
        assert_eq!(t.timeout(h, 0), MS(900));
        // A scan whose answers spread past the maximum (its estimate, uncut,
        // above 300 ms): an unknown host's retry waits past it too.
        for i in 0..20 {
            let ms = if i % 2 == 0 { 60 } else { 500 };
            t.answered(h, 0, MS(ms), MS(0), Some(MS(ms)), t0 + MS(20 + i));
        }
        let unknown = t.enter(4).unwrap();
        assert_eq!(t.timeout(unknown, 0), MS(300));
        assert_eq!(t.timeout(unknown, 1), MS(900), "not -T5's 300 ms again");
        // Other templates: the ceiling is 10 s or the maximum itself.
        let mut normal = t4_params();
        normal.max_rtt = MS(10_000);
        let n = WorkerTiming::new(normal, 10, 1000);
        assert_eq!(n.timeout(HostRef::UNTRACKED, 1), MS(1000));
    }

    /// -T5 (guess 250 ms, maximum 300 ms) with the scan's estimate between
    /// the two: a retry was not doubled and waited the first attempt's
    /// 280 ms, so a host 313 ms away answered neither attempt (internet-like:
    /// recall 0.99421, every miss two SYNs answered after their socket
    /// closed).
    #[test]
    fn a_t5_retry_waits_past_its_maximum_whatever_the_estimate() {
        let t0 = Instant::now();
        let mut t = t5();
        let near = t.enter(3).unwrap();
        // Steady answers of ~200 ms: the scan's timeout ~280-300 ms, above
        // the 250 ms guess, uncut below the 300 ms maximum.
        for i in 0..40 {
            t.answered(near, 0, MS(195), MS(0), Some(MS(195)), t0 + MS(i));
        }
        let unknown = t.enter(4).unwrap();
        let first = t.timeout(unknown, 0);
        assert!(first > MS(250) && first <= MS(300), "{first:?}");
        assert_eq!(
            t.timeout(unknown, 1),
            MS(900),
            "not the first attempt's {first:?}"
        );
        // -T4 (guess 500 ms, maximum 1 250 ms) keeps the estimate's wait.
        let mut t4 = t4();
        let near = t4.enter(3).unwrap();
        for i in 0..40 {
            t4.answered(near, 0, MS(700), MS(0), Some(MS(700)), t0 + MS(i));
        }
        let unknown = t4.enter(4).unwrap();
        let first = t4.timeout(unknown, 0);
        assert!(first > MS(500) && first < MS(1250), "{first:?}");
        assert_eq!(t4.timeout(unknown, 1), first);
    }

    #[test]
    fn a_host_that_answers_slowly_then_fast() {
        let t0 = Instant::now();
        let mut t = t4();
        let h = t.enter(7).unwrap();
        for i in 0..10 {
            t.answered(h, 0, MS(900), Duration::ZERO, Some(MS(900)), t0 + MS(i));
        }
        let slow = t.timeout(h, 0);
        // -T4's 1250 ms, or 1.5 × the host's RTT if that is more.
        assert!(slow > MS(900) && slow <= MS(1350), "slow: {slow:?}");
        for i in 0..40 {
            t.answered(h, 0, MS(30), Duration::ZERO, Some(MS(30)), t0 + MS(100 + i));
        }
        assert_eq!(t.timeout(h, 0), MS(100), "fast again: at the floor");
    }

    #[test]
    fn a_host_that_goes_silent_keeps_its_timeout_and_the_window() {
        let t0 = Instant::now();
        let mut t = t4();
        let h = t.enter(3).unwrap();
        for i in 0..10 {
            t.answered(h, 0, MS(50), Duration::ZERO, Some(MS(50)), t0 + MS(i));
        }
        let before = (t.timeout(h, 0), t.window());
        // Then nothing answers: filtered ports say nothing about the path.
        for i in 0..100 {
            t.silent(h, t0 + MS(1000 + i));
        }
        assert_eq!((t.timeout(h, 0), t.window()), before);
        // And it gets one retry per port: it never showed it needed more.
        assert_eq!(t.retries(h), 1);
    }

    #[test]
    fn answers_to_retries_cut_the_windows_and_allow_more_retries() {
        let t0 = Instant::now();
        let mut t = t4();
        let h = t.enter(5).unwrap();
        for i in 0..200 {
            t.answered(
                h,
                0,
                MS(10),
                Duration::ZERO,
                Some(MS(10)),
                t0 + Duration::from_micros(i),
            );
        }
        let grown = t.window();
        assert!(grown > 128, "{grown}");
        t.answered(h, 2, MS(10), MS(1000), Some(MS(10)), t0 + MS(1));
        // Its own record says three retries; the scan's loss (1 in 201)
        // calls for one, and every host gets it.
        assert_eq!(t.retries(h), 1);
        // One loss in 201 answers: an untracked host needs one retry.
        assert_eq!(t.retries(HostRef::UNTRACKED), 1, "the scan's loss is low");
        // A round where most answers come only to retries: cut once.
        for i in 0..grown {
            t.answered(
                h,
                1,
                MS(10),
                MS(100),
                Some(MS(10)),
                t0 + MS(2) + Duration::from_micros(i as u64),
            );
        }
        assert_eq!(t.window(), grown / 2);
        assert_eq!(t.summary().window_cuts, 1);
        // Clean rounds end whatever round the drops were in.
        for i in 0..2 * grown {
            t.answered(
                h,
                0,
                MS(10),
                Duration::ZERO,
                Some(MS(10)),
                t0 + MS(1000) + Duration::from_micros(i as u64),
            );
        }
        // A retry answered later than the first attempt waited: the timeout
        // was too short, nothing was lost.
        let before = t.summary().window_cuts;
        for i in 0..1000 {
            t.answered(
                h,
                1,
                MS(5000),
                MS(1000),
                Some(MS(5000)),
                t0 + MS(10_000 * i),
            );
        }
        assert_eq!(t.summary().window_cuts, before);
    }

    /// netsim's first "very far" run: every answer takes 1.5 s, so every
    /// SYN was retransmitted by the kernel (at 1 s) and Karn's rule gives no
    /// sample at all. The host stays unknown: its answers to retries must
    /// not count as drops (they came after the first attempt's wait), and
    /// its next probes start from the backed-off timeout.
    #[test]
    fn a_host_farther_than_the_kernels_rto_is_not_congestion() {
        let t0 = Instant::now();
        let mut t = WorkerTiming::new(
            AdaptiveTiming {
                initial_rtt: MS(1000),
                min_rtt: MS(100),
                max_rtt: MS(10_000),
                initial_window: 64,
            },
            10,
            1000,
        );
        let h = t.enter(4).unwrap();
        assert_eq!((t.timeout(h, 0), t.timeout(h, 1)), (MS(1000), MS(2000)));
        for i in 0..500 {
            t.answered(h, 1, MS(1500), MS(1000), None, t0 + MS(10 * i));
        }
        let s = t.summary();
        assert_eq!((s.window_cuts, s.samples, s.karn_skipped), (0, 0, 500));
        assert!(t.window() > 64, "answers grow the window: {}", t.window());
        // Known from those answers, upper bounds on its RTT: its own
        // timeout, not the 2 s back-off.
        let own = t.timeout(h, 0);
        assert!(own > MS(1500) && own < MS(2000), "{own:?}");

        assert_eq!(t.retries(h), 1, "spurious retries earn no more retries");
        // An answer 6 s late without a clean sample (a SYN the kernel resent
        // twice, or a host that far) backs another host off once, not 8-fold.
        let g = t.enter(5).unwrap();
        t.answered(g, 1, MS(6000), MS(2000), None, t0 + MS(6000));
        assert_eq!(t.timeout(g, 0), MS(2000));
        // A clean sample replaces the upper bounds.
        t.answered(h, 0, MS(900), MS(0), Some(MS(900)), t0 + MS(7000));
        assert_eq!(t.srtt(h), Some(MS(900)));
    }

    #[test]
    fn karn_no_sample_from_a_retransmitted_syn() {
        let t0 = Instant::now();
        let mut t = t4();
        let h = t.enter(9).unwrap();
        t.answered(h, 0, MS(1500), Duration::ZERO, None, t0);
        assert_eq!(t.summary().samples, 0);
        assert_eq!(t.summary().karn_skipped, 1);
        assert_eq!(t.timeout(h, 0), MS(500));
    }

    #[test]
    fn a_host_window_holds_probes_back() {
        let mut t = t4();
        let mut refs = Vec::new();
        while let Some(r) = t.enter(11) {
            refs.push(r);
            assert!(refs.len() <= HOST_WINDOW_INITIAL);
        }
        assert_eq!(refs.len(), HOST_WINDOW_INITIAL);
        t.leave(refs.pop().unwrap());
        assert!(t.enter(11).is_some());
        assert!(t.enter(12).is_some(), "other hosts are not held");
    }
}
