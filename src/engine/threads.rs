//! The threaded engine: the design FastPort grew from, done properly. A pool
//! of `--concurrency` OS threads that drive one shared [`Machine`] (the same
//! rules as the event loop: retries, deadlines, back-off, the in-flight cap,
//! adaptive timing, `--rate`) with blocking calls: each thread takes a
//! [`Launch`] from the machine, blocks in a connect with that attempt's
//! timeout (socket2's `connect_timeout`: a non-blocking connect and a `poll`
//! on that one socket), and reports back.
//!
//! The machine keeps no deadline here ([`Deadlines::Driver`]): the blocking
//! connect is the deadline. A thread with nothing to launch (the cap is
//! reached, a probe backs off) waits on a condition variable until the
//! machine's next timeout or the next report.
//!
//! With `-sV`/`--banners`, the thread that found a port open goes on to run
//! its service conversation in the blocking form ([`services::run`], a poll
//! of its own on the connected socket), then reports the port with its
//! service ([`Machine::handle_served`]); its slot counts in flight all the
//! while. Unlike the event loop, the conversation's extra connects are made
//! at once, outside `--rate` (each thread holds at most one conversation,
//! of at most [`crate::service::conversation::Settings::parallel`] lanes).
//!
//! What the design costs, and what it is given to be fair: each thread has a
//! small stack (64 KiB; a blocking connect needs little), and the lock is
//! held only to ask and to report, never across a syscall. Thousands of
//! threads still cost memory, scheduler time and, on filtered ports, whole
//! threads parked for a full timeout.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{Scope, ScopedJoinHandle};
use std::time::{Duration, Instant};

use socket2::{SockAddr, Socket};

use super::event_loop::{connect_errno, record_check, record_machine, retransmits};
use super::machine::{Deadlines, Fate, Launch, Machine, MachineConfig};
use super::services;
use super::{Collector, EngineConfig, EngineEnd, EngineError, ResultTx, Running, StrideSource};
use crate::classify::{LocalError, Report, Verdict, classify};
use crate::order::{OrderCursor, Schedule};
use crate::probe;
use crate::rate::Gcra;
use crate::targets::TargetSpace;
use crate::trace::{TraceEvent, Tracer};

/// Stack of each probing thread.
const STACK_SIZE: usize = 64 * 1024;
/// Stack of each probing thread with `-sV`/`--banners`: the TLS handshake
/// and the matcher need more than a connect (reserved, touched as used).
const SERVICE_STACK_SIZE: usize = 2 * 1024 * 1024;
/// Address space one thread takes: its stack and guard page, and the
/// signal stack and guard Rust's runtime maps for it.
const THREAD_SPACE: u64 = STACK_SIZE as u64 + 4096 + 64 * 1024;
/// Results wait at most this long in a partly filled batch while reports
/// keep coming (the writer's idle flush covers a quiet pool).
const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// Longest wait for work, so a stop request is seen promptly.
const MAX_WAIT: Duration = Duration::from_millis(50);

/// What the threads share behind one lock.
struct Shared<'a> {
    machine: Machine,
    source: StrideSource<'a>,
    out: ResultTx,
    last_flush: Instant,
    /// `--trace`: the pool's one recorder (under the lock), and time zero.
    tracer: Option<Tracer>,
    epoch: Instant,
}

impl Shared<'_> {
    /// Hands finished results to the writer's batch, and the batch to the
    /// writer when it has waited long enough.
    /// Records the machine's queued events at `now`.
    #[inline]
    fn trace_machine(&mut self, now: Instant) {
        if let Some(tracer) = &mut self.tracer {
            let at = now.saturating_duration_since(self.epoch);
            record_machine(tracer, &mut self.machine, at);
        }
    }

    /// Records what the driver saw of the probe in `key` at `now`: what the
    /// blocking connect returned and, when it was answered, the look.
    fn trace_attempt(&mut self, key: usize, connect: Report, look: Option<Report>, now: Instant) {
        let Some(tracer) = &mut self.tracer else {
            return;
        };
        let Some(probe) = self.machine.probe_index(key) else {
            return;
        };
        let at = now.saturating_duration_since(self.epoch);
        let errno = connect_errno(connect);
        tracer.record(TraceEvent::Connect { probe, errno }, at);
        if let Some(report) = look {
            tracer.record(TraceEvent::Ready { probe }, at);
            record_check(tracer, probe, report, at);
        }
    }

    fn drain(&mut self, now: Instant) {
        while let Some(result) = self.machine.poll_result() {
            self.out.push(result);
        }
        if now.saturating_duration_since(self.last_flush) >= FLUSH_EVERY {
            self.out.flush();
            self.last_flush = now;
        }
    }
}

