//! Resume files: what an interrupted run leaves behind so that
//! `fastport --resume FILE` continues it, and together the runs report
//! every probe exactly once, into the same output files.
//!
//! The file is one versioned serde type, [`ResumeFile`], written and read
//! here only:
//!
//! ```json
//! {
//!   "fastport_resume": 4,
//!   "check": "9c4e0d3b1f2a7e65",
//!   "identity": { "seed": 1234, "order": "random", "shard": "2/3",
//!                 "space": 67108864, "targets": "5be1f3a0c2d4e6f8" },
//!   "finished": false,
//!   "parts": 1,
//!   "options": { "targets": { "operands": ["198.18.0.0/16"], ... },
//!                "ports": { "ports": "1-1024", ... }, "engine": "mio",
//!                "order": "random", "seed": 1234, "shard": "2/3",
//!                "outputs": [{ "format": "json", "path": "/home/me/part1.jsonl" },
//!                            { "format": "xml", "path": "/home/me/scan.xml" }], ... },
//!   "progress": { "segment": 0, "done_below": 81234,
//!                 "done_ranges": [[81236, 81300], [81301, 82011]],
//!                 "in_flight": [81234, 81235, 81300] },
//!   "so_far": { "fastport_stats": 1, ... },
//!   "hosts": { "xml": [5120, 5120], "grepable": [5120, 5120],
//!              "pending": [{ "host": 81, "addr": "198.18.0.81", "first_seen": 1795959142,
//!                            "reasons": "conn-refused:9 syn-ack:1", "shown": "22:syn-ack",
//!                            "rtt": [61, 20, 10] }] }
//! }
//! ```
//!
//! - `check` is a hash of everything else: an edited or damaged file is
//!   refused, not trusted. `identity` is the scan (seed, order, shard, the
//!   number of probes, up to 2^127, and a hash of the targets and ports);
//!   a resume refuses targets that now make another scan.
//! - `options` is [`ScanOptions`]: every flag of the run, typed, written
//!   and read by `options.rs` only. The outputs (absolute paths) are the
//!   files a resumed run continues when it is not given a new file for a
//!   format: whole records appended, XML reopened before its `<runstats>`
//!   (see [`crate::output::Continue`]). Files of an older format are
//!   refused with a line that says so.
//! - Progress counts in the shard's *sequence numbers* `s` (the probe at
//!   position `K-1 + N*s` of the seeded order, see [`crate::order`]): every
//!   `s < done_below` is finished and written, so are the half-open
//!   `done_ranges` above it; `in_flight` lists the probes the interrupt
//!   caught unanswered, which were not written and are probed again. A
//!   scan of more than 2^63 probes counts them in its `segment` (by the
//!   ordinal of its visit, see [`crate::order::SegmentPlan`]); every
//!   segment visited before is done.
//! - `so_far` is the `--stats` document of the parts so far, so the last
//!   part's summary counts the whole scan.
//! - `hosts`: the hosts whose probes straddle the interrupt, as the
//!   per-host formats (`-oX`, `-oG`, the text table) had them (see
//!   [`crate::output::HeldHosts`]), and each document's host counts. The
//!   interrupted run wrote no partial record for them; the resumed run
//!   takes them back and writes each host once, whole.
//! - A run that ends marks the file it resumed `finished`: resuming it
//!   again says so. A resumed run holds a lock on its file, so two resumes
//!   of one file cannot run at once. A new interrupted run never replaces
//!   another run's unfinished file: it picks the next free name.

use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use clap::CommandFactory;
use clap::parser::ValueSource;
use serde::{Deserialize, Serialize};

mod options;
pub use options::{
    NmapOptions, PortOptions, ReportOptions, SavedOutput, ScanOptions, ServiceOptions,
    TargetOptions, TimingOptions,
};

use crate::cli::{self, Args};
use crate::config::ScanConfig;
use crate::order::{Done, OrderKind, Shard};
use crate::output::{Continue, Format, HeldHosts};
use crate::stats::StatsDocument;
use crate::targets::{SEGMENT_PROBES, TargetSpace};

/// What a resume file says while a run that resumed it has not ended (or
/// after it was killed or crashed): its outputs may be ahead of it.
pub const UNFINISHED_RESUME: &str = "a run that resumed it is still running, or was killed or crashed after appending to the outputs";

/// The format's version, first field of every file. Format 4 keeps the
/// options as [`ScanOptions`] (typed, outputs as a list) and counts a
/// segmented scan's progress in its segment; older files (clap's flags as
/// JSON) are refused with a line that says so.
pub const VERSION: u32 = 4;

