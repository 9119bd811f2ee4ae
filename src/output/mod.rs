//! Where results go: one [`Sink`] per format, fed every result by the writer
//! thread as batches arrive, each deciding what to write. `--show` is
//! decided once per result, here, and handed to every sink with it; the
//! formats share the destination handling too (stdout or a file opened
//! before the first probe, so an unwritable path is a usage error).
//!
//! - `text` (`-oN`, and stdout by default) and `json` (`-oJ`) write a line
//!   per result as it arrives; so does `csv` (`-oC`).
//! - `xml` (`-oX`) and `grepable` (`-oG`) write a record per host, each as
//!   soon as the host's last probe reports: `hosts` gathers them.
//! - `progress`: the bar or status lines on stderr; `dates`: nmap's date
//!   and clock formats.

mod ascii;
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
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

pub use csv::CsvSink;
pub use grepable::GrepableSink;
pub use hosts::{HeldHost, HeldHosts, HeldService, port_ranges};
pub use json::{HostLine, JsonLinesSink};
pub use list::ListSink;
pub use text::{TextSink, TextStyle, write_summary};
pub use xml::XmlSink;

use crate::config::{Dest, OutputPlan, ScanConfig, Show};
use crate::order::Schedule;
use crate::probe::ProbeResult;
use crate::stats::{RunRecord, StatsDocument, Summary};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

/// An output could not be opened, or not continued.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    #[error("cannot write output file \"{}\": {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{first} and {second} both name \"{}\": give each output its own file", path.display())]
    SameFile {
        path: PathBuf,
        first: &'static str,
        second: &'static str,
    },
    #[error("cannot continue \"{}\" (the interrupted run's {flag} output): {why}", path.display())]
    Continue {
        path: PathBuf,
        flag: &'static str,
        why: String,
    },
}

impl OpenError {
    fn io(path: &Path, source: io::Error) -> OpenError {
        OpenError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// The formats a file can hold, by the flag that asks for each. A resume
/// file names them in lowercase (`Text` as `normal`, after `-oN`) and
/// lists them in this order.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    #[serde(rename = "normal")]
    Text,
    Json,
    Xml,
    Grepable,
    Csv,
    /// `-oL`: `addr:port` lines.
    List,
    Stats,
    /// `--trace`: every probe's life.
    Trace,
}

impl Format {
    /// The flag that asks for it.
    pub fn flag(self) -> &'static str {
        match self {
            Format::Text => "-oN",
            Format::Json => "-oJ",
            Format::Xml => "-oX",
            Format::Grepable => "-oG",
            Format::Csv => "-oC",
            Format::List => "-oL",
            Format::Stats => "--stats",
            Format::Trace => "--trace",
        }
    }
}

/// The files of an interrupted run that this run continues (a resume):
/// when a destination is the same file (device and inode) as the
/// interrupted run's output of the same format, it is not truncated but
/// cut back to its last whole record and continued: lines appended, the
/// XML reopened where its `<runstats>` began, the grepable footer dropped.
/// Headers are not written again.
#[derive(Debug, Clone, Default)]
pub struct Continue {
    files: Vec<(Format, PathBuf)>,
}

impl Continue {
    pub fn add(&mut self, format: Format, path: PathBuf) {
        self.files.push((format, path));
    }

    /// The earlier file this destination continues, if any.
    fn of(&self, format: Format, id: FileId) -> Result<Option<&Path>, (Format, &Path)> {
        for (f, path) in &self.files {
            if file_id(path).ok() == Some(id) {
                if *f != format {
                    return Err((*f, path));
                }
                return Ok(Some(path));
            }
        }
        Ok(None)
    }

    /// Whether `path` is the earlier run's `format` file by name (a resume
    /// that names no new file inherits the path).
    fn names(&self, format: Format, path: &Path) -> bool {
        self.files.iter().any(|(f, p)| *f == format && p == path)
    }
}

/// A file's device and inode: two names of one file are the same file.
type FileId = (u64, u64);

/// Notes that `format` writes the file `id`; two outputs naming one file
/// would interleave, so the second is refused.
fn once_per_file(
    ids: &mut Vec<(FileId, Format)>,
    id: FileId,
    path: &Path,
    format: Format,
) -> Result<(), OpenError> {
    if let Some((_, first)) = ids.iter().find(|(i, _)| *i == id) {
        return Err(OpenError::SameFile {
            path: path.to_path_buf(),
            first: first.flag(),
            second: format.flag(),
        });
    }
    ids.push((id, format));
    Ok(())
}

