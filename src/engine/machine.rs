//! Every rule a probe follows, in one state machine that does no I/O and
//! reads no clock: the shape of quinn-proto's `Connection` (and of netsim's
//! `Responder`). Both engines drive it; they only make the syscalls.
//!
//! # A probe's life
//!
//! 1. **Born.** [`Machine::poll_launch`] takes the next sequence number from
//!    the [`Source`] when there is room (the in-flight cap, see below) and
//!    the shared `--rate` limiter ([`Gcra`]) allows a connect. With adaptive
//!    timing the probe's host must have room in its own congestion window;
//!    if not, the probe waits in the wheel (`host_wait`, about half the
//!    host's smoothed RTT) and tries again. A [`Launch`] tells the driver to
//!    make a socket and connect; the attempt waits `Launch::timeout`
//!    (`--timeout`, or the adaptive estimate of its host or of the scan).
//! 2. **Connecting.** The driver reports what `connect()` said
//!    ([`Machine::handle_connect`]): an immediate answer (a local route)
//!    finishes the probe; a local resource error (`EMFILE`,
//!    `EADDRNOTAVAIL`, ...) backs it off; in progress puts its deadline in
//!    the wheel and, while recent probes answered at once (loopback, a LAN),
//!    asks the driver to look at the socket right away ([`Fate::Look`]).
//! 3. **Answered.** A look or a readiness event ([`Machine::handle_look`])
//!    classifies the socket: an answer finishes the probe. Its RTT is a
//!    sample for the timing unless Karn's rule forbids it (the SYN may have
//!    been resent: [`karn_allows`]) or the answer came from a router
//!    (filtered) rather than the target.
//!    A readiness event is timed when the poll returned, and an open
//!    port's RTT is the kernel's own handshake RTT where it took one
//!    ([`Machine::handle_ready`]): a queue of answers waiting to be read
//!    does not lengthen RTTs, so concurrency does not change timeouts.
//! 4. **Deadline.** With adaptive timing a waiting attempt is judged again
//!    every `REJUDGE_EVERY` (100 ms): its deadline moves up to when an attempt
//!    launched now would end, as its host's answers give it an estimate
//!    (never later than the one it was given).
//!    [`Machine::poll_expired`] hands back each probe whose
//!    attempt's deadline passed; the driver takes a last look
//!    ([`Machine::handle_deadline`]), since an answer may have landed after
//!    the last wake-up. The driver reads every readiness already pending
//!    before it asks for expired probes (drain before expiring). Still silent: a retry while it has retries left
//!    (`--retries`, or what its host has shown retries are worth), else
//!    `filtered/no-response`.
//! 5. **Finished.** The result waits in [`Machine::poll_result`]; the
//!    probe's slot is free.
//!
//! # The in-flight cap
//!
//! At most `min(limit, window)` probes are in flight. `limit` starts at the
//! worker's share of `--concurrency`; a local resource error cuts it to what
//! was in flight when the error came (the system just showed it can hold no
//! more), and it grows back by one per `limit` completions. The backed-off
//! probe waits [`Backoff`] (1 ms, doubling to 256 ms; reset by the next
//! connect that goes out). `window` is the adaptive timing's scan-wide
//! congestion window ([`crate::timing`]): it halves on drops and grows on
//! answers.
//!
//! # A stop
//!
//! [`Machine::abandon`] forgets every probe in flight and returns their
//! sequence numbers: a resume probes them again.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::classify::{LocalError, Reason, Report, State, Verdict, classify};
use crate::probe::{self, ProbeResult};
use crate::rate::Gcra;
use crate::stats::Stats;
use crate::timing::limit::{Held, Silence};
use crate::timing::{AdaptiveTiming, HostRef, KERNEL_SYN_RTO, TimingSummary, WorkerTiming};
use crate::trace::TraceEvent;
use crate::wheel::Wheel;

/// How long a worker whose source is held back (the order's gate) sleeps
/// before it asks again, when nothing else wakes it earlier.
pub const GATED_WAIT: Duration = Duration::from_millis(1);

/// Where the probes come from: the worker's share of the scan's sequence.
pub trait Source {
    /// The next probe, without taking it.
    fn peek(&mut self) -> Next;
    /// Takes the probe [`Source::peek`] just returned.
    fn take(&mut self);
}

/// What a [`Source`] has next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// A probe: its sequence number, index in the space and address.
    Probe {
        /// The probe's sequence number in the schedule.
        seq: u64,
        /// The target's position in the index space.
        index: u64,
        /// The address and port to connect to.
        target: SocketAddr,
    },
    /// Nothing now, but more later (the order keeps workers close to each
    /// other in the sequence): ask again.
    Gated,
    /// The source is at its end.
    Exhausted,
}

/// One connect for the driver to make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Launch {
    /// The probe's slot: report back under it (and a mio token).
    pub key: usize,
    /// The address and port probed.
    pub target: SocketAddr,
    /// How long this attempt waits for an answer.
    pub timeout: Duration,
}

/// What the driver does with the probe's socket after a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Look at the socket now ([`probe::check`]) and report with
    /// [`Machine::handle_look`]: the answer is often already there.
    Look,
    /// Keep the socket and wait for readiness or the deadline.
    Wait,
    /// The probe is finished: close the socket ([`probe::close`]).
    Close(Reason),
    /// This attempt is over (a retry or a back-off follows, or it never
    /// had a socket): drop the socket.
    Drop,
    /// The port is open and service detection is on ([`Machine::set_serving`]):
    /// keep the connected socket for a service session. The probe holds its
    /// slot (it counts in flight) until [`Machine::handle_served`] reports
    /// the session's end, and only then is its result handed out.
    Serve,
}

/// Back-off after a local resource error: first and largest delay.
pub const BACKOFF_MIN: Duration = Duration::from_millis(1);
/// The longest back-off after a local error (`EMFILE`, `EADDRNOTAVAIL`).
pub const BACKOFF_MAX: Duration = Duration::from_millis(256);