/// Why a run cannot be resumed, or its resume file not written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ResumeError {
    #[error("cannot read the resume file {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("{path} is not a FastPort resume file: {why}")]
    Format { path: PathBuf, why: String },
    #[error(
        "{path} was changed or damaged after FastPort wrote it (its check does not match): it cannot be trusted to skip what was done"
    )]
    Damaged { path: PathBuf },
    #[error("{path} is a finished run: every probe was reported, there is nothing to resume")]
    Finished { path: PathBuf },
    #[error(
        "{path} cannot be resumed: {why}, so the outputs may be ahead of it and a resume could write results twice; run the scan again"
    )]
    Stale { path: PathBuf, why: String },
    #[error("{path} is being resumed by another fastport right now")]
    Locked { path: PathBuf },
    #[error(
        "--resume continues with the options of the interrupted run; only output files and --stats-every may be given with it, not {flag}"
    )]
    ExtraOption { flag: String },
    #[error(
        "the targets of {path} now make a different scan ({now} probes, not {then}): a resume needs the same targets and ports"
    )]
    SpaceChanged {
        path: PathBuf,
        now: u128,
        then: u128,
    },
    #[error(
        "the targets or ports of {path} now resolve differently than when it was written: a resume needs the same scan"
    )]
    TargetsChanged { path: PathBuf },
    #[error("cannot write the resume file {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
}

/// The file's contents.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResumeFile {
    pub fastport_resume: u32,
    /// FNV-1a 64 (hex) of the file as written with `"check": ""`.
    pub check: String,
    pub identity: Identity,
    /// The run that resumed this file reported every probe.
    pub finished: bool,
    /// A run that resumed this file wrote to the outputs and then failed
    /// (a write error): the outputs are ahead of `progress`, so resuming
    /// would write results twice. Why, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stale: Option<String>,
    /// Runs so far: 1, plus one per resume.
    pub parts: u32,
    /// Every option of the run, typed (output paths made absolute).
    pub options: ScanOptions,
    pub progress: Progress,
    /// The `--stats` document of the parts so far.
    pub so_far: Option<StatsDocument>,
    /// The hosts in progress at the interrupt, held out of `-oX`/`-oG`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hosts: Option<HeldHosts>,
}

/// The version field alone, read before the rest.
#[derive(Deserialize)]
struct Head {
    fastport_resume: Option<u64>,
}

/// Which scan a file belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub seed: u64,
    pub order: OrderKind,
    /// `K/N`.
    pub shard: String,
    /// Probes of the whole scan (every shard, every segment).
    pub space: u128,
    /// [`targets_hash`] of the scanned addresses and ports.
    pub targets: String,
}

/// What is finished, in the shard's sequence numbers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// A segmented scan: the ordinal of the segment the counts below are
    /// in; every segment visited before it is done.
    #[serde(default)]
    pub segment: u64,
    pub done_below: u64,
    pub done_ranges: Vec<[u64; 2]>,
    pub in_flight: Vec<u64>,
}

/// A run being resumed: its file (locked while this value lives) and what
/// it finished.
#[derive(Debug)]
pub struct Resumed {
    pub path: PathBuf,
    pub file: ResumeFile,
    _lock: File,
}

/// FNV-1a, 64 bits: a stable hash (std's `Hasher`s may change between
/// releases, and these hashes are stored in files).
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A hash of the scanned addresses and ports, in hex: two runs that agree
/// on it (and on the size) probe the same sockets.
pub fn targets_hash(space: &TargetSpace) -> String {
    hash_of(space.intervals(), space.ports())
}

/// [`targets_hash`] of a scan's whole space: of a segmented scan, every
/// segment's addresses, not the one the run is in.
pub fn scan_targets_hash(config: &ScanConfig) -> String {
    match &config.segments {
        Some(plan) => hash_of(plan.segments().intervals(), plan.segments().ports()),
        None => targets_hash(&config.space),
    }
}

fn hash_of(intervals: impl Iterator<Item = (IpAddr, IpAddr)>, ports: &[u16]) -> String {
    let mut bytes = Vec::new();
    for (a, b) in intervals {
        for ip in [a, b] {
            match ip {
                IpAddr::V4(v4) => bytes.extend_from_slice(&v4.octets()),
                IpAddr::V6(v6) => bytes.extend_from_slice(&v6.octets()),
            }
        }
        bytes.push(b'|');
    }
    for p in ports {
        bytes.extend_from_slice(&p.to_be_bytes());
    }
    format!("{:016x}", fnv(&bytes))
}

/// The check field as it appears in the text (pretty-printed).
fn check_field(value: &str) -> String {
    format!("\"check\": \"{value}\"")
}

impl ResumeFile {
    /// The file's text, with its check filled in.
    pub fn to_text(&self) -> String {
        let mut blank = self.clone();
        blank.check = String::new();
        let text = serde_json::to_string_pretty(&blank).unwrap_or_default() + "\n";
        let sum = format!("{:016x}", fnv(text.as_bytes()));
        text.replacen(&check_field(""), &check_field(&sum), 1)
    }