fn file_id(path: &Path) -> io::Result<FileId> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path)?;
    Ok((m.dev(), m.ino()))
}

/// Where the continued part of `format` starts in `file`: after the last
/// whole record, before the closing of the earlier run. `None`: the file
/// ends in a way FastPort does not write.
fn continue_at(file: &mut File, format: Format) -> io::Result<Result<u64, String>> {
    use std::io::Read;
    let len = file.metadata()?.len();
    // What is looked for is near the end: the closing, the last line end.
    let tail_len = len.min(4 << 20);
    let base = len - tail_len;
    let mut tail = Vec::with_capacity(tail_len as usize);
    file.seek(SeekFrom::Start(base))?;
    file.take(tail_len).read_to_end(&mut tail)?;
    let find_last = |needle: &[u8]| {
        tail.windows(needle.len())
            .rposition(|w| w == needle)
            .map(|i| base + i as u64)
    };
    let after_last_line = tail
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(if base == 0 { Some(0) } else { None }, |i| {
            Some(base + i as u64 + 1)
        });
    Ok(match format {
        Format::Xml => find_last(b"<runstats>")
            .or_else(|| find_last(b"</nmaprun>"))
            .ok_or_else(|| "it does not end with the <runstats> FastPort writes".to_string()),
        // The footer (`# FastPort done ...` or `# FastPort interrupted
        // ...`) is the last whole line: it goes.
        Format::Grepable => match after_last_line {
            None => Err("its last line is too long".into()),
            Some(end) => {
                let body = &tail[..(end - base) as usize];
                let last = body[..body.len().saturating_sub(1)]
                    .iter()
                    .rposition(|&b| b == b'\n')
                    .map_or(0, |i| i + 1);
                if body[last..].starts_with(b"# FastPort ") && !body[last..].contains(&b'\t') {
                    Ok(base + last as u64)
                } else {
                    Ok(end)
                }
            }
        },
        // The interrupted run's end goes: its per-host table, summary and
        // `#` footer all come after the last live line (`[OPEN] ...`); the
        // last part prints the table of its own results and the whole
        // scan's summary. Without a live line, everything after the `#`
        // header goes.
        Format::Text => text_continue_at(file, len).map(Ok)?,
        _ => after_last_line.ok_or_else(|| "its last line is too long".into()),
    })
}

/// Where a continued `-oN` text file resumes: just after its last live
/// line (one starting with `[`), else after its leading `#` header lines.
/// Read backwards in chunks, so a long per-host table costs no memory.
fn text_continue_at(file: &mut File, len: u64) -> io::Result<u64> {
    use std::io::Read;
    const CHUNK: u64 = 1 << 20;
    let mut end = len;
    let mut carry: Vec<u8> = Vec::new();
    while end > 0 {
        let start = end.saturating_sub(CHUNK);
        let mut buf = Vec::with_capacity((end - start) as usize + carry.len());
        file.seek(SeekFrom::Start(start))?;
        file.take(end - start).read_to_end(&mut buf)?;
        buf.extend_from_slice(&carry);
        // A live line starts the file or follows a line end.
        let hit = buf
            .windows(2)
            .rposition(|w| w == b"\n[")
            .map(|i| i + 1)
            .or_else(|| (start == 0 && buf.first() == Some(&b'[')).then_some(0));
        if let Some(at) = hit {
            let line_end = buf[at..]
                .iter()
                .position(|&b| b == b'\n')
                .map_or(buf.len(), |i| at + i + 1);
            return Ok(start + line_end as u64);
        }
        // Keep this chunk's first line: a live line may start there after
        // a line end that closes the chunk before it.
        let first_line = buf
            .iter()
            .position(|&b| b == b'\n')
            .map_or(buf.len(), |i| i + 1);
        carry = buf[..first_line].to_vec();
        end = start;
    }
    // No live line: keep the `#` header lines at the start.
    file.seek(SeekFrom::Start(0))?;
    let mut head = Vec::new();
    file.take(len.min(CHUNK)).read_to_end(&mut head)?;
    let mut at = 0;
    while head[at..].starts_with(b"#") {
        match head[at..].iter().position(|&b| b == b'\n') {
            Some(i) => at += i + 1,
            None => break,
        }
    }
    Ok(at as u64)
}

