//! The event-loop engine: one single-threaded mio poll per worker.
//!
//! A probe is born in [`Worker::launch`]: a non-blocking socket, a connect,
//! and, while recent probes have been answering at once (loopback, a LAN), an
//! immediate look at the socket that often classifies it without ever
//! touching epoll. Otherwise the socket is registered for writable in the
//! worker's poll under a [`Token`] that is its slab index, and its deadline
//! goes into the worker's [`Wheel`] under the same index. The loop then waits
//! for the earlier of readiness and the next deadline:
//!
//! - readiness → [`probe::check`] → [`classify`] → a result;
//! - deadline → a last check, then a retry or `filtered/no-response`;
//! - a local resource error (`EMFILE`, `EADDRNOTAVAIL`, ...) → the probe
//!   waits in the same wheel for a back-off delay and is reissued, while the
//!   worker lowers its own in-flight cap and grows it back slowly.
//!
//! With adaptive timing (no `--timeout`) the worker's [`Timing`] gives each
//! attempt its deadline from the RTT estimate of its host (or of the scan),
//! decides how many retries a silent port gets, and its congestion windows
//! bound what is in flight: the scan's window lowers the same in-flight cap
//! the local errors lower, and a probe whose host's window is full waits in
//! the wheel, like a back-off, until the host has room.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use socket2::Socket;

use std::sync::atomic::AtomicBool;
use std::thread::{Scope, ScopedJoinHandle};

use super::{Collector, EngineConfig, EngineEnd, EngineError, Running, WorkerCtx};
use crate::classify::{LocalError, Reason, Report, State, Verdict, classify};
use crate::order::{Lane, Schedule};
use crate::probe::{self, ProbeResult};
use crate::rate::TokenBucket;
use crate::stats::Stats;
use crate::targets::TargetSpace;
use crate::timing::{HostRef, KERNEL_SYN_RTO, Timing, TimingSummary};
use crate::wheel::Wheel;

/// New probes launched per turn of the loop before events are looked at.
const LAUNCH_BURST: usize = 256;
/// Longest sleep in `poll`, so a stop request is seen promptly.
const MAX_SLEEP: Duration = Duration::from_millis(50);
/// Longest sleep while the block gate holds the worker: the slowest
/// worker is about to let it through.
const HELD_SLEEP: Duration = Duration::from_millis(1);
/// Back-off after a local resource error: first and largest delay.
const BACKOFF_MIN: Duration = Duration::from_millis(1);
const BACKOFF_MAX: Duration = Duration::from_millis(256);

/// Where one in-flight probe stands.
enum Phase {
    /// The connect is under way on this socket since `started`.
    Connecting { socket: Socket, started: Instant },
    /// A local resource error sent the probe to wait for its reissue.
    BackingOff,
}

/// One in-flight probe: a few words in a slab slot.
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
    /// How long the current and the previous attempt wait (adaptive: an
    /// answer to a retry that took longer than the previous wait was a
    /// timeout too short, not a loss).
    wait: Duration,
    waited: Duration,
    phase: Phase,
}

/// In-flight probes, addressed by slot index (= mio token = wheel key).
struct ProbeSlab {
    slots: Vec<Option<Probe>>,
    free: Vec<usize>,
}

impl ProbeSlab {
    fn with_capacity(cap: usize) -> Self {
        ProbeSlab {
            slots: (0..cap).map(|_| None).collect(),
            free: (0..cap).rev().collect(),
        }
    }

    fn len(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
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

    fn drain(&mut self) -> impl Iterator<Item = Probe> + '_ {
        self.free.clear();
        self.free.extend((0..self.slots.len()).rev());
        self.slots.iter_mut().filter_map(Option::take)
    }
}

/// What a hit is worth against a miss's 1: a hit saves an `epoll_ctl`, an
/// event and the look done later anyway (~3 µs), a miss costs one
/// `getsockopt` (~1 µs), so looking pays while more than ~1 probe in 4 hits.
const EAGER_HIT: i32 = 3;

/// Whether to look at a socket right after `connect`, before registering it.
///
/// On loopback or a LAN the answer is often already there when `connect`
/// returns (the SYN, the RST or SYN-ACK are processed before the socket lock
/// is released), and one `getsockopt` then saves an `epoll_ctl` and an event.
/// Against remote hosts the look nearly always misses, so the worker stops
/// looking while it keeps missing, and retries the idea every 64th probe.
struct EagerCheck {
    score: i32,
    skipped: u32,
}

