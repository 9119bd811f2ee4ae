//! `fastport merge -oN/-oX/-oG/-oC`: the shards' JSON lines written again in
//! every format, as if one scan had made them, in memory bounded however
//! many shards and hosts there are.
//!
//! Each shard's lines come in its probe order (a random walk over hosts ×
//! ports), while nmap XML and the grepable format need each host's ports
//! together. So the lines go through an external sort by (address, port):
//! runs of at most [`RUN_RECORDS`] records are sorted in memory and
//! spilled to a private directory as fixed-size binary records, then read
//! back in one k-way merge (runs are first merged [`FAN_IN`] at a time when
//! there are more, so open files and read buffers stay bounded too). The
//! sorted stream is read twice: once to check it (a port reported twice, a
//! host with fewer results than it had ports) so that nothing is written
//! from bad inputs, and once to replay it through the scan's own sinks
//! ([`crate::output::Outputs`]) as results numbered host by host. The
//! per-host formats then hold at most one host at a time: each host's last
//! port completes its record.
//!
//! The per-host formats need every result of every host and the number of
//! ports each host had, so -oX and -oG need the shards run with
//! `--show all` and their `--stats` files among the inputs; the line
//! formats take whatever the shards wrote.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::MergeError;
use crate::classify::Reason;
use crate::config::{ConfigError, Dest, OutputPlan, Show};
use crate::order::{Blocks, Done, Order, Schedule, Shard};
use crate::output::{HostLine, OpenError, Outputs, RunInfo, port_ranges};
use crate::probe::ProbeResult;
use crate::service::record::ServiceRecord;
use crate::stats::{Stats, Summary};

/// Records sorted in memory before a run is spilled: about 40 MB.
pub const RUN_RECORDS: usize = 1 << 20;
/// Runs merged at once (each holds a 64 KiB read buffer).
pub const FAN_IN: usize = 64;
/// Results handed to the sinks per batch.
const BATCH: usize = 4096;

/// The formats to write, and where.
#[derive(Debug, Clone)]
pub struct FormatPlan {
    pub text: Option<Dest>,
    pub xml: Option<Dest>,
    pub grepable: Option<Dest>,
    pub csv: Option<Dest>,
    /// `--show`: the states given a line or a `<port>` (the others are
    /// counted, as in a scan).
    pub show: Show,
    /// Where the sorted runs are spilled (a private directory is made in it).
    pub sort_dir: PathBuf,
    /// Records per sorted run ([`RUN_RECORDS`]; tests use fewer).
    pub run_records: usize,
    /// The merge's command line, for the nmap formats' headers.
    pub command_line: String,
}

impl FormatPlan {
    /// The formats `fastport merge` was asked for; `argv` is its command
    /// line. Two of them on stdout is a usage error.
    pub fn from_args(
        args: &crate::cli::MergeArgs,
        argv: &[std::ffi::OsString],
    ) -> Result<FormatPlan, ConfigError> {
        let dest = |p: &Option<PathBuf>| {
            p.as_ref().map(|p| {
                if p == Path::new("-") {
                    Dest::Stdout
                } else {
                    Dest::File(p.clone())
                }
            })
        };
        let plan = FormatPlan {
            text: dest(&args.output_normal),
            xml: dest(&args.output_xml),
            grepable: dest(&args.output_grepable),
            csv: dest(&args.output_csv),
            show: Show::parse(&args.show)?,
            sort_dir: args.sort_dir.clone().unwrap_or_else(std::env::temp_dir),
            run_records: RUN_RECORDS,
            command_line: argv
                .iter()
                .map(|a| a.to_string_lossy())
                .collect::<Vec<_>>()
                .join(" "),
        };
        // -oJ goes to stdout when absent, unless another format is asked for.
        let json = match &args.output_json {
            Some(p) if p == Path::new("-") => Some(Dest::Stdout),
            None if !plan.any() => Some(Dest::Stdout),
            _ => None,
        };
        let on_stdout: Vec<&'static str> = [
            ("-oJ", &json),
            ("-oN", &plan.text),
            ("-oX", &plan.xml),
            ("-oG", &plan.grepable),
            ("-oC", &plan.csv),
        ]
        .into_iter()
        .filter(|(_, d)| matches!(d, Some(Dest::Stdout)))
        .map(|(flag, _)| flag)
        .collect();
        if let [a, b, ..] = on_stdout[..] {
            return Err(ConfigError::StdoutTwice(a, b));
        }
        Ok(plan)
    }

    /// Whether any format is asked for.
    pub fn any(&self) -> bool {
        self.text.is_some() || self.xml.is_some() || self.grepable.is_some() || self.csv.is_some()
    }

    /// The files it writes (not stdout).
    pub fn files(&self) -> impl Iterator<Item = &Path> {
        [&self.text, &self.xml, &self.grepable, &self.csv]
            .into_iter()
            .filter_map(|d| match d {
                Some(Dest::File(p)) => Some(p.as_path()),
                _ => None,
            })
    }

    fn per_host(&self) -> bool {
        self.xml.is_some() || self.grepable.is_some()
    }
}