    /// Parses and checks a file's text: version, hash, and progress that
    /// fits the scan.
    pub fn from_text(path: &Path, text: &str) -> Result<ResumeFile, ResumeError> {
        let format = |why: String| ResumeError::Format {
            path: path.to_path_buf(),
            why,
        };
        let head: Head = serde_json::from_str(text).map_err(|e| format(e.to_string()))?;
        match head.fastport_resume {
            Some(v) if v == u64::from(VERSION) => {}
            Some(v) if v < u64::from(VERSION) => {
                return Err(format(format!(
                    "it is format {v}, written by an older FastPort; this one reads format {VERSION} only: run the scan again"
                )));
            }
            Some(v) => {
                return Err(format(format!(
                    "it is format {v}, written by a newer FastPort; this one reads format {VERSION}"
                )));
            }
            None => return Err(format("no \"fastport_resume\" version".into())),
        }
        let file: ResumeFile = serde_json::from_str(text).map_err(|e| format(e.to_string()))?;
        let blank = text.replacen(&check_field(&file.check), &check_field(""), 1);
        if file.check.is_empty() || format!("{:016x}", fnv(blank.as_bytes())) != file.check {
            return Err(ResumeError::Damaged {
                path: path.to_path_buf(),
            });
        }
        file.validate().map_err(format)?;
        Ok(file)
    }

    /// Progress that fits the shard: ranges ascending, disjoint, non-empty,
    /// inside the shard's sequence numbers.
    fn validate(&self) -> Result<(), String> {
        let shard = Shard::parse(&self.identity.shard).map_err(|e| e.to_string())?;
        // A segmented scan counts in one segment (resuming checks the
        // exact length of the one named).
        let len = shard.len(u64::try_from(self.identity.space).unwrap_or(SEGMENT_PROBES));
        let p = &self.progress;
        if p.done_below > len {
            return Err(format!(
                "done_below {} is past the shard's {len} probes",
                p.done_below
            ));
        }
        let mut floor = p.done_below;
        for &[a, b] in &p.done_ranges {
            if a <= floor || a >= b || b > len {
                return Err(format!(
                    "done range [{a}, {b}) is not ascending, disjoint and inside 0..{len}"
                ));
            }
            floor = b;
        }
        if let Some(s) = p.in_flight.iter().find(|&&s| s >= len) {
            return Err(format!("in_flight {s} is past the shard's {len} probes"));
        }
        if self.parts == 0 {
            return Err("parts is 0".into());
        }
        if let Some(hosts) = &self.hosts {
            let mut last = None;
            for h in &hosts.pending {
                h.record()?;
                if last.is_some_and(|l| l >= h.host) {
                    return Err(format!("held host {} is not in ascending order", h.host));
                }
                last = Some(h.host);
            }
        }
        Ok(())
    }

    /// Every finished sequence number.
    pub fn done(&self) -> Done {
        let p = &self.progress;
        Done::from_ranges(
            std::iter::once(0..p.done_below).chain(p.done_ranges.iter().map(|&[a, b]| a..b)),
        )
    }
}

/// The options a resume may give (by clap id): output files, and how often
/// to print status lines. Everything else is the interrupted run's.
const MAY_CHANGE: [&str; 8] = [
    "output_normal",
    "output_json",
    "output_xml",
    "output_grepable",
    "output_csv",
    "output_all",
    "stats",
    "stats_every",
];

fn may_change(arg: &clap::Arg) -> bool {
    MAY_CHANGE.contains(&arg.get_id().as_str())
}

/// Reads, checks and locks the file of `--resume FILE`.
fn open(path: &Path) -> Result<(ResumeFile, File), ResumeError> {
    let read = |source| ResumeError::Read {
        path: path.to_path_buf(),
        source,
    };
    let lock = File::open(path).map_err(read)?;
    if !crate::sys::try_lock_exclusive(&lock).map_err(read)? {
        return Err(ResumeError::Locked {
            path: path.to_path_buf(),
        });
    }
    let text = io::read_to_string(&lock).map_err(read)?;
    let file = ResumeFile::from_text(path, &text)?;
    if file.finished {
        return Err(ResumeError::Finished {
            path: path.to_path_buf(),
        });
    }
    if let Some(why) = &file.stale {
        return Err(ResumeError::Stale {
            path: path.to_path_buf(),
            why: why.clone(),
        });
    }
    Ok((file, lock))
}