impl EagerCheck {
    fn new() -> Self {
        EagerCheck {
            score: 0,
            skipped: 0,
        }
    }

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

struct Worker<'a> {
    ctx: WorkerCtx<'a>,
    poll: Poll,
    slab: ProbeSlab,
    wheel: Wheel,
    stats: Stats,
    eager: EagerCheck,
    /// Current in-flight cap: `ctx.concurrency`, or lower after local errors.
    limit: usize,
    /// Adaptive timing (`None`: `--timeout` fixed it).
    timing: Option<Timing>,
    /// Ports per host: a probe's host is `index / ports_per_host`.
    ports_per_host: u64,
    /// Completions since the cap last grew.
    grow_credit: usize,
    backoff: Duration,
}

/// What a worker hands back: its stats, how far it got, and the sequence
/// numbers it abandoned in flight on a stop.
type WorkerEnd = (Stats, Lane, Vec<u64>);

/// The running event-loop workers.
pub struct Workers<'scope> {
    handles: Vec<ScopedJoinHandle<'scope, io::Result<WorkerEnd>>>,
}

impl Running for Workers<'_> {
    fn flush_idle(&self) {} // workers flush before they sleep

    fn finished(&self) -> bool {
        false // the channel closes when the last worker ends
    }

    fn join(self) -> Result<EngineEnd, EngineError> {
        let mut end = EngineEnd {
            stats: Stats::new(),
            lanes: Vec::with_capacity(self.handles.len()),
            in_flight: Vec::new(),
        };
        let mut error = None;
        for handle in self.handles {
            match handle.join() {
                Ok(Ok((stats, lane, in_flight))) => {
                    end.stats.merge(&stats);
                    end.lanes.push(lane);
                    end.in_flight.extend(in_flight);
                }
                Ok(Err(e)) => error = Some(EngineError::Worker(e)),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        error.map_or(Ok(end), Err)
    }
}

/// Starts `cfg.threads` workers, each an event loop over an interleaved
/// share of the space and of the concurrency.
pub fn start<'scope, 'env>(
    scope: &'scope Scope<'scope, 'env>,
    space: &'env TargetSpace,
    schedule: &'env Schedule,
    cfg: &EngineConfig,
    stop: &'env AtomicBool,
    collector: &mut Collector,
) -> Result<Workers<'scope>, EngineError> {
    let threads = cfg.threads.max(1);
    let per_worker = (cfg.concurrency / threads).max(1);
    let mut handles = Vec::with_capacity(threads);
    let now = Instant::now();
    for (id, indices) in schedule.strides(threads).into_iter().enumerate() {
        let ctx = WorkerCtx {
            id,
            space,
            schedule,
            indices,
            bucket: cfg
                .rate
                .map(|rate| TokenBucket::new(rate / threads as f64, now)),
            concurrency: per_worker,
            timeout: cfg.timeout,
            retries: cfg.retries,
            adaptive: cfg.adaptive,
            stop,
            out: collector.sender(),
        };
        let spawned = std::thread::Builder::new()
            .name(format!("fastport-loop-{id}"))
            .spawn_scoped(scope, move || run(ctx));
        match spawned {
            Ok(handle) => handles.push(handle),
            Err(e) => {
                stop.store(true, Ordering::SeqCst);
                return Err(EngineError::Worker(e));
            }
        }
    }
    Ok(Workers { handles })
}

/// Runs one worker to the end of its share of the space (or a stop request).
pub fn run(ctx: WorkerCtx<'_>) -> io::Result<WorkerEnd> {
    let cap = ctx.concurrency.max(1);
    let mut events = Events::with_capacity(cap.clamp(64, 1024));
    let mut worker = Worker {
        poll: Poll::new()?,
        slab: ProbeSlab::with_capacity(cap),
        wheel: Wheel::new(cap, Instant::now()),
        stats: Stats::new(),
        eager: EagerCheck::new(),
        limit: cap,
        timing: ctx
            .adaptive
            .map(|params| Timing::new(params, ctx.retries, cap)),
        ports_per_host: (ctx.space.ports().len() as u64).max(1),
        grow_credit: 0,
        backoff: BACKOFF_MIN,
        ctx,
    };
    let in_flight = worker.run(&mut events);
    worker.stats.timing = match &worker.timing {
        Some(timing) => timing.summary(),
        None => TimingSummary::fixed(worker.ctx.timeout, worker.limit),
    };
    Ok((worker.stats, worker.ctx.indices.lane(), in_flight))
}

