//! Running a scan: split the index space between workers, let each worker
//! probe its share, and bring every result to one writer.
//!
//! The driver here is shared by the engines; an engine is only how a worker
//! waits for its probes:
//!
//! - [`event_loop`] (`--engine mio`, the default): one single-threaded mio
//!   poll per core, thousands of non-blocking connects in flight in each.
//!   Workers share nothing on the hot path: each owns its sockets, its slab
//!   of in-flight probes, its timer wheel and its [`Stats`].
//! - [`threads`] (`--engine threads`): the classic design, one OS thread per
//!   probe in flight, each blocked in a connect with a timeout.
//!
//! Both create, check, classify and close sockets with the same functions
//! ([`crate::probe`], [`crate::classify`]), give retries and deadlines the
//! same meaning (fixed, or learnt by [`crate::timing`]), and hand results to
//! the same writer: results travel to the
//! calling thread in batches over a bounded channel, and the emptied batch
//! vectors travel back, so steady state allocates nothing.

pub mod event_loop;
pub mod machine;
pub mod services;
pub mod threads;

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender, TrySendError};
use std::time::Duration;

use clap::ValueEnum;
use serde::{Deserialize, Serialize};

pub use crate::order::Stride;
use crate::order::{Lane, OrderCursor, Schedule};
use crate::probe::ProbeResult;
use crate::stats::Stats;
use crate::targets::TargetSpace;
use crate::timing::AdaptiveTiming;
use machine::{Next, Source};

/// How many results a worker gathers before handing them to the writer.
const BATCH: usize = 512;
/// Batches in flight between the workers and the writer (backpressure).
const CHANNEL_DEPTH: usize = 64;

/// Which design waits for the probes: `--engine`, and the name the stats
/// document and a resume file give it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    /// One mio event loop per worker thread.
    #[default]
    Mio,
    /// One blocking OS thread per probe in flight.
    Threads,
}

impl EngineKind {
    /// The engine's name as `--engine` spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            EngineKind::Mio => "mio",
            EngineKind::Threads => "threads",
        }
    }

    /// The engine a summary names (`threads`, or else `mio`).
    pub fn of(name: &str) -> EngineKind {
        if name == EngineKind::Threads.as_str() {
            EngineKind::Threads
        } else {
            EngineKind::Mio
        }
    }
}

impl std::fmt::Display for EngineKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the engine needs to know, all validated already.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Which design waits for the probes.
    pub kind: EngineKind,
    /// How long one attempt waits for an answer: fixed (`--timeout`), or
    /// the first attempts' wait until answers teach better (adaptive).
    pub timeout: Duration,
    /// Extra attempts after no response: exactly this many when fixed, at
    /// most this many when adaptive (see [`crate::timing::WorkerTiming::retries`]).
    pub retries: u32,
    /// Adaptive timing; `None` when `--timeout` fixed it.
    pub adaptive: Option<AdaptiveTiming>,
    /// Probes in flight, all workers together.
    pub concurrency: usize,
    /// Event-loop worker threads (the threads engine runs one thread per
    /// probe in flight instead).
    pub threads: usize,
    /// `--rate`: new connects per second, all workers together.
    pub rate: Option<f64>,
    /// Unanswered connects per second, all workers together, at most: what
    /// the namespace's connection-tracking table can hold
    /// ([`crate::timing::conntrack`]); `None` when it is not tracked or
    /// `--ignore-conntrack` was given.
    pub unanswered_rate: Option<f64>,
    /// `--trace`: the file each worker's [`crate::trace::Tracer`] writes to.
    pub trace: Option<std::sync::Arc<crate::trace::TraceSink>>,
    /// `-sV`/`--banners`: each open port's socket goes on to a service
    /// session ([`services`]) and its result waits for the session's end;
    /// `None`: a plain scan, every open connect closed at once.
    pub services: Option<crate::service::options::ServiceOptions>,
}

impl EngineConfig {
    /// The threads that wait for probes, as a summary counts them: the
    /// event-loop workers, or with the threads engine one per probe in
    /// flight.
    pub fn waiting_threads(&self) -> usize {
        match self.kind {
            EngineKind::Mio => self.threads,
            EngineKind::Threads => self.concurrency,
        }
    }
}