/// With `--resume FILE`: the options of the interrupted run (and its seed),
/// with any output files given now in place of its own. Without: `args` as
/// they are.
pub fn resolve(args: Args, argv: &[OsString]) -> Result<(Args, Option<Resumed>), ResumeError> {
    let Some(path) = args.resume.clone() else {
        return Ok((args, None));
    };
    let (file, lock) = open(&path)?;
    let mut resolved = file.options.clone().into_args();

    // Which flags were typed now, besides --resume.
    let matches = cli::command()
        .ignore_errors(true)
        .get_matches_from(cli::normalize_args(argv.iter().cloned()));
    let command = Args::command();
    let mut typed = Vec::new();
    for arg in command.get_arguments() {
        let id = arg.get_id().as_str();
        if id == "resume" || matches.value_source(id) != Some(ValueSource::CommandLine) {
            continue;
        }
        if !may_change(arg) {
            let flag = arg
                .get_long()
                .map_or_else(|| id.to_string(), |l| format!("--{l}"));
            return Err(ResumeError::ExtraOption { flag });
        }
        typed.push(id);
    }
    // -oA first: it stands for four outputs, and the inherited ones give
    // way to it; an output named beside it then takes its own place.
    if typed.contains(&"output_all") {
        resolved.output_normal = None;
        resolved.output_xml = None;
        resolved.output_grepable = None;
        resolved.output_json = None;
        resolved.output_all = args.output_all.clone();
    }
    for id in typed {
        match id {
            "output_normal" => resolved.output_normal = args.output_normal.clone(),
            "output_json" => resolved.output_json = args.output_json.clone(),
            "output_xml" => resolved.output_xml = args.output_xml.clone(),
            "output_grepable" => resolved.output_grepable = args.output_grepable.clone(),
            "output_csv" => resolved.output_csv = args.output_csv.clone(),
            "stats" => resolved.stats = args.stats.clone(),
            "stats_every" => resolved.stats_every = args.stats_every.clone(),
            _ => {}
        }
    }
    let args = resolved;
    Ok((
        args,
        Some(Resumed {
            path,
            file,
            _lock: lock,
        }),
    ))
}

impl Resumed {
    /// Makes `config` skip what the interrupted run finished.
    pub fn apply(&self, config: &mut ScanConfig) -> Result<(), ResumeError> {
        let id = &self.file.identity;
        if config.total_probes() != id.space {
            return Err(ResumeError::SpaceChanged {
                path: self.path.clone(),
                now: config.total_probes(),
                then: id.space,
            });
        }
        if scan_targets_hash(config) != id.targets {
            return Err(ResumeError::TargetsChanged {
                path: self.path.clone(),
            });
        }
        let progress = &self.file.progress;
        let segments = config.segments.as_ref().map_or(1, |p| p.count());
        if progress.segment >= segments {
            return Err(ResumeError::Format {
                path: self.path.clone(),
                why: format!(
                    "its segment {} is past the scan's {segments}",
                    progress.segment
                ),
            });
        }
        config.enter_segment(progress.segment);
        let len = config.schedule.seq_len();
        let end = progress
            .done_ranges
            .last()
            .map_or(progress.done_below, |r| r[1]);
        if end > len || progress.in_flight.iter().any(|&s| s >= len) {
            return Err(ResumeError::Format {
                path: self.path.clone(),
                why: format!("its progress is past the segment's {len} probes"),
            });
        }
        let schedule = &config.schedule;
        if schedule.order.kind() != id.order || schedule.shard.to_string() != id.shard {
            return Err(ResumeError::Format {
                path: self.path.clone(),
                why: format!(
                    "its order {} {} does not match its options",
                    id.order.as_str(),
                    id.shard
                ),
            });
        }
        config.schedule.done = self.file.done();
        for h in self.file.hosts.iter().flat_map(|hosts| &hosts.pending) {
            if config.space.host(h.host) != Some(h.addr) {
                return Err(ResumeError::Format {
                    path: self.path.clone(),
                    why: format!("held host {} is not {} in this scan", h.host, h.addr),
                });
            }
        }
        Ok(())
    }

    /// The hosts the interrupted run held out of its per-host outputs.
    pub fn held(&self) -> Option<std::sync::Arc<HeldHosts>> {
        self.file.hosts.clone().map(std::sync::Arc::new)
    }

    /// The first run's files this run continues.
    pub fn continuing(&self) -> Continue {
        let o = &self.file.options;
        let mut c = Continue::default();
        for format in [
            Format::Text,
            Format::Json,
            Format::Xml,
            Format::Grepable,
            Format::Csv,
        ] {
            if let Some(path) = o.output(format).filter(|p| *p != Path::new("-")) {
                c.add(format, path.to_path_buf());
            }
        }
        c
    }

    /// Marks the file finished: resuming it again says so.
    pub fn finish(&self) -> Result<(), ResumeError> {
        let mut file = self.file.clone();
        file.finished = true;
        file.hosts = None;
        write(&self.path, &file)
    }

    /// Writes the file back as it was read (after [`make_stale`](Self::make_stale),
    /// when the run stopped before it touched an output).
    pub fn restore(&self) -> Result<(), ResumeError> {
        write(&self.path, &self.file)
    }

    /// Marks the file stale: this run appended to its outputs and then
    /// failed (`why`), so resuming it again would write results twice.
    pub fn make_stale(&self, why: &str) -> Result<(), ResumeError> {
        let mut file = self.file.clone();
        file.stale = Some(why.to_string());
        write(&self.path, &file)
    }
}

/// Where an interrupted run that was not itself resumed writes its file:
/// `fastport.resume` (`fastport-K-of-N.resume` for a shard), or the first
/// `fastport-2.resume`, `fastport-3.resume`, ... that is free, so another
/// run's unfinished file is never replaced.
pub fn candidate_paths(shard: Shard) -> impl Iterator<Item = PathBuf> {
    let stem = if shard == Shard::WHOLE {
        "fastport".to_string()
    } else {
        format!("fastport-{}-of-{}", shard.k(), shard.n())
    };
    (1u32..).map(move |i| match i {
        1 => PathBuf::from(format!("{stem}.resume")),
        i => PathBuf::from(format!("{stem}-{i}.resume")),
    })
}