/// The pool's shared state. Made by the driver before its thread scope, so
/// the threads can borrow it.
pub struct Pool<'a> {
    shared: Mutex<Shared<'a>>,
    /// Signalled on each report: room may have opened.
    room: Condvar,
    threads: usize,
    stop: &'a AtomicBool,
    /// The first thread's panic: the pool stops, and the run ends as after
    /// a signal (the shared machine still knows what is in flight).
    panicked: Mutex<Option<String>>,
    /// `-sV`/`--banners`.
    services: Option<crate::service::options::ServiceOptions>,
    /// A lane's connect timeout in a service conversation.
    timeout: Duration,
}

/// The running thread pool.
pub struct Threads<'scope, 'env> {
    pool: &'env Pool<'env>,
    handles: Vec<ScopedJoinHandle<'scope, ()>>,
}

impl Running for Threads<'_, '_> {
    fn flush_idle(&self) {
        if let Ok(mut shared) = self.pool.shared.try_lock() {
            while let Some(result) = shared.machine.poll_result() {
                shared.out.push(result);
            }
            shared.out.try_flush();
        }
    }

    fn finished(&self) -> bool {
        self.handles.iter().all(|h| h.is_finished())
    }

    fn join(self) -> Result<EngineEnd, EngineError> {
        for handle in self.handles {
            if let Err(panic) = handle.join() {
                std::panic::resume_unwind(panic);
            }
        }
        let panicked = self
            .pool
            .panicked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        // The writer drained every batch before joining (see `finished`).
        let mut shared = self.pool.lock();
        let in_flight = shared.machine.abandon();
        if let Some(tracer) = shared.tracer.take() {
            // A failed trace write loses the trace, not the scan.
            let _ = tracer.finish();
        }
        Ok(EngineEnd {
            stats: shared.machine.stats(),
            lanes: vec![shared.source.stride.lane()],
            in_flight,
            panicked,
        })
    }
}

