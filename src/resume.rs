//! Resume files: what an interrupted run leaves behind so that
//! `fastport --resume FILE` continues it, and together the two runs report
//! every probe exactly once.
//!
//! The file is JSON:
//!
//! ```json
//! {
//!   "fastport_resume": 1,
//!   "options": { "targets": ["10.0.0.0/16"], "ports": "1-1024", ... },
//!   "seed": 1234, "order": "random", "shard": "2/3", "space": 67108864,
//!   "done_below": 81234,
//!   "done_ranges": [[81236, 81300], [81301, 82011]],
//!   "in_flight": [81234, 81235, 81300]
//! }
//! ```
//!
//! `options` is every option of the run as parsed ([`Args`]); `space` the
//! number of probes the targets made (a resume refuses a space that
//! changed, say because a name now resolves elsewhere). Progress counts in
//! the shard's *sequence numbers* `s` (the probe at position `K-1 + N*s` of
//! the seeded order, see [`crate::order`]): every `s < done_below` is
//! finished and written, so are the half-open `done_ranges` above it;
//! `in_flight` lists the probes the interrupt caught unanswered, which were
//! not written and are probed again.

use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};

use clap::CommandFactory;
use clap::parser::ValueSource;
use serde::{Deserialize, Serialize};

use crate::cli::{self, Args};
use crate::config::ScanConfig;
use crate::order::{Done, Shard};

/// The format's version, first field of every file.
pub const VERSION: u32 = 1;

/// Why a run cannot be resumed, or its resume file not written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ResumeError {
    #[error("cannot read the resume file {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("{path} is not a FastPort resume file: {why}")]
    Format { path: PathBuf, why: String },
    #[error(
        "--resume continues with the options of the interrupted run; only output files may be given with it, not {flag}"
    )]
    ExtraOption { flag: String },
    #[error(
        "the interrupted run wrote {path}: give the resumed run its own output files (such as -oJ part2.jsonl) so the first results are kept"
    )]
    WouldOverwrite { path: PathBuf },
    #[error(
        "the targets of {path} now make a different scan ({now} probes, not {then}): a resume needs the same targets and ports"
    )]
    SpaceChanged { path: PathBuf, now: u64, then: u64 },
    #[error("cannot write the resume file {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
}

/// The file's contents.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResumeFile {
    pub fastport_resume: u32,
    pub options: serde_json::Value,
    pub seed: u64,
    pub order: String,
    pub shard: String,
    pub space: u64,
    pub done_below: u64,
    pub done_ranges: Vec<[u64; 2]>,
    pub in_flight: Vec<u64>,
}

/// A run being resumed: where its file is and what it finished.
#[derive(Debug, Clone)]
pub struct Resumed {
    pub path: PathBuf,
    pub file: ResumeFile,
}

/// Options that name an output file: the only ones a resume may change.
fn is_destination(arg: &clap::Arg) -> bool {
    arg.get_help_heading() == Some("Output")
        && arg
            .get_value_names()
            .is_some_and(|v| v.iter().any(|n| n == "FILE" || n == "BASENAME"))
}

/// With `--resume FILE`: the options of the interrupted run (and its seed),
/// with any output files given now in place of its own. Without: `args` as
/// they are.
pub fn resolve(args: Args, argv: &[OsString]) -> Result<(Args, Option<Resumed>), ResumeError> {
    let Some(path) = args.resume.clone() else {
        return Ok((args, None));
    };
    let text = std::fs::read_to_string(&path).map_err(|source| ResumeError::Read {
        path: path.clone(),
        source,
    })?;
    let format = |why: String| ResumeError::Format {
        path: path.clone(),
        why,
    };
    let file: ResumeFile = serde_json::from_str(&text).map_err(|e| format(e.to_string()))?;
    if file.fastport_resume != VERSION {
        return Err(format(format!("version {}", file.fastport_resume)));
    }
    let mut options = file.options.clone();
    let given = serde_json::to_value(&args).map_err(|e| format(e.to_string()))?;

    // Which flags were typed now, besides --resume.
    let matches = cli::command()
        .ignore_errors(true)
        .get_matches_from(cli::normalize_args(argv.iter().cloned()));
    let command = Args::command();
    let mut outputs_given = false;
    for arg in command.get_arguments() {
        let id = arg.get_id().as_str();
        if id == "resume" || matches.value_source(id) != Some(ValueSource::CommandLine) {
            continue;
        }
        if !is_destination(arg) {
            let flag = arg
                .get_long()
                .map_or_else(|| id.to_string(), |l| format!("--{l}"));
            return Err(ResumeError::ExtraOption { flag });
        }
        outputs_given = true;
    }
    for arg in command.get_arguments().filter(|a| is_destination(a)) {
        let id = arg.get_id().as_str();
        if outputs_given {
            options[id] = given[id].clone();
        } else if let Some(p) = options[id].as_str().filter(|p| *p != "-") {
            return Err(ResumeError::WouldOverwrite { path: p.into() });
        }
    }
    options["seed"] = file.seed.into();
    options["resume"] = serde_json::Value::Null;
    let args: Args = serde_json::from_value(options).map_err(|e| format(e.to_string()))?;
    Ok((args, Some(Resumed { path, file })))
}