/// The delay before a probe that met a local resource error is reissued:
/// doubles from [`BACKOFF_MIN`] to [`BACKOFF_MAX`] while errors follow each
/// other, back to the minimum once a connect goes out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    delay: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { delay: BACKOFF_MIN }
    }
}

impl Backoff {
    /// The delay for this error; the next one waits twice as long.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.delay;
        self.delay = (self.delay * 2).min(BACKOFF_MAX);
        delay
    }

    /// A connect went out: the system has room again.
    pub fn reset(&mut self) {
        self.delay = BACKOFF_MIN;
    }
}

/// Karn's rule for one answered attempt after `rtt`: an answer that came
/// before the kernel's first SYN retransmission is a clean sample; a slower
/// one only if the socket shows no retransmission. `retransmits` asks the
/// socket (`TCP_INFO`); it is called only for a slow answer, so the fast
/// path pays nothing.
pub fn karn_allows(rtt: Duration, retransmits: impl FnOnce() -> Option<u32>) -> bool {
    rtt < KERNEL_SYN_RTO || retransmits() == Some(0)
}

/// What the machine needs to know, validated already.
#[derive(Debug, Clone)]
pub struct MachineConfig {
    /// Most probes in flight (this worker's share of `--concurrency`).
    pub concurrency: usize,
    /// An attempt's wait when `adaptive` is `None`.
    pub timeout: Duration,
    /// Retries after silence (exactly, fixed; at most, adaptive).
    pub retries: u32,
    /// Adaptive timing; `None` when the timeout is fixed.
    pub adaptive: Option<AdaptiveTiming>,
    /// Ports per host: a probe's host is `index / ports_per_host`.
    pub ports_per_host: u64,
    /// Who keeps an attempt's deadline: the machine's wheel (an event
    /// loop), or the driver itself (a blocking connect with a timeout, which
    /// then reports with [`Machine::handle_deadline`]).
    pub deadlines: Deadlines,
    /// A budget of unanswered attempts per second, shared by every machine
    /// (the connection-tracking table's, [`crate::timing::conntrack`]):
    /// each attempt that reaches its deadline unanswered is charged to it,
    /// and no new probe goes out while it is spent.
    pub unanswered: Option<Arc<Gcra>>,
}

/// Who keeps an attempt's deadline (see [`MachineConfig::deadlines`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deadlines {
    /// Timers in the machine's own wheel: the event loop's way.
    Wheel,
    /// Timers kept by the driver (a blocking connect with its timeout):
    /// the threads engine's way.
    Driver,
}

/// Where one in-flight probe stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Handed to the driver by `poll_launch`, not reported yet.
    Launched,
    /// The connect is under way since `started`; `looking`: the driver was
    /// asked for an eager look.
    Connecting { started: Instant, looking: bool },
    /// Waiting in the wheel: a back-off, or room in its host's window.
    Waiting,
    /// Its wait is over: to be launched again by `poll_launch`.
    Ready,
    /// Open, its socket in a service session (`-sV`): the answer is
    /// counted in the timing already; the result waits for the session.
    Serving {
        rtt_us: Option<u32>,
        srtt: Option<Duration>,
    },
}

/// One in-flight probe: a few words in a slab slot.
#[derive(Debug, Clone, Copy)]
struct Probe {
    /// Sequence number in the schedule (what a resume file counts).
    seq: u64,
    index: u64,
    target: SocketAddr,
    /// Attempts that went unanswered so far.
    timeouts: u32,
    /// The host's place in the adaptive timing, once the probe went out
    /// (`None` before, and always with a fixed timeout).
    host: Option<HostRef>,
    /// How long the current and the previous attempt wait (an answer to a
    /// retry that took longer than the previous wait was a timeout too
    /// short, not a loss).
    wait: Duration,
    waited: Duration,
    /// When its first attempt went out (the order its host's answers are
    /// judged in: [`crate::timing::limit`]).
    first_launch: Option<Instant>,
    /// Its final silence held, or it tests its host's RST limit.
    hold: Hold,
    /// The launch turn its host's pace gave it, while it waits for it.
    turn: Option<Instant>,
    phase: Phase,
}

/// A probe silent on every attempt, at a host that may limit its RSTs
/// ([`crate::timing::limit`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hold {
    /// Not held.
    No,
    /// Its silence is held until its host is judged.
    Held,
    /// It is to test its host: parked until its time.
    Test,
    /// It tests its host: one more attempt, its answer the verdict.
    Testing,
    /// Its host limits its RSTs: this is its one more attempt.
    Retry,
}

/// In-flight probes, addressed by slot index (= wheel key = mio token).
struct ProbeSlab {
    slots: Vec<Option<Probe>>,
    free: Vec<usize>,
}

impl ProbeSlab {
    fn with_capacity(cap: usize) -> Self {
        ProbeSlab {
            slots: vec![None; cap],
            free: (0..cap).rev().collect(),
        }
    }

    fn len(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    fn insert(&mut self, probe: Probe) -> Option<usize> {
        let key = self.free.pop()?;
        // Cannot panic: the free list holds only indices below slots.len().
        self.slots[key] = Some(probe);
        Some(key)
    }

    fn get_mut(&mut self, key: usize) -> Option<&mut Probe> {
        self.slots.get_mut(key).and_then(Option::as_mut)
    }

    fn remove(&mut self, key: usize) -> Option<Probe> {
        let probe = self.slots.get_mut(key)?.take()?;
        self.free.push(key);
        Some(probe)
    }
}

/// How often a waiting attempt is judged again with adaptive timing
/// (`Machine::rejudge`).
const REJUDGE_EVERY: Duration = Duration::from_millis(100);
/// How often a held silence asks whether its host was judged.
const HOLD_LOOK: Duration = Duration::from_millis(50);

/// What a hit is worth against a miss's 1: a hit saves an `epoll_ctl`, an
/// event and the look done later anyway (~3 µs), a miss costs one
/// `getsockopt` (~1 µs), so looking pays while more than ~1 probe in 4 hits.
const EAGER_HIT: i32 = 3;

/// Whether to look at a socket right after `connect`, before waiting.
///
/// On loopback or a LAN the answer is often already there when `connect`
/// returns (the SYN, the RST or SYN-ACK are processed before the socket lock
/// is released), and one `getsockopt` then saves an `epoll_ctl` and an event.
/// Against remote hosts the look nearly always misses, so the machine stops
/// asking while looks keep missing, and retries the idea every 64th probe.
#[derive(Debug, Clone, Copy)]
struct EagerCheck {
    score: i32,
    skipped: u32,
}

impl EagerCheck {
    fn should_try(&mut self) -> bool {
        if self.score >= 0 {
            return true;
        }
        self.skipped += 1;
        if self.skipped >= 64 {
            self.skipped = 0;
            return true;
        }
        false
    }

