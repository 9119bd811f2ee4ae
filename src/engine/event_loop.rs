//! The event-loop engine: one single-threaded mio poll per worker, each the
//! driver of one [`Machine`] (which decides everything a probe does).
//!
//! The driver only makes the syscalls: for each [`Launch`] a non-blocking
//! socket and a connect, and, when the machine asks ([`Fate::Look`]), an
//! immediate look at the socket that often classifies it without ever
//! touching epoll. Otherwise the socket is registered for writable under a
//! [`Token`] that is the probe's slot in the machine, and the loop waits for
//! the earlier of readiness and the machine's next timeout:
//!
//! - readiness → [`probe::check`] → [`Machine::handle_look`], timed when
//!   the poll returned (readiness time, not the time the event was
//!   dequeued: at 15 000 in flight the difference inflated RTTs by 30 %);
//! - before any deadline runs, every readiness already pending is read
//!   (a full events buffer is followed by zero-wait polls): a deadline
//!   must not fire on an answer that arrived but was not read;
//! - a deadline ([`Machine::poll_expired`]) → a last check →
//!   [`Machine::handle_deadline`];
//! - every report says what to do with the socket ([`Fate`]): keep it,
//!   close it, or drop it — or, with `-sV`/`--banners`, hand an open port's
//!   connected socket to a service [`Session`] ([`Fate::Serve`]).
//!
//! # Service sessions
//!
//! With service detection on, the worker keeps a [`Session`] per open port
//! in the same poll, in a slab indexed like the machine's probes (the open
//! probe keeps its slot, so it counts in flight until the session ends).
//! Session tokens sit above [`SESSION_TOKENS`], [`LANES`] per slot, so they
//! never meet a probe's token; their deadlines wait in a timer wheel of
//! their own. A session's extra connects wait in it until admitted: first
//! of anything each turn, each counted in the in-flight cap (the sockets
//! the sessions hold beyond one each, [`Machine::set_session_extra`]) and
//! taken from the shared `--rate`. When a session ends, the machine hands
//! out the port's result with the service ([`Machine::handle_served`]):
//! each open port is written once, with its service. Without `-sV` none of
//! this exists: the plain path pays one comparison per readiness event.

use std::collections::VecDeque;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{Scope, ScopedJoinHandle};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use socket2::Socket;

use super::machine::{Deadlines, Fate, Launch, Machine, MachineConfig};
use super::services::{LANES, Session};
use super::{Collector, EngineConfig, EngineEnd, EngineError, ResultTx, Running, StrideSource};
use crate::classify::{LocalError, Report};
use crate::order::{Lane, OrderCursor, Schedule};
use crate::probe;
use crate::rate::Gcra;
use crate::service::conversation::Conversation;
use crate::service::options::ServiceOptions;
use crate::stats::Stats;
use crate::targets::TargetSpace;
use crate::trace::{TraceEvent, Tracer};
use crate::wheel::Wheel;

/// New probes launched per turn of the loop before events are looked at.
const LAUNCH_BURST: usize = 256;
/// Longest sleep in `poll`, so a stop request is seen promptly.
const MAX_SLEEP: Duration = Duration::from_millis(50);
/// Extra zero-wait polls after a full events buffer, before deadlines run
/// (bounds the time expiries and launches wait behind a flood of answers).
const DRAIN_ROUNDS: usize = 64;
/// Poll errors other than EINTR in a row before the worker gives up (one
/// could be a passing shortage of kernel memory; a run of them is not).
const POLL_ERRORS: u32 = 100;

/// The first token of the service sessions: slot `key`'s session has
/// `SESSION_TOKENS + key * LANES ..` (probe tokens are slot numbers, far
/// below).
pub const SESSION_TOKENS: usize = 1 << 40;
/// The RTT service waits start from when nothing measured one.
const DEFAULT_SERVICE_RTT: Duration = Duration::from_millis(100);