/// Why the formats could not be written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    #[error(transparent)]
    Merge(#[from] MergeError),
    #[error(
        "-oX and -oG write one record per host and need to know how many ports each host had: give the shards' --stats files too"
    )]
    NeedsStats,
    #[error(
        "-oX and -oG write one record per host and need every result of every host: {addr} has {have} of its {want} results (run every shard with --show all, and merge every shard and resumed part)"
    )]
    Incomplete { addr: IpAddr, have: u64, want: u64 },
    #[error("cannot sort the results in \"{}\": {source}", dir.display())]
    Sort {
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Open(#[from] OpenError),
    #[error("cannot write output: {0}")]
    Write(io::Error),
}

/// One result, as sorted: by address, then port.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Rec {
    addr: IpAddr,
    port: u16,
    /// The input it came from (for error messages).
    file: u32,
    reason: u8,
    rtt_us: Option<u32>,
    /// `-sV`/`--banners`: the line's service keys, as compact JSON.
    service: Option<Box<str>>,
}

const REC_BYTES: usize = 29;

impl Rec {
    fn encode(&self, out: &mut [u8; REC_BYTES]) {
        let (tag, bytes) = match self.addr {
            IpAddr::V4(a) => (4u8, a.to_ipv6_mapped().octets()),
            IpAddr::V6(a) => (6u8, a.octets()),
        };
        out[0] = tag;
        out[1..17].copy_from_slice(&bytes);
        out[17..19].copy_from_slice(&self.port.to_le_bytes());
        out[19..23].copy_from_slice(&self.file.to_le_bytes());
        out[23] = self.reason;
        out[24] = u8::from(self.rtt_us.is_some());
        out[25..29].copy_from_slice(&self.rtt_us.unwrap_or(0).to_le_bytes());
    }

    fn decode(b: &[u8; REC_BYTES]) -> Rec {
        let mut octets = [0u8; 16];
        octets.copy_from_slice(&b[1..17]);
        let v6 = Ipv6Addr::from(octets);
        let addr = match b[0] {
            4 => IpAddr::V4(v6.to_ipv4_mapped().unwrap_or(Ipv4Addr::UNSPECIFIED)),
            _ => IpAddr::V6(v6),
        };
        let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        Rec {
            addr,
            port: u16::from_le_bytes([b[17], b[18]]),
            file: u32_at(19),
            reason: b[23],
            rtt_us: (b[24] == 1).then(|| u32_at(25)),
            service: None,
        }
    }

    /// Writes the record to a run: its fixed part, the service's length
    /// (0: none) and the service.
    fn write_to(&self, w: &mut impl Write) -> io::Result<()> {
        let mut buf = [0u8; REC_BYTES];
        self.encode(&mut buf);
        w.write_all(&buf)?;
        let service = self.service.as_deref().unwrap_or("");
        let len = u32::try_from(service.len()).unwrap_or(0);
        w.write_all(&len.to_le_bytes())?;
        w.write_all(&service.as_bytes()[..len as usize])
    }

    /// Reads a record written by [`Rec::write_to`]; `None` at the end of the run.
    fn read_from(r: &mut impl Read) -> Option<io::Result<Rec>> {
        let mut buf = [0u8; REC_BYTES];
        match r.read_exact(&mut buf) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return None,
            Err(e) => return Some(Err(e)),
        }
        let mut rec = Rec::decode(&buf);
        let mut len = [0u8; 4];
        if let Err(e) = r.read_exact(&mut len) {
            return Some(Err(e));
        }
        let len = u32::from_le_bytes(len) as usize;
        if len > 0 {
            let mut text = vec![0u8; len];
            if let Err(e) = r.read_exact(&mut text) {
                return Some(Err(e));
            }
            match String::from_utf8(text) {
                Ok(t) => rec.service = Some(t.into_boxed_str()),
                Err(e) => return Some(Err(io::Error::new(io::ErrorKind::InvalidData, e))),
            }
        }
        Some(Ok(rec))
    }

    fn reason(&self) -> Reason {
        Reason::ALL[usize::from(self.reason)]
    }
}

/// One `-oJ` line, as read back.
#[derive(serde::Deserialize)]
struct Line<'a> {
    addr: IpAddr,
    port: u16,
    reason: &'a str,
    rtt_us: Option<u32>,
}

/// The private directory the runs are spilled to, removed when dropped.
struct SortDir {
    path: PathBuf,
    runs: usize,
}