/// How the engine ended: the merged stats, and what a resume needs to know
/// of a stopped run (which sequence numbers each lane claimed, and which of
/// those were still in flight and are not reported).
#[derive(Debug)]
pub struct EngineEnd {
    /// Every worker's counts and latencies, merged.
    pub stats: Stats,
    /// Which sequence numbers each lane claimed (for a resume).
    pub lanes: Vec<Lane>,
    /// Sequence numbers a stop caught in flight (not reported).
    pub in_flight: Vec<u64>,
    /// A worker panicked (its message): the others were stopped, and what
    /// was reported is kept as after a signal, so the run can be resumed.
    pub panicked: Option<String>,
}

/// The message of a caught panic, on one line.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    let text = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_string());
    text.replace(['\n', '\r'], " ")
}

/// A fault injected for tests of the panic path (debug builds only): with
/// `FASTPORT_DEBUG_PANIC_AFTER=N` in the environment, the worker that takes
/// the `N+1`-th probe panics before claiming it. Release builds have no
/// such hook.
#[cfg(debug_assertions)]
fn injected_panic() {
    use std::sync::OnceLock;
    use std::sync::atomic::AtomicU64;
    static AFTER: OnceLock<Option<u64>> = OnceLock::new();
    static TAKEN: AtomicU64 = AtomicU64::new(0);
    let after = AFTER.get_or_init(|| {
        std::env::var("FASTPORT_DEBUG_PANIC_AFTER")
            .ok()
            .and_then(|v| v.parse().ok())
    });
    if let Some(after) = *after {
        if TAKEN.fetch_add(1, Ordering::Relaxed) == after {
            panic!("injected worker panic after {after} probes (FASTPORT_DEBUG_PANIC_AFTER)");
        }
    }
}

/// Why a scan could not run to its end.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A worker could not set up its poller.
    #[error("cannot start a worker: {0}")]
    Worker(#[source] io::Error),
    /// The open-file limit leaves no descriptor for a probe: every connect
    /// would fail with `EMFILE` and the scan would back off forever.
    #[error(
        "the open-file limit ({limit}) is too small: {open} descriptors are open already and \
         the scan needs {needed} (raise it with ulimit -n)"
    )]
    Descriptors {
        /// The soft open-file limit.
        limit: u64,
        /// Descriptors open already.
        open: u64,
        /// Descriptors the scan needs at least.
        needed: u64,
    },
    /// The result callback failed (an output could not be written). The
    /// engine's end is kept: the summary and a resume still count what was
    /// written before.
    #[error("{0}")]
    Output(#[source] io::Error, Box<EngineEnd>),
}

/// A worker's end of the result channel: fills a batch, sends it when full,
/// and reuses the vectors the writer sends back.
pub struct ResultTx {
    tx: SyncSender<Vec<ProbeResult>>,
    recycled: Receiver<Vec<ProbeResult>>,
    batch: Vec<ProbeResult>,
}

impl ResultTx {
    /// Adds one result to the batch; sends the batch when it is full.
    pub fn push(&mut self, result: ProbeResult) {
        self.batch.push(result);
        if self.batch.len() >= BATCH {
            self.flush();
        }
    }

    /// Hands the gathered results to the writer.
    pub fn flush(&mut self) {
        if let Some(full) = self.take_batch() {
            // The writer only hangs up after a fatal output error, when the
            // stop flag is already set: the results have nowhere to go.
            let _ = self.tx.send(full);
        }
    }

    /// Like [`ResultTx::flush`], but never blocks: for the writer thread
    /// itself, which must not wait on the channel it drains. Keeps the batch
    /// when the channel is full.
    pub fn try_flush(&mut self) {
        if let Some(full) = self.take_batch() {
            if let Err(TrySendError::Full(full) | TrySendError::Disconnected(full)) =
                self.tx.try_send(full)
            {
                self.batch = full;
            }
        }
    }

    /// Swaps the gathered results for an empty batch, a recycled one when
    /// the writer sent one back.
    fn take_batch(&mut self) -> Option<Vec<ProbeResult>> {
        if self.batch.is_empty() {
            return None;
        }
        let fresh = self
            .recycled
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(BATCH));
        Some(std::mem::replace(&mut self.batch, fresh))
    }
}

/// Makes the workers' ends of the result channel, each with its own way
/// back for emptied batches.
pub struct Collector {
    tx: SyncSender<Vec<ProbeResult>>,
    recyclers: Vec<Sender<Vec<ProbeResult>>>,
}