/// What a worker hands back: its stats, how far it got, the sequence
/// numbers it abandoned in flight on a stop, and its panic if it had one.
type WorkerEnd = (Stats, Lane, Vec<u64>, Option<String>);

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
            panicked: None,
        };
        let mut error = None;
        for handle in self.handles {
            match handle.join() {
                Ok(Ok((stats, lane, in_flight, panicked))) => {
                    end.panicked = end.panicked.or(panicked);
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
/// share of the space and of the concurrency; `--rate` is one limiter they
/// all share.
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
    let rate = cfg.rate.map(|rate| Arc::new(Gcra::new(rate, now)));
    let unanswered = cfg.unanswered_rate.map(|r| Arc::new(Gcra::new(r, now)));
    // One stride per worker, held together by the order's block gate.
    for (id, stride) in schedule.strides(threads).into_iter().enumerate() {
        let source = StrideSource {
            space,
            schedule,
            stride,
            cursor: OrderCursor::default(),
        };
        let machine_cfg = MachineConfig {
            concurrency: per_worker,
            timeout: cfg.timeout,
            retries: cfg.retries,
            adaptive: cfg.adaptive,
            ports_per_host: (space.ports().len() as u64).max(1),
            deadlines: Deadlines::Wheel,
            unanswered: unanswered.clone(),
        };
        let rate = rate.clone();
        let out = collector.sender();
        let tracer = cfg.trace.as_ref().map(|sink| sink.tracer(id as u8));
        let services = cfg
            .services
            .clone()
            .map(|options| Sessions::new(options, per_worker, cfg.timeout, now));
        let spawned = std::thread::Builder::new()
            .name(format!("fastport-worker-{id}"))
            .spawn_scoped(scope, move || {
                // Every worker counts from the same instant (trace, series).
                let mut machine = Machine::new(machine_cfg, rate, now);
                if tracer.is_some() {
                    machine.enable_trace();
                }
                machine.set_serving(services.is_some());
                run(machine, source, stop, out, tracer, services, now)
            });
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

/// One worker: the machine, its sockets (by slot) and its poll.
struct Driver<'a> {
    machine: Machine,
    source: StrideSource<'a>,
    poll: Poll,
    sockets: Vec<Option<Socket>>,
    out: ResultTx,
    /// `--trace`: this worker's recorder, and the scan's time zero.
    tracer: Option<Tracer>,
    epoch: Instant,
    /// `-sV`/`--banners`: the open ports' service sessions.
    sessions: Option<Sessions>,
}

/// A worker's service sessions (see the module documentation).
struct Sessions {
    options: ServiceOptions,
    /// By the open probe's slot.
    slots: Vec<Option<Session>>,
    /// Each session's next deadline, by slot.
    wheel: Wheel,
    /// Slots whose session waits to connect a lane, and whether queued.
    connecting: VecDeque<usize>,
    queued: Vec<bool>,
    /// Sockets the sessions hold beyond one each.
    extra: usize,
    /// When the rate allows the next waiting connect.
    wake: Option<Instant>,
    connect_timeout: Duration,
}

impl Sessions {
    fn new(options: ServiceOptions, slots: usize, connect_timeout: Duration, now: Instant) -> Self {
        Sessions {
            options,
            slots: (0..slots).map(|_| None).collect(),
            wheel: Wheel::new(slots, now),
            connecting: VecDeque::new(),
            queued: vec![false; slots],
            extra: 0,
            wake: None,
            connect_timeout,
        }
    }

    /// Slot `key`'s session's first token.
    fn base(key: usize) -> usize {
        SESSION_TOKENS + key * LANES
    }

    /// The slot a session token belongs to.
    fn key_of(token: usize) -> usize {
        (token - SESSION_TOKENS) / LANES
    }

    /// Brings the books up to date after slot `key`'s session moved (it
    /// held `before` sockets): the extra sockets, its deadline, its wish to
    /// connect; and ends it if it is over.
    fn settle(
        &mut self,
        poll: &Poll,
        machine: &mut Machine,
        key: usize,
        before: usize,
        now: Instant,
    ) {
        let Some(session) = self.slots.get_mut(key).and_then(Option::as_mut) else {
            return;
        };
        let after = session.sockets();
        self.extra =
            (self.extra + after.saturating_sub(1)).saturating_sub(before.saturating_sub(1));
        self.wheel.cancel(key);
        let deadline = session.next_deadline();
        let wants = session.wants_connect();
        let over = session.verdict().is_some() || (deadline.is_none() && !wants);
        if over {
            session.close_all(poll);
            let record = session.record().unwrap_or_default();
            self.extra = self.extra.saturating_sub(after.saturating_sub(1));
            self.slots[key] = None;
            machine.set_session_extra(self.extra);
            machine.handle_served(key, now, Some(Box::new(record)));
            return;
        }
        machine.set_session_extra(self.extra);
        if let Some(deadline) = deadline {
            self.wheel.insert(key, deadline);
        }
        if wants && !self.queued[key] {
            self.queued[key] = true;
            self.connecting.push_back(key);
        }
    }

    /// Makes the connects the sessions wait for, as far as the in-flight
    /// cap and the rate allow.
    fn admit(&mut self, poll: &Poll, machine: &mut Machine, now: Instant) {
        self.wake = None;
        for _ in 0..self.connecting.len() {
            let Some(key) = self.connecting.pop_front() else {
                break;
            };
            self.queued[key] = false;
            let Some(session) = self.slots[key].as_mut() else {
                continue;
            };
            let before = session.sockets();
            let (extra, mut added, mut wake) = (self.extra, 0, None);
            session.start_connects(poll, now, |grows| {
                machine.set_session_extra(extra + added);
                match machine.admit_session_connect(now, grows) {
                    Ok(()) => {
                        added += usize::from(grows);
                        true
                    }
                    Err(when) => {
                        wake = when;
                        false
                    }
                }
            });
            if let Some(when) = wake {
                self.wake = Some(self.wake.map_or(when, |w| w.min(when)));
            }
            self.settle(poll, machine, key, before, now);
        }
    }

    /// Closes every session (a stop): their probes are abandoned with the
    /// machine's.
    fn close_all(&mut self, poll: &Poll) {
        for session in self.slots.iter_mut().filter_map(Option::take) {
            let mut session = session;
            session.close_all(poll);
        }
        self.connecting.clear();
        self.queued.iter_mut().for_each(|q| *q = false);
        self.extra = 0;
    }
}

/// Runs one worker to the end of its share of the space (or a stop request).
fn run(
    machine: Machine,
    source: StrideSource<'_>,
    stop: &AtomicBool,
    out: ResultTx,
    tracer: Option<Tracer>,
    sessions: Option<Sessions>,
    epoch: Instant,
) -> io::Result<WorkerEnd> {
    let cap = machine.capacity();
    let mut events = Events::with_capacity(cap.clamp(64, 1024));
    let mut driver = Driver {
        machine,
        source,
        poll: Poll::new()?,
        sockets: (0..cap).map(|_| None).collect(),
        out,
        tracer,
        epoch,
        sessions,
    };
    // A panic ends this worker, not the run: the others are stopped and
    // what was reported is kept as after a signal (the probes this worker
    // had in flight are handed back for a resume), so a bug costs the
    // resume file nothing.
    let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        driver.run(&mut events, stop)
    }));
    let (in_flight, panicked) = match ran {
        Ok(in_flight) => (in_flight?, None),
        Err(payload) => {
            stop.store(true, Ordering::SeqCst);
            let message = super::panic_message(payload.as_ref());
            let recovered = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                driver.drain();
                driver.sockets.iter_mut().for_each(|s| drop(s.take()));
                let abandoned = driver.machine.abandon();
                driver.out.flush();
                abandoned
            }));
            match recovered {
                Ok(abandoned) => (abandoned, Some(message)),
                Err(_) => return Err(io::Error::other(format!("a worker panicked: {message}"))),
            }
        }
    };
    if let Some(tracer) = driver.tracer.take() {
        // A failed trace write loses the trace, not the scan.
        let _ = tracer.finish();
    }
    let lane = driver.source.stride.lane();
    Ok((driver.machine.into_stats(), lane, in_flight, panicked))
}

