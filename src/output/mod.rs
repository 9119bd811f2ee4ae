//! Where results go: one [`Sink`] per format, fed every result by the writer
//! thread as batches arrive, each deciding what to write. Formats share the
//! `--show` filter and the destination handling (stdout or a file opened
//! before the first probe, so an unwritable path is a usage error).
//!
//! - `text` (`-oN`, and stdout by default) and `json` (`-oJ`) write a line
//!   per result as it arrives; so does `csv` (`-oC`).
//! - `xml` (`-oX`) and `grepable` (`-oG`) write a record per host, each as
//!   soon as the host's last probe reports: `hosts` gathers them.
//! - `progress`: the bar or status lines on stderr; `dates`: nmap's date
//!   and clock formats.

mod csv;
mod dates;
mod grepable;
mod hosts;
mod json;
mod list;
pub mod progress;
mod text;
mod xml;

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

pub use csv::CsvSink;
pub use grepable::GrepableSink;
pub use json::JsonLinesSink;
pub use list::ListSink;
pub use text::{TextSink, TextStyle, write_summary};
pub use xml::XmlSink;

use crate::config::{Dest, OutputPlan, ScanConfig};
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
    /// Ends the output with the run's summary (also after Ctrl-C: then
    /// `summary.interrupted` is set).
    fn finish(&mut self, summary: &Summary) -> io::Result<()>;
    /// Called instead of [`finish`](Self::finish) when another output
    /// failed and the scan stopped early: write what keeps this output
    /// well-formed (closing tags), nothing more.
    fn abandon(&mut self, _summary: &Summary) -> io::Result<()> {
        self.flush()
    }
}

/// What the nmap-style formats say about the run besides its results.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunInfo {
    /// The command line as typed, words joined by spaces (as nmap records it).
    pub command_line: String,
    /// The scanned ports as ranges (`1-1024`): nmap's `services`.
    pub services: String,
    /// Probes per host: the number of scanned ports.
    pub ports_per_host: u64,
    /// How long one attempt waits (`<times to>`).
    pub timeout: Duration,
    /// When the scan started, wall clock.
    pub started: SystemTime,
    /// The probe order, for the record: `order random, seed N[, shard K/N]`
    /// (a random seed is in no command line).
    pub order: String,
    /// Where `--top-ports`/`-F` took its ranking from, when used.
    pub ranking: Option<String>,
    /// `--open`: hosts without an open port are not written (XML, grepable).
    pub open_only: bool,
    /// Adaptive timing's bounds on an attempt's wait; `None` when
    /// `--timeout` fixed it to [`timeout`](Self::timeout).
    pub rtt_bounds: Option<(Duration, Duration)>,
    /// The XSL stylesheet the XML names, so a browser renders it.
    pub stylesheet: String,
    /// The names targets were given by: written beside their addresses.
    pub names: std::sync::Arc<crate::targets::HostNames>,
    /// How many target names did not resolve (skipped; the summary counts them).
    pub unresolved: usize,
}

/// nmap's stylesheet where nmap installs it, else its published copy.
pub fn stylesheet_href(installed: bool) -> String {
    if installed {
        "file:///usr/share/nmap/nmap.xsl".to_string()
    } else {
        "https://svn.nmap.org/nmap/docs/nmap.xsl".to_string()
    }
}

impl RunInfo {
    /// The wait an attempt on a host with this smoothed round-trip time
    /// (microseconds) got: the adaptive rule `srtt + max(4·rttvar, srtt/2)`
    /// within its bounds (as `timing::rtt` computes it), or the fixed
    /// `--timeout`. nmap's `<times to>`.
    pub fn timeout_for(&self, srtt_us: u64, rttvar_us: u64) -> u64 {
        let micros = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        match self.rtt_bounds {
            None => micros(self.timeout),
            Some((min, max)) => {
                let margin = rttvar_us.saturating_mul(4).max(srtt_us / 2);
                let to = srtt_us.saturating_add(margin);
                to.clamp(micros(min), micros(max).max(micros(min)))
            }
        }
    }
}