impl SortDir {
    fn new(parent: &Path) -> Result<SortDir, FormatError> {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path = parent.join(format!("fastport-merge-{}-{nanos:09}", std::process::id()));
        std::fs::create_dir(&path).map_err(|source| FormatError::Sort {
            dir: parent.to_path_buf(),
            source,
        })?;
        Ok(SortDir { path, runs: 0 })
    }

    fn err(&self, source: io::Error) -> FormatError {
        FormatError::Sort {
            dir: self.path.clone(),
            source,
        }
    }

    /// Writes `recs` (sorted) as a new run.
    fn spill(
        &mut self,
        recs: impl IntoIterator<Item = io::Result<Rec>>,
    ) -> Result<PathBuf, FormatError> {
        let path = self.path.join(format!("run-{}", self.runs));
        self.runs += 1;
        let file = File::create(&path).map_err(|e| self.err(e))?;
        let mut w = BufWriter::with_capacity(64 * 1024, file);
        for rec in recs {
            rec.map_err(|e| self.err(e))?
                .write_to(&mut w)
                .map_err(|e| self.err(e))?;
        }
        w.flush().map_err(|e| self.err(e))?;
        Ok(path)
    }
}

impl Drop for SortDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A sorted run being read back.
struct RunReader(BufReader<File>);

impl Iterator for RunReader {
    type Item = io::Result<Rec>;

    fn next(&mut self) -> Option<io::Result<Rec>> {
        Rec::read_from(&mut self.0)
    }
}

/// The k-way merge of sorted runs: one sorted stream.
struct Merged {
    runs: Vec<RunReader>,
    heap: BinaryHeap<Reverse<(Rec, usize)>>,
    failed: Option<io::Error>,
}

impl Merged {
    fn open(paths: &[PathBuf]) -> io::Result<Merged> {
        let mut m = Merged {
            runs: Vec::with_capacity(paths.len()),
            heap: BinaryHeap::with_capacity(paths.len()),
            failed: None,
        };
        for (i, path) in paths.iter().enumerate() {
            let mut run = RunReader(BufReader::with_capacity(64 * 1024, File::open(path)?));
            if let Some(rec) = run.next().transpose()? {
                m.heap.push(Reverse((rec, i)));
            }
            m.runs.push(run);
        }
        Ok(m)
    }
}

impl Iterator for Merged {
    type Item = io::Result<Rec>;

    fn next(&mut self) -> Option<io::Result<Rec>> {
        if let Some(e) = self.failed.take() {
            return Some(Err(e));
        }
        let Reverse((rec, i)) = self.heap.pop()?;
        match self.runs[i].next() {
            Some(Ok(next)) => self.heap.push(Reverse((next, i))),
            Some(Err(e)) => self.failed = Some(e),
            None => {}
        }
        Some(Ok(rec))
    }
}

/// Sorts every result line of `inputs` into runs on disk, merged down to
/// at most [`FAN_IN`] runs.
fn sort_into_runs(
    inputs: &[PathBuf],
    dir: &mut SortDir,
    run_records: usize,
) -> Result<Vec<PathBuf>, FormatError> {
    let run_records = run_records.max(1);
    let mut runs = Vec::new();
    let mut buf: Vec<Rec> = Vec::with_capacity(run_records.min(RUN_RECORDS));
    for (file, path) in inputs.iter().enumerate() {
        let read_err = |source| MergeError::Read {
            path: path.clone(),
            source,
        };
        let mut reader = BufReader::new(File::open(path).map_err(read_err)?);
        let mut line = String::new();
        let mut number = 0u64;
        loop {
            line.clear();
            if reader.read_line(&mut line).map_err(read_err)? == 0 {
                break;
            }
            number += 1;
            if line.trim().is_empty() {
                continue;
            }
            let bad = |why: String| MergeError::BadLine {
                path: path.clone(),
                line: number,
                why,
            };
            if HostLine::parse(&line).is_some() {
                continue;
            }
            let parsed: Line = serde_json::from_str(&line).map_err(|e| bad(e.to_string()))?;
            let reason = Reason::from_str_name(parsed.reason)
                .ok_or_else(|| bad(format!("unknown reason \"{}\"", parsed.reason)))?;
            // A line of a -sV scan: its service keys ride along (read
            // again, as the record type, which skips the other keys).
            let service = if line.contains("\"service\"") || line.contains("\"banner\"") {
                let record: ServiceRecord =
                    serde_json::from_str(&line).map_err(|e| bad(e.to_string()))?;
                let text = serde_json::to_string(&record).map_err(|e| bad(e.to_string()))?;
                (!record.is_empty()).then(|| text.into_boxed_str())
            } else {
                None
            };
            buf.push(Rec {
                addr: parsed.addr,
                port: parsed.port,
                file: u32::try_from(file).unwrap_or(u32::MAX),
                reason: reason.index() as u8,
                rtt_us: parsed.rtt_us,
                service,
            });
            if buf.len() >= run_records {
                buf.sort_unstable();
                runs.push(dir.spill(buf.drain(..).map(Ok))?);
            }
        }
    }
    if !buf.is_empty() || runs.is_empty() {
        buf.sort_unstable();
        runs.push(dir.spill(buf.drain(..).map(Ok))?);
    }
    drop(buf);
    while runs.len() > FAN_IN {
        let group: Vec<PathBuf> = runs.drain(..FAN_IN).collect();
        let merged = Merged::open(&group).map_err(|e| dir.err(e))?;
        runs.push(dir.spill(merged)?);
        for path in group {
            let _ = std::fs::remove_file(path);
        }
    }
    Ok(runs)
}