impl Driver<'_> {
    /// Runs to the end; returns the sequence numbers abandoned in flight.
    fn run(&mut self, events: &mut Events, stop: &AtomicBool) -> io::Result<Vec<u64>> {
        let mut poll_errors = 0;
        loop {
            if stop.load(Ordering::Relaxed) {
                self.sockets.iter_mut().for_each(|s| drop(s.take()));
                if let Some(sessions) = &mut self.sessions {
                    sessions.close_all(&self.poll);
                }
                let abandoned = self.machine.abandon();
                self.drain();
                self.out.flush();
                return Ok(abandoned);
            }
            let now = Instant::now();
            self.machine.sample_series(now);
            let mut launched = 0;
            // Sessions' connects first: they finish what was found.
            let sessions_wait = match &mut self.sessions {
                Some(sessions) => {
                    sessions.admit(&self.poll, &mut self.machine, now);
                    !sessions.connecting.is_empty()
                }
                None => false,
            };
            while launched < LAUNCH_BURST && !sessions_wait {
                let Some(launch) = self.machine.poll_launch(now, &mut self.source) else {
                    break;
                };
                self.launch(launch);
                launched += 1;
            }
            self.drain();
            if self.machine.is_done() {
                break;
            }
            let sleep = if launched == LAUNCH_BURST {
                Duration::ZERO
            } else {
                let sessions = self.sessions.as_ref().and_then(|s| {
                    let wheel = s.wheel.next_expiry();
                    match (wheel, s.wake) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    }
                });
                let next = match (self.machine.poll_timeout(now), sessions) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                next.map_or(MAX_SLEEP, |t| t.saturating_duration_since(now))
                    .min(MAX_SLEEP)
            };
            if !sleep.is_zero() {
                // About to wait: let the writer show what we have.
                self.out.flush();
            }
            match self.poll.poll(events, Some(sleep)) {
                Ok(()) => poll_errors = 0,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // Retried after the deadlines run (a passing shortage);
                    // a run of failures ends the worker with the error.
                    poll_errors += 1;
                    if poll_errors >= POLL_ERRORS {
                        self.sockets.iter_mut().for_each(|s| drop(s.take()));
                        if let Some(sessions) = &mut self.sessions {
                            sessions.close_all(&self.poll);
                        }
                        self.machine.abandon();
                        self.drain();
                        self.out.flush();
                        return Err(io::Error::new(e.kind(), format!("epoll_wait: {e}")));
                    }
                }
            }
            // Readiness is timed when the poll returns, not when each
            // event is dequeued: the answer was there by then.
            let ready_at = Instant::now();
            self.on_events(events, ready_at);
            self.drain_readiness(events);
            self.expire(Instant::now());
            self.drain();
        }
        self.out.flush();
        Ok(Vec::new())
    }

    /// Hands finished results to the writer's batch.
    fn drain(&mut self) {
        while let Some(result) = self.machine.poll_result() {
            self.out.push(result);
        }
    }

    /// Makes the connect the machine asked for.
    fn launch(&mut self, Launch { key, target, .. }: Launch) {
        let socket = match probe::new_socket(&target, true) {
            Ok(socket) => socket,
            Err(e) => {
                let now = Instant::now();
                self.machine.handle_socket_error(key, probe::errno(&e), now);
                self.trace_machine(now);
                return;
            }
        };
        let started = Instant::now();
        // Trace hook: the machine's `Launch`, stamped before connect().
        self.trace_machine(started);
        let report = probe::start_connect(&socket, &target);
        if self.tracer.is_some() {
            let returned = Instant::now();
            self.trace_probe(key, returned, |probe| TraceEvent::Connect {
                probe,
                errno: connect_errno(report),
            });
        }
        let fate = self.machine.handle_connect(key, report, started);
        self.trace_machine(started);
        match fate {
            Fate::Look => {
                let report = probe::check(&socket);
                // One clock read stamps the look, what it found, and the
                // machine's decision on it.
                let now = Instant::now();
                self.trace_probe(key, now, |probe| TraceEvent::EagerLook {
                    probe,
                    errno: look_errno(report),
                });
                // The look's verdict is EagerLook's errno; of what it asked
                // the kernel only the self-connect test adds a record.
                if let Report::Connected { local, peer } = report {
                    self.trace_probe(key, now, |probe| TraceEvent::SockName {
                        probe,
                        self_connect: local == peer,
                    });
                }
                let fate = self
                    .machine
                    .handle_look(key, report, now, || retransmits(&socket));
                self.trace_machine(now);
                self.apply(key, socket, fate, false);
            }
            fate => self.apply(key, socket, fate, false),
        }
    }

    /// Does what the machine said with the socket of `key`.
    fn apply(&mut self, key: usize, socket: Socket, fate: Fate, registered: bool) {
        match fate {
            Fate::Wait | Fate::Look if registered => self.sockets[key] = Some(socket),
            Fate::Wait | Fate::Look => {
                let fd = socket.as_raw_fd();
                match self.poll.registry().register(
                    &mut SourceFd(&fd),
                    Token(key),
                    Interest::WRITABLE,
                ) {
                    Ok(()) => self.sockets[key] = Some(socket),
                    // epoll_ctl fails only for lack of kernel memory or watches.
                    Err(_) => {
                        self.machine
                            .handle_local_error(key, LocalError::NoBufs, Instant::now());
                    }
                }
            }
            Fate::Close(reason) => probe::close(socket, reason),
            Fate::Drop => drop(socket),
            Fate::Serve => self.serve(key, socket, registered),
        }
    }

    /// The port in slot `key` is open: its socket goes to a service session
    /// (or, on a port the probe file excludes, its result goes out at once).
    fn serve(&mut self, key: usize, socket: Socket, registered: bool) {
        let now = Instant::now();
        if registered {
            let fd = socket.as_raw_fd();
            let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
        }
        let Some(sessions) = &mut self.sessions else {
            probe::close(socket, crate::classify::Reason::SynAck);
            self.machine.handle_served(key, now, None);
            return;
        };
        let target = socket.peer_addr().ok().and_then(|a| a.as_socket());
        let target = match target {
            Some(t) if !sessions.options.matcher.is_excluded(t.port()) => t,
            _ => {
                probe::close(socket, crate::classify::Reason::SynAck);
                self.machine.handle_served(key, now, None);
                return;
            }
        };
        let rtt = self.machine.session_rtt(key).unwrap_or(DEFAULT_SERVICE_RTT);
        let settings = sessions.options.settings(rtt);
        let conv = Conversation::new(
            Arc::clone(&sessions.options.matcher),
            target.port(),
            settings,
            now,
        );
        let stream = std::net::TcpStream::from(socket);
        match Session::new(
            &self.poll,
            Sessions::base(key),
            target,
            stream,
            conv,
            sessions.connect_timeout,
            now,
        ) {
            Ok(session) => {
                sessions.slots[key] = Some(session);
                // A new session holds one socket, counted by its slot.
                sessions.settle(&self.poll, &mut self.machine, key, 1, now);
            }
            Err(_) => self.machine.handle_served(key, now, None),
        }
    }

    /// A readiness event for a session's token.
    fn on_session(&mut self, token: usize, ready_at: Instant) {
        let Some(sessions) = &mut self.sessions else {
            return;
        };
        let key = Sessions::key_of(token);
        let Some(session) = sessions.slots.get_mut(key).and_then(Option::as_mut) else {
            return; // stale: the session is over
        };
        let before = session.sockets();
        session.handle_event(&self.poll, Token(token), ready_at);
        sessions.settle(&self.poll, &mut self.machine, key, before, ready_at);
    }

    /// Handles one batch of readiness events, all timed at `ready_at`.
    fn on_events(&mut self, events: &Events, ready_at: Instant) {
        for event in events.iter() {
            let token = event.token().0;
            if token >= SESSION_TOKENS {
                self.on_session(token, ready_at);
            } else {
                self.on_ready(token, ready_at);
            }
        }
    }

    /// Drains before expiring: while the last poll filled the events
    /// buffer, more sockets may have answered than it could hold; poll
    /// again without waiting (up to [`DRAIN_ROUNDS`] times) so that no
    /// deadline fires on an answer that has arrived but was not read.
    fn drain_readiness(&mut self, events: &mut Events) {
        let mut rounds = 0;
        while rounds < DRAIN_ROUNDS && events.iter().count() >= events.capacity() {
            rounds += 1;
            if self.poll.poll(events, Some(Duration::ZERO)).is_err() {
                return; // the next turn's poll reports a persistent error
            }
            let ready_at = Instant::now();
            self.on_events(events, ready_at);
        }
    }

    /// A socket in slot `key` reported readiness at `ready_at`.
    fn on_ready(&mut self, key: usize, ready_at: Instant) {
        let Some(socket) = self.sockets.get_mut(key).and_then(Option::take) else {
            return; // stale token: the slot moved on
        };
        let report = probe::check(&socket);
        // Stamped with the poll's return, as the machine is.
        self.trace_probe(key, ready_at, |probe| TraceEvent::Ready { probe });
        self.trace_check(key, report, ready_at);
        let fate = self.machine.handle_ready(
            key,
            report,
            ready_at,
            || crate::sys::tcp_handshake_rtt(&socket),
            || retransmits(&socket),
        );
        self.trace_machine(ready_at);
        self.apply(key, socket, fate, true);
    }

    /// Handles every deadline that has passed.
    fn expire(&mut self, now: Instant) {
        if let Some(sessions) = &mut self.sessions {
            while let Some(key) = sessions.wheel.poll(now) {
                let Some(session) = sessions.slots.get_mut(key).and_then(Option::as_mut) else {
                    continue;
                };
                let before = session.sockets();
                session.handle_timeout(&self.poll, now);
                sessions.settle(&self.poll, &mut self.machine, key, before, now);
            }
        }
        while let Some(key) = self.machine.poll_expired(now) {
            let Some(socket) = self.sockets.get_mut(key).and_then(Option::take) else {
                // No socket to look at (cannot happen: a connecting probe
                // always has one); still let the machine move it on.
                let report = crate::classify::Report::InProgress;
                self.machine.handle_deadline(key, report, now, || None);
                continue;
            };
            // An answer may have landed after the last poll returned.
            let report = probe::check(&socket);
            self.trace_machine(now); // the machine's `Deadline`
            self.trace_check(key, report, now);
            let fate = self
                .machine
                .handle_deadline(key, report, now, || retransmits(&socket));
            self.trace_machine(now);
            self.apply(key, socket, fate, true);
        }
        self.trace_machine(now);
    }

    // ---- Trace hooks: each is one untaken branch when tracing is off ----

    /// Records the events the machine queued, at `now`.
    #[inline]
    fn trace_machine(&mut self, now: Instant) {
        if let Some(tracer) = &mut self.tracer {
            record_machine(
                tracer,
                &mut self.machine,
                now.saturating_duration_since(self.epoch),
            );
        }
    }

    /// Records a syscall's event for the probe in slot `key`, at `at` (a
    /// time the driver read anyway where it can: a clock read is most of
    /// an event's cost).
    #[inline]
    fn trace_probe(&mut self, key: usize, at: Instant, event: impl FnOnce(u64) -> TraceEvent) {
        if let Some(tracer) = &mut self.tracer {
            if let Some(probe) = self.machine.probe_index(key) {
                tracer.record(event(probe), at.saturating_duration_since(self.epoch));
            }
        }
    }

    /// What `probe::check` asked the kernel: `SO_ERROR`, `getpeername`,
    /// `getsockname`, at `at`.
    #[inline]
    fn trace_check(&mut self, key: usize, report: Report, at: Instant) {
        if let Some(tracer) = &mut self.tracer {
            if let Some(probe) = self.machine.probe_index(key) {
                record_check(
                    tracer,
                    probe,
                    report,
                    at.saturating_duration_since(self.epoch),
                );
            }
        }
    }
}

