//! The threaded engine: the design FastPort grew from, done properly. A pool
//! of `--concurrency` OS threads, each taking the next index from one shared
//! counter and blocking in a connect with a timeout (socket2's
//! `connect_timeout`: a non-blocking connect and a `poll` on that one socket).
//!
//! It answers the same questions the same way as the event loop: the socket
//! is made by [`probe::new_socket`], judged by [`probe::check`] and
//! [`classify`], closed by [`probe::close`]; an unanswered attempt is retried
//! up to `--retries` times, each with the full timeout (fixed, or from one
//! scan-wide adaptive estimate the threads share, with the event loop's
//! retry rule); a local resource error backs off and retries the same
//! probe. Only the waiting differs: a parked thread per probe in flight,
//! and a context switch per answer.
//!
//! What the design costs, and what it is given to be fair: each thread has a
//! small stack (64 KiB; a blocking connect needs little), and threads record
//! into a few mutex-guarded shards of stats and result batches rather than
//! one global lock. Thousands of threads still cost memory, scheduler time
//! and, on filtered ports, whole threads parked for a full timeout.

use std::io;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{Scope, ScopedJoinHandle};
use std::time::{Duration, Instant};

use socket2::SockAddr;

use super::{Collector, EngineConfig, EngineEnd, EngineError, ResultTx, Running};
use crate::classify::{LocalError, Reason, Report, Verdict, classify};
use crate::order::{Claims, Schedule};
use crate::probe::{self, ProbeResult};
use crate::rate::TokenBucket;
use crate::stats::Stats;
use crate::targets::TargetSpace;
use crate::timing::{SharedTiming, TimingSummary};

/// Stack of each probing thread.
const STACK_SIZE: usize = 64 * 1024;
/// Shards of stats and result batches per core.
const SHARDS_PER_CORE: usize = 4;
/// Back-off after a local resource error: first and largest delay.
const BACKOFF_MIN: Duration = Duration::from_millis(1);
const BACKOFF_MAX: Duration = Duration::from_millis(256);

/// Stats and a result batch that a group of threads records into.
struct Shard {
    stats: Stats,
    out: ResultTx,
}

/// What the threads share: the next sequence number to probe, and the
/// shards. Made by the driver before its thread scope, so the threads can
/// borrow it.
pub struct Pool<'a> {
    space: &'a TargetSpace,
    schedule: &'a Schedule,
    /// The shared counter (a resume starts past what is done), held to
    /// about two blocks of the order at once.
    claims: Claims,
    shards: Vec<Mutex<Shard>>,
    /// `--rate`, one bucket for all threads.
    bucket: Option<Mutex<TokenBucket>>,
    /// Sequence numbers a stop caught in flight (not reported).
    abandoned: Mutex<Vec<u64>>,
    timeout: Duration,
    retries: u32,
    /// Adaptive timing, shared by every thread (`None`: fixed `--timeout`).
    timing: Option<Mutex<SharedTiming>>,
    threads: usize,
    stop: &'a AtomicBool,
}

/// The running thread pool.
pub struct Threads<'scope, 'env> {
    pool: &'env Pool<'env>,
    handles: Vec<ScopedJoinHandle<'scope, ()>>,
}