/// One output format.
pub trait Sink {
    /// Takes one result, every result of the run: `shown` says whether
    /// `--show` lets its state through (decided once, in
    /// [`Outputs::write_batch`]). A line per result formats write only the
    /// shown ones; per-host formats count the others too.
    fn result(&mut self, r: &ProbeResult, shown: bool) -> io::Result<()>;
    /// Called with each batch before its results: a per-host format reads
    /// the batch's hosts in progress here, so their cache misses overlap
    /// instead of stalling one result at a time.
    fn warm(&mut self, _batch: &[ProbeResult]) {}
    /// Pushes buffered bytes out: called after each batch.
    fn flush(&mut self) -> io::Result<()>;
    /// Ends the output with the run's summary (also after Ctrl-C: then
    /// `summary.interrupted` is set). A format without a footer only
    /// flushes.
    fn finish(&mut self, _summary: &Summary) -> io::Result<()> {
        self.flush()
    }
    /// Called instead of [`finish`](Self::finish) when another output
    /// failed and the scan stopped early: write what keeps this output
    /// well-formed (closing tags), nothing more.
    fn abandon(&mut self, _summary: &Summary) -> io::Result<()> {
        self.flush()
    }
    /// The run stops to be resumed: a per-host format writes no partial
    /// records at [`finish`](Self::finish) but holds them for the resume
    /// file.
    fn hold(&mut self) {}
    /// After [`hold`](Self::hold) and `finish`: the held hosts and the
    /// document's `[seen, up]` counts, with the format.
    fn take_held(&mut self) -> Option<(Format, Vec<HeldHost>, [u64; 2])> {
        None
    }
    /// A segmented scan moved to its next segment (every host of the last
    /// one is written): per-host formats count by its schedule now.
    fn enter_segment(&mut self, _schedule: &Schedule) {}
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
    /// The run's order, shard and what earlier runs did: how many results
    /// each host gets in this run, so per-host formats know when a host is
    /// complete.
    pub schedule: Schedule,
    /// The hosts an interrupted run held over (a resume): the per-host
    /// formats take them back.
    pub held: Option<Arc<HeldHosts>>,
    /// `-sV`/`--banners`: the formats write each open port's service
    /// (CSV columns, the text table's VERSION column).
    pub service_detection: bool,
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
            schedule: config.schedule.clone(),
            held: None,
            service_detection: config.engine.services.is_some(),
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
    /// The file continues an interrupted run's: its header is written.
    continued: bool,
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
            continued: false,
        }
    }

    /// Bytes written since the last flush.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Whether this destination continues an interrupted run's file (its
    /// header is there already).
    pub fn continued(&self) -> bool {
        self.continued
    }

    /// A regular file, whole up to `good` bytes (positioned there), that
    /// is cut back to its last whole batch when a write fails.
    fn for_file(file: File, path: PathBuf, good: u64) -> io::Result<Writer> {
        let handle = file.try_clone()?;
        let mut w = Writer::new(Box::new(file));
        w.file = Some(handle);
        w.path = Some(path);
        w.good = good;
        w.continued = good > 0;
        Ok(w)
    }

    /// A named file that is not regular (a FIFO, a device).
    fn for_special(file: File, path: PathBuf) -> Writer {
        let mut w = Writer::new(Box::new(file));
        w.path = Some(path);
        w
    }
}