/// Refuses inputs that report one (address, port) twice (the shards
/// overlap), in bounded memory: the lines sorted on disk under `sort_dir`,
/// a port twice is two neighbours. Returns the host lines of the hosts
/// behind a middlebox, judged on whole hosts only: with `ports_per_host`
/// (from the summaries), a host all of whose results are in the inputs
/// (the shards ran with `--show all`).
pub fn check_overlaps(
    inputs: &[PathBuf],
    sort_dir: &Path,
    ports_per_host: Option<u64>,
) -> Result<Vec<HostLine>, FormatError> {
    let mut dir = SortDir::new(sort_dir)?;
    let runs = sort_into_runs(inputs, &mut dir, RUN_RECORDS)?;
    let checked = check(
        Merged::open(&runs).map_err(|e| dir.err(e))?,
        inputs,
        Whole::Judge(ports_per_host),
        &dir,
    )?;
    Ok(checked.middleboxes)
}

/// What [`check`] knows of a whole host's number of results.
#[derive(Debug, Clone, Copy)]
enum Whole {
    /// Every host has this many: one with fewer is refused.
    Required(u64),
    /// Hosts with this many are whole, and judged for middleboxes; the
    /// others are partial (shards that showed only some states).
    Judge(Option<u64>),
}

/// What the checking pass learnt about the sorted stream.
struct Checked {
    hosts: u64,
    results: u64,
    /// Ports of the first host (every host's, when the hosts are complete).
    ports: Vec<u16>,
    reasons: [u64; Reason::COUNT],
    /// Some line carried a service (`-sV`): the formats write its columns.
    services: bool,
    /// Whole hosts behind a middlebox ([`Whole::Judge`]).
    middleboxes: Vec<HostLine>,
}

/// Walks the sorted stream once: no port twice, and every host complete
/// ([`Whole::Required`]) or the whole ones judged ([`Whole::Judge`]).
fn check(
    stream: impl Iterator<Item = io::Result<Rec>>,
    inputs: &[PathBuf],
    whole: Whole,
    dir: &SortDir,
) -> Result<Checked, FormatError> {
    let mut c = Checked {
        hosts: 0,
        results: 0,
        ports: Vec::new(),
        reasons: [0; Reason::COUNT],
        services: false,
        middleboxes: Vec::new(),
    };
    let mut prev: Option<(IpAddr, u16)> = None;
    // The current host's results, by reason.
    let mut host = [0u64; Reason::COUNT];
    for rec in stream {
        let rec = rec.map_err(|e| dir.err(e))?;
        match prev {
            Some((addr, port)) if addr == rec.addr && port == rec.port => {
                return Err(MergeError::Duplicate {
                    addr: rec.addr,
                    port: rec.port,
                    path: inputs[rec.file as usize].clone(),
                }
                .into());
            }
            Some((addr, _)) if addr == rec.addr => {}
            _ => {
                if let Some((addr, _)) = prev {
                    host_done(&mut c, whole, addr, &std::mem::take(&mut host))?;
                }
                c.hosts += 1;
            }
        }
        if c.hosts == 1 {
            c.ports.push(rec.port);
        }
        c.results += 1;
        c.reasons[usize::from(rec.reason)] += 1;
        host[usize::from(rec.reason)] += 1;
        c.services |= rec.service.is_some();
        prev = Some((rec.addr, rec.port));
    }
    if let Some((addr, _)) = prev {
        host_done(&mut c, whole, addr, &host)?;
    }
    Ok(c)
}

/// The last result of host `addr` went by, with `reasons` its counts.
fn host_done(
    c: &mut Checked,
    whole: Whole,
    addr: IpAddr,
    reasons: &[u64; Reason::COUNT],
) -> Result<(), FormatError> {
    let have: u64 = reasons.iter().sum();
    match whole {
        Whole::Required(want) if have != want => {
            return Err(FormatError::Incomplete { addr, have, want });
        }
        Whole::Judge(Some(want)) if have == want => {
            c.middleboxes.extend(HostLine::new(addr, reasons));
        }
        _ => {}
    }
    Ok(())
}