impl<'a> Pool<'a> {
    /// The pool over `space` and `schedule`: one probe machine that every
    /// thread shares, its results going to `collector`.
    pub fn new(
        space: &'a TargetSpace,
        schedule: &'a Schedule,
        cfg: &EngineConfig,
        stop: &'a AtomicBool,
        collector: &mut Collector,
    ) -> Self {
        let threads = cfg.concurrency.max(1);
        let now = Instant::now();
        let mut machine = Machine::new(
            MachineConfig {
                concurrency: threads,
                timeout: cfg.timeout,
                retries: cfg.retries,
                adaptive: cfg.adaptive,
                ports_per_host: (space.ports().len() as u64).max(1),
                deadlines: Deadlines::Driver,
                unanswered: cfg.unanswered_rate.map(|r| Arc::new(Gcra::new(r, now))),
            },
            cfg.rate.map(|rate| Arc::new(Gcra::new(rate, now))),
            now,
        );
        let tracer = cfg.trace.as_ref().map(|sink| sink.tracer(0));
        if tracer.is_some() {
            machine.enable_trace();
        }
        machine.set_serving(cfg.services.is_some());
        Pool {
            shared: Mutex::new(Shared {
                machine,
                source: StrideSource {
                    space,
                    schedule,
                    // One lane of step 1 from the first number not done.
                    stride: schedule.strides(1).pop().expect("one stride"),
                    cursor: OrderCursor::default(),
                },
                out: collector.sender(),
                last_flush: now,
                tracer,
                epoch: now,
            }),
            room: Condvar::new(),
            threads,
            stop,
            panicked: Mutex::new(None),
            services: cfg.services.clone(),
            timeout: cfg.timeout,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Shared<'a>> {
        self.shared
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Starts `cfg.concurrency` threads over the pool.
pub fn start<'scope, 'env>(
    scope: &'scope Scope<'scope, 'env>,
    pool: &'env Pool<'env>,
    _cfg: &EngineConfig,
) -> Result<Threads<'scope, 'env>, EngineError> {
    let mut threads = pool.threads;
    // Under `ulimit -v`, threads could take every byte of address space and
    // leave none for the rest of the process (an allocation, or a new
    // thread's signal stack, then aborts): start no more than half of what
    // is left allows.
    if let Some(limit) = crate::sys::address_space_limit() {
        crate::sys::single_malloc_arena();
        let used = crate::sys::address_space_used().unwrap_or(limit);
        let stack = if pool.services.is_some() {
            SERVICE_STACK_SIZE as u64
        } else {
            STACK_SIZE as u64
        };
        let space = THREAD_SPACE - STACK_SIZE as u64 + stack;
        let fit = (limit.saturating_sub(used) / 2 / space).max(1);
        let fit = usize::try_from(fit).unwrap_or(usize::MAX);
        if fit < threads {
            eprintln!(
                "fastport: note: --engine threads: ulimit -v leaves room for {fit} of {threads} \
                 threads; scanning with {fit}"
            );
            threads = fit;
        }
    }
    let mut handles = Vec::with_capacity(threads);
    for id in 0..threads {
        let spawned = std::thread::Builder::new()
            .name(format!("fastport-probe-{id}"))
            .stack_size(if pool.services.is_some() {
                SERVICE_STACK_SIZE
            } else {
                STACK_SIZE
            })
            .spawn_scoped(scope, move || {
                let worked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| pool.work()));
                if let Err(payload) = worked {
                    pool.stop.store(true, Ordering::SeqCst);
                    // What the machine finished goes out before the writer
                    // ends (the join abandons only what is in flight).
                    let mut shared = pool.lock();
                    shared.drain(Instant::now());
                    shared.out.flush();
                    drop(shared);
                    pool.room.notify_all();
                    let mut first = pool
                        .panicked
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    first.get_or_insert_with(|| super::panic_message(payload.as_ref()));
                }
            });
        match spawned {
            Ok(handle) => handles.push(handle),
            // Fewer threads than asked (memory, a thread limit): the pool
            // works with those it has, and says so, instead of ending.
            Err(e) if id > 0 => {
                eprintln!(
                    "fastport: --engine threads: started {id} of {threads} threads ({e}); \
                     scanning with {id}"
                );
                break;
            }
            Err(e) => {
                pool.stop.store(true, Ordering::SeqCst);
                return Err(EngineError::Worker(io::Error::new(
                    e.kind(),
                    format!("cannot start a probing thread ({e}): lower --concurrency"),
                )));
            }
        }
    }
    Ok(Threads { pool, handles })
}

/// How a blocking attempt ended, before the machine hears of it.
enum Attempt {
    /// `socket()` failed.
    NoSocket(i32),
    /// `connect()` met a local resource error at once.
    Local(Report),
    /// The connect answered (or failed) within its wait.
    Answered(Report),
    /// The wait ended with no answer; the last look at the socket.
    TimedOut(Report),
}

impl Pool<'_> {
    /// A thread's life: ask the machine for a connect, make it, report it,
    /// until the machine is done or the scan stops.
    fn work(&self) {
        let mut shared = self.lock();
        loop {
            if self.stop.load(Ordering::Relaxed) {
                break;
            }
            let now = Instant::now();
            shared.machine.sample_series(now);
            shared.drain(now);
            let state = &mut *shared;
            let Some(launch) = state.machine.poll_launch(now, &mut state.source) else {
                if shared.machine.is_done() {
                    break;
                }
                let wait = shared
                    .machine
                    .poll_timeout(now)
                    .map_or(MAX_WAIT, |t| t.saturating_duration_since(now))
                    .min(MAX_WAIT);
                shared = match self.room.wait_timeout(shared, wait) {
                    Ok((guard, _)) => guard,
                    Err(poisoned) => poisoned.into_inner().0,
                };
                continue;
            };
            // Trace hook: the machine's `Launch`, stamped before connect().
            shared.trace_machine(now);
            drop(shared);
            let (attempt, socket, started) = attempt(&launch);
            let now = Instant::now();
            shared = self.lock();
            if self.stop.load(Ordering::Relaxed) {
                break; // a stopped scan reports nothing that was in flight
            }
            let key = launch.key;
            // Trace hook: what the driver saw (a failed socket() has no
            // connect to show).
            match attempt {
                Attempt::NoSocket(_) => {}
                Attempt::Local(report) => shared.trace_attempt(key, report, None, started),
                Attempt::Answered(report) | Attempt::TimedOut(report) => {
                    let inprogress = Report::InProgress;
                    let look = matches!(attempt, Attempt::Answered(_)).then_some(report);
                    shared.trace_attempt(key, inprogress, look, now);
                }
            }
            let machine = &mut shared.machine;
            let fate = match attempt {
                Attempt::NoSocket(errno) => machine.handle_socket_error(key, errno, now),
                Attempt::Local(report) => machine.handle_connect(key, report, started),
                Attempt::Answered(report) | Attempt::TimedOut(report) => {
                    machine.handle_connect(key, Report::InProgress, started);
                    let retrans = || socket.as_ref().and_then(retransmits);
                    match attempt {
                        Attempt::Answered(_) if classify(report) != Verdict::Pending => {
                            machine.handle_look(key, report, now, retrans)
                        }
                        // Writable yet not connected, or no answer when the
                        // wait ended: an unanswered try.
                        _ => machine.handle_deadline(key, report, now, retrans),
                    }
                }
            };
            shared.trace_machine(now);
            match (socket, fate) {
                (Some(socket), Fate::Close(reason)) => probe::close(socket, reason),
                (socket, Fate::Serve) => {
                    let rtt = shared.machine.session_rtt(key);
                    drop(shared);
                    let record = socket.and_then(|s| self.serve(s, launch.target, rtt));
                    shared = self.lock();
                    let now = Instant::now();
                    shared.machine.handle_served(key, now, record.map(Box::new));
                }
                _ => {}
            }
            self.room.notify_one();
        }
        shared.drain(Instant::now());
        // Let the waiting threads see the end (or the stop) too.
        self.room.notify_all();
    }
}

