//! One scan from start to end: open the outputs, run the engine with the
//! writer on this thread, show progress, and end every output with the
//! summary, also when the scan is interrupted.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crate::config::ScanConfig;
use crate::engine::{self, EngineEnd, EngineError, EngineKind};
use crate::order::Done;
use crate::output::Outputs;
use crate::output::progress::Progress;
use crate::stats::{Stats, Summary};

/// How a scan ended.
#[derive(Debug)]
pub struct ScanOutcome {
    pub summary: Summary,
    /// The outputs failed; for a closed stdout (`| head`) this is
    /// `BrokenPipe`, which callers treat as a normal end.
    pub output_error: Option<io::Error>,
    /// Sequence numbers of the schedule finished by this run and the runs
    /// it resumes: what a resume file records after an interruption.
    pub done: Done,
    /// Sequence numbers a stop caught in flight (not reported).
    pub in_flight: Vec<u64>,
}

/// Runs the scan described by `config`, writing to `outputs`. `stop` is set
/// by signal handlers; the scan then stops issuing probes, closes what is in
/// flight and returns with `summary.interrupted` set.
pub fn run(
    config: &ScanConfig,
    outputs: &mut Outputs,
    stop: &AtomicBool,
) -> Result<ScanOutcome, EngineError> {
    let schedule = &config.schedule;
    let total = schedule.remaining();
    let mut progress = Progress::new(total, config.outputs.stats_every);
    let started = Instant::now();

    let result = engine::run(&config.space, schedule, &config.engine, stop, |batch| {
        progress.advance(batch.len() as u64);
        progress.suspend(|| outputs.write_batch(batch))
    });
    progress.finish();
    let done = progress.done();

    let (end, output_error) = match result {
        Ok(end) => (end, None),
        Err(EngineError::Output(e)) => (
            EngineEnd {
                stats: Stats::new(),
                lanes: Vec::new(),
                in_flight: Vec::new(),
            },
            Some(e),
        ),
        Err(e) => return Err(e),
    };
    let EngineEnd {
        stats,
        lanes,
        in_flight,
    } = end;
    let summary = Summary {
        interrupted: stop.load(Ordering::SeqCst) || done < total,
        elapsed: started.elapsed(),
        hosts: config.space.host_count(),
        ports_per_host: config.space.ports().len() as u64,
        planned: total,
        engine: config.engine.kind.as_str(),
        threads: match config.engine.kind {
            EngineKind::Mio => config.engine.threads,
            EngineKind::Threads => config.engine.concurrency,
        },
        concurrency: config.engine.concurrency,
        seed: config.seed,
        order: schedule.order.name(),
        shard: schedule.shard,
        stats,
    };
    let done = schedule.done.after(&lanes, &in_flight);
    let output_error = match output_error {
        Some(e) => {
            // Keep the other files well-formed (XML closing tags).
            outputs.abandon(&summary);
            Some(e)
        }
        None => outputs.finish(&summary).err(),
    };
    Ok(ScanOutcome {
        summary,
        output_error,
        done,
        in_flight,
    })
}