/// Where a run stopped: the segment (by ordinal; 0 unless segmented), the
/// sequence numbers done there and those abandoned in flight.
#[derive(Debug, Clone, Copy)]
pub struct StoppedAt<'a> {
    pub segment: u64,
    pub done: &'a Done,
    pub in_flight: &'a [u64],
}

/// The file for a run of `args` (as resolved) that stopped with `done`
/// finished and `in_flight` abandoned; `parts` runs made it, `so_far` is
/// the `--stats` document of all of them, `hosts` what the per-host
/// outputs held over.
pub fn file_for(
    args: &Args,
    config: &ScanConfig,
    at: StoppedAt<'_>,
    parts: u32,
    so_far: StatsDocument,
    hosts: Option<HeldHosts>,
) -> ResumeFile {
    let options = ScanOptions::of(args, config.seed, &config.outputs);
    let StoppedAt {
        segment,
        done,
        in_flight,
    } = at;
    let mut in_flight = in_flight.to_vec();
    in_flight.sort_unstable();
    in_flight.dedup();
    let schedule = &config.schedule;
    ResumeFile {
        fastport_resume: VERSION,
        check: String::new(),
        identity: Identity {
            seed: config.seed,
            order: schedule.order.kind(),
            shard: schedule.shard.to_string(),
            space: config.total_probes(),
            targets: scan_targets_hash(config),
        },
        finished: false,
        stale: None,
        parts,
        options,
        progress: Progress {
            segment,
            done_below: done.below(),
            done_ranges: done
                .ranges()
                .iter()
                .filter(|r| r.start > 0)
                .map(|r| [r.start, r.end])
                .collect(),
            in_flight,
        },
        so_far: Some(so_far),
        hosts,
    }
}

fn temporary(path: &Path) -> PathBuf {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}.tmp", std::process::id()));
    PathBuf::from(tmp)
}

/// Writes `file` to `path`, whole or not at all (a temporary file renamed),
/// replacing what is there: for the file a run resumed.
pub fn write(path: &Path, file: &ResumeFile) -> Result<(), ResumeError> {
    let err = |source| ResumeError::Write {
        path: path.to_path_buf(),
        source,
    };
    let tmp = temporary(path);
    std::fs::write(&tmp, file.to_text()).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        err(e)
    })
}

