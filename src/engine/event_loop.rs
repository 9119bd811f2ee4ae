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
//!   close it, or drop it.

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
use super::{Collector, EngineConfig, EngineEnd, EngineError, ResultTx, Running, StrideSource};
use crate::classify::{LocalError, Report};
use crate::order::{Lane, Schedule};
use crate::probe;
use crate::rate::Gcra;
use crate::stats::Stats;
use crate::targets::TargetSpace;
use crate::trace::{TraceEvent, Tracer};

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
    // One stride per worker, held together by the order's block gate.
    for (id, stride) in schedule.strides(threads).into_iter().enumerate() {
        let source = StrideSource {
            space,
            schedule,
            stride,
        };
        let machine_cfg = MachineConfig {
            concurrency: per_worker,
            timeout: cfg.timeout,
            retries: cfg.retries,
            adaptive: cfg.adaptive,
            ports_per_host: (space.ports().len() as u64).max(1),
            deadlines: Deadlines::Wheel,
        };
        let rate = rate.clone();
        let out = collector.sender();
        let tracer = cfg.trace.as_ref().map(|sink| sink.tracer(id as u8));
        let spawned = std::thread::Builder::new()
            .name(format!("fastport-worker-{id}"))
            .spawn_scoped(scope, move || {
                // Every worker counts from the same instant (trace, series).
                let mut machine = Machine::new(machine_cfg, rate, now);
                if tracer.is_some() {
                    machine.enable_trace();
                }
                run(machine, source, stop, out, tracer, now)
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
}

/// Runs one worker to the end of its share of the space (or a stop request).
fn run(
    machine: Machine,
    source: StrideSource<'_>,
    stop: &AtomicBool,
    out: ResultTx,
    tracer: Option<Tracer>,
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
    };
    let in_flight = driver.run(&mut events, stop)?;
    if let Some(tracer) = driver.tracer.take() {
        // A failed trace write loses the trace, not the scan.
        let _ = tracer.finish();
    }
    Ok((
        driver.machine.stats(),
        driver.source.stride.lane(),
        in_flight,
    ))
}

impl Driver<'_> {
    /// Runs to the end; returns the sequence numbers abandoned in flight.
    fn run(&mut self, events: &mut Events, stop: &AtomicBool) -> io::Result<Vec<u64>> {
        let mut poll_errors = 0;
        loop {
            if stop.load(Ordering::Relaxed) {
                self.sockets.iter_mut().for_each(|s| drop(s.take()));
                let abandoned = self.machine.abandon();
                self.drain();
                self.out.flush();
                return Ok(abandoned);
            }
            let now = Instant::now();
            self.machine.sample_series(now);
            let mut launched = 0;
            while launched < LAUNCH_BURST {
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
                self.machine
                    .poll_timeout(now)
                    .map_or(MAX_SLEEP, |t| t.saturating_duration_since(now))
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
        }
    }

    /// Handles one batch of readiness events, all timed at `ready_at`.
    fn on_events(&mut self, events: &Events, ready_at: Instant) {
        for event in events.iter() {
            self.on_ready(event.token().0, ready_at);
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
        Report::Error(errno) => tracer.record(TraceEvent::SoError { probe, errno }, at),
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
        Report::Error(e) => e,
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
