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
pub mod threads;

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender, TrySendError};
use std::time::Duration;

pub use crate::order::Stride;
use crate::order::{Lane, Schedule};
use crate::probe::ProbeResult;
use crate::stats::Stats;
use crate::targets::TargetSpace;
use crate::timing::AdaptiveTiming;

/// How many results a worker gathers before handing them to the writer.
const BATCH: usize = 512;
/// Batches in flight between the workers and the writer (backpressure).
const CHANNEL_DEPTH: usize = 64;

/// Which design waits for the probes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EngineKind {
    /// One mio event loop per worker thread.
    #[default]
    Mio,
    /// One blocking OS thread per probe in flight.
    Threads,
}

impl EngineKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EngineKind::Mio => "mio",
            EngineKind::Threads => "threads",
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
    pub kind: EngineKind,
    /// How long one attempt waits for an answer: fixed (`--timeout`), or
    /// the first attempts' wait until answers teach better (adaptive).
    pub timeout: Duration,
    /// Extra attempts after no response: exactly this many when fixed, at
    /// most this many when adaptive (see [`crate::timing::Timing::retries`]).
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
}

/// How the engine ended: the merged stats, and what a resume needs to know
/// of a stopped run (which sequence numbers each lane claimed, and which of
/// those were still in flight and are not reported).
#[derive(Debug)]
pub struct EngineEnd {
    pub stats: Stats,
    pub lanes: Vec<Lane>,
    pub in_flight: Vec<u64>,
}

/// Why a scan could not run to its end.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A worker could not set up its poller.
    #[error("cannot start a worker: {0}")]
    Worker(#[source] io::Error),
    /// The result callback failed (an output could not be written).
    #[error("{0}")]
    Output(#[source] io::Error),
}

/// A worker's end of the result channel: fills a batch, sends it when full,
/// and reuses the vectors the writer sends back.
pub struct ResultTx {
    tx: SyncSender<Vec<ProbeResult>>,
    recycled: Receiver<Vec<ProbeResult>>,
    batch: Vec<ProbeResult>,
}

impl ResultTx {
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

/// Everything one event-loop worker gets.
pub struct WorkerCtx<'a> {
    pub id: usize,
    pub space: &'a TargetSpace,
    /// Maps the worker's sequence numbers to probe indices.
    pub schedule: &'a Schedule,
    pub indices: Stride,
    /// This worker's share of `--rate`.
    pub bucket: Option<crate::rate::TokenBucket>,
    /// This worker's share of the concurrency.
    pub concurrency: usize,
    pub timeout: Duration,
    pub retries: u32,
    pub adaptive: Option<AdaptiveTiming>,
    pub stop: &'a AtomicBool,
    pub out: ResultTx,
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
    // One growth of the descriptor table now, before any worker shares it,
    // instead of a stall of every thread at each doubling (see `sys`).
    // Room for the descriptors beyond the probes' own (stdio, outputs, epoll
    // instances): the most the configuration keeps back for them.
    crate::sys::reserve_fd_table(cfg.concurrency as u64 + crate::config::RESERVED_FDS.1);
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
    match output_error {
        Some(e) => Err(EngineError::Output(e)),
        None => end,
    }
}