/// Writes `file` under the first of `candidates` that does not exist yet
/// (atomically: a link that fails if the name is taken), and returns it.
pub fn write_new(
    candidates: impl Iterator<Item = PathBuf>,
    file: &ResumeFile,
) -> Result<PathBuf, ResumeError> {
    let mut candidates = candidates.peekable();
    let first = candidates.peek().cloned().unwrap_or_default();
    let tmp = temporary(&first);
    std::fs::write(&tmp, file.to_text()).map_err(|source| ResumeError::Write {
        path: first.clone(),
        source,
    })?;
    let result = loop {
        let Some(path) = candidates.next() else {
            break Err(ResumeError::Write {
                path: first.clone(),
                source: io::Error::other("no free name"),
            });
        };
        match std::fs::hard_link(&tmp, &path) {
            Ok(()) => break Ok(path),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(source) => break Err(ResumeError::Write { path, source }),
        }
    };
    let _ = std::fs::remove_file(&tmp);
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{Stats, Summary};

    use crate::test_util::{TempDir, argv, assert_has};

    fn resolve_line(line: &str) -> Result<(Args, Option<Resumed>), ResumeError> {
        let argv = argv(line);
        resolve(cli::parse_from(argv.clone()).unwrap(), &argv)
    }

    /// `fastport --resume PATH`, resolved.
    fn resume(path: &Path) -> Result<(Args, Option<Resumed>), ResumeError> {
        resolve_line(&format!("--resume {}", path.display()))
    }

    /// The scan `args` make on a machine with 1024 open files and 2 cores.
    fn config_of(args: &Args) -> ScanConfig {
        ScanConfig::from_args(args, 1024, 2).unwrap()
    }

    /// The scan `--resume PATH` continues, the file's progress applied, or
    /// why the file does not fit it.
    fn resumed_config(path: &Path) -> Result<ScanConfig, ResumeError> {
        let (args, resumed) = resume(path)?;
        let mut config = config_of(&args);
        resumed.expect("a resume").apply(&mut config)?;
        Ok(config)
    }

    /// Asserts that `file`'s text (its check made for what it holds) is
    /// still refused on reading, as a format error.
    #[track_caller]
    fn assert_refused_on_reading(path: &Path, file: &ResumeFile) {
        let e = ResumeFile::from_text(path, &file.to_text()).unwrap_err();
        assert!(matches!(e, ResumeError::Format { .. }), "{e}");
    }

    fn dir(name: &str) -> TempDir {
        TempDir::new("resume", name)
    }

    fn doc(config: &ScanConfig) -> StatsDocument {
        let summary = Summary {
            stats: Stats::new(),
            elapsed: std::time::Duration::from_millis(1500),
            hosts: config.space.host_count(),
            ports_per_host: config.space.ports().len() as u64,
            planned: config.schedule.seq_len(),
            interrupted: true,
            engine: "mio",
            threads: 1,
            concurrency: 1,
            seed: config.seed,
            order: config.schedule.order.name(),
            shard: config.schedule.shard,
        };
        StatsDocument::new(&summary, None)
    }

    fn at<'a>(segment: u64, done: &'a Done, in_flight: &'a [u64]) -> StoppedAt<'a> {
        StoppedAt {
            segment,
            done,
            in_flight,
        }
    }

    /// The resume file at `path`, read back.
    fn read_back(path: &Path) -> ResumeFile {
        ResumeFile::from_text(path, &std::fs::read_to_string(path).unwrap()).unwrap()
    }

    fn saved(dir: &Path, line: &str) -> PathBuf {
        let args = cli::parse_from(argv(line)).unwrap();
        let config = config_of(&args);
        let done = Done::from_ranges([0..10, 12..20]);
        let path = dir.join("run.resume");
        write(
            &path,
            &file_for(
                &args,
                &config,
                at(0, &done, &[10, 11]),
                1,
                doc(&config),
                None,
            ),
        )
        .unwrap();
        path
    }

    #[test]
    fn a_resume_keeps_every_option_and_the_seed() {
        let dir = dir("keeps");
        let out = dir.join("a.jsonl");
        let path = saved(
            &dir,
            &format!(
                "-p 1-100 --retries 3 --show all -oJ {} 127.0.0.1",
                out.display()
            ),
        );
        let p = path.to_str().unwrap();

        let e = resolve_line(&format!("--resume {p} --retries 1")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "--resume continues with the options of the interrupted run; only output files and --stats-every may be given with it, not --retries"
        );

        // No output given: the first run's -oJ is continued.
        let (args, resumed) = resolve_line(&format!("--resume {p} --stats-every 5s")).unwrap();
        assert_eq!(args.output_json.as_deref(), Some(out.as_path()));
        assert_eq!(args.stats_every.as_deref(), Some("5s"));
        let resumed = resumed.unwrap();
        assert_eq!(
            resumed.file.options.output(Format::Json),
            Some(out.as_path())
        );
        drop(resumed);

        let (args, resumed) = resolve_line(&format!("--resume {p} -oJ b.jsonl")).unwrap();
        assert_eq!(args.ports.as_deref(), Some("1-100"));
        assert_eq!(args.retries, Some(3));
        assert_eq!(args.show, "all");
        assert_eq!(args.output_json, Some(PathBuf::from("b.jsonl")));
        assert_eq!(args.resume, None);
        let resumed = resumed.unwrap();
        assert_eq!(args.seed, Some(resumed.file.identity.seed));
        let mut config = config_of(&args);
        resumed.apply(&mut config).unwrap();
        assert_eq!(config.schedule.done.ranges(), [0..10, 12..20]);
        assert_eq!(config.schedule.remaining(), 100 - 18);
        assert_eq!(resumed.file.progress.in_flight, [10, 11]);
        drop(resumed);

        let e = resolve_line(&format!("--resume {p} -p 1-50 -oJ b.jsonl")).unwrap_err();
        assert!(e.to_string().ends_with("not --ports"), "{e}");
    }

    #[test]
    fn the_options_a_resume_may_give_are_flags() {
        let command = Args::command();
        for id in MAY_CHANGE {
            assert!(
                command.get_arguments().any(|a| a.get_id() == id),
                "no flag {id}"
            );
        }
    }

    #[test]
    fn an_edited_resume_file_is_refused() {
        let dir = dir("edited");
        let path = saved(&dir, "-p 1-100 127.0.0.1");
        let text = std::fs::read_to_string(&path).unwrap();
        let file = ResumeFile::from_text(&path, &text).unwrap();
        // The seed, the progress: any change is caught by the check.
        for (from, to) in [
            (
                format!("\"seed\": {}", file.identity.seed),
                "\"seed\": 7".to_string(),
            ),
            ("\"done_below\": 10".into(), "\"done_below\": 99".into()),
        ] {
            let edited = text.replacen(&from, &to, 1);
            assert_ne!(edited, text, "{from}");
            let e = ResumeFile::from_text(&path, &edited).unwrap_err();
            assert!(matches!(e, ResumeError::Damaged { .. }), "{e}");
        }
    }

    #[test]
    fn progress_outside_the_shard_is_refused_even_with_a_good_check() {
        let dir = dir("range");
        let path = saved(&dir, "-p 1-100 127.0.0.1");
        let good = read_back(&path);
        let edits: [fn(&mut Progress); 5] = [
            |p| p.done_below = 101,
            |p| p.done_ranges = vec![[15, 12]],
            |p| p.done_ranges = vec![[30, 40], [20, 25]],
            |p| p.done_ranges = vec![[90, 101]],
            |p| p.in_flight = vec![100],
        ];
        for edit in edits {
            let mut f = good.clone();
            edit(&mut f.progress);
            assert_refused_on_reading(&path, &f);
        }
    }

    #[test]
    fn held_hosts_are_kept_and_checked_against_the_scan() {
        use crate::output::{HeldHost, HeldHosts};
        let dir = dir("held");
        let path = saved(&dir, "-p 1-100 127.0.0.0/30");
        let mut file = read_back(&path);
        let host = |host: u64, addr: &str, shown: &str| HeldHost {
            host,
            addr: addr.parse().unwrap(),
            first_seen: 1_795_959_142,
            reasons: "conn-refused:3 syn-ack:1".into(),
            shown: shown.into(),
            rtt: [61, 20, 4],
            services: Vec::new(),
        };
        file.hosts = Some(HeldHosts {
            xml: Some([7, 6]),
            grepable: None,
            pending: vec![host(1, "127.0.0.1", "22:syn-ack")],
        });
        write(&path, &file).unwrap();
        let (args, resumed) = resume(&path).unwrap();
        let resumed = resumed.unwrap();
        assert_eq!(resumed.file.hosts, file.hosts);
        let mut config = config_of(&args);
        resumed.apply(&mut config).unwrap();
        drop(resumed);
        // A held host that is not this scan's address at its index.
        file.hosts.as_mut().unwrap().pending = vec![host(1, "127.0.0.2", "22:syn-ack")];
        write(&path, &file).unwrap();
        let e = resumed_config(&path).unwrap_err();
        assert!(e.to_string().contains("held host 1"), "{e}");
        // Unparsable or impossible held state is refused on reading.
        for bad in [
            host(1, "127.0.0.1", "22:weird"),
            host(
                1,
                "127.0.0.1",
                "22:syn-ack 23:syn-ack 24:syn-ack 25:syn-ack 26:syn-ack",
            ),
        ] {
            file.hosts.as_mut().unwrap().pending = vec![bad];
            assert_refused_on_reading(&path, &file);
        }
    }

    #[test]
    fn a_finished_resume_file_says_so() {
        let dir = dir("finished");
        let path = saved(&dir, "-p 1-100 127.0.0.1");
        let (_, resumed) = resume(&path).unwrap();
        resumed.unwrap().finish().unwrap();
        let e = resume(&path).unwrap_err();
        assert!(matches!(e, ResumeError::Finished { .. }), "{e}");
    }

    #[test]
    fn a_resume_after_a_failed_resume_would_write_results_twice() {
        let dir = dir("stale");
        let path = saved(&dir, "-p 1-100 127.0.0.1");
        let (_, resumed) = resume(&path).unwrap();
        resumed
            .unwrap()
            .make_stale("No space left on device")
            .unwrap();
        let e = resume(&path).unwrap_err();
        assert!(matches!(e, ResumeError::Stale { .. }), "{e}");
        assert!(e.to_string().contains("No space left on device"), "{e}");
    }

    #[test]
    fn two_resumes_of_one_file_cannot_run_at_once() {
        let dir = dir("locked");
        let path = saved(&dir, "-p 1-100 127.0.0.1");
        let (_, first) = resume(&path).unwrap();
        let e = resume(&path).unwrap_err();
        assert!(matches!(e, ResumeError::Locked { .. }), "{e}");
        drop(first);
        assert!(resume(&path).is_ok());
    }

    #[test]
    fn a_second_interrupted_run_does_not_replace_the_first_resume_file() {
        let dir = dir("names");
        let path = saved(&dir, "-p 1-100 127.0.0.1");
        let file = read_back(&path);
        let names = |shard| {
            let dir = dir.to_path_buf();
            candidate_paths(shard).map(move |p| dir.join(p))
        };
        let a = write_new(names(Shard::WHOLE), &file).unwrap();
        let b = write_new(names(Shard::WHOLE), &file).unwrap();
        assert_eq!(a.file_name().unwrap(), "fastport.resume");
        assert_eq!(b.file_name().unwrap(), "fastport-2.resume");
        let c = write_new(names(Shard::new(2, 3).unwrap()), &file).unwrap();
        assert_eq!(c.file_name().unwrap(), "fastport-2-of-3.resume");
        assert!(
            std::fs::read_dir(a.parent().unwrap())
                .unwrap()
                .all(|e| { !e.unwrap().file_name().to_string_lossy().ends_with(".tmp") })
        );
    }

    /// A scan of 2^80 probes (segments of 2^63) stopped in the eighth
    /// segment it visited: the file names that segment, its 2^80 probes
    /// round-trip exactly, and the resumed run continues in that segment
    /// with the same order, every earlier segment done.
    #[test]
    fn a_resume_in_a_segment_beyond_the_first_continues_there() {
        let dir = dir("segment");
        let line = "-p 80 --seed 5 2001:2::/48";
        let args = cli::parse_from(argv(line)).unwrap();
        let mut config = config_of(&args);
        let plan = config.segments.clone().expect("segmented");
        assert_eq!(plan.count(), 1 << 17);
        config.enter_segment(7);
        let done = Done::from_ranges([0..1000, 1005..2000]);
        let path = dir.join("run.resume");
        let file = file_for(
            &args,
            &config,
            at(7, &done, &[1000, 1001]),
            1,
            doc(&config),
            None,
        );
        write(&path, &file).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains("\"space\": 1208925819614629174706176,"),
            "2^80"
        );
        let read = ResumeFile::from_text(&path, &text).unwrap();
        assert_eq!(read.identity.space, 1 << 80);
        assert_eq!(read.progress.segment, 7);

        let (args, resumed) = resume(&path).unwrap();
        let resumed = resumed.unwrap();
        let mut config = config_of(&args);
        assert_eq!(config.ordinal, 0);
        resumed.apply(&mut config).unwrap();
        let (space, schedule) = plan.at(7);
        assert_eq!(config.ordinal, 7);
        assert_eq!(config.space, space);
        assert_eq!(config.schedule.order, schedule.order);
        assert_eq!(config.schedule.done.ranges(), [0..1000, 1005..2000]);
        let left_here = (1u128 << 63) - 1995;
        assert_eq!(config.remaining(), left_here + (((1 << 17) - 8) << 63));
        drop(resumed);

        // A segment past the scan's, even with a good check, is refused.
        let mut bad = read.clone();
        bad.progress.segment = 1 << 17;
        write(&path, &bad).unwrap();
        let e = resumed_config(&path).unwrap_err();
        assert!(e.to_string().contains("segment 131072 is past"), "{e}");
    }

    /// The options were clap's `Args` serialized as JSON, outputs told
    /// apart by their help heading. Now they are one typed struct: every
    /// flag survives the round trip through the file, the engine and order
    /// are enums, the outputs a list of (format, absolute path) with `-oA`
    /// spelled out.
    #[test]
    fn the_options_round_trip_typed_through_the_file() {
        let dir = dir("typed");
        let base = dir.join("all");
        let line = format!(
            "-p 1-100,443 --exclude-ports 7 --retries 2 --timeout 300ms -T4 --rate 500 \
             --concurrency 64 --threads 2 --engine threads --order sequential --seed 99 \
             --shard 2/3 --open --reason -v --stats-every 10s \
             --exclude 127.0.0.3 --no-resolve -oA {} -oC - 127.0.0.0/28",
            base.display()
        );
        let args = cli::parse_from(argv(&line)).unwrap();
        let config = config_of(&args);
        let options = ScanOptions::of(&args, config.seed, &config.outputs);
        assert_eq!(options.engine, crate::engine::EngineKind::Threads);
        assert_eq!(options.order, OrderKind::Sequential);
        let formats: Vec<(Format, String)> = options
            .outputs
            .iter()
            .map(|o| (o.format, o.path.display().to_string()))
            .collect();
        let b = base.display();
        assert_eq!(
            formats,
            [
                (Format::Text, format!("{b}.txt")),
                (Format::Json, format!("{b}.jsonl")),
                (Format::Xml, format!("{b}.xml")),
                (Format::Grepable, format!("{b}.gnmap")),
                (Format::Csv, "-".to_string()),
            ]
        );
        // Through the file's text and back: the same options, and a
        // command line that makes the same scan.
        let text = serde_json::to_string_pretty(&options).unwrap();
        assert_has(&text, "\"engine\": \"threads\"");
        assert_has(&text, "\"format\": \"grepable\"");
        let read: ScanOptions = serde_json::from_str(&text).unwrap();
        assert_eq!(read, options);
        let again = read.clone().into_args();
        assert_eq!(again.seed, Some(99));
        assert_eq!(again.resume, None);
        assert_eq!(again.output_all, None);
        let config2 = config_of(&again);
        assert_eq!(
            ScanOptions::of(&again, config2.seed, &config2.outputs),
            options
        );
        assert_eq!(config2.space, config.space);
        assert_eq!(config2.schedule, config.schedule);
        assert_eq!(config2.engine.concurrency, config.engine.concurrency);
        assert_eq!(config2.outputs.show, config.outputs.show);
        // An unknown field is not silently dropped.
        let extra = text.replacen("\"seed\": 99", "\"seed\": 99, \"sede\": 1", 1);
        assert!(serde_json::from_str::<ScanOptions>(&extra).is_err());
    }

    #[test]
    fn a_resume_file_of_an_older_format_is_refused_in_one_line() {
        let dir = dir("old");
        let path = saved(&dir, "-p 1-100 127.0.0.1");
        let text = std::fs::read_to_string(&path).unwrap();
        let old = text.replacen("\"fastport_resume\": 4", "\"fastport_resume\": 3", 1);
        std::fs::write(&path, &old).unwrap();
        let e = resume(&path).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "{} is not a FastPort resume file: it is format 3, written by an older FastPort; this one reads format 4 only: run the scan again",
                path.display()
            )
        );
    }
}