impl Worker<'_> {
    /// Runs to the end; returns the sequence numbers abandoned in flight.
    fn run(&mut self, events: &mut Events) -> Vec<u64> {
        let mut more = true;
        let mut abandoned = Vec::new();
        loop {
            if self.ctx.stop.load(Ordering::Relaxed) {
                abandoned = self.abandon_in_flight();
                break;
            }
            if more {
                more = self.launch_burst();
            }
            if !more && self.slab.is_empty() {
                break;
            }

            let now = Instant::now();
            // Held by the block gate: sleep until a probe ends (or briefly).
            let held = more && self.ctx.indices.peek().is_none();
            let can_launch_now = more && !held && self.slab.len() < self.cap();
            // Under --rate, a worker with room waits for its next token.
            let token_wait = match &mut self.ctx.bucket {
                Some(bucket) if can_launch_now => bucket.wait(now),
                _ => Duration::ZERO,
            };
            let sleep = if can_launch_now && token_wait.is_zero() {
                Duration::ZERO
            } else {
                let wheel = self
                    .wheel
                    .next_expiry()
                    .map_or(MAX_SLEEP, |t| t.saturating_duration_since(now));
                let wheel = if can_launch_now {
                    wheel.min(token_wait)
                } else {
                    wheel
                };
                let wheel = if held { wheel.min(HELD_SLEEP) } else { wheel };
                wheel.min(MAX_SLEEP)
            };
            if !sleep.is_zero() {
                // About to wait: let the writer show what we have.
                self.ctx.out.flush();
            }
            if let Err(e) = self.poll.poll(events, Some(sleep)) {
                // EINTR (a signal) is routine; anything else is retried after
                // the wheel runs, which bounds a stuck poll by its deadlines.
                debug_assert!(e.kind() == io::ErrorKind::Interrupted, "poll: {e}");
            }
            for event in events.iter() {
                self.on_ready(event.token().0);
            }
            self.expire(Instant::now());
        }
        self.ctx.out.flush();
        abandoned
    }

    /// Launches up to a burst of new probes. Returns whether the worker's
    /// share of the space has more.
    fn launch_burst(&mut self) -> bool {
        let now = Instant::now();
        let mut launched = 0;
        while launched < LAUNCH_BURST {
            if self.slab.len() >= self.cap() {
                return true;
            }
            let Some(seq) = self.ctx.indices.peek() else {
                // At the end, or held at a block boundary for a while.
                return !self.ctx.indices.is_exhausted();
            };
            if self.ctx.schedule.done.contains(seq) {
                self.ctx.indices.next(); // finished by the run we resume
                continue;
            }
            if let Some(bucket) = &mut self.ctx.bucket {
                if !bucket.try_take(now) {
                    return true; // the loop sleeps until the next token
                }
            }
            self.ctx.indices.next();
            launched += 1;
            let index = self.ctx.schedule.index(seq);
            let Some(target) = self.ctx.space.get(index) else {
                // The stride stays below `space.len()`, so this cannot
                // happen; skipping is the safe answer if it ever did.
                debug_assert!(false, "index {index} outside the space");
                continue;
            };
            let probe = Probe {
                seq,
                index,
                target,
                timeouts: 0,
                host: None,
                wait: Duration::ZERO,
                waited: Duration::ZERO,
                phase: Phase::BackingOff,
            };
            // `len < cap <= capacity` guarantees a free slot.
            if let Some(key) = self.slab.insert(probe) {
                self.launch(key);
            }
        }
        true
    }

    /// Probes in flight allowed now: the local-error cap, and the
    /// congestion window with adaptive timing.
    fn cap(&self) -> usize {
        match &self.timing {
            Some(timing) => self.limit.min(timing.window()),
            None => self.limit,
        }
    }

    /// Starts (or restarts) the connect of the probe in slot `key`.
    fn launch(&mut self, key: usize) {
        let Some(probe) = self.slab.get_mut(key) else {
            return;
        };
        let target = probe.target;
        if let (Some(timing), None) = (&mut self.timing, probe.host) {
            let host = probe.index / self.ports_per_host;
            match timing.enter(host) {
                Some(host_ref) => probe.host = Some(host_ref),
                None => {
                    // The host's window is full: wait in the wheel for room.
                    let wait = timing.host_wait(host);
                    self.wheel.insert(key, Instant::now() + wait);
                    return;
                }
            }
        }
        let timeout = match (&self.timing, probe.host) {
            (Some(timing), Some(host)) => timing.timeout(host, probe.timeouts),
            _ => self.ctx.timeout,
        };
        probe.waited = probe.wait;
        probe.wait = timeout;
        let socket = match probe::new_socket(&target, true) {
            Ok(socket) => socket,
            Err(e) => return self.conclude_error(key, probe::errno(&e), None),
        };
        let started = Instant::now();
        let verdict = classify(probe::start_connect(&socket, &target));
        match verdict {
            Verdict::Pending => {}
            Verdict::Done(reason) => {
                // Answered by this machine (a route), not the network: no RTT sample.
                self.stats.attempts += 1;
                return self.finish(key, reason, Some(started), Some(socket), false);
            }
            Verdict::Local(e) => return self.back_off(key, e),
        }
        self.stats.attempts += 1;
        self.backoff = BACKOFF_MIN;

        if self.eager.should_try() {
            match classify(probe::check(&socket)) {
                Verdict::Done(reason) => {
                    self.eager.hit();
                    return self.finish(key, reason, Some(started), Some(socket), true);
                }
                Verdict::Local(e) => return self.back_off(key, e),
                Verdict::Pending => self.eager.miss(),
            }
        }

        let fd = socket.as_raw_fd();
        if let Err(e) =
            self.poll
                .registry()
                .register(&mut SourceFd(&fd), Token(key), Interest::WRITABLE)
        {
            // epoll_ctl fails only for lack of kernel memory or watches.
            let _ = e;
            return self.back_off(key, LocalError::NoBufs);
        }
        self.wheel.insert(key, started + timeout);
        if let Some(probe) = self.slab.get_mut(key) {
            probe.phase = Phase::Connecting { socket, started };
        }
    }

    /// A socket in slot `key` reported readiness.
    fn on_ready(&mut self, key: usize) {
        let Some(Probe {
            phase: Phase::Connecting { socket, started },
            ..
        }) = self.slab.get_mut(key)
        else {
            return; // stale token: the slot moved on
        };
        let started = *started;
        match classify(probe::check(socket)) {
            Verdict::Pending => {} // spurious wake-up: keep waiting
            Verdict::Done(reason) => {
                self.wheel.cancel(key);
                let socket = self.take_socket(key);
                self.finish(key, reason, Some(started), socket, true);
            }
            Verdict::Local(e) => {
                self.wheel.cancel(key);
                self.back_off(key, e);
            }
        }
    }

    /// Handles every deadline that has passed.
    fn expire(&mut self, now: Instant) {
        while let Some(key) = self.wheel.poll(now) {
            let Some(probe) = self.slab.get_mut(key) else {
                continue;
            };
            let Phase::Connecting { socket, started } = &probe.phase else {
                self.launch(key); // a back-off delay is over
                continue;
            };
            let started = *started;
            // An answer may have landed after the last poll returned.
            let late = classify(probe::check(socket));
            // A late answer was to this attempt: it did not go unanswered.
            if !matches!(late, Verdict::Done(_)) {
                probe.timeouts += 1;
            }
            let retries = match (&self.timing, probe.host) {
                (Some(timing), Some(host)) => timing.retries(host),
                _ => self.ctx.retries,
            };
            let retry = probe.timeouts <= retries;
            let socket = self.take_socket(key);
            match late {
                Verdict::Done(reason) => self.finish(key, reason, Some(started), socket, true),
                Verdict::Local(e) => self.back_off(key, e),
                Verdict::Pending => {
                    drop(socket); // a SYN_SENT socket closes silently
                    if retry {
                        self.launch(key);
                    } else {
                        self.finish(key, Reason::NoResponse, None, None, false);
                    }
                }
            }
        }
    }

    /// Takes the socket out of a connecting probe, leaving it backing off.
    fn take_socket(&mut self, key: usize) -> Option<Socket> {
        let probe = self.slab.get_mut(key)?;
        match std::mem::replace(&mut probe.phase, Phase::BackingOff) {
            Phase::Connecting { socket, .. } => Some(socket),
            Phase::BackingOff => None,
        }
    }

    /// An errno from `socket()`/`connect()` before the probe got going.
    fn conclude_error(&mut self, key: usize, errno: i32, started: Option<Instant>) {
        match classify(Report::Error(errno)) {
            Verdict::Local(e) => self.back_off(key, e),
            Verdict::Done(reason) => self.finish(key, reason, started, None, false),
            // socket() never answers "in progress"; treat as an odd error.
            Verdict::Pending => self.finish(key, Reason::Error, started, None, false),
        }
    }

    /// Sends the probe to wait, and lowers the in-flight cap to what the
    /// system just showed it can hold.
    fn back_off(&mut self, key: usize, e: LocalError) {
        self.stats.record_local_error(e);
        drop(self.take_socket(key));
        let connecting = self.slab.len().saturating_sub(1);
        self.limit = connecting.clamp(1, self.ctx.concurrency.max(1));
        self.grow_credit = 0;
        self.wheel.insert(key, Instant::now() + self.backoff);
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
    }

    /// Reports the probe's result and frees its slot. `from_network`: the
    /// answer came over the network (not from a local route), so it is an
    /// RTT sample for adaptive timing unless Karn's rule says otherwise.
    fn finish(
        &mut self,
        key: usize,
        reason: Reason,
        started: Option<Instant>,
        socket: Option<Socket>,
        from_network: bool,
    ) {
        let now = Instant::now();
        let rtt = match started {
            Some(t) if reason.answered() => Some(now.saturating_duration_since(t)),
            _ => None,
        };
        let rtt_us = rtt.map(probe::micros);
        if let (
            Some(timing),
            Some(Probe {
                host: Some(host),
                timeouts,
                waited,
                ..
            }),
        ) = (&mut self.timing, self.slab.get_mut(key))
        {
            let (host, try_no, waited) = (*host, *timeouts, *waited);
            if reason.answered() {
                // Samples come from the target's own SYN-ACK or RST only.
                let sample = rtt
                    .filter(|_| from_network && reason.state() != State::Filtered)
                    .filter(|&rtt| karn_allows(rtt, socket.as_ref()));
                let elapsed = rtt.unwrap_or_default();
                timing.answered(host, try_no, elapsed, waited, sample, now);
            } else {
                timing.silent(host, now);
            }
            timing.leave(host);
        }
        if let Some(socket) = socket {
            probe::close(socket, reason);
        }
        let Some(probe) = self.slab.remove(key) else {
            return;
        };
        self.stats.record(reason, rtt_us);
        self.ctx.out.push(ProbeResult {
            index: probe.index,
            target: probe.target,
            reason,
            rtt_us,
        });
        self.regrow();
    }

    /// Additive increase after a local-error cut: one more in flight per
    /// `limit` completions.
    fn regrow(&mut self) {
        if self.limit >= self.ctx.concurrency {
            return;
        }
        self.grow_credit += 1;
        if self.grow_credit >= self.limit {
            self.limit += 1;
            self.grow_credit = 0;
        }
    }

    /// On a stop request: close every in-flight socket, report nothing, and
    /// return their sequence numbers (a resume probes them again).
    fn abandon_in_flight(&mut self) -> Vec<u64> {
        for key in 0..self.slab.slots.len() {
            self.wheel.cancel(key);
        }
        self.slab.drain().map(|probe| probe.seq).collect()
    }
}

/// Karn's rule for one answered attempt: an answer that came before the
/// kernel's first SYN retransmission is a clean sample; a slower one is
/// only if `TCP_INFO` shows no retransmission (read only then, so the fast
/// path pays nothing).
pub(crate) fn karn_allows(rtt: Duration, socket: Option<&Socket>) -> bool {
    if rtt < KERNEL_SYN_RTO {
        return true;
    }
    socket.is_some_and(|s| matches!(crate::sys::tcp_retransmits(s), Ok(0)))
}
