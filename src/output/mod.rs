//! Where results go: one [`Sink`] per format, fed every result by the writer
//! thread as batches arrive, each deciding what to write. Formats share the
//! `--show` filter and the destination handling (stdout or a file opened
//! before the first probe, so an unwritable path is a usage error).

mod json;
mod text;

use std::fs::File;
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

/// Opens a destination: stdout, or a file created (truncated) now.
pub fn open(dest: &Dest) -> Result<Writer, OpenError> {
    let inner: Box<dyn Write + Send> = match dest {
        Dest::Stdout => Box::new(io::stdout()),
        Dest::File(path) => Box::new(File::create(path).map_err(|source| OpenError {
            path: path.clone(),
            source,
        })?),
    };
    Ok(BufWriter::with_capacity(64 * 1024, inner))
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
        let mut sinks: Vec<Box<dyn Sink + Send>> = Vec::new();
        for dest in &plan.text {
            sinks.push(Box::new(TextSink::new(open(dest)?, plan.show, plan.reason)));
        }
        if let Some(dest) = &plan.json {
            sinks.push(Box::new(JsonLinesSink::new(open(dest)?, plan.show)));
        }
        let stats = plan.stats.as_ref().map(open).transpose()?;
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
