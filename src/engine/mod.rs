//! Running a scan: split the index space between workers, let each worker
//! probe its share, and bring every result to one writer.
//!
//! The driver here is shared by the engines; an engine is only the loop a
//! worker runs to wait for its probes ([`event_loop`]: one mio poll per
//! worker). Workers share nothing on the hot path: each owns its sockets, its
//! slab of in-flight probes, its timer wheel and its [`Stats`]. Results travel
//! to the calling thread in batches over a bounded channel, and the emptied
//! batch vectors travel back, so steady state allocates nothing.

pub mod event_loop;

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::time::Duration;

use crate::probe::ProbeResult;
use crate::stats::Stats;
use crate::targets::TargetSpace;

/// How many results a worker gathers before handing them to the writer.
const BATCH: usize = 512;
/// Batches in flight between the workers and the writer (backpressure).
const CHANNEL_DEPTH: usize = 64;

/// What the engine needs to know, all validated already.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// How long one attempt waits for an answer.
    pub timeout: Duration,
    /// Extra attempts after no response.
    pub retries: u32,
    /// Probes in flight, all workers together.
    pub concurrency: usize,
    /// Worker threads.
    pub threads: usize,
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

/// The indices a worker owns: `next, next + step, ...` below `end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stride {
    next: u64,
    step: u64,
    end: u64,
}

impl Stride {
    /// Worker `id` of `workers` over `0..len`: interleaved, so every worker
    /// sees every host and they finish together.
    pub fn for_worker(id: usize, workers: usize, len: u64) -> Stride {
        Stride {
            next: id as u64,
            step: workers.max(1) as u64,
            end: len,
        }
    }
}

impl Iterator for Stride {
    type Item = u64;

    fn next(&mut self) -> Option<u64> {
        if self.next >= self.end {
            return None;
        }
        let index = self.next;
        // Saturating: an index past `end` simply ends the stride.
        self.next = self.next.saturating_add(self.step);
        Some(index)
    }
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
        if self.batch.is_empty() {
            return;
        }
        let fresh = self
            .recycled
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(BATCH));
        let full = std::mem::replace(&mut self.batch, fresh);
        // The writer only hangs up after a fatal output error, when the stop
        // flag is already set: the results have nowhere to go.
        let _ = self.tx.send(full);
    }
}

/// Everything one worker gets.
pub struct WorkerCtx<'a> {
    pub id: usize,
    pub space: &'a TargetSpace,
    pub indices: Stride,
    /// This worker's share of the concurrency.
    pub concurrency: usize,
    pub timeout: Duration,
    pub retries: u32,
    pub stop: &'a AtomicBool,
    pub out: ResultTx,
}

/// Runs the scan: spawns the workers, feeds every result batch to
/// `on_results` on this thread, and returns the merged stats. Stops early,
/// cleanly, when `stop` is set (by a signal or by an output failure).
pub fn run<F>(
    space: &TargetSpace,
    cfg: &EngineConfig,
    stop: &AtomicBool,
    mut on_results: F,
) -> Result<Stats, EngineError>
where
    F: FnMut(&[ProbeResult]) -> io::Result<()>,
{
    let threads = cfg.threads.max(1);
    let per_worker = (cfg.concurrency / threads).max(1);
    let (tx, rx) = mpsc::sync_channel::<Vec<ProbeResult>>(CHANNEL_DEPTH);
    let mut recyclers: Vec<Sender<Vec<ProbeResult>>> = Vec::with_capacity(threads);

    std::thread::scope(|scope| {
        let mut handles = Vec::with_capacity(threads);
        for id in 0..threads {
            let (back_tx, back_rx) = mpsc::channel();
            recyclers.push(back_tx);
            let ctx = WorkerCtx {
                id,
                space,
                indices: Stride::for_worker(id, threads, space.len()),
                concurrency: per_worker,
                timeout: cfg.timeout,
                retries: cfg.retries,
                stop,
                out: ResultTx {
                    tx: tx.clone(),
                    recycled: back_rx,
                    batch: Vec::with_capacity(BATCH),
                },
            };
            let handle = std::thread::Builder::new()
                .name(format!("fastport-worker-{id}"))
                .spawn_scoped(scope, move || event_loop::run(ctx))
                .map_err(EngineError::Worker)?;
            handles.push(handle);
        }
        drop(tx);

        // The writer: this thread. Batches go back round-robin; a worker that
        // finds none waiting allocates, so the pool settles at what is needed.
        let mut output_error = None;
        for (turn, mut batch) in rx.iter().enumerate() {
            if output_error.is_none() {
                if let Err(e) = on_results(&batch) {
                    stop.store(true, Ordering::SeqCst);
                    output_error = Some(e);
                }
            }
            batch.clear();
            let _ = recyclers[turn % recyclers.len()].send(batch);
        }

        let mut total = Stats::new();
        let mut worker_error = None;
        for handle in handles {
            match handle.join() {
                Ok(Ok(stats)) => total.merge(&stats),
                Ok(Err(e)) => worker_error = Some(EngineError::Worker(e)),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        if let Some(e) = output_error {
            return Err(EngineError::Output(e));
        }
        if let Some(e) = worker_error {
            return Err(e);
        }
        Ok(total)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strides_partition_the_space() {
        for len in [0u64, 1, 2, 7, 100, 65535] {
            for workers in 1..=5 {
                let mut seen = vec![0u8; len as usize];
                for id in 0..workers {
                    for i in Stride::for_worker(id, workers, len) {
                        seen[i as usize] += 1;
                    }
                }
                assert!(seen.iter().all(|&n| n == 1), "len {len} workers {workers}");
            }
        }
    }

    #[test]
    fn stride_near_u64_max_ends() {
        let mut s = Stride {
            next: u64::MAX - 1,
            step: 3,
            end: u64::MAX,
        };
        assert_eq!(s.next(), Some(u64::MAX - 1));
        assert_eq!(s.next(), None);
    }
}