/// Hands the machine's queued events to `tracer`, stamped `at`.
pub(crate) fn record_machine(tracer: &mut Tracer, machine: &mut Machine, at: Duration) {
    while let Some(event) = machine.poll_trace() {
        tracer.record(event, at);
    }
}

/// The events of one look at a socket ([`probe::check`]): `SO_ERROR`, then
/// `getpeername` (`ENOTCONN` while connecting), then `getsockname` compared
/// with the peer (a self-connect or not).
pub(crate) fn record_check(tracer: &mut Tracer, probe: u64, report: Report, at: Duration) {
    if !tracer.keeps(probe) {
        return;
    }
    match report {
        Report::Error(errno) | Report::Unreachable { errno, .. } => {
            tracer.record(TraceEvent::SoError { probe, errno }, at)
        }
        Report::InProgress => {
            tracer.record(TraceEvent::SoError { probe, errno: 0 }, at);
            let errno = libc::ENOTCONN;
            tracer.record(TraceEvent::PeerName { probe, errno }, at);
        }
        Report::Connected { local, peer } => {
            tracer.record(TraceEvent::SoError { probe, errno: 0 }, at);
            tracer.record(TraceEvent::PeerName { probe, errno: 0 }, at);
            let self_connect = local == peer;
            tracer.record(
                TraceEvent::SockName {
                    probe,
                    self_connect,
                },
                at,
            );
        }
    }
}

/// What `connect()` returned, as an errno (0: connected at once).
pub(crate) fn connect_errno(report: Report) -> i32 {
    match report {
        Report::Error(e) | Report::Unreachable { errno: e, .. } => e,
        Report::InProgress => libc::EINPROGRESS,
        Report::Connected { .. } => 0,
    }
}

/// What a look showed, as an errno (`EINPROGRESS`: no answer yet).
fn look_errno(report: Report) -> i32 {
    connect_errno(report)
}

/// The SYN retransmissions of a probe's socket (`TCP_INFO`), for Karn's rule.
pub(crate) fn retransmits(socket: &Socket) -> Option<u32> {
    crate::sys::tcp_retransmits(socket).ok()
}