impl Pool<'_> {
    /// Runs the service conversation on the open port's socket, blocking
    /// this thread (not the pool's lock) until it ends.
    fn serve(
        &self,
        socket: Socket,
        target: std::net::SocketAddr,
        rtt: Option<Duration>,
    ) -> Option<crate::service::record::ServiceRecord> {
        let options = self.services.as_ref()?;
        if options.matcher.is_excluded(target.port()) {
            probe::close(socket, crate::classify::Reason::SynAck);
            return None;
        }
        let settings = options.settings(rtt.unwrap_or(Duration::from_millis(100)));
        let conv = crate::service::conversation::Conversation::new(
            Arc::clone(&options.matcher),
            target.port(),
            settings,
            Instant::now(),
        );
        let stream = std::net::TcpStream::from(socket);
        match services::run(target, stream, conv, self.timeout) {
            Ok((_, record)) => Some(record),
            Err(_) => Some(crate::service::record::ServiceRecord::default()),
        }
    }
}

/// One blocking attempt: a socket, a connect with the attempt's timeout,
/// and a look at the socket.
fn attempt(launch: &Launch) -> (Attempt, Option<Socket>, Instant) {
    let socket = match probe::new_socket(&launch.target, false) {
        Ok(socket) => socket,
        Err(e) => return (Attempt::NoSocket(probe::errno(&e)), None, Instant::now()),
    };
    let started = Instant::now();
    let attempt = match socket.connect_timeout(&SockAddr::from(launch.target), launch.timeout) {
        Ok(()) => Attempt::Answered(probe::check(&socket)),
        // socket2's own errors carry no errno (its timeout, and "no error
        // set after POLLHUP"); the kernel's ETIMEDOUT does. Ask the socket,
        // as the event loop does when a deadline passes: an answer may have
        // landed after the wait ended (a loaded machine delayed a loopback
        // RST past 200 ms, and a closed port came out filtered).
        Err(e) if e.raw_os_error().is_none() => Attempt::TimedOut(probe::check(&socket)),
        Err(e) => {
            let errno = probe::errno(&e);
            match LocalError::from_errno(errno) {
                Some(_) => Attempt::Local(Report::Error(errno)),
                None => Attempt::Answered(probe::error_report(&socket, errno)),
            }
        }
    };
    (attempt, Some(socket), started)
}