impl Resumed {
    /// Makes `config` skip what the interrupted run finished.
    pub fn apply(&self, config: &mut ScanConfig) -> Result<(), ResumeError> {
        let f = &self.file;
        if config.space.len() != f.space {
            return Err(ResumeError::SpaceChanged {
                path: self.path.clone(),
                now: config.space.len(),
                then: f.space,
            });
        }
        let schedule = &config.schedule;
        if schedule.order.name() != f.order || schedule.shard.to_string() != f.shard {
            return Err(ResumeError::Format {
                path: self.path.clone(),
                why: format!(
                    "its order {} {} does not match its options",
                    f.order, f.shard
                ),
            });
        }
        config.schedule.done = Done::from_ranges(
            std::iter::once(0..f.done_below).chain(f.done_ranges.iter().map(|&[a, b]| a..b)),
        );
        Ok(())
    }
}

/// Where an interrupted run that was not itself resumed writes its file.
pub fn default_path(shard: Shard) -> PathBuf {
    if shard == Shard::WHOLE {
        PathBuf::from("fastport.resume")
    } else {
        PathBuf::from(format!("fastport-{}-of-{}.resume", shard.k(), shard.n()))
    }
}

/// The file for a run of `args` (as resolved) that stopped with `done`
/// finished and `in_flight` abandoned.
pub fn file_for(args: &Args, config: &ScanConfig, done: &Done, in_flight: &[u64]) -> ResumeFile {
    let mut options = serde_json::to_value(args).unwrap_or_default();
    options["seed"] = config.seed.into();
    options["resume"] = serde_json::Value::Null;
    let below = done.below();
    let mut in_flight = in_flight.to_vec();
    in_flight.sort_unstable();
    ResumeFile {
        fastport_resume: VERSION,
        options,
        seed: config.seed,
        order: config.schedule.order.name().into(),
        shard: config.schedule.shard.to_string(),
        space: config.space.len(),
        done_below: below,
        done_ranges: done
            .ranges()
            .iter()
            .filter(|r| r.start > 0)
            .map(|r| [r.start, r.end])
            .collect(),
        in_flight,
    }
}

/// Writes `file` to `path`, whole or not at all (a temporary file renamed).
pub fn write(path: &Path, file: &ResumeFile) -> Result<(), ResumeError> {
    let err = |source| ResumeError::Write {
        path: path.to_path_buf(),
        source,
    };
    let text = serde_json::to_string_pretty(file)
        .map_err(io::Error::other)
        .map_err(err)?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, text + "\n").map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(line: &str) -> Vec<OsString> {
        std::iter::once("fastport")
            .chain(line.split_whitespace())
            .map(OsString::from)
            .collect()
    }

    fn resolve_line(line: &str) -> Result<(Args, Option<Resumed>), ResumeError> {
        let argv = argv(line);
        resolve(cli::parse_from(argv.clone()).unwrap(), &argv)
    }

    fn saved(dir: &Path, line: &str) -> PathBuf {
        let argv = argv(line);
        let args = cli::parse_from(argv).unwrap();
        let config = ScanConfig::from_args(&args, 1024, 2).unwrap();
        let done = Done::from_ranges([0..10, 12..20]);
        let path = dir.join("run.resume");
        write(&path, &file_for(&args, &config, &done, &[10, 11])).unwrap();
        path
    }

    #[test]
    fn a_resume_keeps_every_option_and_the_seed() {
        let dir = std::env::temp_dir().join(format!("fastport-resume-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = saved(
            &dir,
            "-p 1-100 --retries 3 --show all -oJ a.jsonl 127.0.0.1",
        );
        let p = path.to_str().unwrap();

        let e = resolve_line(&format!("--resume {p}")).unwrap_err();
        assert!(matches!(e, ResumeError::WouldOverwrite { .. }), "{e}");
        let e = resolve_line(&format!("--resume {p} --retries 1")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "--resume continues with the options of the interrupted run; only output files may be given with it, not --retries"
        );

        let (args, resumed) = resolve_line(&format!("--resume {p} -oJ b.jsonl")).unwrap();
        assert_eq!(args.ports.as_deref(), Some("1-100"));
        assert_eq!(args.retries, Some(3));
        assert_eq!(args.show, "all");
        assert_eq!(args.output_json, Some(PathBuf::from("b.jsonl")));
        assert_eq!(args.resume, None);
        let resumed = resumed.unwrap();
        assert_eq!(args.seed, Some(resumed.file.seed));
        let mut config = ScanConfig::from_args(&args, 1024, 2).unwrap();
        resumed.apply(&mut config).unwrap();
        assert_eq!(config.schedule.done.ranges(), [0..10, 12..20]);
        assert_eq!(config.schedule.remaining(), 100 - 18);
        assert_eq!(resumed.file.in_flight, [10, 11]);

        let e = resolve_line(&format!("--resume {p} -p 1-50 -oJ b.jsonl")).unwrap_err();
        assert!(e.to_string().ends_with("not --ports"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn default_paths_name_the_shard() {
        assert_eq!(default_path(Shard::WHOLE), PathBuf::from("fastport.resume"));
        assert_eq!(
            default_path(Shard::new(2, 3).unwrap()),
            PathBuf::from("fastport-2-of-3.resume")
        );
    }
}