impl RunInfo {
    /// Describes the scan `config` as started now by the command line `argv`.
    pub fn new<I>(config: &ScanConfig, argv: I) -> RunInfo
    where
        I: IntoIterator<Item = OsString>,
    {
        let words: Vec<String> = argv
            .into_iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let ports = config.space.ports();
        RunInfo {
            command_line: words.join(" "),
            services: hosts::port_ranges(ports),
            ports_per_host: ports.len() as u64,
            timeout: config.engine.timeout,
            started: SystemTime::now(),
            order: order_note(config),
            ranking: config.ranking.as_ref().map(ToString::to_string),
            open_only: config.outputs.open_only,
            rtt_bounds: config.engine.adaptive.map(|a| (a.min_rtt, a.max_rtt)),
            stylesheet: stylesheet_href(std::path::Path::new("/usr/share/nmap/nmap.xsl").exists()),
            names: std::sync::Arc::clone(&config.names),
            unresolved: config.unresolved,
        }
    }
}

/// `order random, seed N`, with `, shard K/N` for a shard.
fn order_note(config: &ScanConfig) -> String {
    let schedule = &config.schedule;
    let mut note = format!("order {}, seed {}", schedule.order.name(), config.seed);
    if schedule.shard.n() > 1 {
        note.push_str(&format!(", shard {}", schedule.shard));
    }
    note
}

/// A destination written a whole batch at a time.
///
/// Sinks write into a reused in-memory buffer and flush after each batch of
/// whole records; the flush hands the batch to the destination in one
/// `write_all`. When that fails (a full disk) a regular file is cut back to
/// the end of the last batch that went out whole, so what was written so far
/// stays well-formed: only whole lines, whole host records. What a sink then
/// writes to close its document (XML's closing tags) gets the same chance.
pub struct Writer {
    buf: Vec<u8>,
    dest: Box<dyn Write + Send>,
    /// A second handle on a regular file, to cut it back after a failure.
    file: Option<File>,
    /// Bytes of the destination that are whole batches.
    good: u64,
    /// The file's path, for error messages.
    path: Option<PathBuf>,
}

impl Writer {
    /// A destination that cannot be cut back (stdout, a pipe, a device).
    pub fn new(dest: Box<dyn Write + Send>) -> Writer {
        Writer {
            buf: Vec::with_capacity(64 * 1024),
            dest,
            file: None,
            good: 0,
            path: None,
        }
    }

    /// A regular file, empty, that is cut back to its last whole batch when
    /// a write fails.
    fn for_file(file: File, path: PathBuf) -> io::Result<Writer> {
        let handle = file.try_clone()?;
        let mut w = Writer::new(Box::new(file));
        w.file = Some(handle);
        w.path = Some(path);
        Ok(w)
    }
}