impl Running for Threads<'_, '_> {
    fn flush_idle(&self) {
        for shard in &self.pool.shards {
            if let Ok(mut shard) = shard.try_lock() {
                shard.out.try_flush();
            }
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
        // The writer drained every batch before joining (see `finished`).
        let mut total = Stats::new();
        for shard in &self.pool.shards {
            let shard = shard
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            total.merge(&shard.stats);
        }
        let pool = self.pool;
        total.timing = match &pool.timing {
            Some(timing) => timing
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .summary(pool.threads),
            None => TimingSummary::fixed(pool.timeout, pool.threads),
        };
        let in_flight = std::mem::take(
            &mut *pool
                .abandoned
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        );
        Ok(EngineEnd {
            stats: total,
            lanes: vec![pool.claims.lane()],
            in_flight,
        })
    }
}

impl<'a> Pool<'a> {
    pub fn new(
        space: &'a TargetSpace,
        schedule: &'a Schedule,
        cfg: &EngineConfig,
        stop: &'a AtomicBool,
        collector: &mut Collector,
    ) -> Self {
        let threads = cfg.concurrency.max(1);
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let shard_count = (cores * SHARDS_PER_CORE).clamp(1, threads);
        let shards = (0..shard_count)
            .map(|_| {
                Mutex::new(Shard {
                    stats: Stats::new(),
                    out: collector.sender(),
                })
            })
            .collect();
        Pool {
            space,
            schedule,
            claims: schedule.claims(),
            shards,
            bucket: cfg
                .rate
                .map(|rate| Mutex::new(TokenBucket::new(rate, Instant::now()))),
            abandoned: Mutex::new(Vec::new()),
            timeout: cfg.timeout,
            retries: cfg.retries,
            timing: cfg
                .adaptive
                .map(|params| Mutex::new(SharedTiming::new(params, cfg.retries))),
            threads,
            stop,
        }
    }
}

/// Starts `cfg.concurrency` threads over the pool.
pub fn start<'scope, 'env>(
    scope: &'scope Scope<'scope, 'env>,
    pool: &'env Pool<'env>,
    cfg: &EngineConfig,
) -> Result<Threads<'scope, 'env>, EngineError> {
    let threads = cfg.concurrency.max(1);
    let shard_count = pool.shards.len();
    let mut handles = Vec::with_capacity(threads);
    for id in 0..threads {
        let spawned = std::thread::Builder::new()
            .name(format!("fastport-probe-{id}"))
            .stack_size(STACK_SIZE)
            .spawn_scoped(scope, move || pool.work(id % shard_count));
        match spawned {
            Ok(handle) => handles.push(handle),
            Err(e) => {
                pool.stop.store(true, Ordering::SeqCst);
                return Err(EngineError::Worker(io::Error::new(
                    e.kind(),
                    format!(
                        "cannot start thread {} of {threads} ({e}): lower --concurrency",
                        id + 1
                    ),
                )));
            }
        }
    }
    Ok(Threads { pool, handles })
}

/// One probe's final answer, and what it cost on the way.
struct Answer {
    reason: Reason,
    rtt_us: Option<u32>,
    attempts: u64,
}

impl Pool<'_> {
    /// A thread's life: take the next sequence number, probe it to the end,
    /// record.
    fn work(&self, shard: usize) {
        let mut local_errors = Vec::new();
        loop {
            // Held while this number's probe runs: the claim's drop lets
            // threads into the blocks after it.
            let Some(claim) = self.claims.claim(self.stop) else {
                return; // the end, or a stop
            };
            let seq = claim.seq();
            if self.schedule.done.contains(seq) {
                continue; // finished by the run we resume
            }
            if !self.take_token() {
                return self.abandon(seq);
            }
            let index = self.schedule.index(seq);
            let Some(target) = self.space.get(index) else {
                return; // below len(), so unreachable; ending is the safe answer
            };
            local_errors.clear();
            let Some(answer) = self.probe(target, &mut local_errors) else {
                return self.abandon(seq); // stopped while backing off or between attempts
            };
            // Cannot panic: `shard` is a thread id modulo shards.len().
            let mut shard = self.shards[shard]
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            shard.stats.attempts += answer.attempts;
            for &e in &local_errors {
                shard.stats.record_local_error(e);
            }
            if self.stop.load(Ordering::Relaxed) {
                drop(shard);
                return self.abandon(seq); // a stopped scan reports nothing that was in flight
            }
            shard.stats.record(answer.reason, answer.rtt_us);
            shard.out.push(ProbeResult {
                index,
                target,
                reason: answer.reason,
                rtt_us: answer.rtt_us,
            });
        }
    }

    /// Notes a probe the stop caught in flight, for the resume file.
    fn abandon(&self, seq: u64) {
        self.abandoned
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(seq);
    }

