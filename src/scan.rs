//! One scan from start to end: open the outputs, run the engine with the
//! writer on this thread, show progress, and end every output with the
//! summary, also when the scan is interrupted.

use std::io::{self, IsTerminal};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::config::ScanConfig;
use crate::engine::{self, EngineError};
use crate::output::Outputs;
use crate::stats::{Stats, Summary};

/// How a scan ended.
#[derive(Debug)]
pub struct ScanOutcome {
    pub summary: Summary,
    /// The outputs failed; for a closed stdout (`| head`) this is
    /// `BrokenPipe`, which callers treat as a normal end.
    pub output_error: Option<io::Error>,
}

/// Runs the scan described by `config`, writing to `outputs`. `stop` is set
/// by signal handlers; the scan then stops issuing probes, closes what is in
/// flight and returns with `summary.interrupted` set.
pub fn run(
    config: &ScanConfig,
    outputs: &mut Outputs,
    stop: &AtomicBool,
) -> Result<ScanOutcome, EngineError> {
    let total = config.space.len();
    let progress = progress_bar(total);
    let started = Instant::now();
    let mut done = 0u64;

    let result = engine::run(&config.space, &config.engine, stop, |batch| {
        done += batch.len() as u64;
        if let Some(bar) = &progress {
            bar.set_position(done);
            bar.suspend(|| outputs.write_batch(batch))
        } else {
            outputs.write_batch(batch)
        }
    });
    if let Some(bar) = &progress {
        bar.finish_and_clear();
    }

    let (stats, output_error) = match result {
        Ok(stats) => (stats, None),
        Err(EngineError::Output(e)) => (Stats::new(), Some(e)),
        Err(e) => return Err(e),
    };
    let summary = Summary {
        interrupted: stop.load(Ordering::SeqCst) || done < total,
        elapsed: started.elapsed(),
        hosts: config.space.host_count(),
        ports_per_host: config.space.ports().len() as u64,
        planned: total,
        engine: "mio",
        threads: config.engine.threads,
        concurrency: config.engine.concurrency,
        stats,
    };
    let output_error = match output_error {
        Some(e) => Some(e),
        None => outputs.finish(&summary).err(),
    };
    Ok(ScanOutcome {
        summary,
        output_error,
    })
}

/// A progress bar on stderr when stderr is a terminal; nothing otherwise.
fn progress_bar(total: u64) -> Option<ProgressBar> {
    if !io::stderr().is_terminal() {
        return None;
    }
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} probes, {per_sec}, ETA {eta}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.enable_steady_tick(Duration::from_millis(200));
    Some(bar)
}
