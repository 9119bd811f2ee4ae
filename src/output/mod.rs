//! Where results go: one [`Sink`] per format, fed every result by the writer
//! thread as batches arrive, each deciding what to write. Formats share the
//! `--show` filter and the destination handling (stdout or a file opened
//! before the first probe, so an unwritable path is a usage error).

mod json;
mod text;

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;

pub use json::JsonLinesSink;
pub use text::{TextSink, write_summary};

use crate::config::{Dest, OutputPlan};
use crate::probe::ProbeResult;
use crate::stats::Summary;

/// An output could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("cannot write output file \"{}\": {source}", path.display())]
pub struct OpenError {
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

/// One output format.
pub trait Sink {
    /// Takes one result (already filtered by nothing: the sink applies
    /// `--show` itself where it matters).
    fn result(&mut self, r: &ProbeResult) -> io::Result<()>;
    /// Pushes buffered bytes out: called after each batch.
    fn flush(&mut self) -> io::Result<()>;
    /// Ends the output with the run's summary.
    fn finish(&mut self, summary: &Summary) -> io::Result<()>;
}

/// A destination opened for writing, buffered.
pub type Writer = BufWriter<Box<dyn Write + Send>>;

/// Opens a destination: stdout, or a file created if missing. The file is
/// not truncated here: [`Outputs::open`] truncates only once every
/// destination has opened, so a bad path never costs earlier results.
fn open_untruncated(dest: &Dest) -> Result<(Option<File>, Option<PathBuf>), OpenError> {
    match dest {
        Dest::Stdout => Ok((None, None)),
        Dest::File(path) => {
            let file = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .open(path)
                .map_err(|source| OpenError {
                    path: path.clone(),
                    source,
                })?;
            Ok((Some(file), Some(path.clone())))
        }
    }
}

/// Opened, not yet truncated destinations, in plan order.
struct Opened(Vec<(Option<File>, Option<PathBuf>)>);

impl Opened {
    /// Truncates the next destination and wraps it in a buffer.
    fn next(&mut self) -> Result<Writer, OpenError> {
        let (file, path) = self.0.remove(0);
        let inner: Box<dyn Write + Send> = match (file, path) {
            (Some(file), Some(path)) => {
                file.set_len(0)
                    .map_err(|source| OpenError { path, source })?;
                Box::new(file)
            }
            _ => Box::new(io::stdout()),
        };
        Ok(BufWriter::with_capacity(64 * 1024, inner))
    }
}

/// Every output of the run.
pub struct Outputs {
    sinks: Vec<Box<dyn Sink + Send>>,
    stats: Option<Writer>,
    summary_to_stderr: bool,
}

impl Outputs {
    /// Opens every destination of the plan. Nothing is probed before this
    /// succeeds.
    pub fn open(plan: &OutputPlan) -> Result<Outputs, OpenError> {
        let dests: Vec<&Dest> = plan
            .text
            .iter()
            .chain(&plan.json)
            .chain(&plan.stats)
            .collect();
        let mut opened = Opened(
            dests
                .iter()
                .map(|d| open_untruncated(d))
                .collect::<Result<_, _>>()?,
        );
        let mut sinks: Vec<Box<dyn Sink + Send>> = Vec::new();
        for _ in &plan.text {
            sinks.push(Box::new(TextSink::new(
                opened.next()?,
                plan.show,
                plan.reason,
            )));
        }
        if plan.json.is_some() {
            sinks.push(Box::new(JsonLinesSink::new(opened.next()?, plan.show)));
        }
        let stats = plan.stats.as_ref().map(|_| opened.next()).transpose()?;
        Ok(Outputs {
            sinks,
            stats,
            summary_to_stderr: plan.summary_to_stderr,
        })
    }

    /// Writes one batch of results to every sink, then flushes them.
    pub fn write_batch(&mut self, batch: &[ProbeResult]) -> io::Result<()> {
        for sink in &mut self.sinks {
            for r in batch {
                sink.result(r)?;
            }
            sink.flush()?;
        }
        Ok(())
    }

    /// Ends every output with the summary. Tries them all; returns the first
    /// error.
    pub fn finish(&mut self, summary: &Summary) -> io::Result<()> {
        let mut first_error = None;
        for sink in &mut self.sinks {
            if let Err(e) = sink.finish(summary) {
                first_error.get_or_insert(e);
            }
        }
        if let Some(w) = &mut self.stats {
            let r = serde_json::to_writer_pretty(&mut *w, &summary.to_json())
                .map_err(io::Error::from)
                .and_then(|()| writeln!(w))
                .and_then(|()| w.flush());
            if let Err(e) = r {
                first_error.get_or_insert(e);
            }
        }
        if self.summary_to_stderr {
            let stderr = io::stderr();
            let _ = write_summary(&mut stderr.lock(), summary);
        }
        first_error.map_or(Ok(()), Err)
    }
}