    /// Waits for a `--rate` token; false if the scan stopped meanwhile.
    fn take_token(&self) -> bool {
        let Some(bucket) = &self.bucket else {
            return true;
        };
        loop {
            let wait = {
                let mut bucket = bucket
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                let now = Instant::now();
                if bucket.try_take(now) {
                    return true;
                }
                bucket.wait(now)
            };
            if self.stop.load(Ordering::Relaxed) {
                return false;
            }
            std::thread::sleep(wait.min(Duration::from_millis(50)));
        }
    }

    /// Probes one target with blocking connects until it has an answer, or
    /// the scan stops (`None`).
    fn probe(&self, target: SocketAddr, local_errors: &mut Vec<LocalError>) -> Option<Answer> {
        let addr = SockAddr::from(target);
        let mut timeouts = 0;
        let mut attempts = 0;
        let mut backoff = BACKOFF_MIN;
        loop {
            if self.stop.load(Ordering::Relaxed) {
                return None;
            }
            let socket = match probe::new_socket(&target, false) {
                Ok(socket) => socket,
                Err(e) => match classify(Report::Error(probe::errno(&e))) {
                    Verdict::Local(le) => {
                        local_errors.push(le);
                        std::thread::sleep(backoff);
                        backoff = (backoff * 2).min(BACKOFF_MAX);
                        continue;
                    }
                    Verdict::Done(reason) => {
                        return Some(Answer {
                            reason,
                            rtt_us: None,
                            attempts,
                        });
                    }
                    Verdict::Pending => {
                        return Some(Answer {
                            reason: Reason::Error,
                            rtt_us: None,
                            attempts,
                        });
                    }
                },
            };
            let started = Instant::now();
            let report = match socket.connect_timeout(&addr, self.attempt_timeout(timeouts)) {
                Ok(()) => probe::check(&socket),
                // socket2's own errors carry no errno (its timeout, and "no
                // error set after POLLHUP"); the kernel's ETIMEDOUT does.
                // Ask the socket, as the event loop does when a deadline
                // passes: an answer may have landed after the wait ended (a
                // loaded machine delayed a loopback RST past 200 ms, and a
                // closed port came out filtered).
                Err(e) if e.raw_os_error().is_none() => probe::check(&socket),
                Err(e) => Report::Error(probe::errno(&e)),
            };
            let rtt = started.elapsed();
            let rtt_us = Some(probe::micros(rtt));
            match classify(report) {
                Verdict::Done(reason) => {
                    attempts += 1;
                    self.learn(reason, timeouts, rtt, &socket);
                    probe::close(socket, reason);
                    let rtt_us = if reason.answered() { rtt_us } else { None };
                    return Some(Answer {
                        reason,
                        rtt_us,
                        attempts,
                    });
                }
                Verdict::Local(le) => {
                    local_errors.push(le);
                    drop(socket);
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
                // No answer when the wait ended (or writable yet not
                // connected): an unanswered try.
                Verdict::Pending => {
                    attempts += 1;
                    timeouts += 1;
                    if timeouts > self.allowed_retries() {
                        return Some(Answer {
                            reason: Reason::NoResponse,
                            rtt_us: None,
                            attempts,
                        });
                    }
                }
            }
        }
    }
}

impl Pool<'_> {
    /// Attempt `try_no`'s wait: fixed, or from the shared estimate.
    fn attempt_timeout(&self, try_no: u32) -> Duration {
        match &self.timing {
            Some(t) => t
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .timeout(try_no),
            None => self.timeout,
        }
    }

    /// Retries a silent port gets: fixed, or the shared allowance.
    fn allowed_retries(&self) -> u32 {
        match &self.timing {
            Some(t) => t
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .retries(),
            None => self.retries,
        }
    }

    /// Feeds an answered attempt to the shared estimate (Karn's rule as in
    /// the event loop).
    fn learn(&self, reason: Reason, try_no: u32, rtt: Duration, socket: &socket2::Socket) {
        let Some(t) = &self.timing else {
            return;
        };
        if !reason.answered() {
            return;
        }
        let sample = (reason.state() != crate::classify::State::Filtered
            && super::event_loop::karn_allows(rtt, Some(socket)))
        .then_some(rtt);
        t.lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .answered(try_no, rtt, sample);
    }
}