/// Writes the formats of `plan` from the result lines of `inputs`.
/// `merged` is the merged `--stats` summary, when summaries were given.
/// Returns the number of results replayed.
pub fn write(
    inputs: &[PathBuf],
    plan: &FormatPlan,
    merged: Option<&Summary>,
) -> Result<u64, FormatError> {
    let ports_per_host = match (plan.per_host(), merged) {
        (false, _) => None,
        (true, None) => return Err(FormatError::NeedsStats),
        (true, Some(s)) => Some(s.ports_per_host.max(1)),
    };
    let mut dir = SortDir::new(&plan.sort_dir)?;
    let runs = sort_into_runs(inputs, &mut dir, plan.run_records)?;
    let checked = check(
        Merged::open(&runs).map_err(|e| dir.err(e))?,
        inputs,
        ports_per_host.map_or(Whole::Judge(None), Whole::Required),
        &dir,
    )?;

    let summary = merged.map_or_else(|| summary_of(&checked), Summary::clone);
    let per_host = ports_per_host.unwrap_or(checked.ports.len().max(1) as u64);
    let run = RunInfo {
        command_line: plan.command_line.clone(),
        services: port_ranges(&checked.ports),
        ports_per_host: per_host,
        timeout: Duration::from_micros(summary.stats.timing.timeout_us),
        started: SystemTime::now()
            .checked_sub(summary.elapsed)
            .unwrap_or(SystemTime::UNIX_EPOCH),
        order: format!(
            "merged shards of order {}, seed {}",
            summary.order, summary.seed
        ),
        // The replay is one whole scan in index order: host after host,
        // each with all of its ports, so every host's quota is its port
        // count.
        schedule: Schedule::new(
            Blocks::new(checked.hosts.max(1) * per_host, per_host),
            Order::Sequential,
            Shard::WHOLE,
            Done::none(),
        ),
        held: None,
        ranking: None,
        open_only: false,
        rtt_bounds: None,
        stylesheet: crate::output::stylesheet_href(
            std::path::Path::new("/usr/share/nmap/nmap.xsl").exists(),
        ),
        names: std::sync::Arc::default(),
        unresolved: 0,
        service_detection: checked.services,
    };
    // Each file is written under a temporary name beside it and renamed
    // once whole: a merge that fails leaves no partial output.
    let mut staged = Staged::default();
    let outputs = OutputPlan {
        text: plan.text.iter().map(|d| staged.stage(d)).collect(),
        json: None,
        xml: plan.xml.as_ref().map(|d| staged.stage(d)),
        grepable: plan.grepable.as_ref().map(|d| staged.stage(d)),
        csv: plan.csv.as_ref().map(|d| staged.stage(d)),
        stats: None,
        show: plan.show,
        reason: false,
        summary_to_stderr: false,
        stats_every: None,
        open_only: false,
        quiet: false,
        list: None,
        trace: None,
    };
    let mut outputs = Outputs::open(&outputs, &run)?;

    // Results numbered host by host, so that each host's last port
    // completes its record in the per-host formats.
    let mut batch: Vec<ProbeResult> = Vec::with_capacity(BATCH);
    let mut host = 0u64;
    let mut in_host = 0u64;
    let mut prev: Option<IpAddr> = None;
    let mut n = 0u64;
    for rec in Merged::open(&runs).map_err(|e| dir.err(e))? {
        let rec = rec.map_err(|e| dir.err(e))?;
        if prev.is_some_and(|p| p != rec.addr) {
            host += 1;
            in_host = 0;
        }
        prev = Some(rec.addr);
        batch.push(ProbeResult {
            index: host * per_host + in_host.min(per_host - 1),
            target: SocketAddr::new(rec.addr, rec.port),
            reason: rec.reason(),
            rtt_us: rec.rtt_us,
            service: rec
                .service
                .as_deref()
                .and_then(|text| serde_json::from_str::<ServiceRecord>(text).ok())
                .map(Box::new),
            reason_ip: None,
        });
        in_host += 1;
        n += 1;
        if batch.len() == BATCH {
            outputs.write_batch(&batch).map_err(FormatError::Write)?;
            batch.clear();
        }
    }
    outputs.write_batch(&batch).map_err(FormatError::Write)?;
    outputs.finish(&summary).map_err(FormatError::Write)?;
    drop(outputs);
    staged.commit().map_err(FormatError::Write)?;
    Ok(n)
}

/// Output files written under a temporary name in their own directory
/// (so the rename is atomic), renamed into place by [`Staged::commit`] and
/// removed when dropped before it. Devices and FIFOs are written in place.
#[derive(Default)]
struct Staged {
    files: Vec<(PathBuf, PathBuf)>,
}