    fn hit(&mut self) {
        self.score = (self.score + EAGER_HIT).min(16);
    }

    fn miss(&mut self) {
        self.score = (self.score - 1).max(-16);
    }
}

/// Why `poll_launch` last returned `None`: what the next wake-up waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Blocked {
    /// The in-flight cap is reached (or nothing was asked yet).
    Cap,
    /// The rate allows the next connect at this instant.
    Rate(Instant),
    /// The source is held back: ask again soon.
    Gated(Instant),
    /// The source is at its end.
    Exhausted,
}

/// The probe state machine of one worker (see the module docs).
pub struct Machine {
    cfg: MachineConfig,
    slab: ProbeSlab,
    wheel: Wheel,
    stats: Stats,
    eager: EagerCheck,
    /// Current in-flight cap: `cfg.concurrency`, or lower after local errors.
    limit: usize,
    /// Completions since the cap last grew.
    grow_credit: usize,
    backoff: Backoff,
    /// Adaptive timing (`None`: `--timeout` fixed it).
    timing: Option<WorkerTiming>,
    rate: Option<Arc<Gcra>>,
    /// Probes whose wait is over, to launch again first.
    ready: VecDeque<usize>,
    /// Finished probes, for `poll_result`.
    results: VecDeque<ProbeResult>,
    /// `-sV`: open ports are handed to service sessions ([`Fate::Serve`]).
    serving: bool,
    /// Probes in [`Phase::Serving`].
    in_sessions: usize,
    /// Sockets the sessions hold beyond one each (their extra lanes): they
    /// count in the in-flight cap too.
    session_extra: usize,
    blocked: Blocked,
    /// The router that answered the probe being finished (set just before
    /// `finish`, which takes it).
    reason_ip: Option<std::net::IpAddr>,
    // Trace and series hooks (see `enable_trace`).
    /// The events the machine decided, for the driver to record with its
    /// clock (`None`: tracing is off, each hook is one untaken branch).
    trace: Option<VecDeque<TraceEvent>>,
    /// The window last traced.
    traced_window: usize,
    /// Time zero of the series (the `now` given to `new`).
    epoch: Instant,
    /// The series' bucket under way, `[from, to)`, and the time since the
    /// epoch that stands for it ([`Machine::series_at`]).
    series_span: (Instant, Instant, Duration),
}

impl Machine {
    /// A machine with nothing in flight; `now` is its wheel's tick 0.
    pub fn new(cfg: MachineConfig, rate: Option<Arc<Gcra>>, now: Instant) -> Machine {
        let cap = cfg.concurrency.max(1);
        Machine {
            slab: ProbeSlab::with_capacity(cap),
            wheel: Wheel::new(cap, now),
            stats: Stats::new(),
            eager: EagerCheck {
                score: 0,
                skipped: 0,
            },
            limit: cap,
            grow_credit: 0,
            backoff: Backoff::default(),
            timing: cfg.adaptive.map(|p| WorkerTiming::new(p, cfg.retries, cap)),
            rate,
            ready: VecDeque::with_capacity(cap),
            results: VecDeque::with_capacity(cap.min(4096)),
            serving: false,
            in_sessions: 0,
            session_extra: 0,
            blocked: Blocked::Cap,
            reason_ip: None,
            trace: None,
            traced_window: 0,
            epoch: now,
            series_span: (now, now, Duration::ZERO),
            cfg: MachineConfig {
                concurrency: cap,
                ..cfg
            },
        }
    }

    /// Probes in flight allowed now: the local-error cap, and the
    /// congestion window with adaptive timing.
    pub fn cap(&self) -> usize {
        match &self.timing {
            Some(timing) => self.limit.min(timing.window()),
            None => self.limit,
        }
    }

    /// Whether another connect may go out: the local-error cap counts
    /// every probe and every socket of the service sessions; the congestion
    /// window (adaptive timing) counts only the probes still connecting, as
    /// a session's conversation is no sign of the network's load.
    fn has_room(&self) -> bool {
        let all = self.slab.len() + self.session_extra;
        if all >= self.limit {
            return false;
        }
        match &self.timing {
            Some(timing) => self.slab.len() - self.in_sessions < timing.window(),
            None => true,
        }
    }

    /// `-sV`/`--banners`: open ports become service sessions
    /// ([`Fate::Serve`]) instead of being closed at once.
    pub fn set_serving(&mut self, on: bool) {
        self.serving = on;
    }

    /// The sessions' sockets beyond one each (their extra lanes), which
    /// count in the in-flight cap. The driver keeps it current.
    pub fn set_session_extra(&mut self, extra: usize) {
        self.session_extra = extra;
    }

    /// Whether a service session may open one more connection now (the
    /// in-flight cap, then the shared `--rate`): `Err` says when to ask
    /// again (`None`: when a report frees room). `grows`: whether the
    /// connection adds to the session's sockets (a session whose every
    /// lane is closed takes its next one within the slot it holds).
    pub fn admit_session_connect(
        &mut self,
        now: Instant,
        grows: bool,
    ) -> Result<(), Option<Instant>> {
        if grows && self.slab.len() + self.session_extra >= self.limit {
            return Err(None);
        }
        if let Some(rate) = &self.rate {
            if !rate.try_take(now) {
                return Err(Some(now + rate.wait(now)));
            }
        }
        Ok(())
    }

