//! One scan from start to end: open the outputs, run the engine with the
//! writer on this thread, show progress, and end every output with the
//! summary, also when the scan is interrupted.

use std::io;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use crate::config::ScanConfig;
use crate::engine::{self, EngineEnd, EngineError};
use crate::order::Done;
use crate::output::progress::Progress;
use crate::output::{HeldHosts, Outputs};
use crate::resume::scan_targets_hash;
use crate::stats::{RunRecord, Summary};

/// How a scan ended.
#[derive(Debug)]
pub struct ScanOutcome {
    /// Counts, latencies and settings of the run (and of the runs it resumes).
    pub summary: Summary,
    /// The outputs failed; for a closed stdout (`| head`) this is
    /// `BrokenPipe`, which callers treat as a normal end.
    pub output_error: Option<io::Error>,
    /// Sequence numbers of the schedule finished by this run and the runs
    /// it resumes: what a resume file records after an interruption.
    pub done: Done,
    /// Sequence numbers a stop caught in flight (not reported).
    pub in_flight: Vec<u64>,
    /// The scan's identity and what its parts wrote, as `--stats` records it.
    pub record: RunRecord,
    /// A stopped run's hosts in progress, held out of the per-host formats
    /// for its resume file (`None` without `-oX`/`-oG`, or not stopped).
    pub held: Option<HeldHosts>,
    /// A worker panicked (its message): the run stopped as after a signal,
    /// its outputs closed and its progress kept for a resume.
    pub panicked: Option<String>,
    /// A segmented scan: the ordinal of the segment the run ended in, which
    /// `done`, `in_flight` and `held` count in (every earlier one is done).
    pub ordinal: u64,
}

/// The parts of a resumed scan that ran before this one.
#[derive(Debug, Clone)]
pub struct Earlier {
    /// Their summary, all of them together.
    pub summary: Summary,
    /// How many runs they were.
    pub parts: u32,
    /// Result lines they wrote to `-oJ` (`None`: a part wrote none).
    pub json_lines: Option<u64>,
}

/// Runs the scan described by `config`, writing to `outputs`. `stop` is set
/// by signal handlers; the scan then stops issuing probes, closes what is in
/// flight and returns with `summary.interrupted` set.
///
/// With `earlier` (a resumed scan), the summary and the `--stats` document
/// count the earlier parts too: the last part's summary is the whole scan's.
pub fn run(
    config: &ScanConfig,
    outputs: &mut Outputs,
    stop: &AtomicBool,
    earlier: Option<&Earlier>,
) -> Result<ScanOutcome, EngineError> {
    // The probes left: of a segmented scan, every segment from this one on.
    let total = u64::try_from(config.remaining()).unwrap_or(u64::MAX);
    let mut progress = if config.outputs.quiet {
        Progress::silent(total)
    } else {
        Progress::new(total, config.outputs.stats_every)
    };
    let started = Instant::now();

    // A segmented scan runs the engine once per segment, in the plan's
    // order, until a stop, a failure or the last segment.
    let mut ordinal = config.ordinal;
    let mut segment: Option<(crate::targets::TargetSpace, crate::order::Schedule)> = None;
    let mut before: Option<crate::stats::Stats> = None;
    let (end, output_error, schedule) = loop {
        let (space, schedule) = segment
            .as_ref()
            .map_or((&config.space, &config.schedule), |(a, b)| (a, b));
        let result = engine::run(space, schedule, &config.engine, stop, |batch| {
            progress.advance(batch.len() as u64);
            let show = config.outputs.show;
            let prints = batch.iter().any(|r| show.contains(r.reason.state()));
            progress.suspend(prints, || outputs.write_batch(batch))
        });
        let (mut end, output_error) = match result {
            Ok(end) => (end, None),
            Err(EngineError::Output(e, end)) => (*end, Some(e)),
            Err(e) => return Err(e),
        };
        if let Some(earlier) = before.take() {
            end.stats.merge(&earlier);
        }
        let next = config
            .segments
            .as_ref()
            .filter(|plan| ordinal + 1 < plan.count());
        let stopped = stop.load(std::sync::atomic::Ordering::SeqCst);
        match next {
            Some(plan) if !stopped && output_error.is_none() && end.panicked.is_none() => {
                // This segment is whole: every host of it was written.
                before = Some(end.stats);
                ordinal += 1;
                let (space, schedule) = plan.at(ordinal);
                outputs.enter_segment(&schedule);
                segment = Some((space, schedule));
            }
            _ => break (end, output_error, schedule.clone()),
        }
    };
    progress.finish();
    let done = progress.done();

    let EngineEnd {
        stats,
        lanes,
        in_flight,
        panicked,
    } = end;
    // A segmented scan's counts saturate at u64::MAX (2^64 - 1).
    let planned = config.segments.as_ref().map_or(schedule.seq_len(), |p| {
        u64::try_from(p.planned()).unwrap_or(u64::MAX)
    });
    let mut summary = Summary {
        // A signal after the last probe reported interrupts nothing: the
        // scan is whole (and its resume file, if any, finished).
        interrupted: done < total,
        elapsed: started.elapsed(),
        hosts: u64::try_from(config.total_hosts()).unwrap_or(u64::MAX),
        ports_per_host: config.space.ports().len() as u64,
        planned,
        engine: config.engine.kind.as_str(),
        threads: config.engine.waiting_threads(),
        concurrency: config.engine.concurrency,
        seed: config.seed,
        order: schedule.order.name(),
        shard: schedule.shard,
        stats,
    };
    let json_lines = outputs.json_lines();
    let space = u64::try_from(config.total_probes()).unwrap_or(u64::MAX);
    let targets = scan_targets_hash(config);
    let record = match earlier {
        None => RunRecord {
            space,
            targets,
            parts: 1,
            json_lines,
        },
        Some(e) => {
            summary.stats.merge(&e.summary.stats);
            summary.elapsed += e.summary.elapsed;
            RunRecord {
                space,
                targets,
                parts: e.parts + 1,
                json_lines: e.json_lines.zip(json_lines).map(|(a, b)| a + b),
            }
        }
    };
    outputs.set_run_record(record.clone());
    let done = schedule.done.after(&lanes, &in_flight);
    let output_error = match output_error {
        Some(e) => {
            // Keep the other files well-formed (XML closing tags).
            outputs.abandon(&summary);
            Some(e)
        }
        None => {
            // Stopped by a signal, to be resumed: hosts in progress are
            // held for the resume file, not written half.
            if summary.interrupted && stop.load(std::sync::atomic::Ordering::SeqCst) {
                outputs.hold();
            }
            outputs.finish(&summary).err()
        }
    };
    let held = outputs.take_held();
    Ok(ScanOutcome {
        summary,
        output_error,
        done,
        in_flight,
        record,
        held,
        panicked,
        ordinal,
    })
}