impl Staged {
    fn stage(&mut self, dest: &Dest) -> Dest {
        let Dest::File(path) = dest else {
            return dest.clone();
        };
        if super::written_in_place(path) {
            return dest.clone();
        }
        // 0 is write_atomically's (the -oJ file).
        let tmp = super::temp_beside(path, self.files.len() + 1);
        self.files.push((tmp.clone(), path.clone()));
        Dest::File(tmp)
    }

    fn commit(mut self) -> io::Result<()> {
        while let Some((tmp, path)) = self.files.first() {
            std::fs::rename(tmp, path)?;
            self.files.remove(0);
        }
        Ok(())
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        for (tmp, _) in &self.files {
            let _ = std::fs::remove_file(tmp);
        }
    }
}

/// A summary from the results alone, when no `--stats` files were given.
fn summary_of(c: &Checked) -> Summary {
    let mut stats = Stats::new();
    stats.reasons = c.reasons;
    stats.attempts = c.results;
    Summary {
        stats,
        elapsed: Duration::ZERO,
        hosts: c.hosts,
        ports_per_host: c.ports.len() as u64,
        planned: c.results,
        interrupted: false,
        engine: "mio",
        threads: 0,
        concurrency: 0,
        seed: 0,
        order: "random",
        shard: Shard::WHOLE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{TempDir, assert_has};

    fn temp(name: &str) -> TempDir {
        TempDir::new("formats", name)
    }

    fn line(addr: &str, port: u16, reason: Reason, rtt: Option<u32>) -> String {
        serde_json::json!({
            "addr": addr, "port": port, "state": reason.state().as_str(),
            "reason": reason.as_str(), "rtt_us": rtt,
        })
        .to_string()
    }

    /// Two shards of 3 hosts × 4 ports (22, 80, 443, 8080), every result,
    /// interleaved as a random order would.
    fn shards(dir: &Path) -> Vec<PathBuf> {
        let mut a = Vec::new();
        let mut b = Vec::new();
        let mut i = 0;
        for port in [443, 22, 8080, 80] {
            for host in ["127.0.0.3", "::1", "127.0.0.1"] {
                let reason = if port == 22 || (port == 80 && host == "::1") {
                    Reason::SynAck
                } else if host == "127.0.0.3" {
                    Reason::NoResponse
                } else {
                    Reason::ConnRefused
                };
                let rtt = (reason != Reason::NoResponse).then_some(100 + port as u32);
                let l = line(host, port, reason, rtt);
                if i % 2 == 0 {
                    a.push(l)
                } else {
                    b.push(l)
                }
                i += 1;
            }
        }
        let pa = dir.join("a.jsonl");
        let pb = dir.join("b.jsonl");
        std::fs::write(&pa, a.join("\n") + "\n").unwrap();
        std::fs::write(&pb, b.join("\n") + "\n").unwrap();
        vec![pa, pb]
    }

    fn plan(dir: &Path) -> FormatPlan {
        FormatPlan {
            text: None,
            xml: None,
            grepable: None,
            csv: None,
            show: Show::OPEN,
            sort_dir: dir.to_path_buf(),
            run_records: 2,
            command_line: "fastport merge".into(),
        }
    }

    /// [`plan`] writing every format: `scan.txt`, `scan.xml`, `scan.gnmap`
    /// and `scan.csv` in `dir`.
    fn plan_all(dir: &Path) -> FormatPlan {
        let file = |ext| Some(Dest::File(dir.join(format!("scan.{ext}"))));
        FormatPlan {
            text: file("txt"),
            xml: file("xml"),
            grepable: file("gnmap"),
            csv: file("csv"),
            ..plan(dir)
        }
    }

    /// What [`plan_all`] wrote as `scan.EXT`.
    fn written(dir: &Path, ext: &str) -> String {
        std::fs::read_to_string(dir.join(format!("scan.{ext}"))).unwrap()
    }

    fn summary() -> Summary {
        let mut s = crate::output::tests::summary(false, 12, Duration::from_secs(1));
        s.hosts = 3;
        s.ports_per_host = 4;
        s
    }

    /// A merge whose second output could not be opened used to leave the
    /// first one behind, created and cut short.
    #[test]
    fn a_failed_merge_leaves_no_partial_format_output() {
        let dir = temp("partial");
        let inputs = shards(&dir);
        let mut p = plan(&dir);
        p.xml = Some(Dest::File(dir.join("scan.xml")));
        p.grepable = Some(Dest::File(dir.join("no-such-dir").join("scan.gnmap")));
        assert!(write(&inputs, &p, Some(&summary())).is_err());
        let left: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains("scan"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
        p.grepable = Some(Dest::File(dir.join("scan.gnmap")));
        write(&inputs, &p, Some(&summary())).unwrap();
        assert!(dir.join("scan.xml").exists() && dir.join("scan.gnmap").exists());
    }

    #[test]
    fn records_round_trip_through_their_encoding() {
        for rec in [
            Rec {
                addr: "127.0.0.1".parse().unwrap(),
                port: 65535,
                file: 7,
                reason: 3,
                rtt_us: Some(u32::MAX),
                service: Some(r#"{"service":"ssh","product":"Open,SSH"}"#.into()),
            },
            Rec {
                addr: "2001:2::1".parse().unwrap(),
                port: 1,
                file: 0,
                reason: 0,
                rtt_us: None,
                service: None,
            },
        ] {
            let mut buf = Vec::new();
            rec.write_to(&mut buf).unwrap();
            let mut read = &buf[..];
            assert_eq!(Rec::read_from(&mut read).unwrap().unwrap(), rec);
            assert!(Rec::read_from(&mut read).is_none());
        }
    }

    #[test]
    fn many_small_runs_merge_into_host_order() {
        let dir = temp("runs");
        let inputs = shards(&dir);
        let mut sd = SortDir::new(&dir).unwrap();
        // Runs of 1 record, merged 64 at a time: 12 runs, one level.
        let runs = sort_into_runs(&inputs, &mut sd, 1).unwrap();
        assert_eq!(runs.len(), 12);
        let keys: Vec<(IpAddr, u16)> = Merged::open(&runs)
            .unwrap()
            .map(|r| r.map(|r| (r.addr, r.port)).unwrap())
            .collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
        assert_eq!(keys.len(), 12);
        let c = check(
            Merged::open(&runs).unwrap(),
            &inputs,
            Whole::Required(4),
            &sd,
        )
        .unwrap();
        assert_eq!((c.hosts, c.results), (3, 12));
        assert_eq!(c.ports, [22, 80, 443, 8080]);
        let sort_path = sd.path.clone();
        drop(sd);
        assert!(!sort_path.exists(), "the runs are removed");
    }

    #[test]
    fn xml_and_grepable_hold_each_host_once_in_address_order() {
        let dir = temp("xml");
        let inputs = shards(&dir);
        assert_eq!(
            write(&inputs, &plan_all(&dir), Some(&summary())).unwrap(),
            12
        );
        let xml = written(&dir, "xml");
        let hosts: Vec<&str> = xml
            .match_indices("<address addr=\"")
            .map(|(i, _)| xml[i + 15..].split('"').next().unwrap())
            .collect();
        // Each host once, in address order (IPv4 first), however the
        // shards interleaved them.
        assert_eq!(hosts, ["127.0.0.1", "127.0.0.3", "::1"]);
        assert_has(&xml, "services=\"22,80,443,8080\"");
        assert!(!xml.contains("timedout"), "every host is complete: {xml}");
        assert_has(&xml, "<extraports state=\"closed\" count=\"3\">");
        assert_has(&xml, "<extraports state=\"filtered\" count=\"3\">");
        assert_has(&xml, "<hosts up=\"3\" down=\"0\" total=\"3\"/>");
        let gnmap = written(&dir, "gnmap");
        assert_has(&gnmap, "Host: 127.0.0.1 ()\tPorts: 22/open/tcp//ssh///");
        let csv = written(&dir, "csv");
        let rows: Vec<&str> = csv.lines().skip(1).collect();
        assert_eq!(
            rows,
            [
                "127.0.0.1,22,open,syn-ack,122,",
                "127.0.0.3,22,open,syn-ack,122,",
                "::1,22,open,syn-ack,122,",
                "::1,80,open,syn-ack,180,"
            ]
        );
        let text = written(&dir, "txt");
        // An -oN file opens with nmap's header, then the results.
        assert!(text.starts_with("# FastPort "), "{text}");
        let first = text
            .lines()
            .find(|l| !l.starts_with('#'))
            .unwrap_or_default();
        assert!(first.starts_with("[OPEN] 127.0.0.1:22"), "{text}");
    }

    #[test]
    fn per_host_formats_refuse_incomplete_hosts_and_write_nothing() {
        let dir = temp("incomplete");
        let inputs = shards(&dir);
        let mut p = plan(&dir);
        let out = dir.join("m.xml");
        std::fs::write(&out, "earlier results").unwrap();
        p.xml = Some(Dest::File(out.clone()));
        // Only one shard: each host has 2 of its 4 results.
        let err = write(&inputs[..1], &p, Some(&summary())).unwrap_err();
        assert!(
            err.to_string().contains("127.0.0.1 has 2 of its 4 results"),
            "{err}"
        );
        assert!(matches!(
            write(&inputs, &p, None),
            Err(FormatError::NeedsStats)
        ));
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "earlier results");
        // A port in two inputs is an overlap, named.
        let err = write(
            &[inputs[0].clone(), inputs[0].clone()],
            &p,
            Some(&summary()),
        )
        .unwrap_err()
        .to_string();
        assert_has(&err, "reported twice");
        // The line formats take whatever the shards wrote.
        let mut p = plan(&dir);
        p.csv = Some(Dest::File(dir.join("part.csv")));
        assert_eq!(write(&inputs[..1], &p, None).unwrap(), 6);
    }

    /// Shards of a `-sV` scan: the merged formats write each port's
    /// service as the scan's own outputs did (through the sort's spilled
    /// runs), and the CSV gains its service columns.
    #[test]
    fn merge_carries_the_service_fields_through() {
        let dir = temp("services");
        let inputs = shards(&dir);
        // Give 127.0.0.1:22 a service, as a -sV shard writes it.
        for input in &inputs {
            let text = std::fs::read_to_string(input).unwrap();
            let plain = line("127.0.0.1", 22, Reason::SynAck, Some(122));
            let with = plain.trim_end_matches('}').to_string()
                + r#","service":"ssh","product":"OpenSSH","version":"9.2p1","cpe":["cpe:/a:openbsd:openssh:9.2p1"],"banner":"=1+1"}"#;
            std::fs::write(input, text.replace(&plain, &with)).unwrap();
        }
        write(&inputs, &plan_all(&dir), Some(&summary())).unwrap();
        let xml = written(&dir, "xml");
        assert_has(
            &xml,
            r#"<service name="ssh" product="OpenSSH" version="9.2p1" method="probed" conf="10"><cpe>cpe:/a:openbsd:openssh:9.2p1</cpe></service>"#,
        );
        let gnmap = written(&dir, "gnmap");
        assert_has(&gnmap, "22/open/tcp//ssh//OpenSSH 9.2p1/");
        let csv = written(&dir, "csv");
        assert!(
            csv.starts_with("addr,port,state,reason,rtt_us,host,service,"),
            "{csv}"
        );
        assert_has(
            &csv,
            "127.0.0.1,22,open,syn-ack,122,,ssh,OpenSSH,9.2p1,,,\"'=1+1\"\n",
        );
        assert_has(&csv, "::1,22,open,syn-ack,122,,,,,,,\n");
    }
    /// A host split over two shards, open on all of its 20 ports, and one
    /// with a closed port. Each shard flagged its half (10 ports: too few to
    /// judge, but a shard of a larger scan could); the merge passes over
    /// the shards' host lines and judges the whole hosts again, and only
    /// hosts whose every result is in the inputs.
    #[test]
    fn middleboxes_are_judged_again_on_whole_hosts() {
        let t = temp("middleboxes");
        let dir: &Path = &t;
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for port in 1..=20u16 {
            let side = if port % 2 == 0 { &mut a } else { &mut b };
            side.push(line("127.0.0.1", port, Reason::SynAck, Some(9)));
            let other = if port == 5 {
                Reason::ConnRefused
            } else {
                Reason::SynAck
            };
            side.push(line("127.0.0.2", port, other, Some(9)));
        }
        let flag = r#"{"addr":"127.0.0.1","middlebox":true,"results":10,"open":10}"#;
        a.push(flag.to_string());
        b.push(flag.to_string());
        let (pa, pb) = (dir.join("a.jsonl"), dir.join("b.jsonl"));
        std::fs::write(&pa, a.join("\n") + "\n").unwrap();
        std::fs::write(&pb, b.join("\n") + "\n").unwrap();
        let inputs = vec![pa, pb];
        assert_eq!(crate::merge::check_results(&inputs).unwrap(), 40);

        let hosts = check_overlaps(&inputs, dir, Some(20)).unwrap();
        assert_eq!(hosts.len(), 1);
        assert_eq!(
            serde_json::to_string(&hosts[0]).unwrap(),
            r#"{"addr":"127.0.0.1","middlebox":true,"results":20,"open":20}"#
        );
        // Without the summaries, or with more ports than the lines hold
        // (the shards showed only some states), no host is whole.
        assert!(check_overlaps(&inputs, dir, None).unwrap().is_empty());
        assert!(check_overlaps(&inputs, dir, Some(30)).unwrap().is_empty());

        let mut out = Vec::new();
        crate::merge::copy_results(&inputs, &hosts, &mut out, Path::new("out")).unwrap();
        let out = String::from_utf8(out).unwrap();
        assert_eq!(out.lines().count(), 41, "{out}");
        assert_eq!(out.matches("middlebox").count(), 1, "{out}");
        assert!(out.ends_with("\"results\":20,\"open\":20}\n"), "{out}");
    }
}