impl Write for Writer {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    /// One copy into the buffer, inlined: a result line is a dozen
    /// pieces, and the trait's own `write_all` (a loop over `write`, not
    /// inlined) cost more than the copies.
    #[inline]
    fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        self.buf.extend_from_slice(data);
        Ok(())
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
                    // A closed pipe is news for a named file (a FIFO whose
                    // reader left): only stdout's reader may say "enough".
                    Some(path) => Err(io::Error::new(
                        match e.kind() {
                            io::ErrorKind::BrokenPipe => io::ErrorKind::Other,
                            kind => kind,
                        },
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

/// A destination opened but not yet truncated: [`Outputs::open`] truncates
/// only once every destination has opened, so a bad path never costs
/// earlier results.
enum Opened {
    Stdout,
    File {
        file: File,
        path: PathBuf,
        format: Format,
        regular: bool,
        /// Where a continued file is cut and continued.
        continue_at: Option<u64>,
    },
}

impl Opened {
    /// Opens `dest` for `format`, created if missing, not truncated.
    fn open(dest: &Dest, format: Format, cont: &Continue) -> Result<Opened, OpenError> {
        let Dest::File(path) = dest else {
            return Ok(Opened::Stdout);
        };
        // Write-only: a FIFO opened for reading too would be its own reader.
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| OpenError::io(path, e))?;
        let regular = file.metadata().is_ok_and(|m| m.is_file());
        let mut cut = None;
        if regular {
            let id = file_id(path).map_err(|e| OpenError::io(path, e))?;
            match cont.of(format, id) {
                Err((theirs, _)) => {
                    return Err(OpenError::Continue {
                        path: path.clone(),
                        flag: theirs.flag(),
                        why: format!(
                            "it cannot take {} output; give {} its own file",
                            format.flag(),
                            format.flag()
                        ),
                    });
                }
                Ok(Some(_)) => {
                    let at = File::open(path)
                        .and_then(|mut f| continue_at(&mut f, format))
                        .map_err(|e| OpenError::io(path, e))?
                        .map_err(|why| OpenError::Continue {
                            path: path.clone(),
                            flag: format.flag(),
                            why,
                        })?;
                    cut = Some(at);
                }
                Ok(None) => {}
            }
        }
        Ok(Opened::File {
            file,
            path: path.clone(),
            format,
            regular,
            continue_at: cut,
        })
    }

    /// Truncates (or cuts back, when continued) and wraps in a buffer.
    fn into_writer(self) -> Result<Writer, OpenError> {
        match self {
            Opened::Stdout => Ok(Writer::new(Box::new(io::stdout()))),
            // /dev/null, a FIFO or a terminal cannot be truncated, and need
            // not be.
            Opened::File {
                file,
                path,
                regular: false,
                ..
            } => Ok(Writer::for_special(file, path)),
            Opened::File {
                mut file,
                path,
                continue_at,
                ..
            } => {
                let at = continue_at.unwrap_or(0);
                file.set_len(at)
                    .and_then(|()| file.seek(SeekFrom::Start(at)))
                    .and_then(|_| Writer::for_file(file, path.clone(), at))
                    .map_err(|e| OpenError::io(&path, e))
            }
        }
    }
}

/// Every output of the run.
pub struct Outputs {
    sinks: Vec<Box<dyn Sink + Send>>,
    /// `--show`: which states the outputs show.
    show: Show,
    /// Whether each result of the batch is shown (reused between batches).
    shown: Vec<bool>,
    stats: Option<Writer>,
    summary_to_stderr: bool,
    /// Lines the `-oJ` sink wrote.
    json_lines: Option<Arc<AtomicU64>>,
    run_record: Option<RunRecord>,
}

impl Outputs {
    /// Opens every destination of the plan. Nothing is probed before this
    /// succeeds.
    pub fn open(plan: &OutputPlan, run: &RunInfo) -> Result<Outputs, OpenError> {
        Outputs::open_continuing(plan, run, &Continue::default())
    }

    /// Opens every destination of the plan, continuing the files of `cont`
    /// (see [`Continue`]). Two destinations naming one file are refused, so
    /// is an earlier run's file given for another format, or gone: all
    /// before a byte is written.
    pub fn open_continuing(
        plan: &OutputPlan,
        run: &RunInfo,
        cont: &Continue,
    ) -> Result<Outputs, OpenError> {
        let dests: Vec<(Format, &Dest)> = plan
            .text
            .iter()
            .map(|d| (Format::Text, d))
            .chain(plan.json.iter().map(|d| (Format::Json, d)))
            .chain(plan.xml.iter().map(|d| (Format::Xml, d)))
            .chain(plan.grepable.iter().map(|d| (Format::Grepable, d)))
            .chain(plan.csv.iter().map(|d| (Format::Csv, d)))
            .chain(plan.list.iter().map(|d| (Format::List, d)))
            .chain(plan.stats.iter().map(|d| (Format::Stats, d)))
            .collect();
        let mut ids: Vec<(FileId, Format)> = Vec::new();
        for (format, dest) in &dests {
            if let Dest::File(path) = dest {
                // The earlier run's file, to be continued, must still be
                // there: a resume continues every output or says why not.
                if cont.names(*format, path) && !path.exists() {
                    return Err(OpenError::Continue {
                        path: path.clone(),
                        flag: format.flag(),
                        why: format!(
                            "it is gone; give {} FILE to write the rest elsewhere",
                            format.flag()
                        ),
                    });
                }
                let Ok(id) = file_id(path) else { continue };
                once_per_file(&mut ids, id, path, *format)?;
            }
        }
        let mut opened: Vec<Opened> = dests
            .iter()
            .map(|(format, dest)| Opened::open(dest, *format, cont))
            .collect::<Result<_, _>>()?;
        // A file created just now has an identity only now.
        let mut ids: Vec<(FileId, Format)> = Vec::new();
        for o in &opened {
            if let Opened::File { path, format, .. } = o {
                let id = file_id(path).map_err(|e| OpenError::io(path, e))?;
                once_per_file(&mut ids, id, path, *format)?;
            }
        }
        opened.reverse();
        let mut next = || {
            opened
                .pop()
                .expect("one opened destination per plan entry")
                .into_writer()
        };
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
                next()?,
                plan.show,
                plan.reason,
                run,
                style,
            )));
        }
        let mut json_lines = None;
        if plan.json.is_some() {
            let sink = JsonLinesSink::new(next()?)
                .with_names(&run.names)
                .with_hosts(run);
            json_lines = Some(sink.lines());
            sinks.push(Box::new(sink));
        }
        if plan.xml.is_some() {
            sinks.push(Box::new(XmlSink::new(next()?, plan.show, run)));
        }
        if plan.grepable.is_some() {
            sinks.push(Box::new(GrepableSink::new(next()?, plan.show, run)));
        }
        if plan.csv.is_some() {
            sinks.push(Box::new(
                CsvSink::new(next()?)
                    .with_names(&run.names)
                    .with_services(run.service_detection),
            ));
        }
        if plan.list.is_some() {
            sinks.push(Box::new(ListSink::new(next()?)));
        }
        let stats = plan.stats.as_ref().map(|_| next()).transpose()?;
        Ok(Outputs {
            sinks,
            show: plan.show,
            shown: Vec::new(),
            stats,
            summary_to_stderr: plan.summary_to_stderr,
            json_lines,
            run_record: None,
        })
    }

    /// Result lines written to `-oJ` so far by this run (`None`: no `-oJ`).
    pub fn json_lines(&self) -> Option<u64> {
        self.json_lines
            .as_ref()
            .map(|n| n.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// What the `--stats` document records about the scan besides the
    /// summary (identity, parts, lines written).
    pub fn set_run_record(&mut self, record: RunRecord) {
        self.run_record = Some(record);
    }

    /// The run stops to be resumed: the per-host formats hold their hosts
    /// in progress for the resume file instead of writing partial records.
    pub fn hold(&mut self) {
        for sink in &mut self.sinks {
            sink.hold();
        }
    }

    /// A segmented scan moved to its next segment, `schedule`.
    pub fn enter_segment(&mut self, schedule: &Schedule) {
        for sink in &mut self.sinks {
            sink.enter_segment(schedule);
        }
    }

    /// After [`hold`](Self::hold) and [`finish`](Self::finish): what the
    /// resume file keeps (`None` without a per-host format).
    pub fn take_held(&mut self) -> Option<HeldHosts> {
        let mut out: Option<HeldHosts> = None;
        for sink in &mut self.sinks {
            if let Some((format, pending, counts)) = sink.take_held() {
                let held = out.get_or_insert_with(HeldHosts::default);
                // Every per-host sink holds the same hosts; the JSON lines
                // keep only their counts, the others their shown ports too.
                if held.pending.is_empty() || format != Format::Json {
                    held.pending = pending;
                }
                match format {
                    Format::Xml => held.xml = Some(counts),
                    Format::Grepable => held.grepable = Some(counts),
                    // The text table keeps no counts across runs.
                    _ => {}
                }
            }
        }
        out
    }

    /// Writes one batch of results to every sink, then flushes them.
    /// Every sink gets the batch even when another fails; the first error
    /// is returned.
    pub fn write_batch(&mut self, batch: &[ProbeResult]) -> io::Result<()> {
        let mut first_error = None;
        let show = self.show;
        self.shown.clear();
        self.shown
            .extend(batch.iter().map(|r| show.contains(r.reason.state())));
        for sink in &mut self.sinks {
            sink.warm(batch);
            let r = batch
                .iter()
                .zip(&self.shown)
                .try_for_each(|(r, &shown)| sink.result(r, shown))
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
            let doc = StatsDocument::new(summary, self.run_record.clone());
            let r = serde_json::to_writer_pretty(&mut *w, &doc)
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
    use crate::test_util::SharedBuf;

    /// A [`Writer`] into memory, and a function reading what was written.
    pub fn capture() -> (Writer, impl Fn() -> String) {
        let shared = SharedBuf::default();
        let reader = shared.clone();
        (Writer::new(Box::new(shared)), move || reader.text())
    }

    /// Gives `sink` one result, shown as `show` says (what
    /// [`Outputs::write_batch`] does).
    pub fn feed(sink: &mut impl Sink, show: Show, r: &ProbeResult) {
        sink.result(r, show.contains(r.reason.state())).unwrap();
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
            schedule: Schedule::new(
                crate::order::Blocks::new(6, 3),
                crate::order::Order::Sequential,
                crate::order::Shard::WHOLE,
                crate::order::Done::none(),
            ),
            held: None,
            service_detection: false,
        }
    }

    /// [`run_info`]'s run over `probes` probes of `per_host` ports each,
    /// in sequential order.
    pub fn sequential(probes: u64, per_host: u64) -> RunInfo {
        let mut run = run_info();
        run.ports_per_host = per_host;
        run.schedule = Schedule::new(
            crate::order::Blocks::new(probes, per_host),
            crate::order::Order::Sequential,
            crate::order::Shard::WHOLE,
            crate::order::Done::none(),
        );
        run
    }

    /// `run` resumed in sequential order over `probes` probes of
    /// `per_host` each: the first `done` finished, `pending` held over.
    pub fn resumed(
        mut run: RunInfo,
        (probes, per_host): (u64, u64),
        done: u64,
        pending: Vec<HeldHost>,
    ) -> RunInfo {
        use crate::order::{Blocks, Done, Order, Shard};
        run.schedule = Schedule::new(
            Blocks::new(probes, per_host),
            Order::Sequential,
            Shard::WHOLE,
            Done::from_ranges(std::iter::once(0..done)),
        );
        run.held = Some(Arc::new(HeldHosts {
            pending,
            ..Default::default()
        }));
        run
    }

    /// The JSON lines hold their hosts in progress as counts only; when a
    /// per-host format holds them too, the resume file takes that one's,
    /// with the ports shown so far, whichever sink comes first.
    #[test]
    fn held_hosts_come_from_a_per_host_format_before_the_json_lines() {
        let dir = crate::test_util::TempDir::new("output", "held-from");
        let run = sequential(40, 20);
        let plan = OutputPlan {
            text: Vec::new(),
            json: Some(Dest::File(dir.join("out.jsonl"))),
            xml: Some(Dest::File(dir.join("out.xml"))),
            grepable: None,
            csv: None,
            stats: None,
            show: Show::OPEN,
            reason: false,
            summary_to_stderr: false,
            stats_every: None,
            open_only: false,
            quiet: true,
            list: None,
            trace: None,
        };
        let mut outputs = Outputs::open(&plan, &run).unwrap();
        let batch: Vec<ProbeResult> = (0..12)
            .map(|p| ProbeResult {
                index: p,
                target: format!("127.0.0.1:{}", 1000 + p).parse().unwrap(),
                reason: crate::classify::Reason::SynAck,
                rtt_us: Some(40),
                service: None,
                reason_ip: None,
            })
            .collect();
        outputs.write_batch(&batch).unwrap();
        outputs.hold();
        outputs
            .finish(&summary(true, 40, Duration::from_millis(5)))
            .unwrap();
        let held = outputs.take_held().unwrap();
        assert_eq!(held.pending.len(), 1);
        assert_eq!(held.pending[0].shown.split_whitespace().count(), 12);
        assert_eq!(held.pending[0].reasons, "syn-ack:12");
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