    /// The RTT a service session on the open port in slot `key` waits by:
    /// its host's smoothed RTT (adaptive timing), else this connect's own.
    pub fn session_rtt(&self, key: usize) -> Option<Duration> {
        let probe = self.slab.slots.get(key)?.as_ref()?;
        match probe.phase {
            Phase::Serving { rtt_us, srtt } => {
                srtt.or(rtt_us.map(|us| Duration::from_micros(u64::from(us))))
            }
            _ => None,
        }
    }

    /// The sequence number of the probe in slot `key`.
    pub fn probe_seq(&self, key: usize) -> Option<u64> {
        self.slab.slots.get(key)?.as_ref().map(|p| p.seq)
    }

    /// The service session of the open port in slot `key` is over: its
    /// result, with what the session found, is handed out now.
    pub fn handle_served(
        &mut self,
        key: usize,
        now: Instant,
        service: Option<Box<crate::service::record::ServiceRecord>>,
    ) {
        let Some(Probe {
            phase: Phase::Serving { rtt_us, .. },
            ..
        }) = self.slab.slots.get(key).and_then(Option::as_ref)
        else {
            return;
        };
        let rtt_us = *rtt_us;
        let Some(probe) = self.slab.remove(key) else {
            return;
        };
        self.in_sessions -= 1;
        self.record_result(probe, Reason::SynAck, rtt_us, now, service, None);
    }

    /// The most probes ever in flight: keys are below this.
    pub fn capacity(&self) -> usize {
        self.cfg.concurrency
    }

    /// Probes in flight (connecting, or waiting to be reissued).
    pub fn in_flight(&self) -> usize {
        self.slab.len()
    }

    /// Whether every probe of the source is finished.
    pub fn is_done(&self) -> bool {
        self.blocked == Blocked::Exhausted && self.slab.len() == 0
    }

    /// The next connect to make, if any may go out at `now`: first a probe
    /// whose wait is over, then a new one from `source`.
    pub fn poll_launch(&mut self, now: Instant, source: &mut impl Source) -> Option<Launch> {
        while let Some(key) = self.ready.pop_front() {
            if let Some(launch) = self.start_attempt(key, now) {
                return Some(launch);
            }
        }
        loop {
            if !self.has_room() {
                self.blocked = Blocked::Cap;
                return None;
            }
            let (seq, index, target) = match source.peek() {
                Next::Probe { seq, index, target } => (seq, index, target),
                Next::Gated => {
                    self.blocked = Blocked::Gated(now + GATED_WAIT);
                    return None;
                }
                Next::Exhausted => {
                    self.blocked = Blocked::Exhausted;
                    return None;
                }
            };
            if let Some(budget) = &self.cfg.unanswered {
                if !budget.allows(now) {
                    self.blocked = Blocked::Rate(now + budget.wait(now));
                    return None;
                }
            }
            if let Some(rate) = &self.rate {
                if !rate.try_take(now) {
                    self.blocked = Blocked::Rate(now + rate.wait(now));
                    return None;
                }
            }
            source.take();
            let probe = Probe {
                seq,
                index,
                target,
                timeouts: 0,
                host: None,
                wait: Duration::ZERO,
                waited: Duration::ZERO,
                first_launch: None,
                hold: Hold::No,
                turn: None,
                phase: Phase::Ready,
            };
            // `len < cap <= capacity` guarantees a free slot.
            let key = self.slab.insert(probe)?;
            if let Some(launch) = self.start_attempt(key, now) {
                return Some(launch);
            }
        }
    }

    /// Gives the probe in `key` its next attempt, or sends it to wait for
    /// room in its host's window.
    fn start_attempt(&mut self, key: usize, now: Instant) -> Option<Launch> {
        let probe = self.slab.get_mut(key)?;
        if let (Some(timing), None) = (&mut self.timing, probe.host) {
            let host = probe.index / self.cfg.ports_per_host.max(1);
            match timing.enter(host) {
                Some(host_ref) => probe.host = Some(host_ref),
                None => {
                    probe.phase = Phase::Waiting;
                    self.wheel.insert(key, now + timing.host_wait(host));
                    return None;
                }
            }
        }
        if let (Some(timing), Some(host)) = (&mut self.timing, probe.host) {
            // A parked probe (held, or waiting for its test) takes its
            // room in the host's window again when it goes out.
            if probe.hold == Hold::Held {
                let first = probe.first_launch.unwrap_or(now);
                match timing.recheck(host, first) {
                    Held::Hold => {
                        probe.phase = Phase::Waiting;
                        self.wheel.insert(key, now + HOLD_LOOK);
                        return None;
                    }
                    Held::Report => {
                        timing.unpark(host);
                        self.finish(key, Reason::NoResponse, None, now, None);
                        return None;
                    }
                    Held::Retry => {
                        timing.unpark(host);
                        probe.hold = Hold::Retry;
                    }
                    Held::Test(at) => {
                        probe.hold = Hold::Test;
                        probe.phase = Phase::Waiting;
                        self.wheel.insert(key, at.max(now));
                        return None;
                    }
                }
            }
            if probe.hold == Hold::Test {
                timing.unpark(host);
                probe.hold = Hold::Testing;
            }
            // The test goes at its time; any other launch to a paced host
            // waits for its turn, and keeps the turn it was given until
            // it comes.
            let turn = match probe.turn.take() {
                Some(turn) if turn > now => Some(turn),
                Some(_) => None,
                None if probe.hold == Hold::Testing => None,
                None => timing.pace(host, now),
            };
            if let Some(turn) = turn {
                probe.turn = Some(turn);
                probe.phase = Phase::Waiting;
                self.wheel.insert(key, turn);
                return None;
            }
        }
        let timeout = match (&self.timing, probe.host) {
            (Some(timing), Some(host)) => timing.timeout(host, probe.timeouts),
            _ => self.cfg.timeout,
        };
        probe.waited = probe.wait;
        probe.wait = timeout;
        probe.phase = Phase::Launched;
        let launch = Launch {
            key,
            target: probe.target,
            timeout,
        };
        let (index, attempt) = (probe.index, probe.timeouts);
        self.emit(TraceEvent::Launch {
            probe: index,
            attempt,
            target: launch.target,
        });
        Some(launch)
    }