impl Write for Writer {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        let result = self
            .dest
            .write_all(&self.buf)
            .and_then(|()| self.dest.flush());
        match result {
            Ok(()) => {
                self.good += self.buf.len() as u64;
                self.buf.clear();
                Ok(())
            }
            Err(e) => {
                self.buf.clear();
                if let Some(file) = &mut self.file {
                    // Best effort: the write error is the news.
                    let _ = file.set_len(self.good);
                    let _ = file.seek(SeekFrom::Start(self.good));
                }
                match &self.path {
                    Some(path) => Err(io::Error::new(
                        e.kind(),
                        format!("\"{}\": {e}", path.display()),
                    )),
                    None => Err(e),
                }
            }
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        if !self.buf.is_empty() {
            let _ = self.flush();
        }
    }
}

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
        match (file, path) {
            (Some(file), Some(path)) => {
                // Only regular files are truncated: /dev/null, a FIFO or a
                // terminal cannot be, and need not be.
                let regular = file.metadata().is_ok_and(|m| m.is_file());
                if !regular {
                    return Ok(Writer::new(Box::new(file)));
                }
                file.set_len(0)
                    .and_then(|()| Writer::for_file(file, path.clone()))
                    .map_err(|source| OpenError { path, source })
            }
            _ => Ok(Writer::new(Box::new(io::stdout()))),
        }
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
    pub fn open(plan: &OutputPlan, run: &RunInfo) -> Result<Outputs, OpenError> {
        let dests: Vec<&Dest> = plan
            .text
            .iter()
            .chain(&plan.json)
            .chain(&plan.xml)
            .chain(&plan.grepable)
            .chain(&plan.csv)
            .chain(&plan.list)
            .chain(&plan.stats)
            .collect();
        let mut opened = Opened(
            dests
                .iter()
                .map(|d| open_untruncated(d))
                .collect::<Result<_, _>>()?,
        );
        let mut sinks: Vec<Box<dyn Sink + Send>> = Vec::new();
        for dest in &plan.text {
            let style = match dest {
                Dest::Stdout => TextStyle {
                    color: TextStyle::color_for(
                        io::IsTerminal::is_terminal(&io::stdout()),
                        std::env::var_os("NO_COLOR").as_deref(),
                    ),
                    header: false,
                },
                Dest::File(_) => TextStyle {
                    color: false,
                    header: true,
                },
            };
            sinks.push(Box::new(TextSink::new(
                opened.next()?,
                plan.show,
                plan.reason,
                run,
                style,
            )));
        }
        if plan.json.is_some() {
            sinks.push(Box::new(
                JsonLinesSink::new(opened.next()?, plan.show).with_names(&run.names),
            ));
        }
        if plan.xml.is_some() {
            sinks.push(Box::new(XmlSink::new(opened.next()?, plan.show, run)));
        }
        if plan.grepable.is_some() {
            sinks.push(Box::new(GrepableSink::new(opened.next()?, plan.show, run)));
        }
        if plan.csv.is_some() {
            sinks.push(Box::new(
                CsvSink::new(opened.next()?, plan.show).with_names(&run.names),
            ));
        }
        if plan.list.is_some() {
            sinks.push(Box::new(ListSink::new(opened.next()?, plan.show)));
        }
        let stats = plan.stats.as_ref().map(|_| opened.next()).transpose()?;
        Ok(Outputs {
            sinks,
            stats,
            summary_to_stderr: plan.summary_to_stderr,
        })
    }

    /// Writes one batch of results to every sink, then flushes them.
    /// Every sink gets the batch even when another fails; the first error
    /// is returned.
    pub fn write_batch(&mut self, batch: &[ProbeResult]) -> io::Result<()> {
        let mut first_error = None;
        for sink in &mut self.sinks {
            let r = batch
                .iter()
                .try_for_each(|r| sink.result(r))
                .and_then(|()| sink.flush());
            if let Err(e) = r {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
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

    /// After an output failed: closes what can still be closed (XML's
    /// closing tags, the grepable footer) so files stay well-formed. Errors
    /// here are not news: the first one was already reported.
    pub fn abandon(&mut self, summary: &Summary) {
        for sink in &mut self.sinks {
            let _ = sink.abandon(summary);
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::stats::Stats;
    use std::sync::{Arc, Mutex};

    /// A [`Writer`] into memory, and a function reading what was written.
    pub fn capture() -> (Writer, impl Fn() -> String) {
        #[derive(Clone)]
        struct Shared(Arc<Mutex<Vec<u8>>>);
        impl Write for Shared {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let shared = Shared(Arc::default());
        let reader = shared.clone();
        let text = move || String::from_utf8(reader.0.lock().unwrap().clone()).unwrap();
        (Writer::new(Box::new(shared)), text)
    }

    /// The run the format tests describe: ports 22, 80 and 443 on two hosts.
    pub fn run_info() -> RunInfo {
        RunInfo {
            command_line: "fastport -p 22,80,443 --show open,filtered -oX - 127.0.0.1 ::1".into(),
            services: "22,80,443".into(),
            ports_per_host: 3,
            timeout: Duration::from_secs(1),
            started: SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_959_140),
            order: "order random, seed 42".into(),
            ranking: None,
            open_only: false,
            rtt_bounds: None,
            stylesheet: stylesheet_href(false),
            names: std::sync::Arc::default(),
            unresolved: 0,
        }
    }

    /// `<times to>` once said 1 000 000 µs (the initial timeout) while the
    /// adaptive timing had waited 100 ms.
    #[test]
    fn times_to_is_the_timeout_actually_used() {
        let mut run = run_info();
        assert_eq!(run.timeout_for(47, 30), 1_000_000, "fixed --timeout");
        run.rtt_bounds = Some((Duration::from_millis(100), Duration::from_secs(10)));
        assert_eq!(run.timeout_for(47, 30), 100_000, "the floor");
        assert_eq!(run.timeout_for(300_000, 50_000), 500_000);
        assert_eq!(run.timeout_for(400_000, 10_000), 600_000, "srtt/2 floor");
        assert_eq!(run.timeout_for(20_000_000, 0), 10_000_000, "the ceiling");
    }

    pub fn summary(interrupted: bool, planned: u64, elapsed: Duration) -> Summary {
        Summary {
            stats: Stats::new(),
            elapsed,
            hosts: 2,
            ports_per_host: 3,
            planned,
            interrupted,
            engine: "mio",
            threads: 1,
            concurrency: 1,
            seed: 1,
            order: "random",
            shard: crate::order::Shard::WHOLE,
        }
    }
}