impl Collector {
    /// A new worker's end of the channel.
    pub fn sender(&mut self) -> ResultTx {
        let (back_tx, back_rx) = mpsc::channel();
        self.recyclers.push(back_tx);
        ResultTx {
            tx: self.tx.clone(),
            recycled: back_rx,
            batch: Vec::with_capacity(BATCH),
        }
    }
}

/// A worker's share of the sequence as the machine's [`Source`]: skips what
/// the resumed run finished, and maps a sequence number to its probe.
pub struct StrideSource<'a> {
    /// The scan's targets.
    pub space: &'a TargetSpace,
    /// The scan's order, shard and what a resume skips.
    pub schedule: &'a Schedule,
    /// The worker's share of the sequence numbers.
    pub stride: Stride,
    /// The order of the block the stride is in (see [`OrderCursor`]).
    pub cursor: OrderCursor,
}

impl Source for StrideSource<'_> {
    fn peek(&mut self) -> Next {
        loop {
            let Some(seq) = self.stride.peek() else {
                return if self.stride.is_exhausted() {
                    Next::Exhausted
                } else {
                    Next::Gated
                };
            };
            if self.schedule.done.contains(seq) {
                self.stride.next(); // finished by the run we resume
                continue;
            }
            let index = self.schedule.index_at(seq, &mut self.cursor);
            let Some(target) = self.space.get(index) else {
                // The stride stays below `space.len()`, so this cannot
                // happen; skipping is the safe answer if it ever did.
                debug_assert!(false, "index {index} outside the space");
                self.stride.next();
                continue;
            };
            return Next::Probe { seq, index, target };
        }
    }

    fn take(&mut self) {
        #[cfg(debug_assertions)]
        injected_panic();
        self.stride.next();
    }
}

/// A running engine, as the driver sees it.
pub trait Running {
    /// Called on the writer thread when no batch arrived for a while: push
    /// out results waiting in a partly filled batch. Must not block.
    fn flush_idle(&self);
    /// Whether every worker has ended (engines whose batches outlive their
    /// workers need the writer to notice, flush and stop).
    fn finished(&self) -> bool;
    /// Waits for every worker and returns their merged stats and lanes.
    fn join(self) -> Result<EngineEnd, EngineError>;
}

/// How long the writer waits for a batch before asking the engine to flush.
const IDLE_FLUSH: Duration = Duration::from_millis(50);

/// Runs the scan: starts the engine's workers over the sequence numbers of
/// `schedule`, feeds every result batch to `on_results` on this thread, and
/// returns the merged stats. Stops early, cleanly, when `stop` is set (by a
/// signal or by an output failure).
pub fn run<F>(
    space: &TargetSpace,
    schedule: &Schedule,
    cfg: &EngineConfig,
    stop: &AtomicBool,
    on_results: F,
) -> Result<EngineEnd, EngineError>
where
    F: FnMut(&[ProbeResult]) -> io::Result<()>,
{
    check_descriptors(cfg)?;
    // One growth of the descriptor table now, before any worker shares it,
    // instead of a stall of every thread at each doubling (see `sys`).
    // Room for the descriptors beyond the probes' own (stdio, outputs, epoll
    // instances): the most the configuration keeps back for them.
    crate::sys::reserve_fd_table(cfg.concurrency as u64 + crate::config::RESERVED_FDS_MAX);
    let (tx, rx) = mpsc::sync_channel::<Vec<ProbeResult>>(CHANNEL_DEPTH);
    let mut collector = Collector {
        tx,
        recyclers: Vec::new(),
    };
    match cfg.kind {
        EngineKind::Mio => std::thread::scope(|scope| {
            let running = event_loop::start(scope, space, schedule, cfg, stop, &mut collector);
            drive(running, collector, rx, stop, on_results)
        }),
        EngineKind::Threads => {
            let pool = threads::Pool::new(space, schedule, cfg, stop, &mut collector);
            std::thread::scope(|scope| {
                let running = threads::start(scope, &pool, cfg);
                drive(running, collector, rx, stop, on_results)
            })
        }
    }
}