    /// `socket()` failed for the launch in `key`.
    pub fn handle_socket_error(&mut self, key: usize, errno: i32, now: Instant) -> Fate {
        match classify(Report::Error(errno)) {
            Verdict::Local(e) => self.back_off(key, e, now),
            Verdict::Done(reason) => self.finish(key, reason, None, now, None),
            // socket() never answers "in progress"; treat as an odd error.
            Verdict::Pending => self.finish(key, Reason::Error, None, now, None),
        }
    }

    /// What `connect()` answered for the launch in `key`; `started` is when
    /// it was called.
    pub fn handle_connect(&mut self, key: usize, report: Report, started: Instant) -> Fate {
        let at = self.series_at(started);
        self.stats.series.record_launch(at);
        let Some(probe) = self.slab.get_mut(key) else {
            return Fate::Drop;
        };
        probe.first_launch.get_or_insert(started);
        match classify(report) {
            Verdict::Pending => {
                self.stats.attempts += 1;
                self.backoff.reset();
                let looking = self.eager.should_try();
                probe.phase = Phase::Connecting { started, looking };
                if looking {
                    // The deadline goes in only if the look misses: a hit
                    // (most probes on loopback) costs the wheel nothing.
                    return Fate::Look;
                }
                if self.cfg.deadlines == Deadlines::Wheel {
                    let check = first_check(self.timing.as_ref(), probe, started);
                    self.wheel.insert(key, check);
                }
                Fate::Wait
            }
            // Answered by this machine (a route), not the network: no RTT
            // sample.
            Verdict::Done(reason) => {
                self.stats.attempts += 1;
                self.finish(key, reason, Some(Duration::ZERO), started, None)
            }
            Verdict::Local(e) => self.back_off(key, e, started),
        }
    }

    /// What a look at the socket of `key` showed at `now`: the eager look
    /// after [`Fate::Look`], or a readiness event. `retransmits` reads the
    /// socket's SYN retransmissions (only asked for a slow answer).
    pub fn handle_look(
        &mut self,
        key: usize,
        report: Report,
        now: Instant,
        retransmits: impl FnOnce() -> Option<u32>,
    ) -> Fate {
        self.handle_ready(key, report, now, || None, retransmits)
    }

    /// [`Machine::handle_look`] for a readiness event at `now` (when the
    /// poll returned, not when the event was dequeued), where the driver
    /// can also read the kernel's own handshake RTT (`kernel_rtt`, asked
    /// only for an open port: `TCP_INFO`'s `tcpi_rtt`). The kernel times
    /// the SYN-ACK on arrival and only where Karn's rule allows, so its
    /// figure is the probe's RTT and a clean sample, even when the answer
    /// waited in a queue before it was read or the SYN was resent and the
    /// SYN-ACK's timestamp echo told which one it answers.
    pub fn handle_ready(
        &mut self,
        key: usize,
        report: Report,
        now: Instant,
        kernel_rtt: impl FnOnce() -> Option<Duration>,
        retransmits: impl FnOnce() -> Option<u32>,
    ) -> Fate {
        let Some(probe) = self.slab.get_mut(key) else {
            return Fate::Drop;
        };
        let Phase::Connecting { started, looking } = probe.phase else {
            return Fate::Drop; // stale: the slot moved on
        };
        probe.phase = Phase::Connecting {
            started,
            looking: false,
        };
        match classify(report) {
            Verdict::Pending => {
                if looking {
                    self.eager.miss();
                    if self.cfg.deadlines == Deadlines::Wheel {
                        let check = first_check(self.timing.as_ref(), probe, started);
                        self.wheel.insert(key, check);
                    }
                }
                Fate::Wait // spurious wake-up, or not answered yet
            }
            Verdict::Done(reason) => {
                if looking {
                    self.eager.hit();
                }
                self.wheel.cancel(key);
                let elapsed = now.saturating_duration_since(started);
                let kernel = match reason {
                    Reason::SynAck => kernel_rtt().filter(|rtt| *rtt <= elapsed),
                    _ => None,
                };
                match kernel {
                    Some(rtt) => {
                        let sample = self.sample_allowed(reason, rtt, || Some(0));
                        self.finish(key, reason, Some(rtt), now, Some(sample))
                    }
                    None => {
                        let sample = self.sample_allowed(reason, elapsed, retransmits);
                        self.reason_ip = report.offender();
                        self.finish(key, reason, Some(elapsed), now, Some(sample))
                    }
                }
            }
            Verdict::Local(e) => {
                self.wheel.cancel(key);
                self.back_off(key, e, now)
            }
        }
    }

    /// The driver could not wait on the socket of `key` (`epoll_ctl` failed:
    /// kernel memory or watches): a local error like any other.
    pub fn handle_local_error(&mut self, key: usize, error: LocalError, now: Instant) -> Fate {
        self.wheel.cancel(key);
        self.back_off(key, error, now)
    }

    /// The next probe whose attempt's deadline passed by `now`: take a last
    /// look at its socket and report with [`Machine::handle_deadline`].
    /// Probes whose back-off or host wait is over become ready to launch.
    pub fn poll_expired(&mut self, now: Instant) -> Option<usize> {
        while let Some(key) = self.wheel.poll(now) {
            let Some(probe) = self.slab.get_mut(key) else {
                continue;
            };
            match probe.phase {
                Phase::Connecting { started, .. } => {
                    if let Some(check) = self.rejudge(key, started, now) {
                        self.wheel.insert(key, check);
                        continue;
                    }
                    let Some(probe) = self.slab.get_mut(key) else {
                        continue;
                    };
                    let (index, attempt) = (probe.index, probe.timeouts);
                    self.emit(TraceEvent::Deadline {
                        probe: index,
                        attempt,
                    });
                    return Some(key);
                }
                Phase::Waiting => {
                    probe.phase = Phase::Ready;
                    self.ready.push_back(key);
                }
                Phase::Launched | Phase::Ready | Phase::Serving { .. } => {}
            }
        }
        None
    }

    /// A connecting probe's wheel time came at `now`: `None` if its
    /// deadline is reached, else when to look again.
    ///
    /// An attempt's wait is set when it goes out, from what its host had
    /// shown by then. A host's first probes go out together, before any
    /// of them is answered, and wait as long as for a host never heard
    /// from (`--initial-rtt-timeout`, 1 s by default), and a host's first
    /// samples give a wide RFC 6298 timeout (`srtt + 4·rttvar` with
    /// `rttvar` starting at half the first sample) that narrows over the
    /// next dozen answers; meanwhile the answers to its other ports tell
    /// what this attempt needs. So with adaptive timing an attempt is
    /// judged again every [`REJUDGE_EVERY`] against the wait its host's own
    /// answers now give an attempt (`WorkerTiming::own_timeout`; never
    /// longer than the one it was given, and never by the scan's estimate,
    /// which moves with whichever hosts answered last), as nmap judges
    /// each probe against its host's current timeout. On
    /// netsim's internet-like hosts a 66 ms host's filtered port waited
    /// 1 s on its first try, and a 594 ms host's 1.29 s.
    fn rejudge(&mut self, key: usize, started: Instant, now: Instant) -> Option<Instant> {
        let probe = self.slab.get_mut(key)?;
        let deadline = started + probe.wait;
        if now >= deadline {
            return None;
        }
        let (Some(timing), Some(host)) = (&self.timing, probe.host) else {
            return Some(deadline);
        };
        let Some(own) = timing.own_timeout(host, probe.timeouts) else {
            return Some(deadline.min(now + REJUDGE_EVERY));
        };
        let wait = probe.wait.min(own);
        let due = started + wait;
        if due <= now {
            // Ended early: what it waited is what an answer to its retry
            // is judged against (`WorkerTiming::answered`).
            probe.wait = now.saturating_duration_since(started);
            return None;
        }
        probe.wait = wait;
        Some(due.min(now + REJUDGE_EVERY))
    }

    /// The last look at the socket of `key` after its deadline.
    pub fn handle_deadline(
        &mut self,
        key: usize,
        report: Report,
        now: Instant,
        retransmits: impl FnOnce() -> Option<u32>,
    ) -> Fate {
        let Some(probe) = self.slab.get_mut(key) else {
            return Fate::Drop;
        };
        let Phase::Connecting { started, .. } = probe.phase else {
            return Fate::Drop;
        };
        let (index, attempt) = (probe.index, probe.timeouts);
        if self.cfg.deadlines == Deadlines::Driver {
            // The wheel's deadlines are traced by `poll_expired`.
            self.emit(TraceEvent::Deadline {
                probe: index,
                attempt,
            });
        }
        let Some(probe) = self.slab.get_mut(key) else {
            return Fate::Drop;
        };
        self.wheel.cancel(key);
        let late = classify(report);
        // A late answer was to this attempt: it did not go unanswered.
        if !matches!(late, Verdict::Done(_)) {
            probe.timeouts += 1;
        }
        if late == Verdict::Pending {
            if let Some(budget) = &self.cfg.unanswered {
                budget.charge(now);
            }
        }
        let retries = match (&self.timing, probe.host) {
            (Some(timing), Some(host)) => timing.retries(host),
            _ => self.cfg.retries,
        };
        match late {
            Verdict::Done(reason) => {
                let elapsed = now.saturating_duration_since(started);
                let sample = self.sample_allowed(reason, elapsed, retransmits);
                self.reason_ip = report.offender();
                self.finish(key, reason, Some(elapsed), now, Some(sample))
            }
            Verdict::Local(e) => self.back_off(key, e, now),
            Verdict::Pending if probe.timeouts <= retries => {
                probe.phase = Phase::Ready;
                self.ready.push_back(key);
                self.emit(TraceEvent::Retry {
                    probe: index,
                    attempt: attempt + 1,
                    delay: Duration::ZERO,
                });
                Fate::Drop // a SYN_SENT socket closes silently
            }
            Verdict::Pending => self.silent_on_every_attempt(key, started, now),
        }
    }

    /// Every attempt of `key` went unanswered: its result, unless its
    /// host may limit its RSTs ([`crate::timing::limit`]); then it is
    /// held, or it tests the host.
    /// `last` is when its last attempt went out.
    fn silent_on_every_attempt(&mut self, key: usize, last: Instant, now: Instant) -> Fate {
        let Some(probe) = self.slab.get_mut(key) else {
            return Fate::Drop;
        };
        // Holding needs the wheel to wake the held probe: a driver that
        // keeps its own deadlines (the threads engine) never polls it for
        // waiting probes, and its threads spun on the held ones.
        let wheel_kept = self.cfg.deadlines == Deadlines::Wheel;
        if let (Some(timing), Some(host), Some(first), true) =
            (&mut self.timing, probe.host, probe.first_launch, wheel_kept)
        {
            let wake = match probe.hold {
                Hold::Test | Hold::Testing => match timing.test_silent(host) {
                    Held::Hold | Held::Test(_) => {
                        probe.hold = Hold::Test;
                        Some(now + crate::timing::limit::TEST_AFTER)
                    }
                    Held::Retry => {
                        probe.hold = Hold::Retry;
                        Some(now)
                    }
                    Held::Report => None,
                },
                Hold::Retry => None,
                Hold::No | Hold::Held => match timing.silence(host, first, last) {
                    Silence::Report => None,
                    Silence::Hold => {
                        probe.hold = Hold::Held;
                        Some(now + HOLD_LOOK)
                    }
                    Silence::HoldLast => {
                        // Judged from its last attempt from now on.
                        probe.first_launch = Some(last);
                        probe.hold = Hold::Held;
                        Some(now + HOLD_LOOK)
                    }
                    Silence::Test(at) => {
                        probe.hold = Hold::Test;
                        Some(at.max(now))
                    }
                },
            };
            if let Some(at) = wake {
                if matches!(probe.hold, Hold::Held | Hold::Test) {
                    timing.park(host);
                }
                probe.phase = Phase::Waiting;
                self.wheel.insert(key, at);
                return Fate::Drop; // a SYN_SENT socket closes silently
            }
        }
        self.finish(key, Reason::NoResponse, None, now, None)
    }