/// Fails at once, with one clear error, when the open-file limit leaves no
/// descriptor for a probe beside those already open (stdio, outputs) and
/// each event-loop worker's poll: `ulimit -n 6` spun on `EMFILE` forever,
/// and so did a limit that the outputs filled to the last descriptor.
fn check_descriptors(cfg: &EngineConfig) -> Result<(), EngineError> {
    let Ok(limit) = crate::sys::fd_limit() else {
        return Ok(()); // cannot tell: the back-off copes
    };
    let Some(open) = crate::sys::open_fds(limit.soft) else {
        return Ok(());
    };
    let polls = match cfg.kind {
        EngineKind::Mio => cfg.threads.max(1) as u64,
        EngineKind::Threads => 0,
    };
    let needed = open + polls + 1;
    if limit.soft < needed {
        return Err(EngineError::Descriptors {
            limit: limit.soft,
            open,
            needed,
        });
    }
    Ok(())
}

/// The writer loop: this thread. Batches go back round-robin; a worker that
/// finds none waiting allocates, so the pool settles at what is needed.
fn drive<R, F>(
    running: Result<R, EngineError>,
    collector: Collector,
    rx: Receiver<Vec<ProbeResult>>,
    stop: &AtomicBool,
    mut on_results: F,
) -> Result<EngineEnd, EngineError>
where
    R: Running,
    F: FnMut(&[ProbeResult]) -> io::Result<()>,
{
    let Collector { tx, recyclers } = collector;
    drop(tx); // the workers hold the only senders now: the channel ends with them
    let running = running?;
    let mut output_error = None;
    let mut turn = 0usize;
    loop {
        let mut batch = match rx.recv_timeout(IDLE_FLUSH) {
            Ok(batch) => batch,
            Err(RecvTimeoutError::Timeout) => {
                let finished = running.finished();
                running.flush_idle();
                match (finished, rx.try_recv()) {
                    (_, Ok(batch)) => batch,
                    (true, Err(_)) => break, // all done and drained
                    (false, Err(_)) => continue,
                }
            }
            Err(RecvTimeoutError::Disconnected) => break,
        };
        if output_error.is_none() {
            if let Err(e) = on_results(&batch) {
                stop.store(true, Ordering::SeqCst);
                output_error = Some(e);
            }
        }
        batch.clear();
        if !recyclers.is_empty() {
            let _ = recyclers[turn % recyclers.len()].send(batch);
            turn = turn.wrapping_add(1);
        }
    }
    let end = running.join();
    match (output_error, end) {
        (Some(e), Ok(end)) => Err(EngineError::Output(e, Box::new(end))),
        (Some(e), Err(_)) => Err(EngineError::Output(
            e,
            Box::new(EngineEnd {
                stats: Stats::new(),
                lanes: Vec::new(),
                in_flight: Vec::new(),
                panicked: None,
            }),
        )),
        (None, end) => end,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::Reason;

    /// An engine that has finished: `results` probes, already sent.
    struct Finished {
        results: u64,
    }

    impl Running for Finished {
        fn flush_idle(&self) {}

        fn finished(&self) -> bool {
            true
        }

        fn join(self) -> Result<EngineEnd, EngineError> {
            let mut stats = Stats::new();
            for _ in 0..self.results {
                stats.record(Reason::ConnRefused, Some(10));
            }
            Ok(EngineEnd {
                stats,
                lanes: vec![Lane {
                    start: 0,
                    step: 1,
                    next: self.results,
                }],
                in_flight: vec![7],
                panicked: None,
            })
        }
    }

    /// A failed write threw the engine's end away: the summary then said 0
    /// results and a resume knew nothing of the lanes.
    #[test]
    fn a_failed_write_keeps_the_engines_end() {
        let (tx, rx) = mpsc::sync_channel(CHANNEL_DEPTH);
        let mut collector = Collector {
            tx,
            recyclers: Vec::new(),
        };
        let mut out = collector.sender();
        for index in 0..3 {
            out.push(ProbeResult {
                index,
                target: "127.0.0.1:1".parse().unwrap(),
                reason: Reason::ConnRefused,
                rtt_us: Some(10),
                service: None,
                reason_ip: None,
            });
        }
        out.flush();
        drop(out);
        let stop = AtomicBool::new(false);
        let result = drive(Ok(Finished { results: 3 }), collector, rx, &stop, |_| {
            Err(io::Error::from(io::ErrorKind::StorageFull))
        });
        let Err(EngineError::Output(e, end)) = result else {
            panic!("expected an output error: {result:?}");
        };
        assert_eq!(e.kind(), io::ErrorKind::StorageFull);
        assert_eq!(end.stats.results(), 3);
        assert_eq!(end.lanes.len(), 1);
        assert_eq!(end.in_flight, vec![7]);
        assert!(stop.load(Ordering::SeqCst), "a failed write stops the scan");
    }
}