    /// Whether an answer after `elapsed` is a clean RTT sample: the
    /// target's own SYN-ACK or RST, and Karn's rule.
    fn sample_allowed(
        &self,
        reason: Reason,
        elapsed: Duration,
        retransmits: impl FnOnce() -> Option<u32>,
    ) -> bool {
        self.timing.is_some()
            && reason.answered()
            && reason.state() != State::Filtered
            && karn_allows(elapsed, retransmits)
    }

    /// The earliest instant something is due: a deadline, a back-off, the
    /// rate's next connect, or a gated source's next ask. `now` when a
    /// probe is ready to launch; `None` when only a report can move things.
    pub fn poll_timeout(&self, now: Instant) -> Option<Instant> {
        if !self.ready.is_empty() {
            return Some(now);
        }
        let wheel = self.wheel.next_expiry();
        let room = self.has_room();
        let source = match self.blocked {
            Blocked::Rate(at) | Blocked::Gated(at) if room => Some(at),
            Blocked::Cap if room => Some(now),
            _ => None,
        };
        match (wheel, source) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The next finished probe's result.
    pub fn poll_result(&mut self) -> Option<ProbeResult> {
        let result = self.results.pop_front();
        if result.is_none() {
            // Emptied: the next results go at the start of the ring again.
            // A ring left to turn writes each result to memory thousands of
            // results cold (4 096 of 80 bytes), a cache miss or two per
            // probe that the next locked instruction (in connect and close)
            // waits for.
            self.results.clear();
        }
        result
    }

    /// Sends the probe to wait, and lowers the in-flight cap to what the
    /// system just showed it can hold.
    fn back_off(&mut self, key: usize, e: LocalError, now: Instant) -> Fate {
        self.stats.record_local_error(e);
        let Some(probe) = self.slab.get_mut(key) else {
            return Fate::Drop;
        };
        probe.phase = Phase::Waiting;
        let index = probe.index;
        let connecting = self.slab.len().saturating_sub(1);
        let before = self.limit;
        self.limit = connecting.clamp(1, self.cfg.concurrency);
        self.grow_credit = 0;
        let delay = self.backoff.next_delay();
        self.wheel.insert(key, now + delay);
        if self.trace.is_some() {
            self.emit(TraceEvent::LocalError {
                probe: index,
                errno: local_errno(e),
            });
            self.emit(TraceEvent::BackOff { delay });
            if self.limit != before {
                let cap = self.limit as u64;
                self.emit(TraceEvent::InFlightCap { cap });
            }
        }
        Fate::Drop
    }

    /// Records the probe's result and frees its slot. `elapsed`: how long
    /// the answered attempt took (its RTT; the caller computed it once
    /// for Karn's rule too). `sample`: `None` when the answer came from this
    /// machine rather than the network, else whether it is a clean RTT
    /// sample.
    fn finish(
        &mut self,
        key: usize,
        reason: Reason,
        elapsed: Option<Duration>,
        now: Instant,
        sample: Option<bool>,
    ) -> Fate {
        let reason_ip = self.reason_ip.take();
        let rtt = elapsed.filter(|_| reason.answered());
        let rtt_us = rtt.map(probe::micros);
        let serve = self.serving && reason == Reason::SynAck;
        let probe = if serve {
            self.slab.get_mut(key).copied()
        } else {
            self.slab.remove(key)
        };
        let Some(probe) = probe else {
            return Fate::Drop;
        };
        let mut srtt = None;
        if let (Some(timing), Some(host)) = (&mut self.timing, probe.host) {
            if reason == Reason::ConnRefused {
                let launched = now.checked_sub(rtt.unwrap_or_default()).unwrap_or(now);
                timing.refused(host, launched, now);
            }
            if probe.hold == Hold::Testing && reason.answered() {
                timing.test_answered(host);
            }
            if reason.answered() {
                let clean = rtt.filter(|_| sample == Some(true));
                let elapsed = rtt.unwrap_or_default();
                timing.answered(host, probe.timeouts, elapsed, probe.waited, clean, now);
                if serve {
                    srtt = timing.srtt(host);
                }
            } else {
                timing.silent(host, now);
            }
            timing.leave(host);
        }
        if serve {
            if let Some(p) = self.slab.get_mut(key) {
                // Left its host's window already: a stop must not leave it again.
                p.host = None;
                p.phase = Phase::Serving { rtt_us, srtt };
            }
            self.in_sessions += 1;
            return Fate::Serve;
        }
        self.record_result(probe, reason, rtt_us, now, None, reason_ip);
        Fate::Close(reason)
    }

    /// Counts a finished probe and hands its result out.
    fn record_result(
        &mut self,
        probe: Probe,
        reason: Reason,
        rtt_us: Option<u32>,
        now: Instant,
        service: Option<Box<crate::service::record::ServiceRecord>>,
        reason_ip: Option<std::net::IpAddr>,
    ) {
        self.stats.record(reason, rtt_us);
        let at = self.series_at(now);
        self.stats.series.record_completion(reason, at);
        if self.trace.is_some() {
            self.trace_close(probe.index, reason);
        }
        self.results.push_back(ProbeResult {
            index: probe.index,
            target: probe.target,
            reason,
            rtt_us,
            service,
            reason_ip,
        });
        self.regrow();
    }

    /// Additive increase after a local-error cut: one more in flight per
    /// `limit` completions.
    fn regrow(&mut self) {
        if self.limit >= self.cfg.concurrency {
            return;
        }
        self.grow_credit += 1;
        if self.grow_credit >= self.limit {
            self.limit += 1;
            self.grow_credit = 0;
            let cap = self.limit as u64;
            self.emit(TraceEvent::InFlightCap { cap });
        }
    }

    // ---- Trace and series hooks ----

    /// From now on the machine queues the events it decides (launch,
    /// deadline, retry, local error and back-off, close, cap and window
    /// changes) for [`Machine::poll_trace`]; the first is the in-flight cap.
    pub fn enable_trace(&mut self) {
        self.trace = Some(VecDeque::with_capacity(64));
        let cap = self.limit as u64;
        self.emit(TraceEvent::InFlightCap { cap });
    }

    /// The next event the machine decided, oldest first: the driver records
    /// it with its clock.
    #[inline]
    pub fn poll_trace(&mut self) -> Option<TraceEvent> {
        self.trace.as_mut()?.pop_front()
    }

    /// The probe index of the probe in slot `key` (for the driver's events).
    pub fn probe_index(&self, key: usize) -> Option<u64> {
        self.slab.slots.get(key)?.as_ref().map(|p| p.index)
    }

    /// The series' sample of probes in flight and of the window (the cap
    /// with fixed timing), once per turn of the driver.
    pub fn sample_series(&mut self, now: Instant) {
        let window = match &self.timing {
            Some(timing) => timing.window(),
            None => self.limit,
        };
        let at = now.saturating_duration_since(self.epoch);
        self.stats
            .series
            .sample(self.slab.len() as u64, window as u64, at);
    }

    /// `t` as the series counts it, the time since the epoch: computed
    /// once per bucket of the series. Any time in a bucket stands for all
    /// of it, and still does after the series coarsens (a wider bucket is
    /// a union of narrower ones), so the span is kept as two instants and
    /// a launch or a completion costs two comparisons instead of a clock
    /// subtraction.
    #[inline]
    fn series_at(&mut self, t: Instant) -> Duration {
        let (from, to, at) = self.series_span;
        if from <= t && t < to {
            at
        } else {
            self.series_enter(t)
        }
    }

    /// [`Machine::series_at`] for a time outside the bucket in hand: the
    /// bucket `t` is in becomes the one in hand.
    #[cold]
    #[inline(never)]
    fn series_enter(&mut self, t: Instant) -> Duration {
        let at = t.saturating_duration_since(self.epoch);
        let width = self.stats.series.width();
        let width_us = width.as_micros().max(1);
        let start_us = at.as_micros() / width_us * width_us;
        let start = Duration::from_micros(u64::try_from(start_us).unwrap_or(u64::MAX));
        let from = self.epoch + start;
        self.series_span = (from, from + width, at);
        at
    }

    #[inline]
    fn emit(&mut self, event: TraceEvent) {
        if let Some(queue) = &mut self.trace {
            queue.push_back(event);
        }
    }

    /// `Close`, and the window when it halved or grew by more than an
    /// eighth (slow start grows it by one per answer: one event each would
    /// drown the trace).
    fn trace_close(&mut self, probe: u64, reason: Reason) {
        self.emit(TraceEvent::Close { probe, reason });
        if let Some(window) = self.timing.as_ref().map(WorkerTiming::window) {
            let last = self.traced_window;
            if window <= last / 2 || window > last + last / 8 {
                self.traced_window = window;
                let window = window as u64;
                self.emit(TraceEvent::Window { window });
            }
        }
    }

    /// On a stop: forgets every probe in flight (the driver closes their
    /// sockets) and returns their sequence numbers, which a resume probes
    /// again. Finished results not yet taken stay in `poll_result`.
    pub fn abandon(&mut self) -> Vec<u64> {
        let mut seqs = Vec::with_capacity(self.slab.len());
        for key in 0..self.slab.slots.len() {
            self.wheel.cancel(key);
            if let Some(probe) = self.slab.remove(key) {
                if let (Some(timing), Some(host)) = (&mut self.timing, probe.host) {
                    timing.leave(host);
                }
                seqs.push(probe.seq);
            }
        }
        self.ready.clear();
        self.in_sessions = 0;
        seqs
    }

    /// The stats so far, with the timing's summary.
    pub fn stats(&self) -> Stats {
        let mut stats = self.stats.clone();
        stats.timing = self.timing_summary();
        stats.rst_limited = self.rst_limited();
        stats
    }

    /// [`Machine::stats`] at the end of a worker: moved out, not copied
    /// (the latency histograms are 1.7 MB, copied on the scan's tail).
    pub fn into_stats(self) -> Stats {
        let timing = self.timing_summary();
        let rst_limited = self.rst_limited();
        Stats {
            timing,
            rst_limited,
            ..self.stats
        }
    }

    fn rst_limited(&self) -> Vec<u64> {
        self.timing
            .as_ref()
            .map_or_else(Vec::new, |t| t.limited_hosts())
    }

    fn timing_summary(&self) -> TimingSummary {
        match &self.timing {
            Some(timing) => timing.summary(),
            None => TimingSummary::fixed(self.cfg.timeout, self.limit),
        }
    }
}

/// The errno behind a local error, for the trace.
/// Where an attempt that began at `started` first comes back from the
/// wheel: at its deadline, or with adaptive timing at the first
/// re-judging check before it (see `Machine::rejudge`). A host without a
/// slot in the timing table never has answers of its own to judge by: its
/// attempts go straight to their deadline.
fn first_check(timing: Option<&WorkerTiming>, probe: &Probe, started: Instant) -> Instant {
    let deadline = started + probe.wait;
    match (timing, probe.host) {
        (Some(_), Some(host)) if host != HostRef::UNTRACKED => {
            deadline.min(started + REJUDGE_EVERY)
        }
        _ => deadline,
    }
}

fn local_errno(e: LocalError) -> i32 {
    match e {
        LocalError::Emfile => libc::EMFILE,
        LocalError::Enfile => libc::ENFILE,
        LocalError::AddrNotAvail => libc::EADDRNOTAVAIL,
        LocalError::NoBufs => libc::ENOBUFS,
        LocalError::Again => libc::EAGAIN,
    }
}

#[cfg(test)]
mod tests;
